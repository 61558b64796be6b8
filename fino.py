# FINO: Flow Matching with Injected Noise for Offline-to-Online RL (Shin, Chae, Park, Sung, ICLR 2026,
# arXiv:2602.18117): FQL + noise injected into the BC flow's path + entropy-guided sampling online; docs: docs/fino.md
import dataclasses
import importlib.util
import json
import math
import os
import random
import re
import shlex
import signal
import socket
import sys
import time
import warnings
import zipfile
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Literal, NamedTuple

import flax
import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import ogbench
import optax
import tyro
from tensorboardX import SummaryWriter
from tqdm import tqdm

from common_flow import CriticEnsemble, VectorField, euler_sample, flow_path, polyak_update

# OGBench's environments declare float64 bounds; gymnasium warns about the cast (in raw colour codes) at every env made.
warnings.filterwarnings("ignore", message=".*precision lowered by casting to float32", category=UserWarning)


def derived(metavar: str, default: str = "the paper's value for the task"):
    """For a flag whose default is computed at start: --help shows how, instead of `(default: None)`."""
    return tyro.conf.arg(metavar=metavar, help_behavior_hint=f"(default: {default})")


@dataclass
class Args:
    """FINO on OGBench: FQL with noise injected into the BC flow, then online entropy-guided fine-tuning.

    Metrics are logged against gradient steps offline, then offline_steps + environment steps online. A run stopped at
    any point and continued with --resume gives the numbers of the uninterrupted run (on the same machine)."""

    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment"""
    seed: int = 0
    """seed of the experiment (Python, NumPy, JAX, environment resets), in [0, 2^32)"""
    track: bool = False
    """if toggled, this experiment will be tracked with Weights and Biases"""
    wandb_project_name: str = "flow-rl"
    """the wandb's project name"""
    wandb_entity: str | None = None
    """the entity (team) of wandb's project"""
    capture_video: bool = False
    """whether to record evaluation episodes as videos (`runs/{run_name}/videos`, and eval/video in TensorBoard)"""
    video_episodes: int = 1
    """with --capture-video: how many episodes of each evaluation to record (the first ones)"""
    save_model: bool = False
    """whether to save the parameters and the resolved Args into `runs/{run_name}`"""
    load_model: str | None = None
    """path of a saved `.flax` file: skip training, load it (with the args.json beside it) and evaluate it"""
    checkpoint_every: int = 0
    """write `checkpoint.msgpack` into the run folder every this many steps (online: at the end of the first episode
    that ends at or after each multiple, so that no episode is cut); 0: never"""
    resume: str | None = None
    """a run folder to continue from its last checkpoint, with the arguments saved there (give no other flag)"""

    # Environment and data
    env_id: str = "cube-single"
    """an alias (`cube-single`, `antmaze`, `puzzle-3x3-task1`, ...) or a full OGBench single-task id"""
    dataset_dir: str = "~/.ogbench/data"
    """folder holding `<dataset>.npz` and `<dataset>-val.npz` (OGBench's own folder by default)"""
    success_timing: Literal["pre", "post"] = "post"
    """OGBench success/reward timing: 'post' (from s', as in ogbench 1.1.0 used by the paper) or 'pre' (from s)"""
    offline_steps: int = 1_000_000
    """number of offline gradient steps; 0: no offline phase"""
    online_steps: int = 500_000
    """number of online environment steps after the offline phase (one gradient step each); 0: offline only"""
    buffer_size: Annotated[int | None, derived("INT", "max(1500000, N + 1)")] = None
    """replay capacity in the online phase, at least the dataset size N + 1 (the dataset seeds the buffer)"""
    eval_every: int = 50_000
    """evaluate every this many steps (gradient steps offline, env steps online), plus at the start and end"""
    eval_episodes: int = 50
    """number of evaluation episodes; 0: no evaluation"""
    num_eval_envs: int = 10
    """number of evaluation environments stepped in lockstep with one batched policy call per step"""
    log_every: int = 5_000
    """log losses every this many steps"""
    steps_per_call: int = 50
    """offline gradient steps per compiled call; the progress bar moves once per call, and --log-every, --eval-every
    and --checkpoint-every must be multiples of it"""

    # Algorithm specific arguments
    batch_size: int = 256
    """the batch size of each gradient step"""
    learning_rate: float = 3e-4
    """Adam learning rate of all networks"""
    actor_hidden_dims: tuple[int, ...] = (512, 512, 512, 512)
    """hidden layers of the BC flow and of the one-step policy"""
    value_hidden_dims: tuple[int, ...] = (512, 512, 512, 512)
    """hidden layers of each critic"""
    value_layer_norm: bool = True
    """LayerNorm after each hidden activation of the critics"""
    actor_layer_norm: bool = False
    """LayerNorm after each hidden activation of the policies"""
    alpha: Annotated[float | None, derived("FLOAT")] = None
    """distillation coefficient (one value for both phases)"""
    discount: Annotated[float | None, derived("FLOAT")] = None
    """discount factor"""
    q_agg: Annotated[Literal["mean", "min"] | None, derived("{mean,min}")] = None
    """aggregation of the two critics in the TD target and in scoring candidates"""
    tau: float = 0.005
    """target network update rate"""
    flow_steps: int = 10
    """Euler steps of the BC flow"""
    normalize_q_loss: bool = False
    """scale the Q term by 1 / mean|Q| (off in the paper; the official README suggests it for new tasks)"""
    noise_scale: float = 0.1
    """eta, the scale of the noise injected into the BC flow's interpolant (0 gives FQL's flow matching)"""
    noise_schedule: Literal["code", "paper"] = "code"
    """'code': x_t + eta exp(10(t-1)) n, target x1 - x0 (official code); 'paper': x_t + sigma_t n with
    sigma_t^2 = eta t (2 - (2 - eta) t), target x1 - (1 - eta) x0"""
    num_candidates: Annotated[int | None, derived("INT", "min(10, ceil(action_dim / 2))")] = None
    """N, one-step samples scored by the critics at each acting step"""
    beta_init: float = 10.0
    """initial inverse temperature beta of the softmax over the candidates' normalised Q"""
    beta_lr: float = 0.1
    """step size of the update beta <- max(0, beta + beta_lr * (entropy - target_entropy)); 0 keeps beta fixed"""
    target_entropy: Annotated[float | None, derived("FLOAT", "-action_dim")] = None
    """target entropy of the online behaviour policy"""
    entropy_every: int = 50_000
    """estimate the behaviour policy's entropy and update beta every this many online steps"""
    entropy_states: int = 256
    """buffer states at which the entropy is estimated"""
    entropy_samples: int = 200
    """actions sampled at each of these states"""
    gmm_components: int = 3


# What each flag accepts (a rule of RULES in the plumbing -> flags); None always passes: a value the task sets at start.
FLAG_RULES = {
    "count": "video_episodes buffer_size eval_every num_eval_envs log_every steps_per_call batch_size flow_steps"
    + " num_candidates entropy_every entropy_states gmm_components",
    "count_or_off": "offline_steps online_steps eval_episodes checkpoint_every",
    "positive": "learning_rate",
    "non_negative": "alpha beta_init beta_lr",
    "finite": "target_entropy",
    "fraction": "discount",
    "rate": "tau",
    "layers": "actor_hidden_dims value_hidden_dims",
}


# The paper's per-environment flags (official FINO README), used for all five tasks of each environment; FINO's README
# has no cube-single, scene or puzzle-3x3: those rows take FQL's offline-to-online values.
# name: (dataset type, default task, alpha, discount, q_agg)
TASKS = {
    "antmaze-large": ("navigate", 1, 10.0, 0.99, "min"),
    "antmaze-giant": ("navigate", 1, 10.0, 0.995, "min"),
    "humanoidmaze-medium": ("navigate", 1, 100.0, 0.995, "mean"),
    "humanoidmaze-large": ("navigate", 1, 30.0, 0.995, "mean"),
    "antsoccer-arena": ("navigate", 4, 30.0, 0.995, "mean"),
    "cube-single": ("play", 2, 300.0, 0.99, "mean"),
    "cube-double": ("play", 2, 300.0, 0.99, "mean"),
    "scene": ("play", 2, 300.0, 0.99, "mean"),
    "puzzle-3x3": ("play", 4, 1000.0, 0.99, "mean"),
    "puzzle-4x4": ("play", 4, 1000.0, 0.99, "mean"),
}
SHORT_ALIASES = {"antmaze": "antmaze-large", "humanoidmaze": "humanoidmaze-medium", "antsoccer": "antsoccer-arena"}


