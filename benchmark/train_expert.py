"""Train a SAC expert (JAX): gymnasium MuJoCo locomotion for the Minari datasets, or the antmaze walking ant.

    python benchmark/train_expert.py --env-id Hopper-v5      # Minari's recipe; checkpoints in ~/.minari/experts/Hopper-v5
    python benchmark/train_expert.py --env-id ant-xy         # OGBench's antmaze expert, in ~/.ogbench/experts/ant_xy_sac

One SAC, two recipes (RECIPES below):
- `Hopper-v5`, `Walker2d-v5`, `HalfCheetah-v5`, `Ant-v5`: the recipe of Minari's `mujoco/*` datasets, Stable-Baselines3
  SAC with its defaults (ReLU 256x256 networks with PyTorch's default initialisation, Adam 3e-4, batch 256, buffer 1M,
  gamma 0.99, tau 0.005, automatic temperature from 1.0 toward entropy -|A|, 10k random steps first) on 5 environments
  with one gradient step per 5 transitions (`make_vec_env(n_envs=5)`, `train_freq=1`). Minari's HalfCheetah policies
  were trained with TQC; this script uses SAC for all four, a documented difference.
- `ant-xy`: OGBench's `online-ant-xy-v0` (the ant walks in a commanded direction that changes every 100 steps) with
  OGBench's SAC defaults (GELU 256x256, Adam 1e-4, target entropy -|A|/2, one env, one gradient step per transition,
  400k steps): the expert that drives the antmaze `navigate` datasets of benchmark/make_dataset.py.

Every `--checkpoint-every` transitions the deterministic policy is evaluated on 10 episodes and its actor is kept as
`<out-dir>/checkpoints/actor_<steps>.msgpack`; `<out-dir>/actor.msgpack` with `actor.json` (recipe, evaluations) is
always the latest, and `learning_curve.png` plots the evaluations. The whole training state (networks, optimiser,
replay buffer, random generators, counters) goes to `<out-dir>/resume.msgpack`: rerunning the same command after an
interruption (Ctrl-C prints it) continues from the last checkpoint (the episodes in progress then start afresh; the
rest continues exactly), and may raise --total-steps to train longer.

One folder holds one run. `config.json` keeps the settings the run started with; a folder whose settings are missing,
unreadable or not this command's is refused, with the command that continues its run and one that starts this run in
a new folder. A checkpoint's files are written under temporary names, the actor is read back and checked (finite
weights, the environment's observation and action sizes), and only then renamed into place, `resume.msgpack` last and
Ctrl-C held until all are in: a failure at any point leaves the previous checkpoint as it was.
"""

import contextlib
import dataclasses
import difflib
import json
import math
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import NamedTuple

import flax.linen as nn
import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
import optax
import tyro
from flax import serialization
from tqdm import tqdm


@dataclass(frozen=True)
class Recipe:
    """What differs between the two SAC recipes (see the module docstring)."""

    total_steps: int  # environment transitions, summed over the environments
    num_envs: int  # environments stepped together; one gradient step per vector step
    learning_starts: int  # transitions with uniformly random actions and no updates
    learning_rate: float
    hidden_dims: tuple[int, ...]
    activation: str  # "relu" or "gelu"
    init: str  # "torch" (U(+-1/sqrt(fan_in)) weights and biases) or "ogbench" (Xavier, zero bias, tiny heads)
    log_std_min: float
    target_entropy_scale: float  # target entropy = -scale * action dim
    temperature_loss: str  # "log_alpha" (SB3: -log(alpha) (log pi + target)) or "alpha" (OGBench: alpha (H - target))
    checkpoint_every: int
    out_dir: str


MINARI = dict(
    num_envs=5,
    learning_starts=10_000,
    learning_rate=3e-4,
    hidden_dims=(256, 256),
    activation="relu",
    init="torch",
    log_std_min=-20.0,
    target_entropy_scale=1.0,
    temperature_loss="log_alpha",
    checkpoint_every=50_000,
)
# Total steps: Minari trained separate runs of 1M ("simple"), 4-10M ("medium") and 25M ("expert") steps and kept the
# best evaluation of each; one run of this length, whose checkpoints are all kept, covers what a CPU can train.
RECIPES = {
    "Hopper-v5": Recipe(total_steps=3_000_000, out_dir="~/.minari/experts/Hopper-v5", **MINARI),
    "Walker2d-v5": Recipe(total_steps=3_000_000, out_dir="~/.minari/experts/Walker2d-v5", **MINARI),
    "HalfCheetah-v5": Recipe(total_steps=3_000_000, out_dir="~/.minari/experts/HalfCheetah-v5", **MINARI),
    "Ant-v5": Recipe(total_steps=3_000_000, out_dir="~/.minari/experts/Ant-v5", **MINARI),
    "ant-xy": Recipe(
        total_steps=400_000,
        num_envs=1,
        learning_starts=10_000,
        learning_rate=1e-4,
        hidden_dims=(256, 256),
        activation="gelu",
        init="ogbench",
        log_std_min=-5.0,
        target_entropy_scale=0.5,
        temperature_loss="alpha",
        checkpoint_every=50_000,
        out_dir="~/.ogbench/experts/ant_xy_sac",
    ),
}


