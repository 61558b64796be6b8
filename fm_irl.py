# FM-IRL: Flow-Matching for Reward Modeling and Policy Regularization (arXiv:2510.09222); docs: docs/fm_irl.md
"""FM-IRL trains a Gaussian MLP student online with PPO from a few demonstrations. A label-conditioned flow-matching
teacher over (state, action), trained from scratch beside the student, is the discriminator that gives the reward, and
a regulariser pulls the student's mean action toward the teacher's own expert-label samples. Logged x-axis: environment
steps. A resumed run gives the numbers of an uninterrupted one, except that OGBench's episodes in progress restart.
"""

import dataclasses
import importlib.util
import json
import math
import os
import pickle
import random
import re
import shlex
import signal
import socket
import sys
import time
import warnings
import zipfile
from collections import deque, namedtuple
from dataclasses import dataclass
from functools import partial
from typing import Literal, NamedTuple

import flax
import flax.linen as nn
import gymnasium as gym
import jax
import jax.numpy as jnp
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
    """seed of the experiment (Python, NumPy, JAX, environment resets, demonstration subsampling), in [0, 2^32)"""
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
    """whether to save the student, the teacher and the observation statistics into `runs/{run_name}`"""
    load_model: str | None = None
    """path of a saved `.flax` file: skip training, load it (with the args.json beside it) and evaluate the student"""
    checkpoint_every: int = 0
    """write `checkpoint.msgpack` into the run folder at the end of the first iteration past every multiple of this
    many environment steps; 0: never"""
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
    full_length_demos: bool = True
    """Minari demonstrations: take the first episodes that last the whole time limit, as the official trajectory
    saver keeps only those (an episode that ends in a fall is not an expert's); off: the first episodes"""
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
    """decay the student's learning rate linearly to 0, once per iteration, over --lr-env-steps"""
    lr_env_steps: int | None = None
    """environment steps over which the learning rate decays (the official --lr-env-steps): a shorter run follows
    the official schedule and stops early; default: the paper's budget for the task, or --total-timesteps if longer"""
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
    """expert and agent pairs per teacher step (even, at most one rollout); default: the paper's value for the task"""
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


# What each flag accepts (a rule of RULES in the plumbing -> flags); None always passes: a value the task sets at start.
FLAG_RULES = {
    "count": "video_episodes total_timesteps num_envs num_steps eval_every num_eval_envs num_epochs num_minibatches "
    "hidden_dim teacher_hidden_dim teacher_depth teacher_batch_size label_dim fm_time_levels regularizer_samples "
    "regularizer_flow_steps num_demos lr_env_steps",
    "count_or_off": "checkpoint_every eval_episodes",
    "positive": "learning_rate clip_coef max_grad_norm adam_eps teacher_lr",
    "non_negative": "ent_coef vf_coef disc_bc_coef regularizer_coef demo_noise",
    "finite": "reward_bonus",
    "fraction": "gamma gae_lambda",
    "rate": "demo_frac",
}


# One paper task's values in the official configs (`configs/<task>/fmirl.yaml` and the parser defaults); eval_every is
# the official eval interval in iterations x the official rollout size.
TaskSettings = namedtuple(
    "TaskSettings",
    "total_timesteps num_steps teacher_lr teacher_batch_size label_dim demo_frac reward_bonus proper_time_limits "
    "clip_actions regularizer_samples eval_every eval_episodes",
)
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
OGBENCH_FAMILIES = {"pointmaze": "Maze2d", "antmaze": "Ant-goal"} | dict.fromkeys(
    ("cube", "scene", "puzzle"), "Fetch-pick"
)
# The Minari datasets that benchmark/make_dataset.py makes offline (with an expert of benchmark/train_expert.py).
MINARI_ENVS = {"hopper": "Hopper-v5", "walker2d": "Walker2d-v5", "halfcheetah": "HalfCheetah-v5", "ant": "Ant-v5"}


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
    lr_env_steps = args.lr_env_steps or max(settings["total_timesteps"], args.total_timesteps or 0)
    num_demos = args.num_demos or task.num_demos
    return dataclasses.replace(args, env_id=task.env_id, num_demos=num_demos, lr_env_steps=lr_env_steps, **values)