def resolve_env_id(env_id: str) -> tuple[str, str, str]:
    """Alias or full id -> (environment name in TASKS, full single-task OGBench id, dataset name); ValueError if unknown."""
    full = re.fullmatch(r"(?P<name>[a-z0-9-]+?)-(?P<dtype>navigate|play)-singletask(-task(?P<task>[1-5]))?-v0", env_id)
    alias = re.fullmatch(r"(?P<name>[a-z0-9-]+?)(-task(?P<task>[1-5]))?", env_id)
    match = full or alias
    name = SHORT_ALIASES.get(match["name"], match["name"]) if match else None
    if name not in TASKS or (full and full["dtype"] != TASKS[name][0]):
        accepted = ", ".join(list(TASKS) + list(SHORT_ALIASES))
        raise ValueError(
            f"unknown environment; give one of {accepted}, optionally with -taskN (N in 1..5), "
            "or a full id such as cube-single-play-singletask-task2-v0"
        )
    dataset_type, default_task = TASKS[name][:2]
    task = int(match["task"] or default_task)
    return name, f"{name}-{dataset_type}-singletask-task{task}-v0", f"{name}-{dataset_type}-v0"


def check_args(args: Args) -> None:
    """Every flag, before anything slow: the table above, then what depends on two flags (files: where they are read)."""
    check_flags(args, FLAG_RULES)
    try:
        resolve_env_id(args.env_id)
    except ValueError as error:
        fail("env_id", args.env_id, str(error))
    if args.offline_steps == args.online_steps == 0 and args.load_model is None:
        fail("offline_steps", 0, "with --online-steps 0 there is nothing to train; give a positive number of steps")
    for flag in ("log_every", "eval_every", "checkpoint_every"):  # offline boundaries fall between compiled calls
        if args.offline_steps > 0 and (value := getattr(args, flag)) % args.steps_per_call:
            fail(flag, value, f"must be a multiple of --steps-per-call {args.steps_per_call}; give one, or change it")
    if not 0 <= args.noise_scale <= (1 if args.noise_schedule == "paper" else math.inf):
        fail("noise_scale", args.noise_scale, "must be >= 0 (0: FQL's path), and at most 1 with the paper's schedule")
    if args.entropy_samples < max(args.gmm_components, 2):
        why = f"must be at least 2 and --gmm-components ({args.gmm_components}) to fit the mixture; give more"
        fail("entropy_samples", args.entropy_samples, why)


# Data
def load_data(env_id: str, dataset_name: str, dataset_dir: str, success_timing: str):
    """Make the training env and load the OGBench dataset (rewards relabelled for the task) and its validation split.
    Missing files are downloaded as the official code does when the machine is online."""
    train_path = os.path.join(os.path.expanduser(dataset_dir), f"{dataset_name}.npz")
    paths = (train_path, train_path.replace(".npz", "-val.npz"))
    why = ""
    if not all(os.path.exists(path) for path in paths):
        why = download(lambda: ogbench.download_datasets([dataset_name], dataset_dir), "rail.eecs.berkeley.edu")
    make = f"python benchmark/make_dataset.py --dataset {dataset_name} --out-dir {shlex.quote(dataset_dir)}"
    fetch = f'import ogbench; ogbench.download_datasets(["{dataset_name}"], "{dataset_dir}")'
    remake = f"  not downloaded: {why}\n" if why else ""
    if not dataset_name.startswith(("humanoidmaze", "antsoccer")):  # benchmark/make_dataset.py makes the others
        remake += f"  make it on this machine: {make}\n"
    remake += f"  or download it (delete a broken file first): {shlex.join(['python', '-c', fetch])}"
    env = ogbench.make_env_and_datasets(env_id, env_only=True, success_timing=success_timing)
    shapes = {"observations": env.observation_space.shape, "actions": env.action_space.shape, "terminals": ()}
    shapes |= {"qpos": None, "qvel": None, "button_states": None}  # the states the rewards are relabelled from
    if not dataset_name.startswith(("scene", "puzzle")):
        del shapes["button_states"]
    for path in paths:
        read_npz(path, shapes, env_id, remake)
    train, val = ogbench.make_env_and_datasets(env_id, dataset_path=train_path, dataset_only=True, cur_env=env)
    for dataset in (train, val):  # keep actions strictly inside (-1, 1), as the official code does
        dataset["actions"] = np.clip(dataset["actions"], -1 + 1e-5, 1 - 1e-5)
    keys = ("observations", "actions", "rewards", "masks", "next_observations")
    return env, {k: train[k].astype(np.float32) for k in keys}, {k: val[k].astype(np.float32) for k in keys}


# ALGO LOGIC: networks and training state
class Networks(NamedTuple):
    critic: CriticEnsemble  # Q_phi(s, a), two critics
    bc_flow: VectorField  # v_theta(s, x_t, t), trained by flow matching on dataset actions
    onestep: VectorField  # mu_omega(s, z), the policy that acts


class TrainState(NamedTuple):
    params: dict  # {"critic", "bc_flow", "onestep"}, all updated by one Adam
    target_critic: dict
    opt_state: optax.OptState


def make_networks(args: Args, action_dim: int) -> tuple[Networks, optax.GradientTransformation]:
    nets = Networks(
        critic=CriticEnsemble(args.value_hidden_dims, num_critics=2, layer_norm=args.value_layer_norm),
        bc_flow=VectorField(args.actor_hidden_dims, action_dim, layer_norm=args.actor_layer_norm),
        onestep=VectorField(args.actor_hidden_dims, action_dim, layer_norm=args.actor_layer_norm),
    )
    return nets, optax.adam(args.learning_rate)


def init_train_state(key, nets: Networks, tx, obs_dim: int, action_dim: int) -> TrainState:
    critic_key, bc_key, onestep_key = jax.random.split(key, 3)
    obs, action, t = jnp.zeros((1, obs_dim)), jnp.zeros((1, action_dim)), jnp.zeros((1, 1))
    params = {
        "critic": nets.critic.init(critic_key, obs, action),
        "bc_flow": nets.bc_flow.init(bc_key, obs, action, t),
        "onestep": nets.onestep.init(onestep_key, obs, action),
    }
    return TrainState(params, params["critic"], tx.init(params))


def sample_actions(nets: Networks, onestep_params, observations, key):
    """One one-step sample a = clip(mu_omega(s, z)), z ~ N(0, I): the TD target's next action and each candidate."""
    noise = jax.random.normal(key, (*observations.shape[:-1], nets.onestep.action_dim))
    return jnp.clip(nets.onestep.apply(onestep_params, observations, noise), -1.0, 1.0)


def candidate_actions(nets: Networks, params, observations, key, args: Args):
    """N one-step samples per state and their scores agg_k Q_k(s, a_i) (online critics, `q_agg`): (N, B, d), (N, B)."""
    observations = jnp.broadcast_to(observations, (args.num_candidates, *observations.shape))
    candidates = sample_actions(nets, params["onestep"], observations, key)
    q = nets.critic.apply(params["critic"], observations, candidates)
    return candidates, q.min(axis=0) if args.q_agg == "min" else q.mean(axis=0)


def select_actions(nets: Networks, params, observations, key, beta, args: Args, greedy: bool):
    """Entropy-guided sampling: i ~ softmax_i(beta * Q_i / mean_j |Q_j|) over a state's N candidates, or the argmax
    if `greedy` (evaluation). Also returns each state's candidate-Q spread (max_i Q_i - min_i Q_i) / mean_j |Q_j|."""
    candidate_key, choice_key = jax.random.split(key)
    candidates, q = candidate_actions(nets, params, observations, candidate_key, args)
    scale = jnp.maximum(jnp.abs(q).mean(axis=0), 1e-8)
    index = jnp.argmax(q, axis=0) if greedy else jax.random.categorical(choice_key, beta * q / scale, axis=0)
    actions = jnp.take_along_axis(candidates, index[None, ..., None], axis=0)[0]
    return actions, (q.max(axis=0) - q.min(axis=0)) / scale


