# FM-IRL: Flow-Matching for Reward Modeling and Policy Regularization (arXiv:2510.09222); docs: docs/fm_irl.md
"""FM-IRL trains a Gaussian MLP student online with PPO from a few demonstrations. A label-conditioned flow-matching
teacher over (state, action), trained from scratch beside the student, is the discriminator that gives the reward, and
a regulariser pulls the student's mean action toward the teacher's own expert-label samples.

x-axis of every logged metric: environment steps. `--resume` restores the networks, optimisers, random keys,
normalisers and episode statistics, and for gymnasium MuJoCo tasks the simulator state of the episodes in progress, so
that a resumed run gives the numbers of an uninterrupted one; OGBench tasks keep state outside the simulator, so their
episodes in progress are restarted on resume.
"""

import dataclasses
import json
import os
import pickle
import random
import re
import sys
import time
import warnings
from collections import deque
from dataclasses import dataclass
from functools import partial
from typing import Literal, NamedTuple

import flax
import flax.linen as nn
import gymnasium as gym
import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import ogbench  # noqa: F401  (registers the OGBench environments)
import optax
import tyro
from tensorboardX import SummaryWriter
from tqdm import tqdm

from common_flow import euler_sample, flow_path

# OGBench's environments declare float64 bounds; gymnasium warns about the cast (in raw colour codes) at every env made.
warnings.filterwarnings("ignore", message=".*precision lowered by casting to float32", category=UserWarning)


@dataclass
class Args:
    """FM-IRL: a PPO student rewarded and regularised by a flow-matching teacher learned online from demonstrations."""

    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment"""
    seed: int = 0
    """seed of the experiment (Python, NumPy, JAX, environment resets, demonstration subsampling)"""
    track: bool = False
    """if toggled, this experiment will be tracked with Weights and Biases"""
    wandb_project_name: str = "flow-rl"
    """the wandb's project name"""
    wandb_entity: str | None = None
    """the entity (team) of wandb's project"""
    save_model: bool = False
    """whether to save the student, the teacher and the observation statistics into `runs/{run_name}`"""
    load_model: str | None = None
    """path of a saved `.flax` file: skip training, load it (with the args.json beside it) and evaluate the student"""
    checkpoint_every: int = 0
    """write `checkpoint.msgpack` into the run folder every this many environment steps (rounded up to whole
    iterations); 0: never"""
    resume: str | None = None
    """a run folder with a checkpoint: continue that run with its saved arguments (no other flag allowed)"""

    # Environment and data
    env_id: str = "hopper"
    """an alias (hopper, walker2d, pointmaze-medium, cube-single, antmaze-large; OGBench ones optionally with
    -taskN), a gymnasium MuJoCo id (with a Minari dataset) or an OGBench single-task id"""
    dataset_id: str | None = None
    """a Minari dataset id, or an OGBench demonstration file (`.npz`, or its name in --dataset-dir); default: the
    task's (`mujoco/<env>/expert-v0`, `<env>-singletask-taskN-demos-v0`)"""
    dataset_dir: str = "~/.ogbench/data"
    """folder of the OGBench demonstration files made by `benchmark/make_dataset.py --demos`"""
    num_demos: int | None = None
    """demonstration trajectories used (the first ones of the dataset); default: the paper's value for the task"""
    demo_noise: float | None = None
    """train on the noisier demonstrations of `make_dataset.py --demos --noise X`, read from
    `<dataset-dir>/demos-noise<X>/` (the file's noise must be X); default: the demonstrations in --dataset-dir"""
    total_timesteps: int | None = None
    """environment steps of training; default: the paper's value for the task"""
    num_envs: int = 32
    """parallel training environments (even: the antithetic time pairs of the reward split each batch in halves)"""
    num_steps: int | None = None
    """rollout length per environment and iteration; default: the paper's value for the task"""
    eval_every: int | None = None
    """evaluate every this many environment steps (rounded up to whole iterations) and at the end; default: the
    paper's value for the task"""
    eval_episodes: int | None = None
    """episodes of each evaluation (stochastic student, frozen observation statistics); 0: no evaluation; default:
    the paper's value for the task"""
    num_eval_envs: int = 10
    """evaluation environments stepped in lockstep with one batched student call per step"""

    # Algorithm specific arguments
    learning_rate: float = 1e-4
    """Adam learning rate of the student (actor, log-std and critic together)"""
    anneal_lr: bool = True
    """decay the student's learning rate linearly to 0, once per iteration"""
    num_epochs: int = 10
    """PPO epochs over each rollout"""
    num_minibatches: int = 32
    """PPO minibatches per epoch"""
    gamma: float = 0.99
    """discount factor (of GAE and of the return whose running std scales the reward)"""
    gae_lambda: float = 0.95
    """lambda of generalised advantage estimation"""
    clip_coef: float = 0.2
    """PPO ratio clip and value clip"""
    ent_coef: float = 0.001
    """entropy bonus coefficient"""
    vf_coef: float = 0.5
    """value loss coefficient (on top of the 0.5 inside the value loss, as in the official code)"""
    max_grad_norm: float = 0.5
    """global gradient-norm clip of the student"""
    adam_eps: float = 1e-12
    """Adam epsilon of the student (the official default)"""
    hidden_dim: int = 256
    """width of the student's two tanh hidden layers (actor and critic)"""
    proper_time_limits: bool | None = None
    """time-limit truncations bootstrap from V instead of ending the return; default: the paper's value for the task"""
    clip_actions: bool | None = None
    """store the sampled action clipped to the action box (its log-prob stays that of the unclipped sample); the
    environment always executes the clipped action; default: the paper's value for the task"""
    teacher_hidden_dim: int = 1024
    """width of the teacher's residual blocks"""
    teacher_depth: int = 4
    """number of teacher layers of width --teacher-hidden-dim"""
    teacher_lr: float | None = None
    """Adam learning rate of the teacher; default: the paper's value for the task"""
    teacher_batch_size: int | None = None
    """expert and agent pairs per teacher step (even); default: the paper's value for the task"""
    label_dim: int | None = None
    """length of the all-ones (expert) or all-zeros (agent) label vector; default: the paper's value for the task"""
    demo_frac: float | None = None
    """fraction of the demonstration transitions kept (a random subset); default: the paper's value for the task"""
    fm_time_levels: int = 100
    """the teacher is trained at times k / n, k in 0..n-1, drawn in antithetic pairs (k, n-1-k)"""
    time_embedding: Literal["released", "sinusoidal"] = "released"
    """'released': the official time MLP whose LayerNorm over 2 features makes it nearly binary; 'sinusoidal': an
    option (a deviation) with 8 sine/cosine frequencies"""
    disc_bc_coef: float = 1.0
    """weight of the flow-matching loss on expert pairs in the teacher loss; 0: the ablation without it"""
    reward_bonus: float | None = None
    """constant added to every reward (the official +20 survival bonus of locomotion); default: the paper's value"""
    regularizer_coef: float = 1.0
    """beta of the regulariser beta * 0.5 * MSE(student mean, teacher action); 0: the ablation without it"""
    regularizer_samples: int | None = None
    """teacher (state, action) samples drawn fresh at every PPO minibatch; default: the paper's value for the task"""
    regularizer_flow_steps: int = 40
    """Euler steps of the teacher's sampler"""


class TaskSettings(NamedTuple):
    """One paper task's values in the official configs (`configs/<task>/fmirl.yaml` and the parser defaults)."""

    total_timesteps: int
    num_steps: int
    teacher_lr: float
    teacher_batch_size: int
    label_dim: int
    demo_frac: float
    reward_bonus: float
    proper_time_limits: bool
    clip_actions: bool
    regularizer_samples: int
    eval_every: int  # the official eval interval in iterations x the official rollout size
    eval_episodes: int