def check_args(args: Args) -> Task:
    """Every flag, before anything slow: the table above, then what depends on two flags (files: where they are read)."""
    check_flags(args, FLAG_RULES)
    task = resolve_task(args.env_id)
    if task is None:
        why = f"unknown task; give one of {', '.join(ALIASES)} (OGBench ones optionally with -taskN), a gymnasium "
        fail("env_id", args.env_id, why + "MuJoCo id such as Ant-v5, or an OGBench single-task id")
    full = with_task_defaults(args, task)  # an unset lr_env_steps covers the run
    rollout_size = full.num_steps * full.num_envs
    if args.num_envs % 2:
        fail("num_envs", args.num_envs, "must be even (the reward's antithetic time pairs halve each batch)")
    if full.teacher_batch_size % 2 or full.teacher_batch_size > rollout_size:
        why = f"must be even (antithetic time pairs) and at most the {rollout_size} transitions of a rollout"
        fail("teacher_batch_size", full.teacher_batch_size, why)
    if full.total_timesteps < rollout_size:
        fail("total_timesteps", args.total_timesteps, f"is less than one iteration of {rollout_size} steps")
    if full.lr_env_steps < full.total_timesteps:
        why = "must be at least --total-timesteps (the learning rate would turn negative); give more, or leave it out"
        fail("lr_env_steps", args.lr_env_steps, why)
    if args.num_minibatches > rollout_size:
        fail("num_minibatches", args.num_minibatches, f"exceeds the {rollout_size} transitions of a rollout")
    if args.demo_noise is not None and task.locomotion:
        fail("demo_noise", args.demo_noise, "applies to OGBench demonstrations only")
    return task


# Data: the demonstrations, read in full and checked at start
def load_demos(task: Task, args: Args, obs_dim: int, action_dim: int) -> dict:
    """The first `num_demos` demonstrations as (s, a) pairs, of which the official random subset (`demo_frac`) is kept.
    Locomotion reads a Minari dataset, the OGBench tasks a file of `make_dataset.py --demos` (each row: s_t, a_t)."""
    shapes = {"observations": (obs_dim,), "actions": (action_dim,)}
    if task.locomotion:
        source = args.dataset_id or task.dataset
        name = re.fullmatch(r"mujoco/(\w+)/(simple|medium|expert)-v0", source)
        remake = f"  benchmark/make_dataset.py makes mujoco/<{'|'.join(MINARI_ENVS)}>/<simple|medium|expert>-v0 only"
        if name and name[1] in MINARI_ENVS:
            remake = f"  python benchmark/train_expert.py --env-id {MINARI_ENVS[name[1]]}\n"
            remake += f"  python benchmark/make_dataset.py --dataset {source}"
        episodes = read_minari(source, shapes, args.env_id, remake)
        kept = "episodes"
        if args.full_length_demos:  # episodes cut by the time limit, not ended by a fall
            time_limit = gym.spec(args.env_id).max_episode_steps
            episodes = [episode for episode in episodes if len(episode.actions) == time_limit]
            kept = f"episodes of the whole {time_limit} steps (--no-full-length-demos: of any length)"
        print(f"demonstrations: episodes {[int(episode.id) for episode in episodes[: args.num_demos]]} of {source}")
        episodes = [(episode.observations[:-1], episode.actions) for episode in episodes]  # s_t beside a_t
    else:
        folder = os.path.expanduser(args.dataset_dir)
        folder = os.path.join(folder, f"demos-noise{args.demo_noise:g}") if args.demo_noise is not None else folder
        source = os.path.join(folder, f"{args.dataset_id or task.dataset}.npz")
        source = os.path.expanduser(args.dataset_id) if (args.dataset_id or "").endswith(".npz") else source
        noise = f" --noise {args.demo_noise:g}" if args.demo_noise is not None else ""
        remake = f"  python benchmark/make_dataset.py --demos {task.env_id} --num-episodes {args.num_demos or 100}"
        remake += f"{noise} --out-dir {shlex.quote(os.path.dirname(source))}"
        data = read_npz(source, shapes | {"terminals": ()}, args.env_id, remake)
        if "env_name" in data and str(data["env_name"]) != task.env_id:
            raise SystemExit(f"error: {source} holds demonstrations of {data['env_name']}, not {task.env_id}\n{remake}")
        noise = float(data["noise"]) if "noise" in data else None
        if args.demo_noise is not None and noise != args.demo_noise:
            why = f"was made with noise {noise}, not --demo-noise {args.demo_noise:g}"
            raise SystemExit(f"error: {source} {why}\n{remake}")
        ends = np.flatnonzero(data["terminals"]) + 1  # a demonstration ends at a terminal step; the rest is cut off
        observations, actions = np.split(data["observations"], ends)[:-1], np.split(data["actions"], ends)[:-1]
        episodes = list(zip(observations, actions, strict=True))
        kept = "demonstrations"
    num_demos = args.num_demos or max(len(episodes), 1)
    if len(episodes) < num_demos:
        raise SystemExit(f"error: {source} holds {len(episodes)} {kept}, fewer than --num-demos {num_demos}")
    observations, actions = (np.concatenate(arrays) for arrays in zip(*episodes[:num_demos], strict=True))
    keep = np.arange(len(observations))
    np.random.default_rng(args.seed).shuffle(keep)
    keep = keep[: int(len(keep) * args.demo_frac)]
    if len(keep) < args.teacher_batch_size:
        why = f"{len(keep)} demonstration transitions are kept, fewer than one teacher batch"
        raise SystemExit(f"error: {source}: {why}; use more --num-demos or a smaller --teacher-batch-size")
    print(f"demonstrations: {source}, {len(keep)} of their {len(observations)} steps used")
    return {"observations": observations[keep].astype(np.float32), "actions": actions[keep].astype(np.float32)}