@dataclass
class Args:
    """Train a SAC expert for a gymnasium MuJoCo task (Minari's recipe) or the antmaze ant (OGBench's recipe)."""

    env_id: str = "Hopper-v5"
    """`Hopper-v5`, `Walker2d-v5`, `HalfCheetah-v5`, `Ant-v5` (Minari's recipe) or `ant-xy` (the antmaze expert)"""
    total_steps: int | None = None
    """environment transitions in all; default: the recipe's (3M for the gymnasium tasks, 400k for ant-xy). The
    recipe's environments step together (5 for the gymnasium tasks, 1 for ant-xy), so this and the next two flags are
    multiples of their number. A finished or interrupted run continues to a higher value with the same command"""
    checkpoint_every: int | None = None
    """evaluate and keep a checkpoint every this many transitions (and at the end); default: the recipe's (50k)"""
    learning_starts: int | None = None
    """transitions with random actions before the first update; default: the recipe's (10k)"""
    eval_episodes: int = 10
    """episodes per evaluation (deterministic policy; ant-xy also evaluates with the datasets' action noise)"""
    out_dir: str | None = None
    """folder of the run (one run per folder); default: ~/.minari/experts/<env-id>, or ~/.ogbench/experts/ant_xy_sac"""
    seed: int = 0
    """random seed of the networks, the environments and the replay sampling, in [0, 2^32)"""
    buffer_size: int = 1_000_000
    """replay buffer capacity (transitions)"""
    batch_size: int = 256
    """SAC minibatch size"""
    discount: float = 0.99
    """discount factor"""
    tau: float = 0.005
    """Polyak rate of the target critics"""
    direction_interval: int = 100
    """ant-xy only: steps between two random walking directions (OGBench's default)"""
    eval_noise: float = 0.2
    """ant-xy only: standard deviation of the Gaussian action noise of the second evaluation (that of the antmaze
    datasets), >= 0"""


# ----------------------------------------------------------------------------------------------------------------
# Networks: a tanh-Gaussian actor and twin critics (MLPs)
# ----------------------------------------------------------------------------------------------------------------

xavier = nn.initializers.variance_scaling(1.0, "fan_avg", "uniform")
tiny = nn.initializers.variance_scaling(0.01, "fan_avg", "uniform")  # OGBench: near-zero initial actions
torch_kernel = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")  # U(+-1/sqrt(fan_in)), as torch.nn.Linear


class TorchDense(nn.Module):
    """A Dense layer initialised as torch.nn.Linear: weights and biases uniform in +-1/sqrt(fan_in)."""

    features: int

    @nn.compact
    def __call__(self, x):
        bound = 1.0 / math.sqrt(x.shape[-1])
        kernel = self.param("kernel", torch_kernel, (x.shape[-1], self.features))
        bias = self.param(
            "bias", lambda key, shape: jax.random.uniform(key, shape, minval=-bound, maxval=bound), (self.features,)
        )
        return x @ kernel + bias


def dense(features: int, init: str, name: str | None = None, head: bool = False) -> nn.Module:
    if init == "ogbench":
        return nn.Dense(features, kernel_init=tiny if head else xavier, name=name)
    return TorchDense(features, name=name)


ACTIVATIONS = {"relu": nn.relu, "gelu": nn.gelu}


class Actor(nn.Module):
    """Hidden layers `hidden_i`, then the heads `mean` and `log_std` (the names the dataset generator reads)."""

    hidden_dims: Sequence[int]
    action_dim: int
    activation: str = "gelu"
    init_scheme: str = "ogbench"
    log_std_min: float = -5.0

    @nn.compact
    def __call__(self, obs):
        x = obs
        for i, size in enumerate(self.hidden_dims):
            x = ACTIVATIONS[self.activation](dense(size, self.init_scheme, name=f"hidden_{i}")(x))
        mean = dense(self.action_dim, self.init_scheme, name="mean", head=True)(x)
        log_std = dense(self.action_dim, self.init_scheme, name="log_std", head=True)(x)
        return mean, jnp.clip(log_std, self.log_std_min, 2.0)


class Critic(nn.Module):
    hidden_dims: Sequence[int]
    activation: str = "gelu"
    init_scheme: str = "ogbench"

    @nn.compact
    def __call__(self, obs, action):
        x = jnp.concatenate([obs, action], axis=-1)
        for size in self.hidden_dims:
            x = ACTIVATIONS[self.activation](dense(size, self.init_scheme)(x))
        return dense(1, self.init_scheme)(x).squeeze(-1)