PAPER_TASKS = {
    "Hopper": TaskSettings(25_000_000, 128, 1e-4, 128, 10, 1.0, 20.0, False, True, 1024, 2000 * 4096, 2),
    "Walker2d": TaskSettings(8_000_000, 128, 1e-4, 128, 10, 1.0, 20.0, False, True, 1024, 2000 * 4096, 2),
    "Maze2d": TaskSettings(5_000_000, 500, 1e-3, 64, 1, 0.5, 0.0, True, False, 512, 16_000, 100),
    "Fetch-pick": TaskSettings(10_000_000, 500, 1e-3, 64, 1, 0.5, 0.0, True, False, 1024, 200 * 16_000, 100),
    "Ant-goal": TaskSettings(5_000_000, 500, 1e-3, 64, 1, 0.5, 0.0, True, False, 1024, 200 * 16_000, 50),
}
# alias: (paper task, environment, default number of demonstrations). Locomotion learns from one expert trajectory,
# as in the paper. The goal-reaching tasks are OGBench stand-ins with oracle demonstrations: as many as hold about
# 10,000 transitions, the size of the official Fetch-pick and Hand-rotate files (those of Maze2d and Ant-goal are not
# known), of which demo_frac = 0.5 is used. Hand-rotate has no stand-in.
ALIASES = {
    "hopper": ("Hopper", "Hopper-v5", 1),
    "walker2d": ("Walker2d", "Walker2d-v5", 1),
    "pointmaze-medium": ("Maze2d", "pointmaze-medium-singletask-task1-v0", 51),  # about 196 steps per demonstration
    "cube-single": ("Fetch-pick", "cube-single-singletask-task2-v0", 156),  # about 64 steps
    "antmaze-large": ("Ant-goal", "antmaze-large-singletask-task1-v0", 20),  # a guess of about 500 steps
}
OGBENCH_FAMILIES = {
    "pointmaze": "Maze2d",
    "antmaze": "Ant-goal",
    "cube": "Fetch-pick",
    "scene": "Fetch-pick",
    "puzzle": "Fetch-pick",
}


class Task(NamedTuple):
    paper_task: str  # the key of PAPER_TASKS whose values apply
    env_id: str  # gymnasium id of the training and evaluation environments
    dataset: str  # Minari dataset id, or the name of the OGBench demonstration file
    num_demos: int | None  # default number of demonstrations (None: every one in the file)

    @property
    def locomotion(self) -> bool:
        return self.dataset.startswith("mujoco/")


def resolve_task(env_id: str) -> Task | None:
    """Alias, gymnasium MuJoCo id or OGBench single-task id -> Task; None if none of these."""
    alias = re.fullmatch(r"(?P<name>[a-z0-9-]+?)(-task(?P<task>[1-5]))?", env_id)
    if alias and alias["name"] in ALIASES:
        paper_task, full_id, num_demos = ALIASES[alias["name"]]
        if alias["task"] and full_id.endswith("-v5"):
            return None
        if alias["task"]:
            full_id = re.sub(r"task\d", f"task{alias['task']}", full_id)
        return resolve_task(full_id)._replace(num_demos=num_demos)
    mujoco_id = re.fullmatch(r"(?P<name>[A-Z][A-Za-z0-9]*)-v\d+", env_id)
    if mujoco_id and env_id in gym.registry and "mujoco" in str(gym.registry[env_id].entry_point):
        name = mujoco_id["name"]
        return Task("Walker2d" if name == "Walker2d" else "Hopper", env_id, f"mujoco/{name.lower()}/expert-v0", 1)
    ogb = re.fullmatch(r"(?P<base>[a-z0-9-]+?)(-navigate|-play)?-singletask(-task(?P<task>[1-5]))?-v0", env_id)
    if ogb and ogb["base"].split("-")[0] in OGBENCH_FAMILIES and f"{ogb['base']}-singletask-v0" in gym.registry:
        task = ogb["task"] or gym.make(f"{ogb['base']}-singletask-v0").unwrapped._reward_task_id
        full_id = f"{ogb['base']}-singletask-task{task}-v0"
        return Task(OGBENCH_FAMILIES[ogb["base"].split("-")[0]], full_id, full_id.replace("-v0", "-demos-v0"), None)
    return None


def with_task_defaults(args: Args, task: Task) -> Args:
    """Fill every unset per-task flag with the paper's value for the task; an explicit flag wins."""
    settings = PAPER_TASKS[task.paper_task]._asdict()
    values = {k: v for k, v in settings.items() if getattr(args, k) is None}
    return dataclasses.replace(args, env_id=task.env_id, num_demos=args.num_demos or task.num_demos, **values)


# Data: the demonstrations
def load_demos(task: Task, args: Args, obs_dim: int, action_dim: int) -> dict:
    """Demonstration (s, a) pairs of the task, with the official random subset of transitions (`demo_frac`)."""
    if task.locomotion:
        source = args.dataset_id or task.dataset
        observations, actions = read_minari_demos(source, args.num_demos)
    else:
        if args.dataset_id and args.dataset_id.endswith(".npz"):
            source = os.path.expanduser(args.dataset_id)
        else:
            folder = os.path.expanduser(args.dataset_dir)
            if args.demo_noise is not None:
                folder = os.path.join(folder, f"demos-noise{args.demo_noise:g}")
            source = os.path.join(folder, f"{args.dataset_id or task.dataset}.npz")
        observations, actions = read_demo_file(source, task, args)
    check_demos(source, observations, actions, obs_dim, action_dim, args)
    keep = np.arange(len(observations))
    np.random.default_rng(args.seed).shuffle(keep)
    keep = keep[: int(len(keep) * args.demo_frac)]
    print(f"demonstrations: {source}, {len(keep)} of their {len(observations)} steps used")
    return {"observations": observations[keep], "actions": actions[keep]}


# ALGO LOGIC: networks and training state
xavier_uniform = nn.initializers.xavier_uniform()


class Teacher(nn.Module):
    """Velocity v_theta(x, c, tau) of the label-conditioned flow over x = [normalised s; a] (the official network)."""

    data_dim: int
    hidden_dim: int = 1024
    depth: int = 4
    time_embedding: str = "released"

    @nn.compact
    def __call__(self, x: jax.Array, label: jax.Array, t: jax.Array) -> jax.Array:
        dense = partial(nn.Dense, kernel_init=xavier_uniform)
        layer_norm = partial(nn.LayerNorm, epsilon=1e-5)
        if self.time_embedding == "released":
            # LayerNorm over 2 features maps (u1, u2) to +-(1, -1) unless u1 ~ u2: nearly a step function of tau.
            hidden = nn.silu(dense(64, name="time_hidden")(t[:, None]))
            t_embed = layer_norm(name="time_norm")(dense(2, name="time_out")(hidden))
        else:
            frequencies = 1000.0 * jnp.exp(-jnp.log(10_000.0) * jnp.arange(8) / 7)
            t_embed = jnp.concatenate([jnp.sin(t[:, None] * frequencies), jnp.cos(t[:, None] * frequencies)], -1)
        h = jnp.concatenate([x, label, t_embed], axis=-1)
        h = nn.silu(layer_norm(name="input_norm")(dense(self.hidden_dim, name="input")(h)))
        for i in range(self.depth - 1):
            h = h + nn.silu(layer_norm(name=f"hidden_norm_{i}")(dense(self.hidden_dim, name=f"hidden_{i}")(h)))
        return dense(self.data_dim, name="output")(h)


class Actor(nn.Module):
    """Gaussian policy: mean = MLP(s) (two tanh layers), state-independent log-std starting at 0."""

    action_dim: int
    hidden_dim: int = 256

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = obs
        for i in range(2):
            h = nn.tanh(
                nn.Dense(self.hidden_dim, kernel_init=nn.initializers.orthogonal(np.sqrt(2)), name=f"hidden_{i}")(h)
            )
        mean = nn.Dense(self.action_dim, kernel_init=nn.initializers.orthogonal(1.0), name="mean")(h)
        return mean, self.param("log_std", nn.initializers.zeros, (self.action_dim,))