def noisy_flow_path(x0, x1, t, noise, eta: float, schedule: str):
    """The BC flow's input x_t + sigma_t n (n ~ N(0, I)) and its regression target; `t` has shape (B, 1).

    code:  sigma_t = eta exp(10 (t - 1)), target x1 - x0.
    paper: sigma_t^2 = eta t (2 - (2 - eta) t), target x1 - (1 - eta) x0; given x1 the input is then
           N(t x1, (1 - (1 - eta) t)^2 I), the straight path with sigma_min = eta. eta = 0 gives `flow_path`.
    """
    x_t, velocity = flow_path(x0, x1, t)
    if schedule == "paper":
        sigma = jnp.sqrt(jnp.maximum(eta * t * (2.0 - (2.0 - eta) * t), 0.0))
        velocity = x1 - (1.0 - eta) * x0
    else:
        sigma = eta * jnp.exp(10.0 * (t - 1.0))
    return x_t + sigma * noise, velocity


def noisy_flow_matching_loss(velocity_fn, x1, key, eta: float, schedule: str):
    """E_{x0, t, n} ||v(x_t + sigma_t n, t) - target||^2, averaged over batch and action dims."""
    x0_key, time_key, noise_key = jax.random.split(key, 3)
    x0 = jax.random.normal(x0_key, x1.shape)
    t = jax.random.uniform(time_key, (*x1.shape[:-1], 1))
    x_noisy, target = noisy_flow_path(x0, x1, t, jax.random.normal(noise_key, x1.shape), eta, schedule)
    return jnp.mean((velocity_fn(x_noisy, t) - target) ** 2)


def critic_target(onestep_params, target_critic, batch, key, nets: Networks, args: Args):
    """y = r + gamma * mask * agg_i Qbar_i(s', a'), a' = clip(mu_omega(s', z)); agg is `q_agg` (mean or min)."""
    next_actions = sample_actions(nets, onestep_params, batch["next_observations"], key)
    next_q = nets.critic.apply(target_critic, batch["next_observations"], next_actions)
    next_q = next_q.min(axis=0) if args.q_agg == "min" else next_q.mean(axis=0)
    return jax.lax.stop_gradient(batch["rewards"] + args.discount * batch["masks"] * next_q)


def fino_loss(params, target_critic, batch, key, nets: Networks, args: Args):
    """Critic TD loss + noise-injected BC flow-matching loss + alpha * distillation loss + Q loss, for one Adam step."""
    next_key, bc_key, distill_key, mse_key = jax.random.split(key, 4)
    obs, actions = batch["observations"], batch["actions"]

    # Critic: regress both critics on the TD target.
    target_q = critic_target(params["onestep"], target_critic, batch, next_key, nets, args)
    q = nets.critic.apply(params["critic"], obs, actions)
    critic_loss = jnp.mean((q - target_q) ** 2)  # mean over both critics and the batch

    # BC flow: flow matching towards the dataset actions, with noise injected into the interpolant.
    bc_flow_loss = noisy_flow_matching_loss(
        lambda x, t: nets.bc_flow.apply(params["bc_flow"], obs, x, t),
        actions,
        bc_key,
        args.noise_scale,
        args.noise_schedule,
    )

    # Distillation: the one-step policy regresses the clipped noise-free Euler solution of the BC flow from the same noise.
    # The target carries no gradient, so the BC flow is trained by flow matching alone.
    noise = jax.random.normal(distill_key, actions.shape)
    bc_flow_params = jax.lax.stop_gradient(params["bc_flow"])
    target_actions = euler_sample(lambda x, t: nets.bc_flow.apply(bc_flow_params, obs, x, t), noise, args.flow_steps)
    actor_actions = nets.onestep.apply(params["onestep"], obs, noise)
    distill_loss = jnp.mean((actor_actions - target_actions) ** 2)

    # Q term: maximise the mean of both critics at the clipped one-step action; the critics get no gradient.
    q_actor = nets.critic.apply(jax.lax.stop_gradient(params["critic"]), obs, jnp.clip(actor_actions, -1, 1))
    q_actor = q_actor.mean(axis=0)
    q_loss = -q_actor.mean()
    if args.normalize_q_loss:
        q_loss = q_loss / jax.lax.stop_gradient(jnp.abs(q_actor).mean())

    actor_loss = bc_flow_loss + args.alpha * distill_loss + q_loss
    mse = jnp.mean((sample_actions(nets, params["onestep"], obs, mse_key) - actions) ** 2)
    info = {
        "total_loss": critic_loss + actor_loss,
        "critic_loss": critic_loss,
        "q_mean": q.mean(),
        "q_max": q.max(),
        "q_min": q.min(),
        "actor_loss": actor_loss,
        "bc_flow_loss": bc_flow_loss,
        "distill_loss": distill_loss,
        "q_loss": q_loss,
        "q": q_actor.mean(),
        "mse": mse,  # one-step action vs dataset action, a diagnostic only
    }
    return critic_loss + actor_loss, info


def update(state: TrainState, batch, key, nets: Networks, tx, args: Args):
    grads, info = jax.grad(fino_loss, has_aux=True)(state.params, state.target_critic, batch, key, nets, args)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    # Polyak average from the critic *before* this step's update, as the official code does.
    target_critic = polyak_update(state.target_critic, state.params["critic"], args.tau)
    return TrainState(params, target_critic, opt_state), info


def train_chunk(state, data, data_size, key, first_step, num_steps: int, nets: Networks, tx, args: Args):
    """Gradient steps first_step, ..., first_step + num_steps - 1 in one compiled call; step i draws its batch (uniform
    over data[:data_size]) and noise from fold_in(key, i), so the numbers do not depend on how steps are grouped."""

    def step(state, i):
        batch_key, update_key = jax.random.split(jax.random.fold_in(key, i))
        idx = jax.random.randint(batch_key, (args.batch_size,), 0, data_size)
        return update(state, jax.tree.map(lambda x: x[idx], data), update_key, nets, tx, args)

    return jax.lax.scan(step, state, first_step + jnp.arange(num_steps))  # infos: one value per step


def add_transition(data, transition, index):
    """Write one transition at `index` of the device-resident replay buffer (in place: the buffer is donated)."""
    return jax.tree.map(lambda buffer, x: buffer.at[index].set(x), data, transition)


def validation_losses(state, val_data, key, nets: Networks, args: Args):
    batch_key, loss_key = jax.random.split(key)
    idx = jax.random.randint(batch_key, (args.batch_size,), 0, val_data["observations"].shape[0])
    batch = jax.tree.map(lambda x: x[idx], val_data)
    return fino_loss(state.params, state.target_critic, batch, loss_key, nets, args)[1]