TwinCritic = nn.vmap(
    Critic, variable_axes={"params": 0}, split_rngs={"params": True}, in_axes=None, out_axes=0, axis_size=2
)


def make_actor(recipe: Recipe, action_dim: int) -> Actor:
    return Actor(recipe.hidden_dims, action_dim, recipe.activation, recipe.init, recipe.log_std_min)


def init_actor_params(key, obs_dim: int, action_dim: int, recipe: Recipe | None = None) -> dict:
    """Freshly initialised actor weights (the ant-xy recipe by default; also what tests save as a stand-in expert)."""
    return make_actor(recipe or RECIPES["ant-xy"], action_dim).init(key, jnp.zeros((1, obs_dim)))["params"]


def sample_tanh_gaussian(mean, log_std, key):
    """a = tanh(u), u ~ N(mean, std); log-density of a with the tanh change of variables."""
    u = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)
    log_prob_u = -0.5 * (((u - mean) / jnp.exp(log_std)) ** 2 + 2 * log_std + jnp.log(2 * jnp.pi))
    log_det_tanh = 2.0 * (jnp.log(2.0) - u - jax.nn.softplus(-2.0 * u))  # log(1 - tanh(u)^2), stable form
    return jnp.tanh(u), (log_prob_u - log_det_tanh).sum(-1)


# ----------------------------------------------------------------------------------------------------------------
# SAC update
# ----------------------------------------------------------------------------------------------------------------


class TrainState(NamedTuple):
    params: dict  # actor, critic, log_alpha: all trained by one Adam
    target_critic: dict
    opt_state: optax.OptState
    key: jax.Array


def make_update_and_act(actor, critic, optimizer, recipe: Recipe, discount: float, tau: float, action_dim: int):
    """A jitted step: one SAC gradient step, then stochastic actions for the next observations from the new actor.

    The three losses are computed at the same parameters and applied by one Adam step (OGBench's SAC). SB3 updates
    the critics first and then the actor against the updated critics; the difference is one step of staleness.
    """
    target_entropy = -recipe.target_entropy_scale * action_dim

    def losses(params, target_critic, batch, key):
        sg = jax.lax.stop_gradient  # each term only moves its own parameters
        next_key, key = jax.random.split(key)
        alpha = jnp.exp(params["log_alpha"])

        # Critics: soft TD target from the current actor and the target critics (min over the two).
        next_mean, next_log_std = actor.apply({"params": sg(params["actor"])}, batch["next_obs"])
        next_action, next_log_prob = sample_tanh_gaussian(next_mean, next_log_std, next_key)
        next_q = critic.apply({"params": target_critic}, batch["next_obs"], next_action).min(0)
        target = batch["reward"] + discount * batch["mask"] * (next_q - sg(alpha) * next_log_prob)
        q = critic.apply({"params": params["critic"]}, batch["obs"], batch["action"])
        critic_loss = jnp.square(q - sg(target)).mean()  # = 0.5 * (MSE_1 + MSE_2), SB3's critic loss

        # Actor: maximise min-Q plus entropy through the reparameterised sample.
        action, log_prob = sample_tanh_gaussian(*actor.apply({"params": params["actor"]}, batch["obs"]), key)
        q_pi = critic.apply({"params": sg(params["critic"])}, batch["obs"], action).min(0)
        actor_loss = (sg(alpha) * log_prob - q_pi).mean()

        # Temperature: move the policy's entropy toward the target.
        entropy = -sg(log_prob).mean()
        if recipe.temperature_loss == "log_alpha":
            alpha_loss = params["log_alpha"] * (entropy - target_entropy)
        else:
            alpha_loss = alpha * (entropy - target_entropy)

        metrics = {"critic_loss": critic_loss, "actor_loss": actor_loss, "alpha": alpha, "entropy": entropy}
        return critic_loss + actor_loss + alpha_loss, metrics

    @jax.jit
    def update_and_act(state: TrainState, batch: dict, obs):
        key, loss_key, act_key = jax.random.split(state.key, 3)
        grads, metrics = jax.grad(losses, has_aux=True)(state.params, state.target_critic, batch, loss_key)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        # Polyak average toward the critics *before* this step, as OGBench's SAC does.
        target_critic = optax.incremental_update(state.params["critic"], state.target_critic, tau)
        action, _ = sample_tanh_gaussian(*actor.apply({"params": params["actor"]}, obs), act_key)
        return TrainState(params, target_critic, opt_state, key), action, metrics

    return update_and_act


# ----------------------------------------------------------------------------------------------------------------
# Environments and evaluation
# ----------------------------------------------------------------------------------------------------------------


