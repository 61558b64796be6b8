# RLDT: Reinforcement Learning for Flow-Matching Policies with Density Transport (Lei, Daniilidis, Loquercio,
# arXiv:2606.08602, 2026); docs: docs/rldt.md
"""Fine-tune a pretrained flow-matching policy online by SVGD density transport (RLDT), as the official code does.

One run has two phases. Pretraining: flow-matching behaviour cloning of an action-chunk policy on the task's dataset
(skipped with --pretrained). Fine-tuning: each iteration collects `--steps-per-iteration` action chunks in each of
`--num-envs` environments, trains a twin critic by TD(lambda) on the trajectory segments (16 rounds of 32 steps), and
after each round moves the policy's action density along an SVGD field built from the critic's action-gradients (2
actor steps), with a consistency term and a trust region toward the previous iteration's policy. Logged x-axis:
gradient steps while pretraining, then (pretraining steps + environment steps) while fine-tuning.
"""

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
from typing import Literal, NamedTuple

import flax
import flax.linen as nn
import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import optax
import tyro
from tensorboardX import SummaryWriter
from tqdm import tqdm

from common_flow import euler_chain, flow_matching_loss, polyak_update

# OGBench's environments declare float64 bounds; gymnasium warns about the cast (in raw colour codes) at every env made.
warnings.filterwarnings("ignore", message=".*precision lowered by casting to float32", category=UserWarning)


@dataclass
class Args:
    """RLDT: pretrain a flow policy by behaviour cloning, then fine-tune it online by SVGD density transport."""

    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment"""
    seed: int = 0
    """seed of the experiment (Python, NumPy, JAX, environment resets)"""
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
    """whether to save the fine-tuned policy, the critics and the normalisation into `runs/{run_name}/{exp_name}.flax`"""
    load_model: str | None = None
    """path of a saved `.flax` file: skip training, load it (with the args.json beside it) and evaluate it"""
    checkpoint_every: int = 0
    """write `checkpoint.msgpack` every this many fine-tuning iterations (and pretraining chunks); 0: never"""
    resume: str | None = None
    """a run folder to continue from its checkpoint, with the arguments saved there (no other flag allowed)"""

    # Environment and data
    env_id: str = "hopper"
    """`hopper`, `walker2d`, `halfcheetah` (Gymnasium v5 + Minari), an OGBench manipulation task (`cube-single`,
    `cube-double`, `scene`, `puzzle-3x3`, optionally `-taskN`), or any Gymnasium id together with --dataset-id"""
    dataset_id: str | None = None
    """Minari dataset id for locomotion (default `mujoco/<env>/medium-v0`); for manipulation, the name of the
    demonstration file in --dataset-dir (default `<env>-singletask-task<N>-demos-v0`)"""
    dataset_dir: str = "~/.ogbench/data"
    """folder holding the OGBench demonstration files (manipulation tasks only)"""
    pretrained: str | None = None
    """a `.flax` file saved by rldt.py (`pretrained.flax`, or a saved model): fine-tune it and skip pretraining"""
    pretrain_steps: int | None = None
    """pretraining gradient steps; default: the official number of epochs over the dataset (200 gym, 8000 robomimic)"""
    pretrain_log_every: int = 5_000
    """pretraining steps per jitted call, and between logs"""
    iterations: int | None = None
    """fine-tuning iterations; 0: pretrain and evaluate only; default: the paper's (56 gym, 180 robomimic)"""
    num_envs: int | None = None
    """parallel environments; default: the paper's (100 gym, 64 robomimic)"""
    async_envs: bool = False
    """step the environments in subprocesses (gymnasium AsyncVectorEnv) instead of in this process"""
    steps_per_iteration: int | None = None
    """action chunks per environment and iteration; default: 500 (gym), 2 episodes (manipulation, as robomimic)"""
    eval_every: int | None = None
    """evaluate every this many iterations, plus before fine-tuning and at the end; default 4 (gym), 9 (robomimic)"""
    eval_episodes: int = 100
    """number of evaluation episodes; 0: no evaluation"""

    # Algorithm specific arguments
    horizon: int = 4
    """action chunk length H, executed open-loop (act_steps = horizon_steps in every RLDT config)"""
    flow_steps: int = 8
    """Euler steps K of the policy while fine-tuning"""
    svgd_type: Literal["normal", "delta", "none"] = "normal"
    """`normal`: the SVGD field; ablations: `delta`, the critic gradient at the expected target alone (no kernel);
    `none`, no field at all (the consistency and trust-region losses alone: the drift without the critic)"""
    svgd_temp: float = 0.001
    """SVGD repulsion temperature, multiplied by the mean |grad_a Q| of each state; 0: no repulsion (ablation)"""
    n_particles: int = 8
    """action samples per state for the SVGD field"""
    consistency_coef: float = 0.5
    """weight of the consistency loss (the expected target from x_k lands on the chain's endpoint)"""
    kl_coef: float = 0.2
    """weight of the trust-region loss toward the previous iteration's policy"""
    actor_lr: float = 2e-5
    """Adam learning rate of the policy while fine-tuning"""
    actor_warmup_steps: int | None = None
    """linear learning-rate warm-up of the policy, in actor steps; default: 32 (gym), 64 (robomimic)"""
    actor_steps: int = 32
    """actor steps per iteration, spread evenly over the critic rounds"""
    critic_steps: int = 512
    """critic steps per iteration (full-batch), spread evenly over the critic rounds"""
    critic_rounds: int = 16
    """critic rounds per iteration; each draws a new batch of trajectory segments and new bootstrap actions"""
    critic_lr: float = 1e-3
    """Adam learning rate of the critics"""
    critic_hidden_dims: tuple[int, ...] = (256, 256, 256)
    """hidden layers of each critic (SiLU)"""
    q_init_std: float = 0.1
    """standard deviation of the critics' initial weights (biases start at 0)"""
    tau: float = 0.005
    """target critic update rate, applied after every critic step"""
    q_bootstrap: int = 2
    """policy actions sampled per next state to bootstrap the TD target"""
    discount: float | None = None
    """discount per action chunk; default: 0.99 (gym), 0.999 (robomimic)"""
    td_lambda: float | None = None
    """lambda of the TD(lambda) target; default: 0 (gym), 0.5 (robomimic)"""
    reward_scale: float | None = None
    """reward multiplier; a negative value scales by 1 / EMA(mean |r|) instead; default: -1 (gym), 1 (robomimic)"""
    new_fraction: float = 0.33
    """minimum share of this iteration's segments in each critic round's batch"""
    buffer_episodes: int | None = None
    """replay capacity in iterations' worth of segments; default: 20 (gym), 10 (robomimic)"""
    critic_warmup_iterations: int = 2
    """fine-tuning iterations that train the critic only"""
    min_extrp_step: int = 6
    """exploration noise scale = |a - E[a | x_k]| for k drawn from [min_extrp_step, flow_steps)"""
    actor_hidden_dims: tuple[int, ...] | None = None
    """layers of the residual velocity network (odd count, equal sizes); default: 3x512 (gym), 3x768 (robomimic)"""
    time_dim: int | None = None
    """size of the sinusoidal time embedding; default: 16 (gym), 32 (robomimic)"""
    actor_activation: Literal["relu", "mish"] | None = None
    """activation of the velocity network; default: relu (gym), mish (robomimic)"""
    pretrain_batch_size: int | None = None
    """pretraining batch size; default: 128 (gym), 256 (robomimic)"""
    pretrain_lr: float | None = None
    """peak AdamW learning rate of pretraining (cosine schedule); default: 1e-3 (gym), 1e-4 (robomimic)"""
    pretrain_min_lr: float | None = None
    """final learning rate of the cosine schedule; default: 1e-4 (gym), 1e-5 (robomimic)"""
    pretrain_weight_decay: float = 1e-6
    """AdamW weight decay of pretraining"""
    ema_decay: float = 0.995
    """decay of the EMA of the pretrained weights (the EMA weights are fine-tuned)"""


# The range of every number flag (None: the domain's default); check_args adds the checks between flags.
FLAG_RULES = {
    "count": "video_episodes pretrain_steps pretrain_log_every num_envs steps_per_iteration eval_every horizon "
    "flow_steps n_particles actor_warmup_steps critic_steps critic_rounds q_bootstrap buffer_episodes pretrain_batch_size",
    "count_or_off": "iterations eval_episodes checkpoint_every critic_warmup_iterations actor_steps",
    "positive": "actor_lr critic_lr q_init_std pretrain_lr",
    "non_negative": "svgd_temp consistency_coef kl_coef pretrain_weight_decay pretrain_min_lr",
    "fraction": "tau discount td_lambda new_fraction ema_decay",
    "finite": "reward_scale",
    "layers": "critic_hidden_dims actor_hidden_dims",
}