# ALGO LOGIC: entropy of the behaviour policy (Gaussian-mixture EM) and the temperature update
def fit_gmm(x, key, num_components: int, em_iters: int = 100, kmeans_iters: int = 300, reg_covar: float = 1e-6):
    """Fit a full-covariance Gaussian mixture to samples x of shape (n, d) as scikit-learn's GaussianMixture does by
    default: greedy k-means++, Lloyd until the centres move less than 1e-4 x the mean variance (or `kmeans_iters`
    steps), then EM until the mean log-likelihood changes by less than 1e-3 (or `em_iters` steps). The loops are
    `while_loop`s, so that it jits and vmaps. Returns weights (K,), means (K, d), covariances (K, d, d);
    reg_covar * I is added to each covariance."""
    n, d = x.shape
    offset = x.mean(axis=0)
    x = x - offset  # centring changes no covariance and keeps float32 accurate

    def sq_distances(centers):  # (n, K)
        return jnp.sum((x[:, None, :] - centers[None]) ** 2, axis=-1)

    # Greedy k-means++ (scikit-learn's): the first centre uniformly; each next one is, of 2 + floor(log K) candidates
    # drawn with probability proportional to the squared distance to the nearest centre, the one that leaves the
    # smallest potential sum_i min_c ||x_i - c||^2.
    num_trials = 2 + int(np.log(num_components))
    first_key, *center_keys = jax.random.split(key, num_components)
    centers = x[jax.random.randint(first_key, (1,), 0, n)]
    closest = sq_distances(centers)[:, 0]  # (n,) squared distance to the nearest centre
    for center_key in center_keys:
        candidates = jax.random.categorical(center_key, jnp.log(closest), shape=(num_trials,))
        distances = jnp.minimum(closest, jnp.sum((x[None] - x[candidates][:, None]) ** 2, axis=-1))  # (trials, n)
        best = jnp.argmin(distances.sum(axis=1))
        centers, closest = jnp.concatenate([centers, x[candidates[best]][None]]), distances[best]

    def lloyd_step(carry):  # (iteration, centres, converged)
        i, centers, _ = carry
        one_hot = jax.nn.one_hot(jnp.argmin(sq_distances(centers), axis=1), num_components)
        counts = one_hot.sum(axis=0)[:, None]
        new = jnp.where(counts > 0, one_hot.T @ x / jnp.maximum(counts, 1.0), centers)
        return i + 1, new, jnp.sum((new - centers) ** 2) <= 1e-4 * x.var(axis=0).mean()

    _, centers, _ = jax.lax.while_loop(lambda c: (c[0] < kmeans_iters) & ~c[2], lloyd_step, (0, centers, False))

    def m_step(resp):  # resp: (n, K) responsibilities
        counts = resp.sum(axis=0) + 10 * jnp.finfo(x.dtype).eps
        means = resp.T @ x / counts[:, None]
        diff = x[None] - means[:, None]  # (K, n, d)
        covs = jnp.einsum("nk,kni,knj->kij", resp, diff, diff) / counts[:, None, None] + reg_covar * jnp.eye(d)
        return counts / n, means, covs

    def em_step(carry):  # (iteration, mixture, mean log-likelihood of the last E-step, converged)
        i, (weights, means, covs), previous, _ = carry
        chol = jnp.linalg.cholesky(covs)
        z = jax.scipy.linalg.solve_triangular(chol, (x[None] - means[:, None]).swapaxes(1, 2), lower=True)
        log_det = 2.0 * jnp.log(jnp.diagonal(chol, axis1=1, axis2=2)).sum(axis=-1)
        log_p = jnp.log(weights)[:, None] - 0.5 * ((z**2).sum(axis=1) + log_det[:, None] + d * jnp.log(2 * jnp.pi))
        log_likelihood = jax.nn.logsumexp(log_p, axis=0).mean()
        gmm = m_step(jax.nn.softmax(log_p, axis=0).T)  # E-step: posterior of each component, then M-step
        return i + 1, gmm, log_likelihood, jnp.abs(log_likelihood - previous) < 1e-3

    gmm = m_step(jax.nn.one_hot(jnp.argmin(sq_distances(centers), axis=1), num_components))
    start = (0, gmm, jnp.array(-jnp.inf, x.dtype), False)
    _, (weights, means, covs), _, _ = jax.lax.while_loop(lambda c: (c[0] < em_iters) & ~c[3], em_step, start)
    return weights, means + offset, covs


def gmm_entropy_bound(weights, covs):
    """Upper bound on a Gaussian mixture's entropy: H(w) + sum_k w_k H(N(mu_k, Sigma_k)),
    with H(N(mu, Sigma)) = d/2 (1 + log 2 pi) + 1/2 log det Sigma."""
    d = covs.shape[-1]
    component_entropy = 0.5 * d * (1.0 + jnp.log(2 * jnp.pi)) + 0.5 * jnp.linalg.slogdet(covs)[1]
    return -jnp.sum(weights * jnp.log(weights + 1e-8)) + jnp.sum(weights * component_entropy)


def estimate_entropy(params, data, data_size, key, beta, nets: Networks, args: Args):
    """Mean over `entropy_states` buffer states of the mixture entropy bound fitted to `entropy_samples` actions of
    the behaviour policy (entropy-guided sampling at temperature beta) at each state."""
    state_key, sample_key, fit_key = jax.random.split(key, 3)
    observations = data["observations"][jax.random.randint(state_key, (args.entropy_states,), 0, data_size)]
    actions = jax.lax.map(  # (samples, states, d), computed in chunks of 25 samples to bound memory
        lambda k: select_actions(nets, params, observations, k, beta, args, greedy=False)[0],
        jax.random.split(sample_key, args.entropy_samples),
        batch_size=min(25, args.entropy_samples),
    )
    fit = partial(fit_gmm, num_components=args.gmm_components)
    weights, _, covs = jax.vmap(fit)(actions.swapaxes(0, 1), jax.random.split(fit_key, args.entropy_states))
    return jax.vmap(gmm_entropy_bound)(weights, covs).mean()


def update_beta(beta: float, entropy: float, target_entropy: float, step_size: float) -> float:
    """beta <- max(0, beta + step_size * (entropy - target)): a too random behaviour policy makes the choice greedier."""
    return max(0.0, beta + step_size * (entropy - target_entropy))


# Acting and evaluation
def evaluate(envs, policy, params, key, num_episodes: int, seed: int, videos=()) -> dict:
    """Run `num_episodes` episodes in rounds of len(envs) environments stepped in lockstep; one policy call per step.
    `videos`, empty lists, receive the frames of the first len(videos) episodes (rendering draws no random numbers)."""
    successes, returns, lengths = [], [], []
    for first in range(0, num_episodes, len(envs)):
        active_envs = envs[: min(len(envs), num_episodes - first)]
        obs = np.stack([env.reset(seed=seed + first + i)[0] for i, env in enumerate(active_envs)])
        recorded = videos[first : first + len(active_envs)]  # the frame lists of this round's recorded episodes
        for i, frames in enumerate(recorded):
            frames.append(active_envs[i].render())
        n = len(active_envs)
        done, ep_return, ep_length, ep_success = np.zeros(n, bool), np.zeros(n), np.zeros(n, int), np.zeros(n)
        while not done.all():
            key, action_key = jax.random.split(key)
            actions = np.asarray(policy(params, obs, action_key))
            for i, env in enumerate(active_envs):
                if done[i]:
                    continue
                obs[i], reward, terminated, truncated, info = env.step(actions[i])
                if i < len(recorded):
                    recorded[i].append(env.render())
                ep_return[i] += reward
                ep_length[i] += 1
                ep_success[i] = info["success"]
                done[i] = terminated or truncated
        successes += ep_success.tolist()
        returns += ep_return.tolist()
        lengths += ep_length.tolist()
    return {"success": np.mean(successes), "episodic_return": np.mean(returns), "episodic_length": np.mean(lengths)}


def log_losses(writer: SummaryWriter, infos: dict, val_info: dict, step: int) -> None:
    """The losses of the last gradient step of a compiled call, and the loss on a validation batch."""
    for k, v in infos.items():
        writer.add_scalar(f"losses/{k}", float(v[-1]), step)
    writer.add_scalar("losses/val_total_loss", float(val_info["total_loss"]), step)


# Saving and resuming: what a saved model and a checkpoint hold (the plumbing below writes and reads them)
MODEL_KEYS = ("params", "target_critic", "beta")
CHECKPOINT_KEYS = ("state", "keys", "step", "env_step", "buffer", "env_rng", "beta", "q_spread_sum")


def saved_model(state: TrainState, beta: float) -> dict:
    return {"params": state.params, "target_critic": state.target_critic, "beta": np.float32(beta)}


def load_model(path: str, obs_dim: int, action_dim: int) -> tuple[Args, Networks, dict, float]:
    """A model saved by --save-model: the Args saved beside it (for the architecture), the networks, the parameters,
    beta."""
    saved_args, saved = read_model(path, MODEL_KEYS)
    nets, tx = make_networks(saved_args, action_dim)
    params = jax.eval_shape(lambda: init_train_state(jax.random.PRNGKey(0), nets, tx, obs_dim, action_dim).params)
    restored = restore({"params": params, "target_critic": params["critic"], "beta": np.float32(0)}, saved, path)
    return saved_args, nets, restored["params"], float(restored["beta"])