# ALGO LOGIC: networks and training state
xavier_uniform, orthogonal = nn.initializers.xavier_uniform(), nn.initializers.orthogonal


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
            h = nn.tanh(nn.Dense(self.hidden_dim, kernel_init=orthogonal(np.sqrt(2)), name=f"hidden_{i}")(h))
        mean = nn.Dense(self.action_dim, kernel_init=orthogonal(1.0), name="mean")(h)
        return mean, self.param("log_std", nn.initializers.zeros, (self.action_dim,))


class Critic(nn.Module):
    hidden_dim: int = 256

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        h = obs
        for i in range(2):
            h = nn.tanh(nn.Dense(self.hidden_dim, kernel_init=orthogonal(np.sqrt(2)), name=f"hidden_{i}")(h))
        return nn.Dense(1, kernel_init=orthogonal(np.sqrt(2)), name="value")(h)[..., 0]


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
    teacher = Teacher(obs_dim + action_dim, args.teacher_hidden_dim, args.teacher_depth, args.time_embedding)
    nets = Networks(teacher, Actor(action_dim, args.hidden_dim), Critic(args.hidden_dim), obs_dim, action_dim)
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


def teacher_update(state, demos, obs_stats, agent_obs, agent_actions, key, num_updates: int, nets, teacher_tx, args):
    """One pass of the official zip(shuffled expert batches, shuffled rollout batches): `num_updates` Adam steps. Expert
    states are normalised with the current observation statistics; agent states are those of the rollout."""
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
    next_masks, time_limit_masks = 1 - rollout.dones, 1 - rollout.time_limits
    advantages, returns = compute_gae(rewards, rollout.values, next_value, next_masks, time_limit_masks, args)
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
    return state._replace(student=student, student_opt=opt_state), jax.tree.map(jnp.mean, infos)


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
    steps = []  # per step, the fields of Rollout but the last
    for t in range(num_steps):
        obs, start_mask = train_envs.obs, 1.0 - train_envs.prev_done
        action, log_prob, value = jax.device_get(policy(student, obs, key, t))
        stored_action = np.clip(action, train_envs.low, train_envs.high) if clip_actions else action
        done, time_limit = train_envs.step(action)
        steps.append((obs, stored_action, log_prob, value, done, time_limit, start_mask))
        if progress is not None:
            progress.update(len(obs))
    return Rollout(*(np.stack(field).astype(np.float32) for field in zip(*steps, strict=True)), train_envs.obs.copy())