# Per-domain values of the official configs: `gym` from cfg/gym/{pretrain,finetune}/<task>, `robomimic` from the
# sparse-reward square config, which the OGBench manipulation tasks use (docs/rldt.md). Flags left unset take them.
# fmt: off
DOMAIN_TABLE = {               # (gym, robomimic)
    "num_envs":                (100, 64),
    "steps_per_iteration":     (500, None),          # robomimic: two episodes
    "iterations":              (56, 180),            # 71 / 201 official iterations, every 5th / 10th only evaluates
    "eval_every":              (4, 9),
    "discount":                (0.99, 0.999),
    "td_lambda":               (0.0, 0.5),
    "reward_scale":            (-1.0, 1.0),          # -1: EMA scaling
    "actor_warmup_steps":      (32, 64),
    "buffer_episodes":         (20, 10),
    "actor_hidden_dims":       ((512,) * 3, (768,) * 3),
    "time_dim":                (16, 32),
    "actor_activation":        ("relu", "mish"),
    "pretrain_batch_size":     (128, 256),
    "pretrain_lr":             (1e-3, 1e-4),
    "pretrain_min_lr":         (1e-4, 1e-5),
    "pretrain_epochs":         (200, 8000),          # no flags for these: data only
    "pretrain_warmup_epochs":  (1, 100),
    "q_target_clip":           ((-1e6, 1e6), (0.0, 1.0)),
    "deterministic_eval":      (True, False),        # x0 = 0 at evaluation ("mean_sampling")
    "sparse":                  (False, True),        # success rewards, post-processing, q_mask, succ/fail replay
}
# fmt: on
DOMAINS = {name: {k: v[i] for k, v in DOMAIN_TABLE.items()} for i, name in enumerate(("gym", "robomimic"))}
EMA_START_EPOCH = 20  # the EMA copies the live weights until this epoch, then averages every 10 batches
EMA_EVERY = 10

# Gymnasium MuJoCo locomotion (the paper's Gym v2 tasks) and its Minari datasets (D4RL's successors).
LOCOMOTION = {
    "hopper": ("Hopper-v5", "mujoco/hopper/medium-v0"),
    "walker2d": ("Walker2d-v5", "mujoco/walker2d/medium-v0"),
    "halfcheetah": ("HalfCheetah-v5", "mujoco/halfcheetah/medium-v0"),
}
# The Minari datasets benchmark/make_dataset.py makes offline, from an expert that benchmark/train_expert.py trains.
MINARI_EXPERTS = {"hopper": "Hopper-v5", "walker2d": "Walker2d-v5", "halfcheetah": "HalfCheetah-v5", "ant": "Ant-v5"}
# OGBench manipulation, the stand-in for Robomimic: default task, episode length, demonstration noise to suggest.
MANIPULATION = {
    "cube-single": (2, 200, 0.3),
    "cube-double": (2, 500, 0.3),
    "scene": (2, 750, 0.3),
    "puzzle-3x3": (4, 500, 0.3),
}


class Task(NamedTuple):
    env_id: str  # the gymnasium id that is stepped
    dataset_id: str  # Minari id, or the demonstration file's name
    domain: str  # key of DOMAINS
    episode_steps: int  # time limit (manipulation), 0 if unknown
    demo_noise: float  # manipulation: the noise of the suggested make_dataset command


def resolve_task(env_id: str, dataset_id: str | None) -> Task:
    """An alias or a full id -> the task; exits with one error line if unknown."""
    if env_id in LOCOMOTION:
        gym_id, default_dataset = LOCOMOTION[env_id]
        return Task(gym_id, dataset_id or default_dataset, "gym", 0, 0.0)
    names = "|".join(re.escape(name) for name in MANIPULATION)
    match = re.fullmatch(rf"(?P<name>{names})(-play)?(-singletask)?(-task(?P<task>[1-5]))?(-v0)?", env_id)
    if match:
        default_task, episode_steps, noise = MANIPULATION[match["name"]]
        base = f"{match['name']}-singletask-task{match['task'] or default_task}"
        return Task(f"{base}-v0", dataset_id or f"{base}-demos-v0", "robomimic", episode_steps, noise)
    if env_id in gym.registry and dataset_id:
        return Task(env_id, dataset_id, "gym", 0, 0.0)
    accepted = ", ".join([*LOCOMOTION, *MANIPULATION]) + " (optionally -taskN), or a Gymnasium id with --dataset-id"
    if env_id in gym.registry:
        fail("env-id", env_id, f"a Gymnasium id needs --dataset-id (a Minari id); accepted: {accepted}")
    fail("env-id", env_id, f"unknown task; accepted: {accepted}")