class Critic(nn.Module):
    hidden_dim: int = 256

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        h = obs
        for i in range(2):
            h = nn.tanh(
                nn.Dense(self.hidden_dim, kernel_init=nn.initializers.orthogonal(np.sqrt(2)), name=f"hidden_{i}")(h)
            )
        return nn.Dense(1, kernel_init=nn.initializers.orthogonal(np.sqrt(2)), name="value")(h)[..., 0]


class Networks(NamedTuple):
    teacher: Teacher
    actor: Actor
    critic: Critic
    obs_dim: int
    action_dim: int


class TrainState(NamedTuple):
    student: dict  # {"actor", "critic"}, one Adam
    student_opt: optax.OptState
    teacher: dict
    teacher_opt: optax.OptState


class RunningMeanStd(NamedTuple):
    """Running mean and variance of the official baselines code (float32, count starting at 1e-4)."""

    mean: np.ndarray
    var: np.ndarray
    count: float


def update_running_stats(stats: RunningMeanStd, batch) -> RunningMeanStd:
    """Merge the population moments of `batch` (first axis) into `stats` (works on NumPy and JAX arrays)."""
    batch_mean, batch_var, n = batch.mean(0), batch.var(0), batch.shape[0]
    delta, total = batch_mean - stats.mean, stats.count + n
    m2 = stats.var * stats.count + batch_var * n + delta**2 * stats.count * n / total
    return RunningMeanStd(stats.mean + delta * n / total, m2 / total, total)


def normalize_obs(obs, stats: RunningMeanStd):
    """The official VecNormalize observation filter: clip((s - mean) / sqrt(var + 1e-8), -10, 10)."""
    return ((obs - stats.mean) / (stats.var + 1e-8) ** 0.5).clip(-10.0, 10.0)


def make_networks(args: Args, obs_dim: int, action_dim: int):
    nets = Networks(
        teacher=Teacher(obs_dim + action_dim, args.teacher_hidden_dim, args.teacher_depth, args.time_embedding),
        actor=Actor(action_dim, args.hidden_dim),
        critic=Critic(args.hidden_dim),
        obs_dim=obs_dim,
        action_dim=action_dim,
    )
    # The student's learning rate is applied outside optax, so that it can decay once per iteration.
    return nets, optax.scale_by_adam(eps=args.adam_eps), optax.adam(args.teacher_lr)


def init_train_state(key, nets: Networks, student_tx, teacher_tx, args: Args) -> TrainState:
    actor_key, critic_key, teacher_key = jax.random.split(key, 3)
    obs = jnp.zeros((1, nets.obs_dim))
    x, label = jnp.zeros((2, nets.obs_dim + nets.action_dim)), jnp.zeros((2, args.label_dim))
    student = {"actor": nets.actor.init(actor_key, obs), "critic": nets.critic.init(critic_key, obs)}
    teacher = nets.teacher.init(teacher_key, x, label, jnp.zeros(2))
    return TrainState(student, student_tx.init(student), teacher, teacher_tx.init(teacher))