def evaluate(envs, policy, student, obs_stats, key, seed: int, args: Args) -> tuple[dict, list]:
    """`eval_episodes` episodes in rounds of len(envs) environments (wrapped in RecordEpisodeStatistics) in lockstep;
    stochastic student, frozen observation statistics. Also returns, with --capture-video, the frames of the first
    `video_episodes` episodes (rendering draws no random numbers)."""
    num_episodes = args.eval_episodes
    returns, lengths, successes = (np.zeros(num_episodes) for _ in range(3))
    videos = [[] for _ in range(min(args.video_episodes, num_episodes) if args.capture_video else 0)]
    low, high = envs[0].action_space.low, envs[0].action_space.high
    for first in range(0, num_episodes, len(envs)):
        active = envs[: min(len(envs), num_episodes - first)]
        raw = np.stack([env.reset(seed=seed + first + i)[0] for i, env in enumerate(active)]).astype(np.float32)
        recorded = videos[first : first + len(active)]  # the frame lists of this round's recorded episodes
        for i, frames in enumerate(recorded):
            frames.append(active[i].render())
        done, step = np.zeros(len(active), bool), 0
        while not done.all():
            obs = normalize_obs(raw, obs_stats)
            actions = np.clip(np.asarray(policy(student, obs, key, first * 10**6 + step)[0]), low, high)
            for i in np.flatnonzero(~done):
                raw[i], _, terminated, truncated, info = active[i].step(actions[i])
                if i < len(recorded):
                    recorded[i].append(active[i].render())
                if terminated or truncated:
                    done[i] = True
                    returns[first + i], lengths[first + i] = info["episode"]["r"], info["episode"]["l"]
                    successes[first + i] = info.get("success", np.nan)
            step += 1
    result = {"episodic_return": returns.mean(), "episodic_length": lengths.mean()}
    return result | ({"success": successes.mean()} if not np.isnan(successes).any() else {}), videos


# Saving and resuming: what a model and a checkpoint hold
MODEL_KEYS = ("student", "teacher", "obs_stats")
CHECKPOINT_KEYS = ("state", "reward_normalizer", "key", "iteration", "envs")


def saved_model(state: TrainState, obs_stats: RunningMeanStd) -> dict:
    return {"student": state.student, "teacher": state.teacher, "obs_stats": obs_stats._asdict()}


def load_model(path: str, obs_dim: int, action_dim: int) -> tuple[Networks, dict, RunningMeanStd]:
    """A model saved by --save-model: the networks of the Args saved beside it, the student, the observation statistics."""
    saved_args, saved = read_model(path, MODEL_KEYS)
    nets, student_tx, teacher_tx = make_networks(saved_args, obs_dim, action_dim)
    state = jax.eval_shape(lambda: init_train_state(jax.random.PRNGKey(0), nets, student_tx, teacher_tx, saved_args))
    stats = RunningMeanStd(np.zeros(obs_dim, np.float32), np.zeros(obs_dim, np.float32), 0.0)
    model = restore(saved_model(state, stats), saved, path)
    return nets, model["student"], RunningMeanStd(**model["obs_stats"])


def run_state(state, normalizer, key, iteration: int, train_envs: TrainingEnvs, with_simulators: bool) -> dict:
    """Everything a checkpoint holds: the training state, the return normaliser, the key, the iteration, and of the
    training environments the observation statistics, the last 100 episodes and (gymnasium MuJoCo) the episodes in
    progress with everything that decides their future: physics, time-limit counter, reset generator."""
    import mujoco  # not at the top: --capture-video sets MUJOCO_GL first, which MuJoCo reads once, on import

    envs = train_envs.envs
    simulators = []
    for env in envs.unwrapped.envs if with_simulators else []:
        model, data = env.unwrapped.model, env.unwrapped.data
        physics = np.empty(mujoco.mj_stateSize(model, mujoco.mjtState.mjSTATE_INTEGRATION))
        mujoco.mj_getState(model, data, physics, mujoco.mjtState.mjSTATE_INTEGRATION)
        simulators.append((physics, env._elapsed_steps, env.unwrapped.np_random.bit_generator.state))
    finished = list(zip(envs.return_queue, envs.length_queue, train_envs.successes, strict=True))
    environments = {
        "obs_stats": train_envs.obs_stats._asdict(),
        "obs": train_envs.obs,
        "prev_done": train_envs.prev_done,
        "episode_return": envs.episode_returns,
        "episode_length": envs.episode_lengths,
        "finished": np.array(finished, np.float64).reshape(-1, 3),
        "simulators": np.frombuffer(pickle.dumps(simulators), np.uint8),
    }
    return {"state": state, "reward_normalizer": normalizer, "key": key, "iteration": iteration, "envs": environments}