def chunks_per_episode(task: Task, horizon: int) -> int:
    return -(-task.episode_steps // horizon)


def check_args(args: Args) -> Task:
    """Every flag, before anything slow: the table above, then what depends on two flags or on the task."""
    check_flags(args, FLAG_RULES)
    task = resolve_task(args.env_id, args.dataset_id)
    if args.pretrain_min_lr is not None and args.pretrain_lr is not None and args.pretrain_min_lr > args.pretrain_lr:
        fail("pretrain_min_lr", args.pretrain_min_lr, f"must not exceed --pretrain-lr {args.pretrain_lr}")
    if args.reward_scale == 0:
        fail("reward_scale", args.reward_scale, "must be a finite non-zero number (negative: EMA scaling)")
    if not 0 <= args.min_extrp_step < args.flow_steps:
        fail("min_extrp_step", args.min_extrp_step, f"must be in [0, {args.flow_steps - 1}] (below --flow-steps)")
    for flag in ("critic_steps", "actor_steps"):
        if getattr(args, flag) % args.critic_rounds:
            fail(flag, getattr(args, flag), f"must be a multiple of --critic-rounds {args.critic_rounds}")
    if args.time_dim is not None and (args.time_dim < 4 or args.time_dim % 2):
        fail("time_dim", args.time_dim, "must be even and >= 4")
    if (dims := args.actor_hidden_dims) is not None and (len(dims) % 2 == 0 or len(set(dims)) > 1):
        fail("actor_hidden_dims", dims, "give an odd number of equal positive sizes, e.g. 512 512 512")
    episode = chunks_per_episode(task, args.horizon)
    if task.domain == "robomimic" and args.steps_per_iteration is not None and args.steps_per_iteration % episode:
        why = f"must be a multiple of the {episode} chunks of one {task.env_id} episode (episodes end with each iteration)"
        fail("steps_per_iteration", args.steps_per_iteration, why)
    # Each critic trains on every other segment of a batch, which must therefore hold at least two.
    if task.domain == "robomimic" and args.num_envs is not None:
        episodes = args.num_envs * ((args.steps_per_iteration or 0) // episode or 2)
        if episodes < 4:
            fail("num_envs", args.num_envs, f"gives {episodes} episodes per iteration; at least 4 needed")
    elif args.num_envs is not None and args.num_envs < 2:
        fail("num_envs", args.num_envs, "each critic needs its own segments; give at least 2")
    return task


def apply_domain_defaults(args: Args, task: Task) -> Args:
    """The paper's per-domain values for every flag left unset; explicit flags win."""
    defaults = dict(DOMAINS[task.domain])
    if defaults["steps_per_iteration"] is None:
        defaults["steps_per_iteration"] = 2 * chunks_per_episode(task, args.horizon)
    unset = {k: v for k, v in defaults.items() if k in Args.__dataclass_fields__ and getattr(args, k) is None}
    return dataclasses.replace(args, env_id=task.env_id, dataset_id=task.dataset_id, **unset)


# Data: windows of `horizon` consecutive actions inside an episode, with min-max normalisation to [-1, 1] (DPPO's).
def normalize(values, normalizer: dict, name: str):
    low, high = normalizer[f"{name}_min"], normalizer[f"{name}_max"]
    return 2 * ((values - low) / (high - low + 1e-6) - 0.5)


def unnormalize_actions(actions, normalizer: dict):
    return (actions + 1) / 2 * (normalizer["action_max"] - normalizer["action_min"]) + normalizer["action_min"]


def load_episodes(task: Task, args: Args, obs_dim: int, action_dim: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(observations, actions) of each episode of the task's dataset, read in full and checked once: a Minari dataset
    (locomotion) or a file of oracle demonstrations whose `terminals` mark each episode's last step (manipulation)."""
    shapes = {"observations": (obs_dim,), "actions": (action_dim,)}
    if task.domain == "gym":
        parts = task.dataset_id.split("/")
        remake = "  check --dataset-id, or download the dataset on a machine that is online"
        if len(parts) == 3 and parts[1] in MINARI_EXPERTS and parts[2] in ("simple-v0", "medium-v0", "expert-v0"):
            remake = f"  make it here with: python benchmark/train_expert.py --env-id {MINARI_EXPERTS[parts[1]]}\n"
            remake += f"  then: python benchmark/make_dataset.py --dataset {task.dataset_id}"
        episodes = read_minari(task.dataset_id, shapes, task.env_id, remake)
        return [(episode.observations[:-1], episode.actions) for episode in episodes]
    path = os.path.join(os.path.expanduser(args.dataset_dir), f"{task.dataset_id}.npz")
    make = f"python benchmark/make_dataset.py --demos {task.env_id} --noise {task.demo_noise}"
    remake = f"  make it with: {make} --out-dir {args.dataset_dir}"
    demos = read_npz(path, shapes | {"terminals": ()}, task.env_id, remake)
    ends = np.flatnonzero(demos["terminals"]) + 1
    split = lambda values: np.split(values, ends)[: len(ends)]  # noqa: E731
    return list(zip(split(demos["observations"]), split(demos["actions"]), strict=True))


def pretraining_data(task: Task, args: Args, obs_dim: int, action_dim: int):
    """The dataset's normalised observations and actions, the start of every full action window, and the normalisation."""
    episodes = load_episodes(task, args, obs_dim, action_dim)
    observations = np.concatenate([o for o, _ in episodes]).astype(np.float32)
    actions = np.concatenate([a for _, a in episodes]).astype(np.float32)
    normalizer = {"obs_min": observations.min(0), "obs_max": observations.max(0)}
    normalizer |= {"action_min": actions.min(0), "action_max": actions.max(0)}
    starts, offset = [], 0
    for _, episode_actions in episodes:
        starts.append(offset + np.arange(max(len(episode_actions) - args.horizon + 1, 0)))
        offset += len(episode_actions)
    starts = np.concatenate(starts).astype(np.int32)
    if len(starts) == 0:
        raise SystemExit(f"error: the dataset {task.dataset_id} has no episode of {args.horizon} steps or more")
    print(f"dataset: {len(episodes)} episodes, {len(starts)} action windows")
    data = {
        "observations": normalize(observations, normalizer, "obs").astype(np.float32),
        "actions": normalize(actions, normalizer, "action").astype(np.float32),
        "starts": starts,
    }
    return data, normalizer


# ALGO LOGIC: networks and training state
def torch_linear(features: int, fan_in: int) -> nn.Dense:
    """A Dense layer initialised as PyTorch's nn.Linear (weights and biases uniform in +-1/sqrt(fan_in))."""
    bound = 1 / math.sqrt(fan_in)
    return nn.Dense(
        features,
        kernel_init=nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform"),
        bias_init=lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound),
    )


def sinusoidal_embedding(t: jax.Array, dim: int) -> jax.Array:
    """DPPO's time embedding: [sin(t f_i), cos(t f_i)], f_i = 10000^(-i / (dim/2 - 1)), i < dim/2."""
    half = dim // 2
    frequencies = jnp.exp(jnp.arange(half) * -(math.log(10000) / (half - 1)))
    angles = t[:, None] * frequencies[None]
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


class VelocityField(nn.Module):
    """DPPO's DiffusionMLP with a ResidualMLP: v(x, t, s) from [x, time embedding, s] through Linear -> pre-activation
    residual blocks (act -> Linear -> act -> Linear, + skip) -> Linear. The chunk x is flattened (H * action_dim)."""

    hidden_dims: tuple[int, ...]
    output_dim: int
    time_dim: int
    activation: str

    @nn.compact
    def __call__(self, observations, x, t):
        act = {"relu": nn.relu, "mish": lambda h: h * jnp.tanh(nn.softplus(h))}[self.activation]
        emb = sinusoidal_embedding(jnp.reshape(t, (-1,)), self.time_dim).reshape(*x.shape[:-1], self.time_dim)
        emb = torch_linear(2 * self.time_dim, self.time_dim)(emb)
        emb = torch_linear(self.time_dim, 2 * self.time_dim)(emb * jnp.tanh(nn.softplus(emb)))  # Mish
        h = jnp.concatenate([x, emb, observations], axis=-1)
        width = self.hidden_dims[0]
        h = torch_linear(width, h.shape[-1])(h)
        for _ in range((len(self.hidden_dims) - 1) // 2):
            inner = torch_linear(width, width)(act(h))
            h = h + torch_linear(width, width)(act(inner))
        return torch_linear(self.output_dim, width)(h)


class Critic(nn.Module):
    """Q(s, a) MLP on [s, flattened chunk]: SiLU hidden layers, weights N(0, init_std), zero biases (QEnsemble's init)."""

    hidden_dims: tuple[int, ...]
    init_std: float

    @nn.compact
    def __call__(self, observations, actions):
        h = jnp.concatenate([observations, actions], axis=-1)
        for size in self.hidden_dims:
            h = nn.silu(nn.Dense(size, kernel_init=nn.initializers.normal(self.init_std))(h))
        return nn.Dense(1, kernel_init=nn.initializers.normal(self.init_std))(h)[..., 0]


class Networks(NamedTuple):
    actor: VelocityField
    critic: Critic  # its parameters are stacked over the two ensemble members


class PretrainState(NamedTuple):
    params: dict
    ema_params: dict  # handed to fine-tuning
    opt_state: optax.OptState


class ActorState(NamedTuple):
    params: dict
    opt_state: optax.OptState


class CriticState(NamedTuple):
    params: dict  # leading axis: the 2 ensemble members
    target_params: dict
    opt_state: optax.OptState


def make_networks(args: Args, action_dim: int) -> Networks:
    return Networks(
        actor=VelocityField(args.actor_hidden_dims, args.horizon * action_dim, args.time_dim, args.actor_activation),
        critic=Critic(args.critic_hidden_dims, args.q_init_std),
    )


def init_actor(key, nets: Networks, obs_dim: int) -> dict:
    dim = nets.actor.output_dim
    return jax.jit(nets.actor.init)(key, jnp.zeros((1, obs_dim)), jnp.zeros((1, dim)), jnp.zeros((1, 1)))


def init_critic(key, nets: Networks, obs_dim: int, tx) -> CriticState:
    obs, actions = jnp.zeros((1, obs_dim)), jnp.zeros((1, nets.actor.output_dim))
    params = jax.jit(jax.vmap(nets.critic.init, in_axes=(0, None, None)))(jax.random.split(key, 2), obs, actions)
    return CriticState(params, params, tx.init(params))


def actor_optimizer(args: Args):
    """Adam whose learning rate rises linearly from lr / W to lr over the first W steps (torch LinearLR), then stays."""
    schedule = optax.linear_schedule(args.actor_lr / args.actor_warmup_steps, args.actor_lr, args.actor_warmup_steps)
    return optax.adam(schedule), schedule


def q_values(nets: Networks, critic_params, observations, actions):
    """Q_i(s, a) of both ensemble members, shape (2, ...)."""
    return jax.vmap(nets.critic.apply, in_axes=(0, None, None))(critic_params, observations, actions)


def sample_actions(nets: Networks, actor_params, observations, x0, flow_steps: int):
    """Euler-integrate the policy's flow from x0 (no clipping, as in every RLDT config); returns (x_K, chain)."""
    return euler_chain(lambda x, t: nets.actor.apply(actor_params, observations, x, t), x0, flow_steps)


def expected_target(nets: Networks, actor_params, observations, x_k, t_k):
    """E[a | x_k] = x_k + (1 - t_k) v(x_k, t_k): where the straight path from x_k lands (`t_k` has shape (B, 1))."""
    return x_k + (1 - t_k) * nets.actor.apply(actor_params, observations, x_k, t_k)


# Pretraining: flow-matching behaviour cloning (AdamW, cosine schedule, EMA of the weights).
def pretrain_optimizer(args: Args, num_steps: int, domain: dict):
    """AdamW with DPPO's schedule, by steps instead of epochs: linear warm-up from the final to the peak learning rate
    over the first epoch's share of the steps, then cosine decay to the final one; also the step where the EMA starts."""
    peak, final = args.pretrain_lr, args.pretrain_min_lr
    warmup = round(num_steps * domain["pretrain_warmup_epochs"] / domain["pretrain_epochs"])
    cosine = optax.cosine_decay_schedule(peak, max(num_steps - warmup, 1), final / peak)
    schedule = optax.join_schedules([optax.linear_schedule(final, peak, warmup), cosine], [warmup])
    ema_start = round(num_steps * (EMA_START_EPOCH - 1) / domain["pretrain_epochs"])
    return optax.adamw(schedule, weight_decay=args.pretrain_weight_decay), schedule, ema_start


def pretrain_chunk(state: PretrainState, data, first_step, key, num_steps: int, ema_start: int, nets, tx, args: Args):
    """`num_steps` flow-matching steps in one compiled call; step s draws its batch from fold_in(key, s)."""

    def step(state, index):
        batch_key, loss_key = jax.random.split(jax.random.fold_in(key, index))
        starts = data["starts"][jax.random.randint(batch_key, (args.pretrain_batch_size,), 0, data["starts"].shape[0])]
        observations = data["observations"][starts]
        actions = data["actions"][starts[:, None] + jnp.arange(args.horizon)].reshape(len(starts), -1)

        def loss_fn(params):
            return flow_matching_loss(lambda x, t: nets.actor.apply(params, observations, x, t), actions, loss_key)

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        # Every 10th batch the EMA is touched: reset to the live weights early on, averaged afterwards.
        averaged = jax.tree.map(lambda e, p: args.ema_decay * e + (1 - args.ema_decay) * p, state.ema_params, params)
        touched = jax.tree.map(lambda a, p: jnp.where(index < ema_start, p, a), averaged, params)
        ema = jax.tree.map(lambda t, e: jnp.where(index % EMA_EVERY == 0, t, e), touched, state.ema_params)
        return PretrainState(params, ema, opt_state), loss

    return jax.lax.scan(step, state, first_step + jnp.arange(num_steps))


# Fine-tuning: the SVGD field, the actor losses, the critic.
def svgd_field(queries, particles, grad_q, temperature):
    """SVGD direction at each query, for one state (Liu & Wang 2016), with particles a_j and critic gradients g_j:

        phi(q_i) = 1/P sum_j [ k(a_j, q_i) g_j + temperature * grad_{a_j} k(a_j, q_i) ]
        k(a, q) = exp(-|q - a|^2 / (2 h_i)),  h_i = median_j |q_i - a_j|^2 / (2 log(P + 1))

    with the lower median (torch.median) and h_i >= 1e-8. The second term pushes queries away from the particles.
    queries (P1, D), particles and grad_q (P2, D), temperature a scalar; returns phi (P1, D) and diagnostics.
    """
    num = particles.shape[0]
    sq_dist = jnp.sum((queries[:, None, :] - particles[None, :, :]) ** 2, axis=-1)
    median = jnp.sort(sq_dist, axis=-1)[:, (num - 1) // 2]
    bandwidth = jnp.maximum(median / (2 * math.log(num + 1)), 1e-8)[:, None]
    kernel = jnp.exp(-0.5 * sq_dist / bandwidth)
    attraction = kernel @ grad_q
    repulsion = (queries * kernel.sum(axis=-1, keepdims=True) - kernel @ particles) / bandwidth
    phi = (attraction + temperature * repulsion) / num
    # How much the repulsion counts against the attraction (a diagnostic: at the official temperature, very little).
    ratio = jnp.linalg.norm(temperature * repulsion) / jnp.maximum(jnp.linalg.norm(attraction), 1e-12)
    return phi, {"kernel_gradient": jnp.mean(sq_dist * kernel / bandwidth), "repulsion_ratio": ratio}


def critic_action_gradient(nets: Networks, critic_params, observations, actions):
    """grad_a Q(s, a) averaged over the two online critics."""
    return jax.grad(lambda a: q_values(nets, critic_params, observations, a).mean(axis=0).sum())(actions)


def transport_field(nets: Networks, critic_params, observations, expected, actions, args: Args):
    """phi, where each expected target q_i = E[a | x_k] should move, for rows grouped by state (P = n_particles rows
    each): the SVGD field with the chains' endpoints a_j as particles, g_j = grad_a Q(s, a_j) and the adaptive
    temperature alpha = svgd_temp * mean_j |g_j| (scale-free in Q); for the `delta` ablation, grad_a Q(s, q_i) alone;
    for `none`, 0. Returns phi and the diagnostics."""
    particles = expected if args.svgd_type == "delta" else actions
    grad_q = critic_action_gradient(nets, critic_params, observations, particles)
    per_state = lambda a: a.reshape(-1, args.n_particles, a.shape[-1])  # noqa: E731
    grad_norm = jnp.linalg.norm(per_state(grad_q), axis=-1)  # (N, P)
    pairwise = jnp.linalg.norm(per_state(particles)[:, :, None] - per_state(particles)[:, None], axis=-1)
    info = {"grad_q_norm": grad_norm.mean(), "action_sample_distance": pairwise.mean()}
    if args.svgd_type == "delta":
        return grad_q, info | {"kernel_gradient": jnp.zeros(()), "phi_norm": grad_norm.mean()}
    if args.svgd_type == "none":
        return jnp.zeros_like(grad_q), info | {"kernel_gradient": jnp.zeros(()), "phi_norm": jnp.zeros(())}
    temperature = args.svgd_temp * jnp.clip(grad_norm.mean(axis=1), 0.0, 1e5)
    phi, field_info = jax.vmap(svgd_field)(per_state(expected), per_state(particles), per_state(grad_q), temperature)
    phi = phi.reshape(grad_q.shape)
    field_info = {k: v.mean() for k, v in field_info.items()}
    return phi, info | field_info | {"phi_norm": jnp.linalg.norm(phi, axis=-1).mean()}


def actor_loss(params, old_params, critic_params, states, state_weights, draws: dict, nets: Networks, args: Args):
    """The actor loss of one step, for states (N, obs_dim) with P particles each (rows = N * P):

    L_svgd = -mean <v(x_k, t_k), phi> / (K (1 - t_k))     (moving E[a | x_k] by phi / K needs dv = phi / (K (1 - t_k)))
    L_cons = c mean |x_k + (1 - t_k) v(x_k, t_k) - a|^2 / (K (1 - t_k))^2
    L_kl   = kl mean |v(x', t') - v_old(x', t')|^2,  x' = (1 - t') z' + t' a

    x_k is step k of a chain of the current policy and a its endpoint; the chain, phi and the previous policy v_old are
    constants: gradient flows only through the two calls v(x_k, t_k) and v(x', t'). The random draws: the chains'
    noise, k per row, and t' = k' / K and z' of the trust-region point. Sums over the chunk, weighted means over rows;
    `state_weights` (N,) are 0 for the states that the sparse-reward mask drops, 1 otherwise.
    """
    frozen, old_params, critic_params = jax.lax.stop_gradient((params, old_params, critic_params))
    observations = jnp.repeat(states, args.n_particles, axis=0)
    weights = jnp.repeat(state_weights, args.n_particles)
    # Constants: a chain of the current policy per row, its point x_k at step k and endpoint a, phi at E[a | x_k] ...
    actions, chain = sample_actions(nets, frozen, observations, draws["noise"], args.flow_steps)
    t = (draws["step"] / args.flow_steps)[:, None]
    x = chain[draws["step"], jnp.arange(observations.shape[0])]
    expected = expected_target(nets, frozen, observations, x, t)
    phi, info = transport_field(nets, critic_params, observations, expected, actions, args)
    # ... and the previous policy's velocity at x' = (1 - t') z' + t' a.
    t_old = (draws["teacher_step"] / args.flow_steps)[:, None]
    x_old = (1 - t_old) * draws["teacher_noise"] + t_old * actions
    v_old = nets.actor.apply(old_params, observations, x_old, t_old)

    def weighted_mean(values):
        return jnp.sum(weights * values) / jnp.sum(weights)

    # The two calls that carry gradient: v(x_k, t_k) in L_svgd and L_cons, v(x', t') in L_kl.
    v = nets.actor.apply(params, observations, x, t)
    scale = args.flow_steps * (1 - t[:, 0])
    svgd_loss = -weighted_mean(jnp.sum(v * phi, axis=-1) / scale)
    landing_error = jnp.sum((x + (1 - t) * v - actions) ** 2, axis=-1)
    consistency_loss = args.consistency_coef * weighted_mean(landing_error / scale**2)
    v_trust = nets.actor.apply(params, observations, x_old, t_old)
    kl_loss = args.kl_coef * weighted_mean(jnp.sum((v_trust - v_old) ** 2, axis=-1))
    loss = svgd_loss + consistency_loss + kl_loss
    return loss, info | dict(actor_loss=loss, svgd_loss=svgd_loss, consistency_loss=consistency_loss, kl_loss=kl_loss)


def actor_step(state: ActorState, old_params, critic_params, states, weights, key, nets: Networks, tx, args: Args):
    """One Adam step on the actor loss, with fresh draws."""
    rows, dim = states.shape[0] * args.n_particles, nets.actor.output_dim
    noise_key, step_key, teacher_step_key, teacher_noise_key = jax.random.split(key, 4)
    draws = {
        "noise": jax.random.normal(noise_key, (rows, dim)),
        "step": jax.random.randint(step_key, (rows,), 0, args.flow_steps),
        "teacher_step": jax.random.randint(teacher_step_key, (rows,), 0, args.flow_steps),
        "teacher_noise": jax.random.normal(teacher_noise_key, (rows, dim)),
    }
    loss_grad = jax.grad(actor_loss, has_aux=True)
    grads, info = loss_grad(state.params, old_params, critic_params, states, weights, draws, nets, args)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    return ActorState(optax.apply_updates(state.params, updates), opt_state), info


def td_lambda_targets(rewards, dones, values, discount: float, lam: float):
    """G_t = r_t + discount (1 - d_t) [(1 - lam) V(s_{t+1}) + lam G_{t+1}] backwards along each segment, with
    G_T = V(s_T) at the segment's last state. rewards, dones (n, T); values (n, T + 1); returns (n, T)."""

    def step(next_return, inputs):
        reward, done, next_value = inputs
        target = reward + discount * (1 - done) * ((1 - lam) * next_value + lam * next_return)
        return target, target

    _, targets = jax.lax.scan(step, values[:, -1], (rewards.T, dones.T, values[:, 1:].T), reverse=True)
    return targets.T


def bootstrap_actions(nets: Networks, actor_params, observations, noise, args: Args):
    """`q_bootstrap` policy actions per state (no exploration noise), from noise (q_bootstrap, B, D)."""
    return jax.vmap(lambda x0: sample_actions(nets, actor_params, observations, x0, args.flow_steps)[0])(noise)


def critic_targets(nets: Networks, target_params, batch, bootstrap, args: Args, clip: tuple):
    """TD(lambda) targets (n, T) with V(s) = mean over the bootstrap actions of min_i Qbar_i(s, a'), clipped."""
    states = batch["states"]
    flat_states = states.reshape(-1, states.shape[-1])
    values = jax.vmap(lambda a: q_values(nets, target_params, flat_states, a).min(axis=0))(bootstrap)
    values = jnp.clip(values.mean(axis=0).reshape(states.shape[:2]), *clip)
    return td_lambda_targets(batch["rewards"], batch["dones"], values, args.discount, args.td_lambda)


def critic_loss(params, targets, batch, nets: Networks):
    """sum_i mean (Q_i(s_t, a_t) - G_t)^2, critic i on the segments with index = i (mod 2); masked steps count as 0."""
    loss, q_error, q_mean = 0.0, 0.0, 0.0
    for member in range(2):
        member_params = jax.tree.map(lambda p, m=member: p[m], params)
        q = nets.critic.apply(member_params, batch["states"][member::2, :-1], batch["actions"][member::2])
        mse = jnp.mean(batch["loss_mask"][member::2] * (q - targets[member::2]) ** 2)
        loss, q_error, q_mean = loss + mse, q_error + jnp.sqrt(mse) / 2, q_mean + q.mean() / 2
    return loss, {"critic_loss": loss, "q_error": q_error, "q_mean": q_mean}


def critic_round(state: CriticState, actor_params, batch, key, nets: Networks, tx, args: Args, clip: tuple):
    """`critic_steps / critic_rounds` full-batch critic steps in one compiled call, on trajectory segments: states
    (n, T + 1, obs_dim), actions (n, T, D), rewards (already scaled), dones and loss_mask (n, T). The bootstrap actions
    are drawn once per round; the targets follow the target critics, updated after every step."""
    flat_states = batch["states"].reshape(-1, batch["states"].shape[-1])
    noise = jax.random.normal(key, (args.q_bootstrap, flat_states.shape[0], nets.actor.output_dim))
    bootstrap = bootstrap_actions(nets, actor_params, flat_states, noise, args)

    def step(state: CriticState, _):
        targets = critic_targets(nets, state.target_params, batch, bootstrap, args, clip)
        grads, info = jax.grad(critic_loss, has_aux=True)(state.params, targets, batch, nets)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return CriticState(params, polyak_update(state.target_params, params, args.tau), opt_state), info

    return jax.lax.scan(step, state, None, length=args.critic_steps // args.critic_rounds)


# Host-side bookkeeping: reward scaling, sparse-reward post-processing, the segment replay.
def update_reward_ema(ema: float, rewards: np.ndarray, rate: float = 0.01) -> float:
    """EMA of mean |r| over each iteration's fresh rewards (-1: not seeded yet); all-zero batches are skipped."""
    batch = float(np.mean(np.abs(rewards)))
    if batch < 1e-8:
        return ema
    return batch if ema < 0 else (1 - rate) * ema + rate * batch


def reward_scale_from(ema: float) -> float:
    return 1.0 if ema <= 0 else 1.0 / (ema + 1e-8)


def postprocess_sparse_rewards(rewards: np.ndarray, dones: np.ndarray) -> np.ndarray:
    """Robomimic post-processing of one pass of episodes (n, T): r'_t = r_t - (1 - d_{t-1}) r_{t-1}, divided by
    max(1, max r): the reward of being in the success state becomes a one-off reward for reaching it."""
    processed = rewards.copy()
    processed[:, 1:] -= (1 - dones[:, :-1]) * rewards[:, :-1]
    return processed / max(1.0, float(rewards.max()))


def success_mask(rewards: np.ndarray, dones: np.ndarray, threshold: float = 1.0):
    """Robomimic `q_mask`: once an episode's cumulative reward reaches the threshold, its later zero-reward steps are
    left out (mask 0) and every step from there on counts as done. Returns (mask, dones)."""
    cumulative = np.zeros_like(rewards)
    cumulative[:, 0] = rewards[:, 0]
    for t in range(1, rewards.shape[1]):
        cumulative[:, t] = (1 - dones[:, t - 1]) * cumulative[:, t - 1] + rewards[:, t]
    solved = cumulative >= threshold
    return (~(solved & (rewards == 0))).astype(np.float32), ((dones > 0) | solved).astype(np.float32)


def take(segments: dict, index) -> dict:
    return {k: v[index] for k, v in segments.items()}


def mix_segments(rng: np.random.Generator, fresh: dict, buffer: dict, args: Args, sparse: bool) -> dict:
    """A critic round's batch of len(fresh) segments: a share of this iteration's, the rest from the replay. Dense
    (state agent): the fresh share is max(n_fresh / (n_fresh + n_old), new_fraction), old ones are uniform. Sparse
    (image agent): int(n new_fraction) fresh, and the rest half from successful (sum r != 0) and half from failed old
    episodes, with replacement if a group is small, only one half if a group is empty."""
    num = len(fresh["rewards"])
    num_old = len(buffer["rewards"])
    if num_old == 0:
        return take(fresh, rng.choice(num, size=num, replace=False))
    if sparse:
        num_fresh = int(num * args.new_fraction)
        half = (num - num_fresh) // 2
        solved = buffer["rewards"].sum(axis=1) != 0
        groups = [np.flatnonzero(solved), np.flatnonzero(~solved)]
        groups = [rng.choice(g, size=half, replace=len(g) < half) for g in groups if len(g)]
        old = np.sort(np.concatenate(groups))
    else:
        num_fresh = int(num * max(num / (num + num_old), args.new_fraction))
        old = rng.choice(num_old, size=num - num_fresh, replace=False)
    chosen = take(fresh, rng.choice(num, size=num_fresh, replace=False))
    return {k: np.concatenate([chosen[k], buffer[k][old]]) for k in fresh}


def append_segments(buffer: dict, fresh: dict, capacity: int) -> dict:
    """FIFO of whole segments: append, then keep the newest `capacity`."""
    return {k: np.concatenate([buffer[k], fresh[k]])[-capacity:] for k in fresh}


def critic_batch(segments: dict, reward_scale: float, sparse: bool) -> dict:
    batch = dict(segments, rewards=segments["rewards"] * reward_scale, loss_mask=np.ones_like(segments["rewards"]))
    if sparse:
        batch["loss_mask"], batch["dones"] = success_mask(segments["rewards"], segments["dones"])
    return batch


def actor_batch(segments: dict, index: int, rng: np.random.Generator, args: Args, sparse: bool):
    """States (and weights) of one actor step: every P-th segment from offset `index` (state agent), or
    n // 8 (at least 1) random segments without the states after success (image agent); the segments' last state
    is dropped."""
    if sparse:
        num = len(segments["rewards"])
        chosen = take(segments, rng.choice(num, max(num // 8, 1), replace=False))
        weights = success_mask(chosen["rewards"], chosen["dones"])[0]
    else:
        chosen = take(segments, slice(index % args.n_particles, None, args.n_particles))
        weights = np.ones_like(chosen["rewards"])
    states = chosen["states"][:, :-1]
    return states.reshape(-1, states.shape[-1]), weights.reshape(-1)


def episodes_of(segments: dict, length: int) -> dict:
    """Sparse-reward rollouts: (n_envs, k * L) segments of aligned episodes -> (n_envs * k, L) segments, one per
    episode (each pass of n_envs episodes in turn, as the image agent stores them), with post-processed rewards; each
    keeps the state after its last chunk (the next episode's first state, never bootstrapped: the episode is done)."""
    passes = [slice(p * length, (p + 1) * length) for p in range(segments["rewards"].shape[1] // length)]
    rewards = [postprocess_sparse_rewards(segments["rewards"][:, p], segments["dones"][:, p]) for p in passes]
    return {
        "states": np.concatenate([segments["states"][:, p.start : p.stop + 1] for p in passes]),
        "actions": np.concatenate([segments["actions"][:, p] for p in passes]),
        "rewards": np.concatenate(rewards),
        "dones": np.concatenate([segments["dones"][:, p] for p in passes]),
    }


# Acting: the environment as the policy sees it, exploration, evaluation.
class SuccessReward(gym.Wrapper):
    """Robomimic's reward: 1 in every step spent in the success state (OGBench's `info["success"]`), 0 otherwise."""

    def step(self, action):
        obs, _, terminated, truncated, info = self.env.step(action)
        return obs, float(info["success"]), terminated, truncated, info


class ActionChunk(gym.Wrapper):
    """Executes a chunk of `horizon` actions open-loop (DPPO's MultiStep): stops at the end of the episode, sums the
    rewards, and speaks the policy's normalised observations and actions."""

    def __init__(self, env, horizon: int, normalizer: dict):
        super().__init__(env)
        self.normalizer = normalizer
        self.frames = None  # a recorded episode's list of frames: one is added after each action
        self.action_space = gym.spaces.Box(-np.inf, np.inf, (horizon, *env.action_space.shape), np.float32)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, env.observation_space.shape, np.float32)

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        return normalize(obs, self.normalizer, "obs").astype(np.float32), info

    def step(self, chunk):
        total_reward = 0.0
        for action in chunk:
            obs, reward, terminated, truncated, info = self.env.step(unnormalize_actions(action, self.normalizer))
            total_reward += reward
            if self.frames is not None:
                self.frames.append(self.env.render())
            if terminated or truncated:
                break
        return normalize(obs, self.normalizer, "obs").astype(np.float32), total_reward, terminated, truncated, info


def make_env(task: Task, horizon: int, normalizer: dict, render_mode: str | None = None) -> gym.Env:
    """The task in chunks; `info["episode"]` holds the return and the length in actions at the end of an episode.
    OGBench's environments render in any mode; gymnasium's need `render_mode="rgb_array"`."""
    if task.domain == "robomimic":
        import ogbench  # noqa: F401  (registers the OGBench environments)

        # Robomimic episodes do not end at success; reward and success are computed after each action.
        env = SuccessReward(gym.make(task.env_id, terminate_at_goal=False, success_timing="post"))
    else:
        env = gym.make(task.env_id, render_mode=render_mode)
    return ActionChunk(gym.wrappers.RecordEpisodeStatistics(env), horizon, normalizer)


def explore(nets: Networks, actor_params, observations, key, args: Args):
    """Exploration ("min_extrp"): a + |a - E[a | x_k]| * eps with k ~ U{min_extrp_step..K-1} and eps ~ N(0, I), one
    scale per environment. At k = K - 1 the expected target is the endpoint itself, so half the time sigma = 0."""
    noise_key, step_key, eps_key = jax.random.split(key, 3)
    x0 = jax.random.normal(noise_key, (observations.shape[0], nets.actor.output_dim))
    actions, chain = sample_actions(nets, actor_params, observations, x0, args.flow_steps)
    k = jax.random.randint(step_key, (observations.shape[0],), args.min_extrp_step, args.flow_steps)
    t = (k / args.flow_steps)[:, None]
    expected = expected_target(nets, actor_params, observations, chain[k, jnp.arange(len(k))], t)
    sigma = jnp.linalg.norm(actions - expected, axis=-1, keepdims=True)
    return actions + sigma * jax.random.normal(eps_key, actions.shape)


def act(nets: Networks, actor_params, observations, key, deterministic: bool, flow_steps: int):
    """The evaluation policy: the Euler endpoint from x0 = 0 (deterministic) or from x0 ~ N(0, I)."""
    shape = (observations.shape[0], nets.actor.output_dim)
    x0 = jnp.zeros(shape) if deterministic else jax.random.normal(key, shape)
    return sample_actions(nets, actor_params, observations, x0, flow_steps)[0]


def collect(envs, obs, policy, params, key, num_steps: int, progress) -> tuple[dict, np.ndarray, list]:
    """Step all environments `num_steps` chunks with one policy call per chunk; finished episodes are reset. Returns
    the segment of each environment (states with the state after the last chunk, executed actions, chunk rewards,
    dones = terminated or truncated), the next observations, and (return, length) of each finished episode."""
    num_envs = obs.shape[0]
    states, actions = np.zeros((num_envs, num_steps + 1, obs.shape[1]), np.float32), []
    rewards, dones = np.zeros((num_envs, num_steps), np.float32), np.zeros((num_envs, num_steps), np.float32)
    finished = []
    for step in range(num_steps):
        states[:, step] = obs
        chunk = np.asarray(policy(params, obs, jax.random.fold_in(key, step)))
        actions.append(chunk)
        obs, reward, terminated, truncated, info = envs.step(chunk.reshape(num_envs, *envs.single_action_space.shape))
        done = terminated | truncated
        rewards[:, step], dones[:, step] = reward, done
        if done.any():
            finished += list(zip(info["episode"]["r"][done], info["episode"]["l"][done], strict=True))
            obs[done] = envs.reset(options={"reset_mask": done})[0][done]
        progress.update(1)
    states[:, num_steps] = obs
    segments = {"states": states, "actions": np.stack(actions, axis=1), "rewards": rewards, "dones": dones}
    return segments, obs, finished


def evaluate(envs: list, policy, params, key, num_episodes: int, seed: int, videos=()) -> dict:
    """Run `num_episodes` episodes in rounds of len(envs) environments stepped in lockstep; one policy call per chunk.
    `success` is the share of episodes with a positive return: solved at some step, with success rewards. `videos`,
    empty lists, receive the frames of the first len(videos) episodes (rendering draws no random numbers)."""
    finished = []
    for first in range(0, num_episodes, len(envs)):
        active = envs[: min(len(envs), num_episodes - first)]
        obs = np.stack([env.reset(seed=seed + first + i)[0] for i, env in enumerate(active)])
        for i, env in enumerate(active):  # a recorded episode: a frame after the reset, then after each action
            env.frames = videos[first + i] if first + i < len(videos) else None
            if env.frames is not None:
                env.frames.append(env.render())
        episodes, step = [None] * len(active), 0
        while None in episodes:
            chunks = np.asarray(policy(params, obs, jax.random.fold_in(key, first * 100_000 + step)))
            step += 1
            for i, env in enumerate(active):
                if episodes[i] is None:
                    obs[i], _, _, _, info = env.step(chunks[i].reshape(env.action_space.shape))
                    episodes[i] = info.get("episode")
        finished += episodes
    returns, lengths = np.array([(episode["r"], episode["l"]) for episode in finished]).T
    return {"episodic_return": returns.mean(), "episodic_length": np.mean(lengths), "success": np.mean(returns > 0)}


def finetune_step(args: Args, iteration: int) -> int:
    """The logged x-axis after `iteration` fine-tuning iterations: pretraining steps, then environment steps."""
    return args.pretrain_steps + iteration * args.num_envs * args.steps_per_iteration * args.horizon


def evaluate_and_log(writer, run_dir, envs, policy, params, key, iteration: int, args: Args, sparse: bool) -> dict:
    """Evaluate after `iteration` fine-tuning iterations on fresh episodes and noise, and log `eval/*`."""
    if args.eval_episodes == 0:
        return {}
    step = finetune_step(args, iteration)
    seed = 10**6 * (args.seed + 1) + 1000 * iteration
    videos = [[] for _ in range(args.video_episodes if args.capture_video else 0)]
    result = evaluate(envs, policy, params, jax.random.fold_in(key, iteration), args.eval_episodes, seed, videos)
    if videos:
        save_videos(run_dir, f"eval_{step}", videos, envs[0], writer, step)
    for k, v in result.items():
        if k != "success" or sparse:
            writer.add_scalar(f"eval/{k}", v, step)
    success = f", success {result['success']:.3f}" if sparse else ""
    tqdm.write(f"iteration {iteration} (step {step}): eval return {result['episodic_return']:.1f}{success}")
    return result


def evaluate_saved_model(envs, policy, params, key, args: Args, sparse: bool) -> None:
    """--load-model: evaluate the saved policy, print its return and save the videos beside it."""
    videos = [[] for _ in range(args.video_episodes if args.capture_video else 0)]
    result = evaluate(envs, policy, params, key, args.eval_episodes, 10**6, videos)
    success = f", success {result['success']:.3f}" if sparse else ""
    print(f"{args.env_id}: return {result['episodic_return']:.1f}{success}")
    if videos:
        paths = save_videos(os.path.dirname(args.load_model), f"loaded_seed{args.seed}", videos, envs[0])
        print("videos:", *paths)


def log_iteration(writer, step: int, critic_infos: list, actor_infos: list, finished: list, charts: dict, sparse: bool):
    """An iteration's means of the critic's and the actor's losses and diagnostics, the exploration episodes that ended
    in it, and `charts` (learning rate, reward scale, timings)."""
    for k in critic_infos[0]:
        writer.add_scalar(f"losses/{k}", float(np.mean([info[k] for info in critic_infos])), step)
    for k in actor_infos[0] if actor_infos else []:
        group = "losses" if k.endswith("loss") else "charts"
        writer.add_scalar(f"{group}/{k}", float(np.mean([info[k] for info in actor_infos])), step)
    if finished:
        returns, lengths = np.array(finished).T
        charts = charts | {"episodic_return": returns.mean(), "episodic_length": lengths.mean()}
        if sparse:
            charts["success"] = np.mean(returns > 0)
    for k, v in charts.items():
        writer.add_scalar(f"charts/{k}", v, step)


# Saving and resuming: what a saved model and a checkpoint hold (the plumbing below writes and reads them). A checkpoint
# holds the phase, the normalisation, the replay and the state of that phase: the pretraining state and its step, or
# the fine-tuning states and counters.
MODEL_KEYS = ("actor", "normalizer")
CHECKPOINT_KEYS = ("phase", "normalizer", "buffer", "state")


def saved_model(actor_state: ActorState, critic_state: CriticState, normalizer: dict) -> dict:
    return {"actor": actor_state.params, "critic": critic_state.params, "normalizer": normalizer}


def saved_model_args(args: Args, saved: Args) -> Args:
    """The arguments of a run on a saved policy: with --load-model, the saved run's, to evaluate it on its own task with
    its own settings; with --pretrained, this run's with the saved architecture, to fine-tune it without pretraining."""
    if args.load_model:
        evaluation = dict(load_model=args.load_model, eval_episodes=args.eval_episodes, seed=args.seed)
        evaluation |= dict(capture_video=args.capture_video, video_episodes=args.video_episodes)
        return dataclasses.replace(saved, **evaluation, resume=None)
    architecture = ("horizon", "actor_hidden_dims", "time_dim", "actor_activation")
    return dataclasses.replace(args, pretrain_steps=0, **{f: getattr(saved, f) for f in architecture})


def finetune_start(params, critic_state: CriticState, tx_actor) -> dict:
    """Fine-tuning's first state: the pretrained policy, also the trust region's first reference, and a new critic."""
    actor_state = ActorState(params, tx_actor.init(params))
    return dict(actor=actor_state, old_actor=params, critic=critic_state, iteration=0, actor_updates=0, reward_ema=-1.0)


# Phase 1: pretraining by flow-matching behaviour cloning, in compiled chunks of `pretrain_log_every` steps.
def pretrain(run: dict, data: dict, key, normalizer: dict, buffer: dict, nets, run_dir, writer, args: Args, domain):
    """From the run's pretraining state to --pretrain-steps, with logs and checkpoints after the chunks; saves the EMA
    weights as `pretrained.flax` and returns them, and the writer (each checkpoint opens a new one)."""
    tx, schedule, ema_start = pretrain_optimizer(args, args.pretrain_steps, domain)
    chunk_fn = partial(pretrain_chunk, ema_start=ema_start, nets=nets, tx=tx, args=args)
    chunk_fn = jax.jit(chunk_fn, static_argnames="num_steps")
    state, step, device_data = run["pretrain"], run["step"], jax.device_put(data)
    progress = tqdm(total=args.pretrain_steps, initial=step, desc="pretrain", smoothing=0.1)
    last_checkpoint, every = step, args.checkpoint_every * args.pretrain_log_every
    while step < args.pretrain_steps:
        num_steps = min(args.pretrain_log_every, args.pretrain_steps - step)
        chunk_start = time.time()
        new_state, losses = chunk_fn(state, device_data, step, key, num_steps=num_steps)
        losses = np.asarray(losses)
        if not np.isfinite(losses).all():
            good = save_model(run_dir, "pretrained", dict(actor=state.ema_params, normalizer=normalizer), args)
            bad = step + 1 + int(np.argmax(~np.isfinite(losses)))
            stop_on_nan(bad, step, good, writer, progress, " (pretraining)")
        state, step = new_state, step + num_steps
        progress.update(num_steps)
        writer.add_scalar("losses/pretrain_loss", float(losses.mean()), step)
        writer.add_scalar("charts/learning_rate", float(schedule(step - 1)), step)
        writer.add_scalar("charts/SPS", num_steps / (time.time() - chunk_start), step)
        if checkpoint_due(step, last_checkpoint, every, args.pretrain_steps):
            resumable = dict(pretrain=state, step=step)
            content = dict(phase="pretrain", normalizer=normalizer, buffer=buffer, state=resumable)
            writer, last_checkpoint = save_checkpoint(run_dir, content, step, writer), step
    progress.close()
    path = save_model(run_dir, "pretrained", dict(actor=state.ema_params, normalizer=normalizer), args)
    print(f"pretrained policy (EMA weights) saved to {path}")
    return state.ema_params, writer


# Training loop
def main(args: Args) -> None:
    args = run_args(args)  # with --resume: the arguments saved in the run folder
    task = check_args(args)
    checkpoint = read_checkpoint(args, CHECKPOINT_KEYS) if args.resume else None
    model_path = args.load_model or (args.pretrained if checkpoint is None else None)
    if model_path:  # a saved policy, and the arguments of the run that saved it
        saved, model = read_model(model_path, MODEL_KEYS)
        args = saved_model_args(args, saved)
        task = resolve_task(args.env_id, args.dataset_id)
    args = apply_domain_defaults(args, task)
    domain = DOMAINS[task.domain]
    sparse = domain["sparse"]
    print(f"task: {task.env_id} (data {task.dataset_id}, {task.domain} settings of the official configs)")

    # TRY NOT TO MODIFY: seeding
    random.seed(args.seed)
    np.random.seed(args.seed)
    key = jax.random.PRNGKey(args.seed)
    init_key, pretrain_key, finetune_key, eval_key = jax.random.split(key, 4)

    # Where the run starts, and with it the normalisation: the checkpoint, the saved policy, or the dataset.
    probe = make_env(task, args.horizon, normalizer=None)  # for its spaces
    obs_dim, action_dim = probe.observation_space.shape[0], probe.action_space.shape[1]
    phase = checkpoint["phase"] if checkpoint else ("finetune" if model_path else "pretrain")
    normalizer = checkpoint["normalizer"] if checkpoint else model["normalizer"] if model_path else None
    if phase == "pretrain":
        data, dataset_normalizer = pretraining_data(task, args, obs_dim, action_dim)
        normalizer = dataset_normalizer if normalizer is None else normalizer
        if args.pretrain_steps is None:  # the official number of epochs
            steps_per_epoch = -(-len(data["starts"]) // args.pretrain_batch_size)
            args = dataclasses.replace(args, pretrain_steps=domain["pretrain_epochs"] * steps_per_epoch)
    normalizer = {k: np.asarray(v, np.float32) for k, v in normalizer.items()}
    nets = make_networks(args, action_dim)
    if model_path:
        pretrained_params = restore(init_actor(init_key, nets, obs_dim), model["actor"], model_path)
        print(f"policy: {model_path}")
    render_mode = "rgb_array" if args.capture_video else None
    num_eval_envs = min(args.num_envs, args.eval_episodes)
    eval_envs = [make_env(task, args.horizon, normalizer, render_mode) for _ in range(num_eval_envs)]
    policy = jax.jit(partial(act, nets, deterministic=domain["deterministic_eval"], flow_steps=args.flow_steps))
    if args.load_model:  # evaluate the saved policy, and stop
        evaluate_saved_model(eval_envs, policy, pretrained_params, eval_key, args, sparse)
        return

    # ALGO LOGIC: the training state of the run's phase, new or where the checkpoint left it; an empty replay
    tx_actor, actor_schedule = actor_optimizer(args)
    tx_critic = optax.adam(args.critic_lr)  # AdamW with weight decay 0
    critic_state = init_critic(jax.random.fold_in(init_key, 1), nets, obs_dim, tx_critic)
    if phase == "pretrain":
        params = init_actor(init_key, nets, obs_dim)
        tx_pretrain = pretrain_optimizer(args, args.pretrain_steps, domain)[0]  # the optimizer `pretrain` steps
        run = dict(pretrain=PretrainState(params, params, tx_pretrain.init(params)), step=0)
    else:
        params = pretrained_params if checkpoint is None else init_actor(init_key, nets, obs_dim)
        run = finetune_start(params, critic_state, tx_actor)
    episode_chunks = chunks_per_episode(task, args.horizon) if sparse else args.steps_per_iteration
    buffer = {"states": np.zeros((0, episode_chunks + 1, obs_dim), np.float32)} | {
        k: np.zeros((0, episode_chunks, *shape), np.float32)
        for k, shape in (("actions", (nets.actor.output_dim,)), ("rewards", ()), ("dones", ()))
    }
    if checkpoint is not None:
        run = restore(run, checkpoint["state"], os.path.join(args.resume, "checkpoint.msgpack"))
        buffer = {k: np.asarray(v) for k, v in checkpoint["buffer"].items()}
    global_step = run["step"] if phase == "pretrain" else finetune_step(args, run["iteration"])
    if checkpoint is not None:
        print(f"resuming {args.resume} from step {global_step} ({phase})")
    run_dir, writer = open_run(args, task.env_id, global_step)
    print(f"run folder: {run_dir}")
    start_time = time.time()

    if phase == "pretrain":
        params, writer = pretrain(run, data, pretrain_key, normalizer, buffer, nets, run_dir, writer, args, domain)
        run = finetune_start(params, critic_state, tx_actor)

    # Phase 2: fine-tuning, from the pretrained policy (evaluated first) or where the checkpoint left it.
    actor_state, old_params, critic_state = run["actor"], run["old_actor"], run["critic"]
    iteration, actor_updates, reward_ema = run["iteration"], run["actor_updates"], run["reward_ema"]
    resumed = phase == "finetune" and checkpoint is not None
    eval_result = {}
    if not resumed:
        eval_result = evaluate_and_log(writer, run_dir, eval_envs, policy, params, eval_key, 0, args, sparse)
    capacity = args.buffer_episodes * args.num_envs * (args.steps_per_iteration // episode_chunks)
    vector_env = partial(gym.vector.AsyncVectorEnv, context="spawn") if args.async_envs else gym.vector.SyncVectorEnv
    env_fns = [partial(make_env, task, args.horizon, normalizer) for _ in range(args.num_envs)]
    envs = vector_env(env_fns, autoreset_mode=gym.vector.AutoresetMode.DISABLED) if args.iterations else None
    explore_fn = jax.jit(partial(explore, nets, args=args))
    critic_fn = jax.jit(partial(critic_round, nets=nets, tx=tx_critic, args=args, clip=domain["q_target_clip"]))
    actor_fn = jax.jit(partial(actor_step, nets=nets, tx=tx_actor, args=args))
    global_step = finetune_step(args, iteration)
    obs = envs.reset(seed=args.seed if iteration == 0 else 10**5 * (args.seed + 1) + iteration)[0] if envs else None
    total, done = args.iterations * args.steps_per_iteration, iteration * args.steps_per_iteration
    progress = tqdm(total=total, initial=done, desc="fine-tune")
    finetune_start_time, first_step, last_checkpoint = time.time(), global_step, iteration if resumed else -1
    while iteration < args.iterations:
        if checkpoint_due(iteration, last_checkpoint, args.checkpoint_every, args.iterations):  # between iterations
            state = dict(actor=actor_state, old_actor=old_params, critic=critic_state, iteration=iteration)
            state |= dict(actor_updates=actor_updates, reward_ema=reward_ema)
            content = dict(phase="finetune", normalizer=normalizer, buffer=buffer, state=state)
            writer, last_checkpoint = save_checkpoint(run_dir, content, global_step, writer), iteration
        iteration += 1
        iteration_key, rng = jax.random.fold_in(finetune_key, iteration), np.random.default_rng([args.seed, iteration])
        global_step = finetune_step(args, iteration)

        # Rollout: exploration with the current policy; sparse-reward tasks start new episodes, seeded by the iteration.
        timer = time.time()
        progress.set_postfix_str(f"iteration {iteration}: rollout")
        if sparse:
            obs = envs.reset(seed=int(np.random.SeedSequence([args.seed, iteration]).generate_state(1)[0]))[0]
        rollout_key = jax.random.fold_in(iteration_key, 0)
        rollout = (actor_state.params, rollout_key, args.steps_per_iteration, progress)
        fresh, obs, finished = collect(envs, obs, explore_fn, *rollout)
        fresh = episodes_of(fresh, episode_chunks) if sparse else fresh
        seconds = dict(rollout_seconds=time.time() - timer, critic_seconds=0.0, actor_seconds=0.0)
        if args.reward_scale < 0:
            reward_ema = update_reward_ema(reward_ema, fresh["rewards"])
        reward_scale = reward_scale_from(reward_ema) if args.reward_scale < 0 else args.reward_scale

        # Critic rounds, each followed by actor steps once the critic has warmed up.
        critic_infos, actor_infos = [], []
        for round_index in range(args.critic_rounds):
            progress.set_postfix_str(f"iteration {iteration}: critic round {round_index + 1}/{args.critic_rounds}")
            round_key = jax.random.fold_in(iteration_key, round_index + 1)
            segments = mix_segments(rng, fresh, buffer, args, sparse)
            timer = time.time()
            batch = critic_batch(segments, reward_scale, sparse)
            new_critic, infos = critic_fn(critic_state, actor_state.params, batch, round_key)
            infos = jax.device_get(infos)
            seconds["critic_seconds"] += time.time() - timer
            if not np.isfinite(infos["critic_loss"]).all():
                good = save_model(run_dir, args.exp_name, saved_model(actor_state, critic_state, normalizer), args)
                where = f" (iteration {iteration}, critic round {round_index + 1})"
                stop_on_nan(global_step, global_step, good, writer, progress, where)
            critic_state = new_critic
            critic_infos.append({k: v[-1] for k, v in infos.items()})
            if iteration <= args.critic_warmup_iterations:
                continue
            timer = time.time()
            for j in range(args.actor_steps // args.critic_rounds):
                states, weights = actor_batch(segments, j, rng, args, sparse)
                step_key = jax.random.fold_in(round_key, 1000 + j)
                new_actor, info = actor_fn(actor_state, old_params, critic_state.params, states, weights, step_key)
                info = jax.device_get(info)
                if not np.isfinite(info["actor_loss"]):
                    good = save_model(run_dir, args.exp_name, saved_model(actor_state, critic_state, normalizer), args)
                    where = f" (iteration {iteration}, actor step {actor_updates + 1})"
                    stop_on_nan(global_step, global_step, good, writer, progress, where)
                actor_state, actor_updates = new_actor, actor_updates + 1
                actor_infos.append(info)
            seconds["actor_seconds"] += time.time() - timer
        buffer = append_segments(buffer, fresh, capacity)
        old_params = actor_state.params  # the trust region's reference for the next iteration

        # TRY NOT TO MODIFY: logging and evaluation
        charts = dict(actor_learning_rate=float(actor_schedule(max(actor_updates - 1, 0))), reward_scale=reward_scale)
        charts |= seconds | {"SPS": (global_step - first_step) / (time.time() - finetune_start_time)}
        log_iteration(writer, global_step, critic_infos, actor_infos, finished, charts, sparse)
        if iteration % args.eval_every == 0 or iteration == args.iterations:
            eval_result = evaluate_and_log(
                writer, run_dir, eval_envs, policy, actor_state.params, eval_key, iteration, args, sparse
            )
    progress.close()
    if envs:
        envs.close()

    if args.save_model:
        path = save_model(run_dir, args.exp_name, saved_model(actor_state, critic_state, normalizer), args)
        print(f"model saved to {path}")
    env_steps_per_second = (global_step - first_step) / max(time.time() - finetune_start_time, 1e-9)
    final = f"final return {eval_result['episodic_return']:.1f}" if eval_result else "no evaluation"
    final += f", success {eval_result['success']:.3f}" if eval_result and sparse else ""
    print(
        f"{task.env_id}: {final} over {args.eval_episodes} episodes | wall time {time.time() - start_time:.0f} s | "
        f"{env_steps_per_second:.0f} env steps/s while fine-tuning"
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