# ALGO LOGIC: teacher (flow matching), discriminator and reward
def antithetic_times(key, batch_size: int, levels: int):
    """tau = k / n with k uniform in 0..n-1 for the first half and n-1-k for the second (tau = 1 is never used)."""
    half = jax.random.randint(key, (batch_size // 2,), 0, levels)
    return jnp.concatenate([half, levels - 1 - half]).astype(jnp.float32) / levels


def flow_matching_losses(teacher: Teacher, params, x1, label: float, x0, t, label_dim: int):
    """Per-sample loss l_c(x1) = mean over dims of (v(x_t, c, tau) - (x1 - x0))^2, for given noise and times."""
    x_t, target_velocity = flow_path(x0, x1, t[:, None])
    labels = jnp.full((x1.shape[0], label_dim), label, dtype=x1.dtype)
    return jnp.mean((teacher.apply(params, x_t, labels, t) - target_velocity) ** 2, axis=-1)


def sampled_flow_matching_losses(teacher: Teacher, params, x1, label: float, key, args: Args):
    """l_c(x1) with one fresh (x0, tau) draw per sample, tau from the antithetic grid."""
    noise_key, time_key = jax.random.split(key)
    x0 = jax.random.normal(noise_key, x1.shape)
    t = antithetic_times(time_key, x1.shape[0], args.fm_time_levels)
    return flow_matching_losses(teacher, params, x1, label, x0, t, args.label_dim)


def discriminator_logits(teacher: Teacher, params, x1, key, args: Args):
    """logit = l_0 - l_1, so that D = sigmoid(logit) = exp(-l_1) / (exp(-l_1) + exp(-l_0)); independent draws."""
    expert_key, agent_key = jax.random.split(key)
    expert_label_loss = sampled_flow_matching_losses(teacher, params, x1, 1.0, expert_key, args)
    agent_label_loss = sampled_flow_matching_losses(teacher, params, x1, 0.0, agent_key, args)
    return agent_label_loss - expert_label_loss


def airl_reward(logits):
    """log(D + 1e-20) - log(1 - D + 1e-20) in float32, as the official code computes it (it saturates near +-46).

    1 - D is 0 or at least 6e-8, so max(1 - D, 1e-20) equals (1 - D) + 1e-20; XLA would fold that 1e-20 into the 1."""
    d = jax.nn.sigmoid(logits)
    return jnp.log(d + 1e-20) - jnp.log(jnp.maximum(1 - d, 1e-20))


def teacher_loss(params, expert_x, agent_x, key, nets: Networks, args: Args):
    """BCE(D(expert), 1) + BCE(D(agent), 0) + disc_bc_coef * l_1(expert), the last with a third independent draw."""
    expert_key, agent_key, bc_key = jax.random.split(key, 3)
    expert_logits = discriminator_logits(nets.teacher, params, expert_x, expert_key, args)
    agent_logits = discriminator_logits(nets.teacher, params, agent_x, agent_key, args)
    expert_loss = jnp.mean(jax.nn.softplus(-expert_logits))  # -log D
    agent_loss = jnp.mean(jax.nn.softplus(agent_logits))  # -log(1 - D)
    bc_loss = jnp.mean(sampled_flow_matching_losses(nets.teacher, params, expert_x, 1.0, bc_key, args))
    loss = expert_loss + agent_loss + args.disc_bc_coef * bc_loss
    info = {
        "teacher_loss": loss,
        "expert_loss": expert_loss,
        "agent_loss": agent_loss,
        "disc_bc_loss": bc_loss,
        "expert_disc_val": jax.nn.sigmoid(expert_logits).mean(),
        "agent_disc_val": jax.nn.sigmoid(agent_logits).mean(),
        "agent_reward": airl_reward(agent_logits).mean(),
    }
    return loss, info


def teacher_update(
    state: TrainState, demos, obs_stats, agent_obs, agent_actions, key, num_updates: int, nets, teacher_tx, args
):
    """One pass of the official zip(shuffled expert batches, shuffled rollout batches): `num_updates` Adam steps.

    Expert states are normalised with the current observation statistics; agent states are those of the rollout."""
    expert_x = jnp.concatenate([normalize_obs(demos["observations"], obs_stats), demos["actions"]], axis=-1)
    agent_x = jnp.concatenate([agent_obs, agent_actions], axis=-1).reshape(-1, expert_x.shape[-1])
    key, expert_key, agent_key = jax.random.split(key, 3)
    shape = (num_updates, args.teacher_batch_size)
    expert_idx = jax.random.permutation(expert_key, expert_x.shape[0])[: np.prod(shape)].reshape(shape)
    agent_idx = jax.random.permutation(agent_key, agent_x.shape[0])[: np.prod(shape)].reshape(shape)

    def step(carry, idx):
        params, opt_state, key = carry
        key, loss_key = jax.random.split(key)
        grads, info = jax.grad(teacher_loss, has_aux=True)(
            params, expert_x[idx[0]], agent_x[idx[1]], loss_key, nets, args
        )
        updates, opt_state = teacher_tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state, key), info

    (params, opt_state, _), infos = jax.lax.scan(step, (state.teacher, state.teacher_opt, key), (expert_idx, agent_idx))
    return state._replace(teacher=params, teacher_opt=opt_state), jax.tree.map(jnp.mean, infos)


class RewardNormalizer(NamedTuple):
    stats: RunningMeanStd  # of the discounted return R, shape ()
    returns: jax.Array  # R per environment, carried across iterations


def normalize_rewards(raw_rewards, start_masks, normalizer: RewardNormalizer, gamma: float):
    """r / sqrt(var(R) + 1e-8) with R <- R * mask * gamma + r per environment and the running variance of R updated
    once per time step with the R of all environments (not centred, not clipped)."""

    def step(normalizer, inputs):
        reward, mask = inputs
        returns = normalizer.returns * mask * gamma + reward
        stats = update_running_stats(normalizer.stats, returns)
        return RewardNormalizer(stats, returns), reward / jnp.sqrt(stats.var + 1e-8)

    normalizer, rewards = jax.lax.scan(step, normalizer, (raw_rewards, start_masks))
    return rewards, normalizer


def relabel_rewards(teacher_params, obs, actions, start_masks, normalizer: RewardNormalizer, key, nets, args):
    """Rewards of the whole rollout from the updated teacher, with fresh draws for each time step's slice of
    environments (the batch in which the official loop pairs antithetic times), then normalised."""
    keys = jax.random.split(key, obs.shape[0])
    x = jnp.concatenate([obs, actions], axis=-1)
    logits = jax.vmap(lambda x_t, k: discriminator_logits(nets.teacher, teacher_params, x_t, k, args))(x, keys)
    raw_rewards = airl_reward(logits) + args.reward_bonus
    rewards, normalizer = normalize_rewards(raw_rewards, start_masks, normalizer, args.gamma)
    return rewards, normalizer, {"raw_reward": raw_rewards.mean(), "reward": rewards.mean()}


# ALGO LOGIC: student (PPO with the teacher regulariser)
def teacher_samples(teacher_params, key, num_samples: int, nets: Networks, args: Args):
    """(s_G, a_G) from the teacher's expert label: 40 Euler steps of dx/dtau = v(x, 1, tau) from N(0, I)."""
    teacher_params = jax.lax.stop_gradient(teacher_params)  # the official code samples under no_grad
    labels = jnp.ones((num_samples, args.label_dim))
    x0 = jax.random.normal(key, (num_samples, nets.obs_dim + nets.action_dim))
    velocity = lambda x, t: nets.teacher.apply(teacher_params, x, labels, t[:, 0])  # noqa: E731
    x1 = euler_sample(velocity, x0, args.regularizer_flow_steps, clip=False)
    return x1[:, : nets.obs_dim], x1[:, nets.obs_dim :]


def regularizer_loss(actor_params, states, actions, nets: Networks, args: Args):
    """beta * 0.5 * mean over samples and action dims of (student mean(s_G) - a_G)^2; the log-std plays no part."""
    return args.regularizer_coef * 0.5 * jnp.mean((nets.actor.apply(actor_params, states)[0] - actions) ** 2)


def compute_gae(rewards, values, next_value, next_masks, time_limit_masks, args: Args):
    """GAE of the official storage, with next_masks[t] = 1 - done_t. With proper time limits the advantage of a step
    that hit the time limit is zeroed (time_limit_masks[t] = 0), so its return target is V(s_t)."""
    next_values = jnp.concatenate([values[1:], next_value[None]])

    def step(gae, inputs):
        reward, value, next_value, mask, time_limit_mask = inputs
        delta = reward + args.gamma * next_value * mask - value
        gae = delta + args.gamma * args.gae_lambda * mask * gae
        gae = gae * time_limit_mask if args.proper_time_limits else gae
        return gae, gae

    inputs = (rewards, values, next_values, next_masks, time_limit_masks)
    _, advantages = jax.lax.scan(step, jnp.zeros_like(next_value), inputs, reverse=True)
    return advantages, advantages + values


def gaussian_log_prob(mean, log_std, action):
    return jnp.sum(-0.5 * ((action - mean) / jnp.exp(log_std)) ** 2 - log_std - 0.5 * jnp.log(2 * jnp.pi), axis=-1)


def ppo_loss(student, batch, reg_states, reg_actions, nets: Networks, args: Args):
    mean, log_std = nets.actor.apply(student["actor"], batch["obs"])
    value = nets.critic.apply(student["critic"], batch["obs"])
    log_ratio = gaussian_log_prob(mean, log_std, batch["actions"]) - batch["log_probs"]
    ratio = jnp.exp(log_ratio)
    clipped_ratio = jnp.clip(ratio, 1 - args.clip_coef, 1 + args.clip_coef)
    policy_loss = -jnp.mean(jnp.minimum(ratio * batch["advantages"], clipped_ratio * batch["advantages"]))
    value_clipped = batch["values"] + jnp.clip(value - batch["values"], -args.clip_coef, args.clip_coef)
    value_loss = 0.5 * jnp.mean(jnp.maximum((value - batch["returns"]) ** 2, (value_clipped - batch["returns"]) ** 2))
    entropy = jnp.sum(0.5 + 0.5 * jnp.log(2 * jnp.pi) + log_std)  # the same for every state
    reg_loss = regularizer_loss(student["actor"], reg_states, reg_actions, nets, args) if args.regularizer_coef else 0.0
    loss = policy_loss + args.vf_coef * value_loss - args.ent_coef * entropy + reg_loss
    info = {
        "ppo_loss": loss,
        "policy_loss": policy_loss,
        "value_loss": value_loss,
        "entropy": entropy,
        "regularizer_loss": reg_loss,
        "approx_kl": jnp.mean(ratio - 1 - log_ratio),
        "clipfrac": jnp.mean(jnp.abs(ratio - 1) > args.clip_coef),
    }
    return loss, info


class Rollout(NamedTuple):
    obs: np.ndarray  # (T, N, S) normalised observations
    actions: np.ndarray  # (T, N, A) as stored (clipped for locomotion)
    log_probs: np.ndarray  # (T, N) of the unclipped sample
    values: np.ndarray  # (T, N)
    dones: np.ndarray  # (T, N) step t ended its episode (terminated or truncated)
    time_limits: np.ndarray  # (T, N) step t hit the time limit
    start_masks: np.ndarray  # (T, N) 0 where obs t starts an episode
    last_obs: np.ndarray  # (N, S) for the bootstrap value


def ppo_update(state: TrainState, rollout: Rollout, rewards, learning_rate, key, nets, student_tx, args: Args):
    """GAE, then `num_epochs` x `num_minibatches` Adam steps, each with fresh teacher samples for the regulariser."""
    next_value = nets.critic.apply(state.student["critic"], rollout.last_obs)
    advantages, returns = compute_gae(
        rewards, rollout.values, next_value, 1 - rollout.dones, 1 - rollout.time_limits, args
    )
    advantages = (advantages - advantages.mean()) / (advantages.std(ddof=1) + 1e-5)  # torch's unbiased std
    flat = lambda x: x.reshape(-1, *x.shape[2:])  # noqa: E731
    data = {"obs": flat(rollout.obs), "actions": flat(rollout.actions), "log_probs": flat(rollout.log_probs)}
    data.update(values=flat(rollout.values), advantages=flat(advantages), returns=flat(returns))
    minibatch_size = advantages.size // args.num_minibatches

    def minibatch_step(carry, idx):
        student, opt_state, key = carry
        key, reg_key = jax.random.split(key)
        reg_states, reg_actions = None, None
        if args.regularizer_coef:
            reg_states, reg_actions = teacher_samples(state.teacher, reg_key, args.regularizer_samples, nets, args)
        batch = jax.tree.map(lambda x: x[idx], data)
        grads, info = jax.grad(ppo_loss, has_aux=True)(student, batch, reg_states, reg_actions, nets, args)
        grad_norm = optax.global_norm(grads)  # clipped as torch's clip_grad_norm_ does
        grads = jax.tree.map(lambda g: g * jnp.minimum(1.0, args.max_grad_norm / (grad_norm + 1e-6)), grads)
        updates, opt_state = student_tx.update(grads, opt_state)
        student = jax.tree.map(lambda p, u: p - learning_rate * u, student, updates)
        return (student, opt_state, key), info

    def epoch(carry, epoch_key):
        order = jax.random.permutation(epoch_key, advantages.size)[: args.num_minibatches * minibatch_size]
        return jax.lax.scan(minibatch_step, carry, order.reshape(args.num_minibatches, minibatch_size))

    key, minibatch_key = jax.random.split(key)
    carry = (state.student, state.student_opt, minibatch_key)
    (student, opt_state, _), infos = jax.lax.scan(epoch, carry, jax.random.split(key, args.num_epochs))
    info = jax.tree.map(jnp.mean, infos)
    return state._replace(student=student, student_opt=opt_state), info


# Acting and evaluation (host side)
def act(student, obs, key, step, nets: Networks):
    """Sample a ~ N(mean(s), std) for every environment: the action, its log-prob and V(s)."""
    mean, log_std = nets.actor.apply(student["actor"], obs)
    action = mean + jnp.exp(log_std) * jax.random.normal(jax.random.fold_in(key, step), mean.shape)
    return action, gaussian_log_prob(mean, log_std, action), nets.critic.apply(student["critic"], obs)


class TrainingEnvs:
    """The training environments as the official VecNormalize wrapper shows them: auto-reset in the same step, and
    observations normalised with running statistics that every reset and step update. gymnasium's
    RecordEpisodeStatistics keeps the returns and lengths of the last 100 episodes; their successes are kept beside."""

    def __init__(self, env_id: str, num_envs: int, seed: int):
        envs = gym.vector.SyncVectorEnv(
            [partial(gym.make, env_id)] * num_envs, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP
        )
        self.envs = gym.wrappers.vector.RecordEpisodeStatistics(envs, buffer_length=100)
        self.successes = deque(maxlen=100)
        self.low, self.high = envs.single_action_space.low, envs.single_action_space.high
        obs_dim = envs.single_observation_space.shape[0]
        self.obs_stats = RunningMeanStd(np.zeros(obs_dim, np.float32), np.ones(obs_dim, np.float32), 1e-4)
        self.obs = self.observe(self.envs.reset(seed=[seed + i for i in range(num_envs)])[0])
        self.prev_done = np.ones(num_envs, bool)  # the first observation starts an episode

    def observe(self, raw_obs) -> np.ndarray:
        raw_obs = raw_obs.astype(np.float32)
        self.obs_stats = update_running_stats(self.obs_stats, raw_obs)
        return normalize_obs(raw_obs, self.obs_stats).astype(np.float32)

    def step(self, actions) -> tuple[np.ndarray, np.ndarray]:
        raw_obs, _, terminated, truncated, info = self.envs.step(np.clip(actions, self.low, self.high))
        done = terminated | truncated
        for i in np.flatnonzero(done):
            self.successes.append(float(info["final_info"].get("success", np.full(len(done), np.nan))[i]))
        self.obs, self.prev_done = self.observe(raw_obs), done
        return done, truncated

    def episode_stats(self) -> dict:
        """Mean return, length (and success) of the last 100 training episodes: the metrics of the paper's curves."""
        if not self.successes:
            return {}
        stats = {"episodic_return": np.mean(self.envs.return_queue), "episodic_length": np.mean(self.envs.length_queue)}
        return stats | ({"success": np.mean(self.successes)} if not np.isnan(self.successes).any() else {})


def collect_rollout(train_envs: TrainingEnvs, policy, student, key, num_steps: int, clip_actions: bool, progress=None):
    """`num_steps` steps of every environment, one student call per step for all of them."""
    n, obs_dim = train_envs.obs.shape
    action_dim = train_envs.low.shape[0]
    obs, actions = np.zeros((num_steps, n, obs_dim), np.float32), np.zeros((num_steps, n, action_dim), np.float32)
    log_probs, values = np.zeros((num_steps, n), np.float32), np.zeros((num_steps, n), np.float32)
    dones, time_limits, start_masks = (np.zeros((num_steps, n), np.float32) for _ in range(3))
    for t in range(num_steps):
        action, log_probs[t], values[t] = jax.device_get(policy(student, train_envs.obs, key, t))
        obs[t], start_masks[t] = train_envs.obs, 1.0 - train_envs.prev_done
        actions[t] = np.clip(action, train_envs.low, train_envs.high) if clip_actions else action
        dones[t], time_limits[t] = train_envs.step(action)
        if progress is not None:
            progress.update(n)
    return Rollout(obs, actions, log_probs, values, dones, time_limits, start_masks, train_envs.obs.copy())


def evaluate(envs, policy, student, obs_stats, key, num_episodes: int, seed: int) -> dict:
    """Episodes in rounds of len(envs) environments (wrapped in RecordEpisodeStatistics) in lockstep; stochastic
    student, frozen observation statistics."""
    returns, lengths, successes = np.zeros(num_episodes), np.zeros(num_episodes), np.zeros(num_episodes)
    low, high = envs[0].action_space.low, envs[0].action_space.high
    for first in range(0, num_episodes, len(envs)):
        active = envs[: min(len(envs), num_episodes - first)]
        raw = np.stack([env.reset(seed=seed + first + i)[0] for i, env in enumerate(active)]).astype(np.float32)
        done, step = np.zeros(len(active), bool), 0
        while not done.all():
            obs = normalize_obs(raw, obs_stats)
            actions = np.clip(np.asarray(policy(student, obs, key, first * 10**6 + step)[0]), low, high)
            for i in np.flatnonzero(~done):
                raw[i], _, terminated, truncated, info = active[i].step(actions[i])
                if terminated or truncated:
                    done[i] = True
                    returns[first + i], lengths[first + i] = info["episode"]["r"], info["episode"]["l"]
                    successes[first + i] = info.get("success", np.nan)
            step += 1
    result = {"episodic_return": returns.mean(), "episodic_length": lengths.mean()}
    return result | ({"success": successes.mean()} if not np.isnan(successes).any() else {})


# Training loop
def main():
    args, task = parse_args()  # tyro, a resumed run's saved flags, every flag checked, the paper's values filled in
    batch_size = args.num_steps * args.num_envs
    num_iterations = args.total_timesteps // batch_size
    print(
        f"env: {args.env_id} (settings of the paper's {task.paper_task}); {num_iterations} iterations of {batch_size} "
        f"steps; teacher {args.teacher_depth}x{args.teacher_hidden_dim} lr {args.teacher_lr}; regulariser "
        f"{args.regularizer_coef} x {args.regularizer_samples} samples; disc_bc_coef {args.disc_bc_coef}"
    )

    # TRY NOT TO MODIFY: seeding
    random.seed(args.seed)
    np.random.seed(args.seed)
    key = jax.random.PRNGKey(args.seed)
    key, init_key, eval_key = jax.random.split(key, 3)

    num_eval_envs = max(1, min(args.num_eval_envs, args.eval_episodes))
    eval_envs = [gym.wrappers.RecordEpisodeStatistics(gym.make(args.env_id)) for _ in range(num_eval_envs)]
    obs_dim, action_dim = eval_envs[0].observation_space.shape[0], eval_envs[0].action_space.shape[0]
    if args.load_model:  # evaluate a saved student on its own task
        nets, student, obs_stats = load_model(args.load_model, obs_dim, action_dim)
        policy = jax.jit(partial(act, nets=nets))
        result = evaluate(eval_envs, policy, student, obs_stats, eval_key, args.eval_episodes, 10**6 * (args.seed + 1))
        print(f"{args.env_id}: " + ", ".join(f"{k} {v:.3f}" for k, v in result.items()))
        return
    checkpoint = read_checkpoint(args.resume, args.env_id) if args.resume else None
    demos = jax.device_put(load_demos(task, args, obs_dim, action_dim))
    run_dir, writer = open_run(args, checkpoint, batch_size)

    # ALGO LOGIC: the networks, the environments and the compiled steps
    nets, student_tx, teacher_tx = make_networks(args, obs_dim, action_dim)
    state = init_train_state(init_key, nets, student_tx, teacher_tx, args)
    train_envs = TrainingEnvs(args.env_id, args.num_envs, args.seed)
    normalizer = RewardNormalizer(RunningMeanStd(*jnp.array([0.0, 1.0, 1e-4])), jnp.zeros(args.num_envs))
    start_iteration = 0
    if checkpoint:
        state, normalizer, key, start_iteration = restore_checkpoint(checkpoint, state, normalizer, train_envs, args)
    teacher_steps = min(len(demos["observations"]), batch_size) // args.teacher_batch_size
    teacher_fn = jax.jit(
        partial(teacher_update, num_updates=teacher_steps, nets=nets, teacher_tx=teacher_tx, args=args)
    )
    relabel_fn = jax.jit(partial(relabel_rewards, nets=nets, args=args))
    ppo_fn = jax.jit(partial(ppo_update, nets=nets, student_tx=student_tx, args=args))
    policy = jax.jit(partial(act, nets=nets))

    eval_interval = -(-args.eval_every // batch_size)  # whole iterations, rounded up
    checkpoint_interval = -(-args.checkpoint_every // batch_size)  # 0: never
    eval_result, start_time = {}, time.time()
    progress = tqdm(total=num_iterations * batch_size, initial=start_iteration * batch_size, unit="step", smoothing=0.1)
    for iteration in range(start_iteration, num_iterations):
        iteration_start = time.time()
        global_step = (iteration + 1) * batch_size
        key, rollout_key, teacher_key, reward_key, ppo_key = jax.random.split(key, 5)
        learning_rate = args.learning_rate * (1 - iteration / num_iterations if args.anneal_lr else 1.0)

        # 1) rollout with the current student
        rollout = collect_rollout(
            train_envs, policy, state.student, rollout_key, args.num_steps, args.clip_actions, progress
        )
        rollout = jax.device_put(rollout)
        # 2) teacher update: the demonstrations' pairs against this rollout's
        obs_stats = jax.tree.map(jnp.asarray, train_envs.obs_stats)
        new_state, teacher_info = teacher_fn(state, demos, obs_stats, rollout.obs, rollout.actions, teacher_key)
        # 3) rewards of the whole rollout from the updated teacher
        rewards, new_normalizer, reward_info = relabel_fn(
            new_state.teacher, rollout.obs, rollout.actions, rollout.start_masks, normalizer, reward_key
        )
        # 4) PPO on those rewards, with the teacher regulariser
        new_state, ppo_info = ppo_fn(new_state, rollout, rewards, learning_rate, ppo_key)
        teacher_info, reward_info, ppo_info = jax.device_get((teacher_info, reward_info, ppo_info))
        if not np.isfinite(teacher_info["teacher_loss"]):
            stop_on_nan(run_dir, writer, teacher_info, "teacher loss", iteration, batch_size, state, train_envs, args)
        if not np.isfinite(ppo_info["ppo_loss"]):
            stop_on_nan(run_dir, writer, ppo_info, "PPO loss", iteration, batch_size, state, train_envs, args)
        state, normalizer = new_state, new_normalizer

        for k, v in (teacher_info | ppo_info).items():
            writer.add_scalar(f"{'charts' if k.endswith(('disc_val', 'reward')) else 'losses'}/{k}", v, global_step)
        for k, v in reward_info.items():
            writer.add_scalar(f"charts/mean_{k}", v, global_step)
        writer.add_scalar("charts/learning_rate", learning_rate, global_step)
        writer.add_scalar("charts/SPS", batch_size / (time.time() - iteration_start), global_step)
        for k, v in train_envs.episode_stats().items():  # the paper's curves
            writer.add_scalar(f"charts/{k}", v, global_step)
        if args.eval_episodes and ((iteration + 1) % eval_interval == 0 or iteration + 1 == num_iterations):
            noise_key, reset_seed = jax.random.fold_in(eval_key, global_step), 10**6 * (args.seed + 1) + global_step
            eval_result = evaluate(
                eval_envs, policy, state.student, train_envs.obs_stats, noise_key, args.eval_episodes, reset_seed
            )
            for k, v in eval_result.items():
                writer.add_scalar(f"eval/{k}", v, global_step)
            tqdm.write(f"step {global_step}: " + ", ".join(f"eval {k} {v:.3f}" for k, v in eval_result.items()))
        if checkpoint_interval and (iteration + 1) % checkpoint_interval == 0:
            write_checkpoint(run_dir, writer, iteration + 1, state, normalizer, key, train_envs, task, batch_size)
    progress.close()

    if args.save_model:
        print(f"model saved to {save_model(run_dir, state, train_envs.obs_stats, args)}")
    wall_time = time.time() - start_time
    steps_per_second = (num_iterations - start_iteration) * batch_size / wall_time
    final = train_envs.episode_stats() | {f"eval {k}": v for k, v in eval_result.items()}
    print(
        f"{args.env_id}: final "
        + ", ".join(f"{k} {v:.3f}" for k, v in final.items() if "length" not in k)
        + f" (training: last {len(train_envs.successes)} episodes) | wall time {wall_time:.0f} s | "
        f"{steps_per_second:.1f} steps/s (evaluation and compile included)"
    )
    writer.close()


# ======================================================================================================================
# RUN PLUMBING: flag and file checks, run folder, saving, checkpoint and resume, the NaN stop. Nothing here changes
# the numbers: a reader who stops above this line has read the whole method.
# ======================================================================================================================
def parse_args() -> tuple[Args, Task]:
    """The command line (or a resumed run's saved flags), every flag checked, the paper's values filled in."""
    args = tyro.cli(Args)
    if args.resume:  # the run's saved arguments, only --resume from the command line
        if dataclasses.replace(args, resume=None) != Args():
            fail("resume", args.resume, "takes no other flag; the run continues with the arguments saved in its folder")
        args = dataclasses.replace(read_saved_args(os.path.join(args.resume, "args.json")), resume=args.resume)
    if args.load_model:  # evaluate the saved student on its own task
        saved = read_saved_args(os.path.join(os.path.dirname(args.load_model), "args.json"))
        args = dataclasses.replace(args, env_id=saved.env_id)
    task = check_args(args)
    return with_task_defaults(args, task), task


def fail(flag: str, value, why: str):
    print(f"error: --{flag} {value}: {why}", file=sys.stderr)
    raise SystemExit(2)


def check_args(args: Args) -> Task:
    """Every flag, before anything slow: one `error:` line and exit status 2 for a bad value."""
    task = resolve_task(args.env_id)
    if task is None:
        fail(
            "env-id",
            args.env_id,
            f"unknown task; give one of {', '.join(ALIASES)} (OGBench ones optionally with "
            "-taskN), a gymnasium MuJoCo id such as Ant-v5, or an OGBench single-task id such as "
            "cube-double-singletask-task1-v0",
        )
    positive = ["num_envs", "num_eval_envs", "num_epochs", "num_minibatches", "hidden_dim", "teacher_hidden_dim"]
    positive += ["teacher_depth", "fm_time_levels", "regularizer_flow_steps", "num_steps", "total_timesteps"]
    positive += ["num_demos", "eval_every", "label_dim", "regularizer_samples", "teacher_batch_size"]
    for name in positive:
        value = getattr(args, name)
        if value is not None and value < 1:
            fail(name.replace("_", "-"), value, "must be positive; give an integer >= 1")
    for name in ["checkpoint_every", "eval_episodes"]:
        if getattr(args, name) is not None and getattr(args, name) < 0:
            fail(name.replace("_", "-"), getattr(args, name), "must be >= 0 (0 turns it off)")
    for name in ["learning_rate", "adam_eps", "clip_coef", "max_grad_norm", "teacher_lr"]:
        if getattr(args, name) is not None and getattr(args, name) <= 0:
            fail(name.replace("_", "-"), getattr(args, name), "must be positive; give a number > 0")
    for name in ["ent_coef", "vf_coef", "disc_bc_coef", "regularizer_coef", "demo_noise"]:
        if getattr(args, name) is not None and getattr(args, name) < 0:
            fail(name.replace("_", "-"), getattr(args, name), "must be >= 0; give a number >= 0")
    for name in ["gamma", "gae_lambda"]:
        if not 0 <= getattr(args, name) <= 1:
            fail(name.replace("_", "-"), getattr(args, name), "must lie in [0, 1]")
    if args.demo_frac is not None and not 0 < args.demo_frac <= 1:
        fail("demo-frac", args.demo_frac, "must lie in (0, 1]")
    if args.num_envs % 2:
        fail("num-envs", args.num_envs, "must be even (the reward's antithetic time pairs halve each batch)")
    if args.teacher_batch_size is not None and args.teacher_batch_size % 2:
        fail("teacher-batch-size", args.teacher_batch_size, "must be even (antithetic time pairs); give 64 or 128")
    settings = PAPER_TASKS[task.paper_task]
    rollout_size = (args.num_steps or settings.num_steps) * args.num_envs
    if (args.total_timesteps or settings.total_timesteps) < rollout_size:
        fail("total-timesteps", args.total_timesteps, f"is less than one iteration of {rollout_size} steps")
    if args.num_minibatches > rollout_size:
        fail("num-minibatches", args.num_minibatches, f"exceeds the {rollout_size} transitions of a rollout")
    if args.demo_noise is not None and task.locomotion:
        fail("demo-noise", args.demo_noise, "applies to OGBench demonstrations only")
    return task


def read_minari_demos(dataset_id: str, num_demos: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `num_demos` episodes of a Minari dataset: observations and actions, one row per step."""
    import minari

    try:
        dataset = minari.load_dataset(dataset_id)
    except Exception:
        try:
            dataset = minari.load_dataset(dataset_id, download=True)
        except Exception as error:
            name = (dataset_id.split("/") + [dataset_id])[1]  # mujoco/<name>/expert-v0
            env_name = {"halfcheetah": "HalfCheetah", "walker2d": "Walker2d"}.get(name, name.capitalize())
            where = os.environ.get("MINARI_DATASETS_PATH", "~/.minari/datasets")
            reason = str(error).splitlines()[0][:120] if str(error) else type(error).__name__
            raise SystemExit(
                f"error: Minari dataset {dataset_id} is not on this machine (looked in {where}) and could not be "
                f"downloaded ({reason}). Make it here with:\n"
                f"  python benchmark/train_expert.py --env-id {env_name}-v5\n"
                f"  python benchmark/make_dataset.py --dataset {dataset_id}"
            ) from None
    episodes = list(dataset.iterate_episodes(range(min(num_demos, dataset.total_episodes))))
    if len(episodes) < num_demos:
        raise SystemExit(f"error: Minari dataset {dataset_id} has {len(episodes)} episodes, fewer than --num-demos")
    observations = np.concatenate([ep.observations[:-1] for ep in episodes]).astype(np.float32)
    return observations, np.concatenate([ep.actions for ep in episodes]).astype(np.float32)


def read_demo_file(path: str, task: Task, args: Args) -> tuple[np.ndarray, np.ndarray]:
    """The first `num_demos` episodes of a demonstration file of `make_dataset.py --demos` (each row: s_t, a_t)."""
    folder = os.path.dirname(path)
    make = f"python benchmark/make_dataset.py --demos {task.env_id} --num-episodes {args.num_demos or 100}"
    make += f" --noise {args.demo_noise:g}" if args.demo_noise is not None else ""
    make = f"{make} --out-dir {folder}"
    if not os.path.exists(path):
        raise SystemExit(f"error: demonstration file not found: {path}\n  {make}")
    try:
        with np.load(path) as file:
            data = {k: file[k] for k in file.files}
    except Exception as error:  # zipfile, pickle and format errors of a broken file
        raise SystemExit(f"error: {path} is not a readable .npz file ({type(error).__name__})\n  {make}") from None
    if missing := {"observations", "actions", "terminals"} - set(data):
        raise SystemExit(f"error: demonstration file {path} lacks the keys {sorted(missing)}\n  {make}")
    if "env_name" in data and str(data["env_name"]) != task.env_id:
        raise SystemExit(f"error: {path} holds demonstrations of {data['env_name']}, not {task.env_id}\n  {make}")
    noise = float(data["noise"]) if "noise" in data else None
    if args.demo_noise is not None and noise != args.demo_noise:
        raise SystemExit(f"error: {path} was made with noise {noise}, not --demo-noise {args.demo_noise:g}\n  {make}")
    ends = np.flatnonzero(data["terminals"])
    num_demos = args.num_demos or len(ends)
    if len(ends) < num_demos:
        raise SystemExit(
            f"error: {path} holds {len(ends)} demonstrations, fewer than --num-demos {num_demos}\n  {make}"
        )
    rows = ends[num_demos - 1] + 1
    return data["observations"][:rows].astype(np.float32), data["actions"][:rows].astype(np.float32)


def check_demos(source: str, observations, actions, obs_dim: int, action_dim: int, args: Args):
    if observations.shape[1:] != (obs_dim,) or actions.shape[1:] != (action_dim,):
        raise SystemExit(
            f"error: the demonstrations have (s, a) of sizes {observations.shape[1:]}, {actions.shape[1:]}; "
            f"{args.env_id} has ({obs_dim},), ({action_dim},)"
        )
    if int(len(observations) * args.demo_frac) < args.teacher_batch_size:
        raise SystemExit(
            f"error: {source}: {int(len(observations) * args.demo_frac)} demonstration transitions are kept, fewer "
            f"than one teacher batch of {args.teacher_batch_size}; use more --num-demos or a smaller "
            "--teacher-batch-size"
        )


def time_limit_wrapper(env):
    while not hasattr(env, "_elapsed_steps"):
        env = env.env
    return env


def simulator_state(env) -> tuple:
    """Everything that decides a gymnasium MuJoCo env's future: physics, time-limit counter, reset generator."""
    model, data = env.unwrapped.model, env.unwrapped.data
    physics = np.empty(mujoco.mj_stateSize(model, mujoco.mjtState.mjSTATE_INTEGRATION))
    mujoco.mj_getState(model, data, physics, mujoco.mjtState.mjSTATE_INTEGRATION)
    return physics, time_limit_wrapper(env)._elapsed_steps, env.unwrapped.np_random.bit_generator.state


def restore_simulator(env, state: tuple):
    model, data = env.unwrapped.model, env.unwrapped.data
    mujoco.mj_setState(model, data, state[0], mujoco.mjtState.mjSTATE_INTEGRATION)
    mujoco.mj_forward(model, data)
    time_limit_wrapper(env)._elapsed_steps = state[1]
    env.unwrapped.np_random.bit_generator.state = state[2]


def write_atomically(path: str, payload: bytes):
    with open(path + ".tmp", "wb") as f:
        f.write(payload)
    os.replace(path + ".tmp", path)


def save_model(run_dir: str, state: TrainState, obs_stats: RunningMeanStd, args: Args) -> str:
    """The student, the teacher and the observation statistics (flax serialization), and the Args beside them."""
    path = os.path.join(run_dir, f"{args.exp_name}.flax")
    model = {"student": state.student, "teacher": state.teacher, "obs_stats": obs_stats._asdict()}
    write_atomically(path, flax.serialization.to_bytes(model))
    with open(os.path.join(run_dir, "args.json"), "w") as f:
        json.dump(dataclasses.asdict(args), f, indent=2)
    return path


def load_model(path: str, obs_dim: int, action_dim: int):
    """Inverse of `save_model`: (networks, student parameters, observation statistics)."""
    remake = "  python fm_irl.py --env-id <task> --save-model   # writes runs/<run>/fm_irl.flax"
    try:
        with open(os.path.join(os.path.dirname(path), "args.json")) as f:
            saved_args = Args(**json.load(f))
        nets, student_tx, teacher_tx = make_networks(saved_args, obs_dim, action_dim)
        template = init_train_state(jax.random.PRNGKey(0), nets, student_tx, teacher_tx, saved_args)
        stats = {"mean": np.zeros(obs_dim, np.float32), "var": np.zeros(obs_dim, np.float32), "count": 0.0}
        target = {"student": template.student, "teacher": template.teacher, "obs_stats": stats}
        with open(path, "rb") as f:
            model = flax.serialization.from_bytes(target, f.read())
        if [np.shape(x) for x in jax.tree.leaves(model)] != [np.shape(x) for x in jax.tree.leaves(target)]:
            raise ValueError("parameter shapes differ from those of its args.json")
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SystemExit(
            f"error: {path} is not a model saved by fm_irl.py ({type(error).__name__})\n{remake}"
        ) from None
    return nets, model["student"], RunningMeanStd(**model["obs_stats"])


def read_saved_args(path: str) -> Args:
    try:
        with open(path) as f:
            return Args(**json.load(f))
    except (OSError, ValueError, TypeError) as error:
        raise SystemExit(f"error: cannot read {path} ({type(error).__name__}): no fm_irl.py run wrote it") from None


def read_checkpoint(run_dir: str, env_id: str) -> dict:
    path = os.path.join(run_dir, "checkpoint.msgpack")
    try:
        with open(path, "rb") as f:
            checkpoint = flax.serialization.msgpack_restore(f.read())
        int(checkpoint["iteration"])
        if missing := {"state", "reward_normalizer", "key", "envs"} - set(checkpoint):
            raise KeyError(f"missing {sorted(missing)}")
    except (OSError, ValueError, KeyError, TypeError) as error:  # missing, truncated or not a checkpoint
        raise SystemExit(
            f"error: {path} cannot be read ({type(error).__name__}: {error}); a run writes it with "
            "--checkpoint-every N:\n"
            f"  python fm_irl.py --env-id {env_id} --checkpoint-every 100000"
        ) from None
    return checkpoint


def open_run(args: Args, checkpoint: dict | None, batch_size: int) -> tuple[str, SummaryWriter]:
    """The run folder (a new one, or the resumed run's) with args.json, wandb if --track, and the TensorBoard writer."""
    if checkpoint:
        run_dir, start_iteration = args.resume, int(checkpoint["iteration"])
        print(f"resuming after iteration {start_iteration} (step {start_iteration * batch_size})")
    else:
        run_dir = os.path.join("runs", f"{args.env_id}__{args.exp_name}__{args.seed}__{int(time.time())}")
        os.makedirs(run_dir, exist_ok=True)
        with open(os.path.join(run_dir, "args.json"), "w") as f:
            json.dump(dataclasses.asdict(args), f, indent=2)
    print(f"run folder: {run_dir}")
    if args.track:
        import wandb

        wandb.init(
            project=args.wandb_project_name,
            entity=args.wandb_entity,
            sync_tensorboard=True,
            config=vars(args),
            name=os.path.basename(run_dir),
            save_code=True,
        )
    writer = SummaryWriter(run_dir, purge_step=int(checkpoint["iteration"]) * batch_size + 1 if checkpoint else None)
    if not checkpoint:
        table = "\n".join(f"|{key}|{value}|" for key, value in vars(args).items())
        writer.add_text("hyperparameters", "|param|value|\n|-|-|\n" + table)
    return run_dir, writer


def write_checkpoint(run_dir, writer, iteration, state, normalizer, key, train_envs: TrainingEnvs, task, batch_size):
    contents = {"state": state, "reward_normalizer": normalizer, "key": np.asarray(key), "iteration": iteration}
    contents["envs"] = envs_state(train_envs, with_simulators=task.locomotion)
    write_atomically(os.path.join(run_dir, "checkpoint.msgpack"), flax.serialization.to_bytes(contents))
    with open(os.path.join(run_dir, "checkpoint.json"), "w") as f:
        json.dump({"iteration": iteration, "step": iteration * batch_size, "time": time.time()}, f)


def restore_checkpoint(checkpoint: dict, state, normalizer, train_envs: TrainingEnvs, args: Args):
    """Inverse of `write_checkpoint`: (state, reward normaliser, key, iteration); the environments in place."""
    iteration = int(checkpoint["iteration"])
    state = flax.serialization.from_state_dict(state, checkpoint["state"])
    normalizer = flax.serialization.from_state_dict(normalizer, checkpoint["reward_normalizer"])
    restore_envs(train_envs, checkpoint["envs"], restart_seed=args.seed + 1000 * iteration)
    return state, normalizer, jnp.asarray(checkpoint["key"], jnp.uint32), iteration


def envs_state(train_envs: TrainingEnvs, with_simulators: bool) -> dict:
    envs = train_envs.envs
    sims = [simulator_state(env) for env in envs.unwrapped.envs] if with_simulators else []
    finished = np.array(list(zip(envs.return_queue, envs.length_queue, train_envs.successes, strict=True)), np.float64)
    return {
        "obs_stats": train_envs.obs_stats._asdict(),
        "obs": train_envs.obs,
        "prev_done": train_envs.prev_done,
        "episode_return": envs.episode_returns,
        "episode_length": envs.episode_lengths,
        "finished": finished.reshape(-1, 3),
        "simulators": np.frombuffer(pickle.dumps(sims), np.uint8),
    }


def restore_envs(train_envs: TrainingEnvs, saved: dict, restart_seed: int):
    stats, envs = saved["obs_stats"], train_envs.envs
    train_envs.obs_stats = RunningMeanStd(np.array(stats["mean"]), np.array(stats["var"]), float(stats["count"]))
    for episode_return, episode_length, success in saved["finished"]:
        envs.return_queue.append(episode_return)
        envs.length_queue.append(int(episode_length))
        train_envs.successes.append(success)
    sims = pickle.loads(saved["simulators"].tobytes())
    if sims:  # continue the episodes in progress exactly
        for env, sim in zip(envs.unwrapped.envs, sims, strict=True):
            restore_simulator(env, sim)
        train_envs.obs, train_envs.prev_done = np.array(saved["obs"]), np.array(saved["prev_done"])
        envs.episode_returns, envs.episode_lengths = (
            np.array(saved["episode_return"]),
            np.array(saved["episode_length"]),
        )
    else:  # restart them
        train_envs.obs = train_envs.observe(envs.reset(seed=[restart_seed + i for i in range(envs.num_envs)])[0])


def stop_on_nan(run_dir, writer, info: dict, what: str, iteration: int, batch_size, last_good, train_envs, args):
    path = save_model(run_dir, last_good, train_envs.obs_stats, args)
    writer.close()
    losses = ", ".join(f"{k} {float(v):.4g}" for k, v in info.items() if "loss" in k)
    raise SystemExit(
        f"error: the loss became NaN or infinite at step {(iteration + 1) * batch_size} ({what} of iteration "
        f"{iteration + 1}: {losses}); the parameters of step {iteration * batch_size} are saved to {path}"
    )


if __name__ == "__main__":
    main()