def restore_environments(train_envs: TrainingEnvs, saved: dict, restart_seed: int):
    """The training environments as `run_state` saved them; OGBench episodes in progress restart."""
    import mujoco

    envs, stats = train_envs.envs, saved["obs_stats"]
    train_envs.obs_stats = RunningMeanStd(np.array(stats["mean"]), np.array(stats["var"]), float(stats["count"]))
    envs.return_queue.extend(saved["finished"][:, 0])
    envs.length_queue.extend(map(int, saved["finished"][:, 1]))
    train_envs.successes.extend(saved["finished"][:, 2])
    simulators = pickle.loads(saved["simulators"].tobytes())
    if simulators:  # continue the episodes in progress exactly
        for env, (physics, elapsed_steps, rng_state) in zip(envs.unwrapped.envs, simulators, strict=True):
            model, data = env.unwrapped.model, env.unwrapped.data
            mujoco.mj_setState(model, data, physics, mujoco.mjtState.mjSTATE_INTEGRATION)
            mujoco.mj_forward(model, data)
            env._elapsed_steps, env.unwrapped.np_random.bit_generator.state = elapsed_steps, rng_state
        train_envs.obs, train_envs.prev_done = np.array(saved["obs"]), np.array(saved["prev_done"])
        envs.episode_returns = np.array(saved["episode_return"])
        envs.episode_lengths = np.array(saved["episode_length"])
    else:  # restart them
        train_envs.obs = train_envs.observe(envs.reset(seed=[restart_seed + i for i in range(envs.num_envs)])[0])