def make_env(env_id: str, direction_interval: int) -> gymnasium.Env:
    if env_id != "ant-xy":
        return gymnasium.make(env_id)
    # OGBench's `online-ant-xy-v0`: the online Ant (1000-step episodes) with the directional xy wrapper.
    import ogbench.online_locomotion  # noqa: F401  (registers online-ant-v0)
    from ogbench.online_locomotion.wrappers import GymXYWrapper

    return GymXYWrapper(gymnasium.make("online-ant-v0"), resample_interval=direction_interval)


def evaluate(envs, policy, actor_params, noise: float, rng: np.random.Generator) -> dict:
    """One episode per environment, all stepped in lockstep with one policy call per step.

    Returns the return (mean, std), episode length, the fraction of episodes that ended by termination (a fall), and
    the mean speed along the episode's reward direction (return / duration; m/s for ant-xy, whose reward is the
    displacement along the commanded direction).
    """
    n = len(envs)
    obs = np.stack([env.reset(seed=int(rng.integers(2**31)))[0] for env in envs])
    returns, lengths, fell, done = np.zeros(n), np.zeros(n, int), np.zeros(n, bool), np.zeros(n, bool)
    while not done.all():
        actions = np.asarray(policy(actor_params, obs))
        if noise > 0:
            actions = np.clip(actions + noise * rng.standard_normal(actions.shape), -1, 1)
        for i, env in enumerate(envs):
            if done[i]:
                continue
            obs[i], reward, terminated, truncated, _ = env.step(actions[i])
            returns[i] += reward
            lengths[i] += 1
            fell[i] = terminated
            done[i] = terminated or truncated
    dt = envs[0].unwrapped.dt
    return {
        "return_mean": float(returns.mean()),
        "return_std": float(returns.std()),
        "episode_length": float(lengths.mean()),
        "falls": float(fell.mean()),
        "speed": float(np.mean(returns / (lengths * dt))),
    }


# ----------------------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------------------


def resolve(args: Args) -> tuple[Args, Recipe]:
    """The recipe of --env-id, and Args with the defaults it sets filled in."""
    recipe = RECIPES[args.env_id]
    if args.learning_starts is not None:
        recipe = dataclasses.replace(recipe, learning_starts=args.learning_starts)
    args = dataclasses.replace(
        args,
        total_steps=args.total_steps or recipe.total_steps,
        checkpoint_every=args.checkpoint_every or recipe.checkpoint_every,
        out_dir=os.path.expanduser(args.out_dir or recipe.out_dir),
    )
    return args, recipe