def run_state(state: TrainState, keys: dict, step: int, env_step: int, data: dict, stored: int, env, beta, q_spread):
    """Everything a checkpoint holds: the training state, the keys, the step counters, the replay buffer's first
    `stored` rows (online), the state of the env's RNG, which the next episode's reset draws from, beta and the sum
    of the candidates' Q spreads since the last log."""
    buffer = jax.device_get(jax.tree.map(lambda x: x[:stored], data)) if env_step > 0 else {}
    env_rng = json.dumps(env.unwrapped.np_random.bit_generator.state)
    counters = {"step": step, "env_step": env_step, "beta": beta, "q_spread_sum": q_spread}
    return {"state": state, "keys": keys, "buffer": buffer, "env_rng": env_rng, **counters}


# Training loop
def main(args: Args) -> None:
    args = run_args(args)  # with --resume: the arguments saved in the run folder
    check_args(args)
    if args.load_model:  # evaluate a saved model on its own task
        args = dataclasses.replace(args, env_id=read_model(args.load_model, MODEL_KEYS)[0].env_id)
    checkpoint = read_checkpoint(args, CHECKPOINT_KEYS) if args.resume else None
    name, env_id, dataset_name = resolve_env_id(args.env_id)
    online = args.online_steps > 0
    _, _, alpha, discount, q_agg = TASKS[name]
    args = dataclasses.replace(
        args,
        env_id=env_id,
        alpha=args.alpha if args.alpha is not None else alpha,
        discount=args.discount if args.discount is not None else discount,
        q_agg=args.q_agg or q_agg,
    )
    print(f"env: {env_id} (dataset {dataset_name}); alpha={args.alpha}, discount={args.discount}, q_agg={args.q_agg}")

    # TRY NOT TO MODIFY: seeding
    random.seed(args.seed)
    np.random.seed(args.seed)
    key = jax.random.PRNGKey(args.seed)
    init_key, *run_keys = jax.random.split(key, 5)
    keys = dict(zip(("train", "val", "online", "eval"), run_keys, strict=True))  # each step folds its index in

    if not args.load_model:  # the dataset first: a missing or broken file fails before anything slow
        env, train_data, val_data = load_data(env_id, dataset_name, args.dataset_dir, args.success_timing)
        dataset_size = train_data["observations"].shape[0]
        if args.buffer_size is not None and args.buffer_size < dataset_size + 1:
            fail("buffer_size", args.buffer_size, f"must hold the dataset ({dataset_size} transitions) + 1; give more")
    eval_envs = [  # reused by every evaluation; none with --eval-episodes 0
        ogbench.make_env_and_datasets(env_id, env_only=True, success_timing=args.success_timing)
        for _ in range(min(args.num_eval_envs, args.eval_episodes))
    ]
    if args.load_model:
        obs_dim, action_dim = eval_envs[0].observation_space.shape[0], eval_envs[0].action_space.shape[0]
        saved_args, nets, params, beta = load_model(args.load_model, obs_dim, action_dim)
        policy = jax.jit(lambda p, o, k: select_actions(nets, p, o, k, 0.0, saved_args, greedy=True)[0])
        videos = [[] for _ in range(args.video_episodes if args.capture_video else 0)]
        result = evaluate(eval_envs, policy, params, keys["eval"], args.eval_episodes, 10**6 * (args.seed + 1), videos)
        success, episodic_return = result["success"], result["episodic_return"]
        print(f"{env_id}: success {success:.3f}, return {episodic_return:.1f} (saved beta {beta:.3f})")
        if videos:  # beside the model
            paths = save_videos(os.path.dirname(args.load_model), f"loaded_seed{args.seed}", videos, eval_envs[0])
            print("videos:", *paths)
        return

    obs_dim, action_dim = env.observation_space.shape[0], env.action_space.shape[0]
    print(f"dataset: {dataset_size} transitions, obs dim {obs_dim}, action dim {action_dim}")
    args = dataclasses.replace(
        args,
        buffer_size=args.buffer_size or max(1_500_000, dataset_size + 1),
        num_candidates=args.num_candidates or min(10, (action_dim + 1) // 2),
        target_entropy=args.target_entropy if args.target_entropy is not None else -float(action_dim),
    )
    print(f"entropy-guided sampling: {args.num_candidates} candidates, target entropy {args.target_entropy}")

    # ALGO LOGIC: the networks and the training state, or where the checkpoint left them
    nets, tx = make_networks(args, action_dim)
    state = jax.jit(lambda key: init_train_state(key, nets, tx, obs_dim, action_dim))(init_key)
    run = {"state": state, "keys": keys, "step": 0, "env_step": 0, "buffer": None, "env_rng": ""}
    run |= {"beta": args.beta_init, "q_spread_sum": 0.0}  # the softmax's inverse temperature; Q spreads to log
    if checkpoint is not None:
        run = restore(run, checkpoint, os.path.join(args.resume, "checkpoint.msgpack"))
        print(f"resuming from the checkpoint at step {run['step'] + run['env_step']}")
    state, keys, step, env_step = run["state"], run["keys"], run["step"], run["env_step"]
    beta, q_spread_sum = run["beta"], run["q_spread_sum"]
    # The dataset lives on the device; online it seeds the replay buffer (filled on the host: one copy on the device).
    capacity, data = args.buffer_size, train_data
    if online:
        data = {k: np.zeros((capacity, *v.shape[1:]), np.float32) for k, v in train_data.items()}
        for k, v in train_data.items():
            data[k][:dataset_size] = v
            if env_step > 0:  # the checkpointed buffer: dataset and online transitions, in place
                data[k][: len(run["buffer"][k])] = run["buffer"][k]
    data, val_data = jax.device_put(data), jax.device_put(val_data)

    run_dir, writer = open_run(args, env_id, step + env_step)
    print(f"run folder: {run_dir}")
    chunk_fn = jax.jit(partial(train_chunk, nets=nets, tx=tx, args=args), static_argnames="num_steps")
    add_transition_fn = jax.jit(add_transition, donate_argnums=0)  # kept apart from the update so XLA never copies
    val_fn = jax.jit(partial(validation_losses, nets=nets, args=args))
    # Evaluation (offline and online) takes the best of N candidates; online acting samples them with temperature beta.
    policy = jax.jit(lambda params, obs, key: select_actions(nets, params, obs, key, 0.0, args, greedy=True)[0])
    explore_fn = jax.jit(
        lambda params, obs, key, beta: select_actions(nets, params, obs, key, beta, args, greedy=False)
    )
    entropy_fn = jax.jit(partial(estimate_entropy, nets=nets, args=args))

    def run_evaluation(params, step: int, writer: SummaryWriter) -> dict:
        noise_key, reset_seed = jax.random.fold_in(keys["eval"], step), 10**6 * (args.seed + 1) + step  # fresh ones
        videos = [[] for _ in range(args.video_episodes if args.capture_video else 0)]
        result = evaluate(eval_envs, policy, params, noise_key, args.eval_episodes, reset_seed, videos)
        if videos:
            save_videos(run_dir, f"eval_{step}", videos, eval_envs[0], writer, step)
        for k, v in result.items():
            writer.add_scalar(f"eval/{k}", v, step)
        tqdm.write(f"step {step}: eval success {result['success']:.3f}, return {result['episodic_return']:.1f}")
        return result

    total_steps = args.offline_steps + args.online_steps
    start_step = last_checkpoint = step + env_step
    start_time = time.time()
    eval_result = run_evaluation(state.params, 0, writer) if args.eval_episodes and checkpoint is None else None
    progress = tqdm(total=total_steps, initial=start_step, desc="offline" if step < args.offline_steps else "online")

    # Offline phase: compiled calls of --steps-per-call gradient steps on the dataset.
    while step < args.offline_steps:
        num_steps = min(args.steps_per_call, args.offline_steps - step)
        new_state, infos = chunk_fn(state, data, dataset_size, keys["train"], step, num_steps=num_steps)
        infos = jax.device_get(infos)
        if not np.isfinite(infos["total_loss"]).all():
            bad_step = step + 1 + int(np.argmax(~np.isfinite(infos["total_loss"])))
            path = save_model(run_dir, args.exp_name, saved_model(state, beta), args)
            stop_on_nan(bad_step, step, path, writer, progress)
        state, step = new_state, step + num_steps
        progress.update(num_steps)
        if step % args.log_every == 0 or step == args.offline_steps:
            log_losses(writer, infos, val_fn(state, val_data, jax.random.fold_in(keys["val"], step)), step)
            writer.add_scalar("charts/SPS", (step - start_step) / (time.time() - start_time), step)
        if args.eval_episodes > 0 and (step % args.eval_every == 0 or step == args.offline_steps):
            eval_result = run_evaluation(state.params, step, writer)
        if checkpoint_due(step, last_checkpoint, args.checkpoint_every, total_steps):
            content = run_state(state, keys, step, env_step, data, dataset_size, env, beta, q_spread_sum)
            writer, last_checkpoint = save_checkpoint(run_dir, content, step, writer), step

    # Online phase: one environment step with entropy-guided sampling, then one gradient step on the growing buffer.
    env = gym.wrappers.RecordEpisodeStatistics(env)  # info["episode"]: the return and length of each episode
    if online:
        progress.set_description("online")
        if env_step == 0:
            obs, _ = env.reset(seed=args.seed)
            writer.add_scalar("charts/beta", beta, args.offline_steps)
        else:  # resumed at the end of an episode: the next reset draws what the interrupted run's reset drew
            env.unwrapped.np_random.bit_generator.state = json.loads(run["env_rng"])
            obs, _ = env.reset()
    online_start_step, online_start_time = env_step, time.time()
    while env_step < args.online_steps:
        env_step += 1
        global_step = args.offline_steps + env_step
        action_key, entropy_key = jax.random.split(jax.random.fold_in(keys["online"], env_step))
        action, q_spread = jax.device_get(explore_fn(state.params, obs[None], action_key, beta))
        action, q_spread_sum = action[0], q_spread_sum + float(q_spread[0])
        next_obs, reward, terminated, truncated, info = env.step(action)
        transition = {
            "observations": np.float32(obs),
            "actions": action,
            "rewards": np.float32(reward),
            "masks": np.float32(1.0 - terminated),  # time-limit truncations bootstrap
            "next_observations": np.float32(next_obs),
        }
        index = (dataset_size + env_step - 1) % capacity  # circular: the oldest entries are overwritten first
        size = min(dataset_size + env_step, capacity)
        data = add_transition_fn(data, transition, index)
        new_state, infos = chunk_fn(state, data, size, keys["train"], global_step - 1, num_steps=1)
        if not np.isfinite(float(infos["total_loss"][0])):
            path = save_model(run_dir, args.exp_name, saved_model(state, beta), args)
            stop_on_nan(global_step, global_step - 1, path, writer, progress)
        state, obs = new_state, next_obs
        if terminated or truncated:
            writer.add_scalar("charts/episodic_return", info["episode"]["r"], global_step)
            writer.add_scalar("charts/episodic_length", info["episode"]["l"], global_step)
            writer.add_scalar("charts/success", float(info["success"]), global_step)
        progress.update(1)
        if env_step % args.log_every == 0:
            val_info = val_fn(state, val_data, jax.random.fold_in(keys["val"], global_step))
            log_losses(writer, jax.device_get(infos), val_info, global_step)
            sps = (env_step - online_start_step) / (time.time() - online_start_time)
            writer.add_scalar("charts/SPS", sps, global_step)
            writer.add_scalar("charts/candidate_q_spread", q_spread_sum / args.log_every, global_step)
            q_spread_sum = 0.0
        if args.eval_episodes > 0 and (env_step % args.eval_every == 0 or env_step == args.online_steps):
            eval_result = run_evaluation(state.params, global_step, writer)
        if env_step % args.entropy_every == 0:
            entropy = float(entropy_fn(state.params, data, size, entropy_key, beta))
            beta = update_beta(beta, entropy, args.target_entropy, args.beta_lr)
            writer.add_scalar("charts/entropy", entropy, global_step)
            writer.add_scalar("charts/beta", beta, global_step)
            tqdm.write(f"step {global_step}: entropy {entropy:.2f} (target {args.target_entropy}), beta -> {beta:.3f}")
        if terminated or truncated:
            if checkpoint_due(global_step, last_checkpoint, args.checkpoint_every, total_steps):  # between episodes
                content = run_state(state, keys, step, env_step, data, size, env, beta, q_spread_sum)
                writer, last_checkpoint = save_checkpoint(run_dir, content, global_step, writer), global_step
            obs, _ = env.reset()
    progress.close()

    if args.save_model:
        print(f"model saved to {save_model(run_dir, args.exp_name, saved_model(state, beta), args)}")
    wall_time = time.time() - start_time
    final = "no evaluation (--eval-episodes 0)"
    if eval_result is not None:
        final = f"final success {eval_result['success']:.3f} over {args.eval_episodes} episodes"
    print(
        f"{env_id}: {final} | wall time {wall_time:.0f} s | "
        f"{(total_steps - start_step) / wall_time:.1f} steps/s (evaluation and compile included)"
    )
    writer.close()


# ======================================================================================================================
# RUN PLUMBING: the same in every script; nothing here changes the numbers
# ======================================================================================================================
# Flag and file checks, saving and loading, checkpoints and resume, the run folder and its logs, the NaN stop, Ctrl-C: the
# same text in every algorithm file (tests/test_plumbing.py); the scripts differ only in the data they pass in.
SCRIPT = os.path.basename(__file__)
RULES = {  # the rules of FLAG_RULES: (test of a value, what is wrong with another); None passes (a default set later)
    "count": (lambda v: v >= 1, "must be positive; give an integer >= 1"),
    "count_or_off": (lambda v: v >= 0, "must not be negative; give 0 (off) or more"),
    "positive": (lambda v: 0 < v < math.inf, "must be a positive number"),
    "non_negative": (lambda v: 0 <= v < math.inf, "must be a finite number >= 0"),
    "finite": (lambda v: math.isfinite(v), "must be finite"),
    "fraction": (lambda v: 0 <= v <= 1, "must be in [0, 1]"),
    "rate": (lambda v: 0 < v <= 1, "must be in (0, 1]"),
    "layers": (lambda v: len(v) > 0 and min(v) >= 1, "must be one or more positive layer sizes; give e.g. 256 256"),
}


def fail(flag: str, value, why: str):
    """A bad flag value: one line on stderr, exit status 2 (a tuple is shown as the command line gives it)."""
    if isinstance(value, tuple):
        value = " ".join(map(str, value)) or "(none)"
    print(f"error: --{flag.replace('_', '-')}{'' if value is None else f' {value}'}: {why}", file=sys.stderr)
    sys.exit(2)


def check_flags(args, rules: dict) -> None:
    """The flags of every script, then the script's table (rule -> flags); what would fail at save time fails here."""
    if not re.fullmatch(r"[^/\\#?%:\0]{1,100}", args.exp_name) or args.exp_name in (".", ".."):
        why = "must be a non-empty name without '/' (nor \\ # ? % :) of at most 100 characters; it names the run folder"
        fail("exp_name", repr(args.exp_name), why)
    if not 0 <= args.seed < 2**32:
        fail("seed", args.seed, "must be in [0, 2^32); give a non-negative integer")
    if args.track and importlib.util.find_spec("wandb") is None:
        fail("track", None, "wandb is not installed; install it (pip install wandb) or leave out --track")
    if args.load_model is not None and args.eval_episodes == 0:
        fail("eval_episodes", 0, "--load-model only evaluates; give at least 1 episode")
    for rule, flags in rules.items():
        for flag in flags.split():
            if (value := getattr(args, flag)) is not None and not RULES[rule][0](value):
                fail(flag, value, RULES[rule][1])
    runs = "runs" if os.path.exists("runs") else "."
    if args.resume is None and args.load_model is None and not (os.path.isdir(runs) and os.access(runs, os.W_OK)):
        raise SystemExit(f"error: {os.path.abspath('runs')} must be a folder this user can write: it holds the run")
    if args.capture_video:
        check_rendering(args)


def check_rendering(args) -> None:
    """--capture-video: videos of evaluation episodes, a folder to write them in (a saved model's: beside it), and a
    MuJoCo that renders without a window. MuJoCo reads MUJOCO_GL, its OpenGL backend, once, when it is first imported
    (the scripts import it no earlier than here); if the user has not set it, egl: it needs no display."""
    if args.eval_episodes is not None and args.video_episodes > args.eval_episodes:  # None: the task's, set later
        why = f"--capture-video records the first --video-episodes ({args.video_episodes}) of them; give as many"
        fail("eval_episodes", args.eval_episodes, why)
    folder = os.path.dirname(args.load_model or "") or "."
    if args.load_model and os.path.isdir(folder) and not os.access(folder, os.W_OK):
        fail("load_model", args.load_model, "--capture-video writes the videos beside it; copy it somewhere writable")
    if sys.platform == "linux":
        os.environ.setdefault("MUJOCO_GL", "egl")
    try:
        import mujoco

        mujoco.Renderer(mujoco.MjModel.from_xml_string("<mujoco/>"), 8, 8).close()
    except Exception as error:  # an unknown backend, a missing library, no display, no EGL device, ...
        why = f"MuJoCo cannot render with MUJOCO_GL={os.environ.get('MUJOCO_GL', '')} ({type(error).__name__}: {error})"
        fail("capture_video", None, f"{why}; set MUJOCO_GL to a backend that works here: egl, osmesa, glfw (a display)")


def run_args(args):
    """The command line's arguments, or with --resume (alone) those saved in the run folder; Ctrl-C ends it cleanly."""
    on_ctrl_c(None)
    if args.resume is None:
        return args
    if dataclasses.replace(args, resume=None) != Args():
        fail("resume", args.resume, "takes no other flag; the run continues with the arguments saved in its folder")
    return dataclasses.replace(read_args_json(os.path.join(args.resume, "args.json")), resume=args.resume)


def command_line(args, **changes) -> str:
    """The command that starts `args` with `changes` afresh: `python <script>` and each flag not at its default."""
    words, defaults = ["python", SCRIPT], Args()
    for name, value in vars(dataclasses.replace(args, resume=None, load_model=None, **changes)).items():
        flag, values = "--" + name.replace("_", "-"), value if isinstance(value, tuple) else (value,)
        if value != getattr(defaults, name):  # a bool flag whose default is None takes a value: --flag True
            toggle = isinstance(value, bool) and isinstance(getattr(defaults, name), bool)
            words += [flag if value else f"--no-{flag[2:]}"] if toggle else [flag, *map(str, values)]
    return shlex.join(words)


def read_args_json(path: str):
    """The Args saved in a run's args.json."""
    try:
        with open(path) as f:
            return Args(**{k: tuple(v) if isinstance(v, list) else v for k, v in json.load(f).items()})
    except FileNotFoundError:
        raise SystemExit(f"error: {path} not found: every {SCRIPT} run writes it into its folder, runs/<run>") from None
    except (OSError, ValueError, TypeError) as error:  # unreadable, not JSON, or the arguments of another script
        raise SystemExit(f"error: {path} is not the args.json of a {SCRIPT} run ({error})") from None


def read_flax(path: str, keys: tuple, what: str, remake: str) -> dict:
    """The raw content of a model or checkpoint file, which must hold `keys`; `restore` gives it the run's structure."""
    try:
        with open(path, "rb") as f:
            content = flax.serialization.msgpack_restore(f.read())
        return {k: content[k] for k in keys}  # a KeyError names the first one missing
    except (OSError, ValueError, KeyError, TypeError) as error:
        why = f"{type(error).__name__}: {error}"
        raise SystemExit(f"error: {path} is not a {what} {SCRIPT} ({why})\n  {remake}") from None


def read_model(path: str, keys: tuple) -> tuple:
    """The Args saved beside a model file (its task and architecture) and the file's raw content, holding `keys`."""
    if not os.path.isfile(path):
        raise SystemExit(
            f"error: saved model {path} not found\n  a run with --save-model writes one: python {SCRIPT} --save-model"
        )
    saved_args = read_args_json(os.path.join(os.path.dirname(path), "args.json"))
    again = f"run it again: {command_line(saved_args, save_model=True)}"
    return saved_args, read_flax(path, keys, "model saved by", again)


def read_checkpoint(args, keys: tuple) -> dict:
    """The raw content of the checkpoint of the run that --resume continues, holding `keys`."""
    path = os.path.join(args.resume, "checkpoint.msgpack")
    again = command_line(args, checkpoint_every=args.checkpoint_every or args.eval_every)
    again = f"start the run again: {again}"
    if not os.path.isfile(path):
        why = "the run stopped before its first checkpoint or ran without --checkpoint-every"
        raise SystemExit(f"error: {path} not found: {why}\n  {again}")
    return read_flax(path, keys, "checkpoint of", again)


def restore(template, saved: dict, path: str):
    """`saved` (from read_flax) in the structure of `template`, leaf by leaf of the same shape; a None in the template
    takes what was saved as it is (a replay buffer of any length)."""
    try:
        restored = flax.serialization.from_state_dict(template, saved)
        fits = jax.tree.map(
            lambda t, r: t is None or np.shape(t) == np.shape(r), template, restored, is_leaf=lambda x: x is None
        )
        if not all(jax.tree.leaves(fits)):
            raise ValueError("its arrays do not have the shapes of the networks its args.json makes")
    except (ValueError, KeyError, TypeError) as error:
        raise SystemExit(f"error: {path} does not fit the run ({error})") from None
    return restored


def arrays_problem(arrays: dict, shapes: dict, env_id: str, same_length: bool = True) -> str | None:
    """What is wrong with a dataset's arrays (None if nothing): a key of `shapes` missing, arrays of different lengths,
    another shape per step than `shapes` gives (None: any), NaN or infinite values."""
    if missing := set(shapes) - set(arrays):
        return f"lacks the keys {sorted(missing)}"
    lengths = {k: len(arrays[k]) for k in shapes}
    if same_length and len(set(lengths.values())) > 1:
        return f"holds arrays of different lengths {lengths}"
    for k, shape in shapes.items():
        if shape is not None and arrays[k].shape[1:] != tuple(shape):
            return f"holds {k} of shape {arrays[k].shape[1:]} per step where {env_id} has {tuple(shape)}"
    nonfinite = [k for k in shapes if arrays[k].dtype.kind == "f" and not np.isfinite(arrays[k]).all()]
    return f"holds NaN or infinite {nonfinite[0]}" if nonfinite else None


def read_npz(path: str, shapes: dict, env_id: str, remake: str) -> dict:
    """Every array of an .npz dataset file, read in full once and checked by `arrays_problem`."""
    problem = None if os.path.exists(path) else "not found"
    if problem is None and not zipfile.is_zipfile(path):
        problem = "is truncated or not an .npz file"
    try:
        with np.load(path) as file:
            arrays = {k: file[k] for k in file.files}
        problem = problem or arrays_problem(arrays, shapes, env_id)
    except Exception as error:  # numpy raises many kinds on a corrupt array: BadZipFile, zlib.error, ValueError, ...
        problem = problem or f"cannot be read ({type(error).__name__}: {error})"
    if problem:
        raise SystemExit(f"error: dataset file {path} {problem}\n{remake}")
    return arrays


def read_minari(dataset_id: str, shapes: dict, env_id: str, remake: str) -> list:
    """Every episode of a Minari dataset, read in full once (downloaded first if it is missing and the machine is
    online): at least one, with observations and actions checked by `arrays_problem`."""
    import minari

    folder = str(minari.storage.get_dataset_path(dataset_id))
    why = "" if os.path.exists(folder) else download(lambda: minari.download_dataset(dataset_id), "huggingface.co")
    try:
        episodes = list(minari.load_dataset(dataset_id).iterate_episodes())
        problem = None if episodes else "holds no episode"
    except Exception as error:  # h5py's and Minari's errors for a missing or damaged file
        problem = f"is not on this machine ({why})" if why else f"cannot be read ({type(error).__name__}: {error})"
    for episode in [] if problem else episodes:
        problem = problem or arrays_problem(vars(episode), shapes, env_id, same_length=False)
    if problem:
        raise SystemExit(f"error: Minari dataset {dataset_id} ({folder}) {problem}\n{remake}")
    return episodes


def download(fetch, host: str) -> str:
    """Run `fetch()` (a dataset's own download) if `host` answers at once; '' if it ran, else why not."""
    try:
        socket.create_connection((host, 443), timeout=3).close()
    except OSError:
        return "this machine is offline"
    try:
        fetch()
    except Exception as error:  # the download's own errors: HTTP, disk, ...
        return f"the download failed: {type(error).__name__}: {error}"
    return ""


def write_atomically(path: str, content: bytes) -> None:
    """Write `path.tmp`, then rename it. A Ctrl-C meanwhile (or one received just before, whose handler Python runs
    later) is held until the file is whole, then handled: nothing is left half-written."""
    held = []
    previous = signal.signal(signal.SIGINT, lambda *_: held.append(True))
    try:
        with open(path + ".tmp", "wb") as f:
            f.write(content)
        os.replace(path + ".tmp", path)
    finally:
        signal.signal(signal.SIGINT, previous)
    if held and callable(previous):
        previous(signal.SIGINT, None)


def save_model(run_dir: str, name: str, content: dict, args) -> str:
    """`content` in `run_dir/<name>.flax` (flax serialization), and the run's Args beside it in args.json."""
    write_atomically(os.path.join(run_dir, "args.json"), json.dumps(dataclasses.asdict(args), indent=2).encode())
    write_atomically(path := os.path.join(run_dir, f"{name}.flax"), flax.serialization.to_bytes(content))
    return path


def save_videos(folder: str, name: str, videos: list, env, writer: SummaryWriter | None = None, step: int = 0) -> list:
    """Each episode's frames (from `env`) as folder/videos/<name>_<episode>.mp4 at the env's real-time frame rate, each
    written under a temporary name, then renamed; with a writer, also all of them side by side, smaller, as eval/video
    at `step` (TensorBoard, and wandb with --track). Returns the paths of the files."""
    import imageio.v3 as iio  # writes through imageio-ffmpeg's own ffmpeg; both come with moviepy

    fps = env.metadata.get("render_fps") or 1 / env.unwrapped.control_timestep()  # OGBench manipulation: no render_fps
    os.makedirs(os.path.join(folder, "videos"), exist_ok=True)
    paths = []
    for episode, frames in enumerate(videos):
        stem = os.path.join(folder, "videos", f"{name}_{episode}")
        with warnings.catch_warnings():  # JAX warns of any fork; ffmpeg's fork runs no Python before its exec
            warnings.filterwarnings("ignore", r"os\.fork\(\) was called", RuntimeWarning)
            iio.imwrite(f"{stem}.tmp.mp4", frames, fps=fps, macro_block_size=1)
        os.replace(f"{stem}.tmp.mp4", f"{stem}.mp4")
        paths.append(f"{stem}.mp4")
    if writer is not None:  # a GIF: <= 50 frames per second (browsers play faster ones slower), <= 256 pixels a side
        # (tensorboardX holds it in float32: a 1000-step Hopper episode at 480x480 took 7 GB); short episodes hold still
        every, stride, length = math.ceil(fps / 50), math.ceil(max(videos[0][0].shape[:2]) / 256), max(map(len, videos))
        clips = [(frames + frames[-1:] * (length - len(frames)))[::every] for frames in videos]
        clips = np.stack([[frame[::stride, ::stride] for frame in clip] for clip in clips])
        writer.add_video("eval/video", clips.transpose(0, 1, 4, 2, 3), step, fps=fps / every)
    return paths


def open_run(args, env_id: str, step: int) -> tuple[str, SummaryWriter]:
    """The run folder, runs/{env_id}__{exp_name}__{seed}__{time}, and its TensorBoard writer. A new run writes args.json
    and its hyperparameters; a resumed run (at `step`) continues its wandb run and hides what the interrupted run
    logged after its checkpoint (TensorBoard's purge)."""
    run_dir = f"runs/{env_id}__{args.exp_name}__{args.seed}__{int(time.time())}"
    run_dir = os.path.normpath(args.resume) if args.resume else run_dir
    os.makedirs(run_dir, exist_ok=True)
    if args.track:
        import wandb

        name = os.path.basename(run_dir)  # the same id: a resumed run continues its wandb run
        settings = dict(name=name, id=name, resume="allow", config=vars(args), sync_tensorboard=True, save_code=True)
        wandb.init(project=args.wandb_project_name, entity=args.wandb_entity, **settings)
    writer = SummaryWriter(run_dir, purge_step=step + 1 if args.resume else None, filename_suffix=f".{time.time_ns()}")
    if args.resume is None:
        write_atomically(f"{run_dir}/args.json", json.dumps(dataclasses.asdict(args), indent=2).encode())
        table = "\n".join(f"|{key}|{value}|" for key, value in vars(args).items())
        writer.add_text("hyperparameters", "|param|value|\n|-|-|\n" + table)
    on_ctrl_c(run_dir)
    return run_dir, writer


def save_checkpoint(run_dir: str, content: dict, step: int, writer: SummaryWriter) -> SummaryWriter:
    """`content`, everything the run needs to continue, in checkpoint.msgpack (its scalars and `step` in
    checkpoint.json), with every event logged so far on disk first; returns the writer of the events that follow (a new
    file: the suffix keeps files of one second apart and in order)."""
    writer.close()
    write_atomically(os.path.join(run_dir, "checkpoint.msgpack"), flax.serialization.to_bytes(content))
    scalars = {k: v for k, v in content.items() if isinstance(v, int | float | str)}  # for a look without loading
    write_atomically(os.path.join(run_dir, "checkpoint.json"), json.dumps(scalars | {"step": step}).encode())
    return SummaryWriter(run_dir, filename_suffix=f".{time.time_ns()}")


def on_ctrl_c(run_dir: str | None) -> None:
    """From now on Ctrl-C ends the run with one line, where its last checkpoint is and how to continue, status 130."""

    def stop(signum, frame):
        summary = os.path.join(run_dir or ".", "checkpoint.json")
        line = f"{run_dir} holds no checkpoint (--checkpoint-every N writes them)" if run_dir else "nothing was written"
        if run_dir and os.path.exists(summary):
            with open(summary) as f:
                line = f"the last checkpoint is in {run_dir} (step {json.load(f)['step']}); continue the run with: "
            line += shlex.join(["python", SCRIPT, "--resume", run_dir])
        for bar in list(tqdm._instances):  # closed first, so that this line is the last one
            bar.close()
        print(f"interrupted: {line}", file=sys.stderr, flush=True)
        while frame is not None and frame.f_code.co_name != "__del__":
            frame = frame.f_back
        if frame is not None:  # inside a finaliser (a progress bar's), where Python would ignore the SystemExit: leave
            os._exit(130)  # now; no file is half-written, since write_atomically holds Ctrl-C
        raise SystemExit(130)

    signal.signal(signal.SIGINT, stop)


def checkpoint_due(step: int, last_checkpoint: int, every: int, total_steps: int) -> bool:
    """A multiple of --checkpoint-every (0: never) was passed since the last checkpoint, and the run is not over."""
    return every > 0 and step < total_steps and step // every > last_checkpoint // every


def stop_on_nan(step: int, good_step: int, saved: str, writer: SummaryWriter, progress: tqdm, where: str = ""):
    """A NaN or infinite loss at `step`: end the run with the step and where the last good parameters are saved."""
    progress.close()
    writer.close()
    saved = f"parameters of step {good_step} saved to {saved}"
    raise SystemExit(f"error: the loss became NaN or infinite at step {step}{where} ({saved})")


if __name__ == "__main__":
    main(tyro.cli(Args))