# Training loop
def main(args: Args) -> None:
    args = run_args(args)  # with --resume: the arguments saved in the run folder
    task = check_args(args)
    if args.load_model:  # evaluate a saved student on its own task
        args = dataclasses.replace(args, env_id=read_model(args.load_model, MODEL_KEYS)[0].env_id)
        task = check_args(args)
    args = with_task_defaults(args, task)
    checkpoint = read_checkpoint(args, CHECKPOINT_KEYS) if args.resume else None
    batch_size = args.num_steps * args.num_envs
    num_iterations = args.total_timesteps // batch_size
    lr_iterations = args.lr_env_steps // batch_size  # the official number of updates of the linear decay
    print(
        f"env: {args.env_id} (settings of the paper's {task.paper_task}); {num_iterations} iterations of {batch_size} "
        f"steps; teacher {args.teacher_depth}x{args.teacher_hidden_dim} lr {args.teacher_lr}; regulariser "
        f"{args.regularizer_coef} x {args.regularizer_samples} samples; disc_bc_coef {args.disc_bc_coef}"
    )

    # TRY NOT TO MODIFY: seeding
    random.seed(args.seed)
    np.random.seed(args.seed)
    key, init_key, eval_key = jax.random.split(jax.random.PRNGKey(args.seed), 3)

    render_mode = "rgb_array" if args.capture_video and task.locomotion else None  # OGBench's render in any mode
    eval_envs = [
        gym.wrappers.RecordEpisodeStatistics(gym.make(args.env_id, render_mode=render_mode))
        for _ in range(max(1, min(args.num_eval_envs, args.eval_episodes)))
    ]
    obs_dim, action_dim = eval_envs[0].observation_space.shape[0], eval_envs[0].action_space.shape[0]
    eval_seed = 10**6 * (args.seed + 1)  # the reset seed of the first evaluation episode (+ the step in training)
    if args.load_model:
        nets, student, obs_stats = load_model(args.load_model, obs_dim, action_dim)
        policy = jax.jit(partial(act, nets=nets))
        result, videos = evaluate(eval_envs, policy, student, obs_stats, eval_key, eval_seed, args)
        print(f"{args.env_id}: " + ", ".join(f"{k} {v:.3f}" for k, v in result.items()))
        if videos:  # beside the model
            paths = save_videos(os.path.dirname(args.load_model), f"loaded_seed{args.seed}", videos, eval_envs[0])
            print("videos:", *paths)
        return
    demos = jax.device_put(load_demos(task, args, obs_dim, action_dim))

    # ALGO LOGIC: the networks, the environments and the compiled steps, or where the checkpoint left them
    nets, student_tx, teacher_tx = make_networks(args, obs_dim, action_dim)
    state = init_train_state(init_key, nets, student_tx, teacher_tx, args)
    train_envs = TrainingEnvs(args.env_id, args.num_envs, args.seed)
    normalizer = RewardNormalizer(RunningMeanStd(*jnp.array([0.0, 1.0, 1e-4])), jnp.zeros(args.num_envs))
    start_iteration = 0
    if checkpoint is not None:
        template = run_state(state, normalizer, key, 0, train_envs, task.locomotion)
        template["envs"] |= {"finished": None, "simulators": None}  # of any length
        run = restore(template, checkpoint, os.path.join(args.resume, "checkpoint.msgpack"))
        state, normalizer, key, start_iteration = run["state"], run["reward_normalizer"], run["key"], run["iteration"]
        restore_environments(train_envs, run["envs"], restart_seed=args.seed + 1000 * start_iteration)
        print(f"resuming after iteration {start_iteration} (step {start_iteration * batch_size})")
    run_dir, writer = open_run(args, args.env_id, start_iteration * batch_size)
    print(f"run folder: {run_dir}")
    num_updates = min(len(demos["observations"]), batch_size) // args.teacher_batch_size  # zip stops at the shorter
    teacher_fn = jax.jit(partial(teacher_update, num_updates=num_updates, nets=nets, teacher_tx=teacher_tx, args=args))
    relabel_fn = jax.jit(partial(relabel_rewards, nets=nets, args=args))
    ppo_fn = jax.jit(partial(ppo_update, nets=nets, student_tx=student_tx, args=args))
    policy = jax.jit(partial(act, nets=nets))

    eval_interval = -(-args.eval_every // batch_size)  # whole iterations, rounded up
    last_checkpoint = start_iteration * batch_size
    eval_result, start_time = {}, time.time()
    progress = tqdm(total=num_iterations * batch_size, initial=start_iteration * batch_size, unit="step", smoothing=0.1)
    for iteration in range(start_iteration, num_iterations):
        iteration_start = time.time()
        global_step = (iteration + 1) * batch_size
        key, rollout_key, teacher_key, reward_key, ppo_key = jax.random.split(key, 5)
        learning_rate = args.learning_rate * (1 - iteration / lr_iterations if args.anneal_lr else 1.0)

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
        for loss, info in (("teacher loss", teacher_info["teacher_loss"]), ("PPO loss", ppo_info["ppo_loss"])):
            if not np.isfinite(info):
                path = save_model(run_dir, args.exp_name, saved_model(state, train_envs.obs_stats), args)
                where = f" ({loss} of iteration {iteration + 1})"
                stop_on_nan(global_step, global_step - batch_size, path, writer, progress, where)
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
            step_key, seed = jax.random.fold_in(eval_key, global_step), eval_seed + global_step
            eval_result, videos = evaluate(eval_envs, policy, state.student, train_envs.obs_stats, step_key, seed, args)
            if videos:
                save_videos(run_dir, f"eval_{global_step}", videos, eval_envs[0], writer, global_step)
            for k, v in eval_result.items():
                writer.add_scalar(f"eval/{k}", v, global_step)
            tqdm.write(f"step {global_step}: " + ", ".join(f"eval {k} {v:.3f}" for k, v in eval_result.items()))
        if checkpoint_due(global_step, last_checkpoint, args.checkpoint_every, num_iterations * batch_size):
            content = run_state(state, normalizer, key, iteration + 1, train_envs, task.locomotion)
            writer, last_checkpoint = save_checkpoint(run_dir, content, global_step, writer), global_step
    progress.close()

    if args.save_model:
        print(f"model saved to {save_model(run_dir, args.exp_name, saved_model(state, train_envs.obs_stats), args)}")
    wall_time = time.time() - start_time
    steps_per_second = (num_iterations - start_iteration) * batch_size / wall_time
    final = train_envs.episode_stats() | {f"eval {k}": v for k, v in eval_result.items()}
    final = ", ".join(f"{k} {v:.3f}" for k, v in final.items() if "length" not in k)
    print(
        f"{args.env_id}: final {final} (training: last {len(train_envs.successes)} episodes) | wall time "
        f"{wall_time:.0f} s | {steps_per_second:.1f} steps/s (evaluation and compile included)"
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