def main(args: Args) -> None:
    check_args(args)
    args, recipe = resolve(args)
    config = json.loads(json.dumps({"args": asdict(args), "recipe": asdict(recipe)}))  # tuples as JSON lists
    resuming = check_run_folder(args, config)  # one folder, one run
    os.makedirs(os.path.join(args.out_dir, "checkpoints"), exist_ok=True)
    if not resuming:  # the settings the run starts with, which every later command on this folder must match
        write_atomic(os.path.join(args.out_dir, "config.json"), json.dumps(config, indent=2).encode())

    np.random.seed(args.seed)  # the ant-xy wrapper draws its directions from the global numpy generator
    rng = np.random.default_rng(args.seed)
    eval_rng = np.random.default_rng(args.seed + 1)
    envs = [make_env(args.env_id, args.direction_interval) for _ in range(recipe.num_envs)]
    eval_envs = [make_env(args.env_id, args.direction_interval) for _ in range(args.eval_episodes)]
    obs = np.stack([env.reset(seed=args.seed + i)[0] for i, env in enumerate(envs)])
    for i, env in enumerate(envs):
        env.action_space.seed(args.seed + i)
    obs_dim, action_dim = obs.shape[1], envs[0].action_space.shape[0]

    actor = make_actor(recipe, action_dim)
    critic = TwinCritic(recipe.hidden_dims, recipe.activation, recipe.init)
    actor_key, critic_key, key = jax.random.split(jax.random.PRNGKey(args.seed), 3)
    params = {
        "actor": init_actor_params(actor_key, obs_dim, action_dim, recipe),
        "critic": critic.init(critic_key, jnp.zeros((1, obs_dim)), jnp.zeros((1, action_dim)))["params"],
        "log_alpha": jnp.zeros(()),  # alpha starts at 1
    }
    optimizer = optax.adam(recipe.learning_rate)
    state = TrainState(params, params["critic"], optimizer.init(params), key)
    update_and_act = make_update_and_act(actor, critic, optimizer, recipe, args.discount, args.tau, action_dim)
    policy = jax.jit(lambda actor_params, o: jnp.tanh(actor.apply({"params": actor_params}, o)[0]))  # the mean

    size = min(args.buffer_size, args.total_steps)
    buffer = {
        "obs": np.zeros((size, obs_dim), np.float32),
        "action": np.zeros((size, action_dim), np.float32),
        "reward": np.zeros(size, np.float32),
        "mask": np.zeros(size, np.float32),
        "next_obs": np.zeros((size, obs_dim), np.float32),
    }
    transitions, evaluations, episode_returns = 0, [], np.zeros(recipe.num_envs)
    if resuming:  # continue the interrupted run; the episodes in progress start afresh
        state, transitions, evaluations = restore_run(args, state, buffer, rng, eval_rng)
        print(f"Resuming {args.out_dir} at {transitions} transitions")
    print(
        f"Training {args.env_id} ({obs_dim} obs, {action_dim} actions) to {args.total_steps} transitions in {args.out_dir}"
    )

    info = {"env_id": args.env_id, "obs_dim": int(obs_dim), "action_dim": int(action_dim), "config": config}
    # Minutes of training, counted across sessions: a resumed run goes on from its last checkpoint's count.
    start = time.time() - (evaluations[-1]["minutes"] * 60 if evaluations else 0.0)
    start_transitions, session_start = transitions, time.time()
    metrics, last_return = None, float("nan")
    actions = np.stack([env.action_space.sample() for env in envs])
    bar = tqdm(total=args.total_steps, initial=transitions, unit="step", smoothing=0.05)
    try:
        while transitions < args.total_steps:
            for i, env in enumerate(envs):
                next_obs, reward, terminated, truncated, _ = env.step(actions[i])
                j = (transitions + i) % size
                buffer["obs"][j], buffer["action"][j], buffer["reward"][j] = obs[i], actions[i], reward
                buffer["mask"][j], buffer["next_obs"][j] = float(not terminated), next_obs  # truncation bootstraps
                episode_returns[i] += reward
                obs[i] = next_obs
                if terminated or truncated:
                    obs[i], _ = env.reset()
                    last_return, episode_returns[i] = episode_returns[i], 0.0
            transitions += recipe.num_envs
            bar.update(recipe.num_envs)

            if transitions < recipe.learning_starts:
                actions = np.stack([env.action_space.sample() for env in envs])
            else:
                idx = rng.integers(min(transitions, size), size=args.batch_size)
                batch = {k: v[idx] for k, v in buffer.items()}
                state, actions, metrics = update_and_act(state, batch, obs)
                actions = np.asarray(actions)
                if not np.isfinite(float(metrics["critic_loss"]) + float(metrics["actor_loss"])):
                    stop_on_nan(args.out_dir, transitions, evaluations)

            if transitions % 1000 < recipe.num_envs and metrics is not None:
                bar.set_postfix(ep_return=f"{last_return:.0f}", alpha=f"{float(metrics['alpha']):.3f}")
            if transitions % args.checkpoint_every == 0 or transitions >= args.total_steps:
                actor_params = state.params["actor"]
                result = {
                    "step": transitions,
                    "minutes": (time.time() - start) / 60,
                    "deterministic": evaluate(eval_envs, policy, actor_params, 0.0, eval_rng),
                }
                if args.env_id == "ant-xy":
                    result[f"noise_{args.eval_noise}"] = evaluate(
                        eval_envs, policy, actor_params, args.eval_noise, eval_rng
                    )
                resume = {
                    "state": state,
                    "buffer": {k: v[: min(transitions, size)] for k, v in buffer.items()},  # the filled rows
                    "transitions": transitions,
                    "rng": np.frombuffer(json.dumps(rng.bit_generator.state).encode(), np.uint8),
                    "eval_rng": np.frombuffer(json.dumps(eval_rng.bit_generator.state).encode(), np.uint8),
                }
                info.update(evaluations=[*evaluations, result], steps_trained=transitions)
                staged = stage_checkpoint(args.out_dir, args.env_id, actor_params, info, resume, obs_dim, action_dim)
                with hold_ctrl_c():  # all of the checkpoint's files are renamed into place, or none
                    for temporary, final in staged:
                        os.replace(temporary, final)
                    evaluations.append(result)
                det = result["deterministic"]
                extra = f", speed {det['speed']:.2f} m/s, falls {det['falls']:.0%}" if args.env_id == "ant-xy" else ""
                tqdm.write(
                    f"step {transitions}: return {det['return_mean']:.1f} +- {det['return_std']:.1f}{extra} "
                    f"({result['minutes']:.1f} min)"
                )
    except KeyboardInterrupt:
        bar.close()
        last = f"its last checkpoint, at {evaluations[-1]['step']} transitions," if evaluations else "no checkpoint yet"
        print(f"interrupted: {last} in {args.out_dir}; continue with: {command_line(args)}", file=sys.stderr)
        sys.exit(130)
    bar.close()
    elapsed = time.time() - session_start
    final = evaluations[-1]["deterministic"]
    print(
        f"{args.env_id}: {transitions} transitions, final return {final['return_mean']:.1f} +- "
        f"{final['return_std']:.1f} | {(time.time() - start) / 60:.1f} min in all, {elapsed / 60:.1f} this session | "
        f"{(transitions - start_transitions) / max(elapsed, 1e-9):.0f} transitions/s | {args.out_dir}/actor.msgpack"
    )


# ----------------------------------------------------------------------------------------------------------------
# RUN PLUMBING: flag checks, the run folder, checkpoint files, Ctrl-C; nothing here changes the numbers
# ----------------------------------------------------------------------------------------------------------------

# Every flag's rule, checked before anything slow: (flags, test, what is accepted). None takes the recipe's value.
FLAG_RULES = [
    ("seed", lambda v: 0 <= v < 2**32, "must be in [0, 2^32); give a non-negative integer"),
    (
        "total_steps checkpoint_every eval_episodes buffer_size batch_size direction_interval",
        lambda v: v >= 1,
        "must be positive; give an integer >= 1",
    ),
    ("learning_starts", lambda v: v >= 0, "must not be negative; give 0 (updates from the first step) or more"),
    ("discount", lambda v: 0 <= v < 1, "must be in [0, 1); give e.g. 0.99"),
    ("tau", lambda v: 0 < v <= 1, "must be in (0, 1]; give e.g. 0.005"),
    ("eval_noise", lambda v: v >= 0, "must be a finite number >= 0; give e.g. 0.2"),
]
FREE_SETTINGS = ("total_steps", "out_dir")  # what a command may change in a run it continues: train longer, move it


def fail(flag: str, value, why: str) -> None:
    """A bad flag value: one line on stderr, exit status 2."""
    print(f"error: --{flag} {value}: {why}", file=sys.stderr)
    sys.exit(2)


def check_args(args: Args) -> None:
    """Every flag, before anything slow: the rules above, then the lines that need the recipe."""
    for names, ok, why in FLAG_RULES:
        for name in names.split():
            value = getattr(args, name)
            if value is not None and not (math.isfinite(value) and ok(value)):
                fail(name.replace("_", "-"), value, why)
    if args.batch_size > args.buffer_size:
        fail("batch-size", args.batch_size, f"must not exceed --buffer-size {args.buffer_size}")
    # A mistyped --env-id is answered with the closest recipe, once the other flags are known to suit it too.
    known = {name.lower(): name for name in RECIPES}
    close = difflib.get_close_matches(args.env_id.lower(), known, n=1, cutoff=0.6)
    recipe_id = args.env_id if args.env_id in RECIPES else known[close[0]] if close else None
    if recipe_id is not None:
        num_envs = RECIPES[recipe_id].num_envs
        for name in ("total_steps", "checkpoint_every", "learning_starts"):
            if (value := getattr(args, name)) is not None and value % num_envs:
                why = f"must be a multiple of the {num_envs} environments that {recipe_id}'s recipe steps together"
                fail(name.replace("_", "-"), value, f"{why}; give e.g. {-(-value // num_envs) * num_envs}")
        check_out_dir(args.out_dir, resolve(dataclasses.replace(args, env_id=recipe_id))[0].out_dir)
    if args.env_id not in RECIPES:
        accepted = f"accepted: {', '.join(RECIPES)}"
        if recipe_id is None:
            fail("env-id", args.env_id, f"no recipe for it; {accepted}")
        suggestion = command_line(resolve(dataclasses.replace(args, env_id=recipe_id))[0])
        fail("env-id", args.env_id, f"no recipe for it ({accepted}); did you mean {recipe_id}: {suggestion}")


def check_out_dir(given: str | None, path: str) -> None:
    """The run folder is a folder, or can be made as one."""
    shown = given if given is not None else f"{path} (the default)"
    if os.path.exists(path) and not os.path.isdir(path):
        fail("out-dir", shown, "is a file; give a folder (made if missing)")
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
        fail("out-dir", shown, f"cannot be made: {parent} is not a writable folder; give another folder")


def command_line(args: Args) -> str:
    """The shortest command for these resolved Args: --env-id, then each flag that is not at the recipe's default."""
    defaults, _ = resolve(Args(env_id=args.env_id))
    argv = ["python", "benchmark/train_expert.py", "--env-id", args.env_id]
    for field in dataclasses.fields(Args):
        value = getattr(args, field.name)
        if field.name != "env_id" and value != getattr(defaults, field.name):
            argv += [f"--{field.name.replace('_', '-')}", str(value)]
    return shlex.join(argv)


def new_folder_line(args: Args, lead: str = "Start") -> str:
    """A line with this command in a folder that does not exist yet: `<out-dir>-2`, or -3, ..."""
    number = 2
    while os.path.exists(f"{args.out_dir.rstrip('/')}-{number}"):
        number += 1
    command = command_line(dataclasses.replace(args, out_dir=f"{args.out_dir.rstrip('/')}-{number}"))
    return f"\n  {lead} this run in a new folder: {command}"


def check_run_folder(args: Args, config: dict) -> bool:
    """One folder, one run. True when `args.out_dir` holds this command's run, to continue; False when it holds none.

    A folder that holds a run whose settings (config.json) are missing, unreadable or not this command's is refused
    (exit status 1) with the differing settings, the command that continues that run, and one that starts this run
    in a new folder; so is an expert without the training state to continue it, which a new run would overwrite.
    """
    out_dir = args.out_dir
    config_path, resume_path = os.path.join(out_dir, "config.json"), os.path.join(out_dir, "resume.msgpack")
    found = [name for name in ("resume.msgpack", "actor.msgpack", "actor.json") if os.path.exists(f"{out_dir}/{name}")]
    if os.path.isdir(os.path.join(out_dir, "checkpoints")) and os.listdir(os.path.join(out_dir, "checkpoints")):
        found.append("checkpoints/")
    elsewhere = new_folder_line(args)
    if not os.path.exists(config_path):
        if found:
            raise SystemExit(
                f"error: {out_dir} holds a run ({', '.join(found)}) without the settings it was started with "
                f"(no config.json); continuing it under this command's settings could mix two runs.{elsewhere}"
            )
        return False
    try:
        with open(config_path) as f:
            previous = json.load(f)
        previous_args, previous_recipe = Args(**previous["args"]), dict(previous["recipe"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SystemExit(
            f"error: {config_path}, the settings of the run in {out_dir}, is unreadable "
            f"({type(error).__name__}: {error}); it cannot be continued safely.{elsewhere}"
        ) from None

    differences = []  # learning_starts is compared as the recipe uses it (the flag, or the recipe's default)
    for name, value in config["args"].items():
        if name not in (*FREE_SETTINGS, "learning_starts") and previous["args"].get(name) != value:
            differences.append(f"--{name.replace('_', '-')} {value} here, {previous['args'].get(name)} in that run")
    for name, value in config["recipe"].items():
        if previous_recipe.get(name) != value:
            flag = "--learning-starts" if name == "learning_starts" else f"the recipe's {name}"
            differences.append(f"{flag} {value} here, {previous_recipe.get(name)} in that run")
    if differences:
        # The command that continues that run: its own settings, this command's --total-steps and --out-dir. It is
        # offered only if it reproduces them (a recipe changed in this script since cannot be set by a flag).
        resumed = dataclasses.replace(
            previous_args,
            learning_starts=previous_recipe.get("learning_starts"),
            total_steps=args.total_steps,
            out_dir=args.out_dir,
        )
        same_recipe = previous_args.env_id in RECIPES and asdict(resolve(resumed)[1]) == {
            k: tuple(v) if isinstance(v, list) else v for k, v in previous_recipe.items()
        }
        resume_line = f"\n  Continue that run: {command_line(resolve(resumed)[0])}" if same_recipe else ""
        raise SystemExit(
            f"error: {out_dir} holds a run with other settings ({'; '.join(differences)}); one folder holds one run."
            f"{resume_line}{new_folder_line(args, 'or start') if resume_line else elsewhere}"
        )
    if not os.path.exists(resume_path) and found:
        raise SystemExit(
            f"error: {out_dir} holds an expert ({', '.join(found)}) but not the training state to continue it "
            f"(resume.msgpack); a new run there would overwrite it.{elsewhere}"
        )
    return os.path.exists(resume_path)


def restore_run(args: Args, state: TrainState, buffer: dict, rng, eval_rng) -> tuple[TrainState, int, list[dict]]:
    """The training state of the last checkpoint (into `buffer` and the generators, in place), and the evaluations."""
    out_dir = args.out_dir
    resume_path = os.path.join(out_dir, "resume.msgpack")
    template = {
        "state": state,
        "buffer": {k: np.zeros(0, v.dtype) for k, v in buffer.items()},
        "transitions": 0,
        "rng": np.zeros(0, np.uint8),
        "eval_rng": np.zeros(0, np.uint8),
    }
    try:
        with open(resume_path, "rb") as f:
            saved = serialization.from_bytes(template, f.read())
    except Exception as error:  # msgpack raises several types for a damaged file
        raise SystemExit(
            f"error: {resume_path} is not a readable training state of this recipe ({type(error).__name__}: "
            f"{error}); the run cannot be continued.{new_folder_line(args)}"
        ) from None
    transitions, size = int(saved["transitions"]), len(buffer["reward"])
    filled = len(saved["buffer"]["reward"])  # the saved rows, in their circular order
    if transitions > filled and filled != size:
        raise SystemExit(
            f"error: {resume_path} was written with a replay buffer of {filled} rows, this run has {size}.\n"
            "  Resume with the --total-steps and --buffer-size of the interrupted run."
        )
    for k, v in saved["buffer"].items():
        buffer[k][:filled] = v
    rng.bit_generator.state = json.loads(bytes(saved["rng"]).decode())
    eval_rng.bit_generator.state = json.loads(bytes(saved["eval_rng"]).decode())
    # The evaluations so far: in actor.json, or in the record of the last checkpoint, which holds them too.
    for record in ("actor.json", f"checkpoints/actor_{transitions:09d}.json"):
        try:
            with open(os.path.join(out_dir, record)) as f:
                evaluations = [e for e in json.load(f)["evaluations"] if e["step"] <= transitions]
            return saved["state"], transitions, evaluations
        except (OSError, ValueError, KeyError, TypeError) as error:
            problem = f"{type(error).__name__}: {error}"
    raise SystemExit(
        f"error: {out_dir}/actor.json and {record}, the evaluations of the run to continue, are missing or damaged "
        f"({problem}).{new_folder_line(args)}"
    )


def write_atomic(path: str, data: bytes) -> None:
    with open(path + ".tmp", "wb") as f:
        f.write(data)
    os.replace(path + ".tmp", path)


def save_expert(path: str, actor_params, info: dict) -> None:
    """Write actor weights (flax msgpack) and `info` as JSON beside them (same stem, .json), both atomically."""
    path = os.path.expanduser(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    write_atomic(path, serialization.msgpack_serialize(jax.device_get(actor_params)))
    write_atomic(os.path.splitext(path)[0] + ".json", json.dumps(info, indent=2).encode())


def stage_checkpoint(out_dir, env_id, actor_params, info, resume, obs_dim, action_dim) -> list[tuple[str, str]]:
    """Write every file of a checkpoint under a temporary name, read the actor back and check it; nothing in place
    changes. Returns (temporary, final) path pairs in the order to rename them, the training state last: a run is
    continued from resume.msgpack, so the checkpoint counts once that is in place."""
    step = info["steps_trained"]
    actor_bytes = serialization.msgpack_serialize(jax.device_get(actor_params))
    info_bytes = json.dumps(info, indent=2).encode()
    files = {
        f"checkpoints/actor_{step:09d}.msgpack": actor_bytes,
        f"checkpoints/actor_{step:09d}.json": info_bytes,
        "actor.msgpack": actor_bytes,
        "actor.json": info_bytes,
        "resume.msgpack": serialization.to_bytes(jax.device_get(resume)),
    }
    names = [*files, "learning_curve.png"]
    staged = [(os.path.join(out_dir, f"{name}.tmp"), os.path.join(out_dir, name)) for name in names]
    try:
        for (temporary, _), data in zip(staged, files.values(), strict=False):
            with open(temporary, "wb") as f:
                f.write(data)
        with open(staged[0][0], "rb") as f:
            saved = serialization.msgpack_restore(f.read())
        shapes = saved["hidden_0"]["kernel"].shape[0], saved["mean"]["kernel"].shape[1]
        finite = all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(saved))
        if not finite or shapes != (obs_dim, action_dim):
            problem = "NaN or infinite weights" if not finite else f"{shapes[0]} inputs and {shapes[1]} outputs"
            raise SystemExit(
                f"error: the actor at {step} transitions has {problem} ({env_id}: {obs_dim} observations, "
                f"{action_dim} actions); the last good checkpoint in {out_dir} is kept as it was."
            )
        plot_learning_curve(staged[-1][0], env_id, info["evaluations"])
    except BaseException:  # a failed check, an error or Ctrl-C: no temporary file is left behind
        for temporary, _ in staged:
            if os.path.exists(temporary):
                os.remove(temporary)
        raise
    resume_file = staged.pop(names.index("resume.msgpack"))
    return [*staged, resume_file]


def plot_learning_curve(path: str, env_id: str, evaluations: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.array([e["step"] for e in evaluations]) / 1e6
    mean = np.array([e["deterministic"]["return_mean"] for e in evaluations])
    std = np.array([e["deterministic"]["return_std"] for e in evaluations])
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, mean, marker=".")
    ax.fill_between(steps, mean - std, mean + std, alpha=0.25)
    ax.set_xlabel("environment steps (millions)")
    ax.set_ylabel("return (deterministic policy)")
    ax.set_title(f"SAC expert, {env_id}\nmean and std over the evaluation episodes", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)


@contextlib.contextmanager
def hold_ctrl_c():
    """Hold Ctrl-C until the block ends (then raise it), so that it never falls between two renames."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = signal.signal(signal.SIGINT, lambda *_: received.append(True))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt


def stop_on_nan(out_dir: str, transitions: int, evaluations: list[dict]) -> None:
    last = f"the last checkpoint ({evaluations[-1]['step']} transitions)" if evaluations else "no checkpoint yet"
    raise SystemExit(
        f"error: the SAC loss became NaN or infinite at {transitions} transitions; stopped, {last} in {out_dir} is "
        "kept as it was. Another --seed or a fresh --out-dir may avoid it."
    )


if __name__ == "__main__":
    try:
        main(tyro.cli(Args))
    except KeyboardInterrupt:  # during set-up (environments, compilation, reading a checkpoint): nothing written yet
        print("interrupted before training started; the same command starts (or resumes) the run", file=sys.stderr)
        sys.exit(130)
