"""Train the ant direction-following expert that drives the antmaze `navigate` datasets (SAC, in JAX).

OGBench collected its antmaze data with an ant that walks in a commanded xy direction: a SAC agent trained for 400k
steps on `online-ant-xy-v0`, the online Ant with a wrapper that draws a random unit direction z every 100 steps,
appends it to the observation (27 proprioceptive dims without xy, plus z) and rewards the displacement along it,
r = (xy' - xy) . z. Its checkpoint is not published, so this script retrains it with the same SAC defaults as
OGBench's `impls/agents/sac.py` and saves the actor for `benchmark/make_dataset.py`:

    python benchmark/train_ant_expert.py                      # 400k steps, writes ~/.ogbench/experts/ant_xy_sac.msgpack

The actor weights are saved with flax serialization (a dict `hidden_i`, `mean`, `log_std` of `kernel`/`bias`) beside
a JSON file with the configuration and the measured quality: the speed along the commanded direction (m/s) of the
deterministic policy, and of the policy with the Gaussian action noise (std 0.2) that the dataset generator adds,
and the fraction of episodes that end in a fall.
The checkpoint is rewritten at every evaluation, so a run stopped early still leaves a usable expert.
"""

import json
import os
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

DEFAULT_SAVE_PATH = "~/.ogbench/experts/ant_xy_sac.msgpack"


@dataclass
class Args:
    total_steps: int = 400_000
    """environment steps (one SAC update per step after the seed steps); OGBench's expert used 400k"""
    seed_steps: int = 10_000
    """initial steps with uniformly random actions and no updates"""
    buffer_size: int = 1_000_000
    """replay buffer capacity"""
    batch_size: int = 256
    """SAC minibatch size"""
    learning_rate: float = 1e-4
    """Adam learning rate of the actor, the critics and the temperature"""
    discount: float = 0.99
    """discount factor"""
    tau: float = 0.005
    """Polyak rate of the target critics"""
    hidden_dims: tuple[int, ...] = (256, 256)
    """hidden layer sizes of the actor and of each critic"""
    target_entropy_multiplier: float = 0.5
    """target entropy = -multiplier * action dimension"""
    direction_interval: int = 100
    """steps between two random walking directions (OGBench's xy wrapper default)"""
    eval_every: int = 50_000
    """evaluate (and save the checkpoint) every this many steps"""
    eval_episodes: int = 10
    """episodes per evaluation, for each of the two policies (deterministic, with action noise)"""
    eval_noise: float = 0.2
    """Gaussian action noise of the second evaluation: the noise of the antmaze datasets"""
    seed: int = 0
    """random seed"""
    save_path: str = DEFAULT_SAVE_PATH
    """where to write the actor weights (a .json with the config and quality is written beside it)"""


# ----------------------------------------------------------------------------------------------------------------
# Networks: the tanh-Gaussian actor and the twin critics of OGBench's SAC (GELU MLPs, Xavier-uniform init)
# ----------------------------------------------------------------------------------------------------------------

xavier = nn.initializers.variance_scaling(1.0, "fan_avg", "uniform")


class Actor(nn.Module):
    hidden_dims: Sequence[int]
    action_dim: int

    @nn.compact
    def __call__(self, obs):
        x = obs
        for i, size in enumerate(self.hidden_dims):
            x = nn.gelu(nn.Dense(size, kernel_init=xavier, name=f"hidden_{i}")(x))
        small = nn.initializers.variance_scaling(0.01, "fan_avg", "uniform")  # near-zero initial actions
        mean = nn.Dense(self.action_dim, kernel_init=small, name="mean")(x)
        log_std = nn.Dense(self.action_dim, kernel_init=small, name="log_std")(x)
        return mean, jnp.clip(log_std, -5.0, 2.0)


class Critic(nn.Module):
    hidden_dims: Sequence[int]

    @nn.compact
    def __call__(self, obs, action):
        x = jnp.concatenate([obs, action], axis=-1)
        for size in self.hidden_dims:
            x = nn.gelu(nn.Dense(size, kernel_init=xavier)(x))
        return nn.Dense(1, kernel_init=xavier)(x).squeeze(-1)


TwinCritic = nn.vmap(
    Critic, variable_axes={"params": 0}, split_rngs={"params": True}, in_axes=None, out_axes=0, axis_size=2
)


def sample_tanh_gaussian(mean, log_std, key):
    """a = tanh(u), u ~ N(mean, std); log-density of a with the tanh change of variables."""
    u = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)
    log_prob_u = -0.5 * (((u - mean) / jnp.exp(log_std)) ** 2 + 2 * log_std + jnp.log(2 * jnp.pi))
    log_det_tanh = 2.0 * (jnp.log(2.0) - u - jax.nn.softplus(-2.0 * u))  # log(1 - tanh(u)^2), stable form
    return jnp.tanh(u), (log_prob_u - log_det_tanh).sum(-1)


def init_actor_params(key, obs_dim: int, action_dim: int, hidden_dims: Sequence[int] = (256, 256)) -> dict:
    """Freshly initialised actor weights (also what the tests save as a stand-in expert)."""
    return Actor(tuple(hidden_dims), action_dim).init(key, jnp.zeros((1, obs_dim)))["params"]


def save_expert(path: str, actor_params, info: dict) -> None:
    """Write the actor weights (flax msgpack) and `info` as JSON beside them, both atomically."""
    path = os.path.expanduser(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path + ".tmp", "wb") as f:
        f.write(serialization.msgpack_serialize(jax.device_get(actor_params)))
    os.replace(path + ".tmp", path)
    with open(os.path.splitext(path)[0] + ".json", "w") as f:
        json.dump(info, f, indent=2)


# ----------------------------------------------------------------------------------------------------------------
# SAC update
# ----------------------------------------------------------------------------------------------------------------


class TrainState(NamedTuple):
    params: dict  # actor, critic, log_alpha: all trained by one Adam
    target_critic: dict
    opt_state: optax.OptState
    key: jax.Array


def make_update_and_act(actor, critic, optimizer, discount: float, tau: float, target_entropy: float):
    """A jitted step: one SAC gradient step, then a stochastic action for the next observation from the new actor."""

    def losses(params, target_critic, batch, key):
        # Each term only moves its own parameters (stop_gradient elsewhere), as in OGBench's SAC.
        sg = jax.lax.stop_gradient
        next_key, key = jax.random.split(key)
        alpha = jnp.exp(params["log_alpha"])

        # Critics: soft TD target from the current actor and the target critics (min over the two).
        next_mean, next_log_std = actor.apply({"params": sg(params["actor"])}, batch["next_obs"])
        next_action, next_log_prob = sample_tanh_gaussian(next_mean, next_log_std, next_key)
        next_q = critic.apply({"params": target_critic}, batch["next_obs"], next_action).min(0)
        target = batch["reward"] + discount * batch["mask"] * (next_q - sg(alpha) * next_log_prob)
        q = critic.apply({"params": params["critic"]}, batch["obs"], batch["action"])
        critic_loss = jnp.square(q - sg(target)).mean()

        # Actor: maximise min-Q plus entropy through the reparameterised sample.
        action, log_prob = sample_tanh_gaussian(*actor.apply({"params": params["actor"]}, batch["obs"]), key)
        q_pi = critic.apply({"params": sg(params["critic"])}, batch["obs"], action).min(0)
        actor_loss = (sg(alpha) * log_prob - q_pi).mean()

        # Temperature: move the policy's entropy toward the target.
        entropy = -sg(log_prob).mean()
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
# Environment and evaluation
# ----------------------------------------------------------------------------------------------------------------


def make_env(direction_interval: int) -> gymnasium.Env:
    """OGBench's `online-ant-xy-v0`: the online Ant (1000-step episodes) with the directional xy wrapper."""
    import ogbench.online_locomotion  # noqa: F401  (registers online-ant-v0)
    from ogbench.online_locomotion.wrappers import GymXYWrapper

    return GymXYWrapper(gymnasium.make("online-ant-v0"), resample_interval=direction_interval)


def evaluate(env, policy, actor_params, episodes: int, noise: float, rng: np.random.Generator) -> dict:
    """Mean speed along the commanded direction (m/s), episode length, and the fraction of episodes ended by a fall
    (the online Ant terminates when the torso leaves its healthy height) over `episodes` episodes."""
    speeds, lengths, falls = [], [], []
    for _ in range(episodes):
        obs, _ = env.reset(seed=int(rng.integers(2**31)))
        total, steps, done = 0.0, 0, False
        while not done:
            action = np.asarray(policy(actor_params, obs))
            action = np.clip(action + noise * rng.standard_normal(action.shape), -1, 1)
            obs, reward, terminated, truncated, _ = env.step(action)
            total, steps, done = total + reward, steps + 1, terminated or truncated
        speeds.append(total / (steps * env.unwrapped.dt))
        lengths.append(steps)
        falls.append(terminated)
    return {"speed": float(np.mean(speeds)), "episode_length": float(np.mean(lengths)), "falls": float(np.mean(falls))}


def main(args: Args) -> None:
    np.random.seed(args.seed)  # the xy wrapper draws its directions from the global numpy generator
    rng = np.random.default_rng(args.seed)
    env, eval_env = make_env(args.direction_interval), make_env(args.direction_interval)
    obs, _ = env.reset(seed=args.seed)
    env.action_space.seed(args.seed)
    obs_dim, action_dim = obs.shape[0], env.action_space.shape[0]
    target_entropy = -args.target_entropy_multiplier * action_dim

    actor, critic = Actor(tuple(args.hidden_dims), action_dim), TwinCritic(tuple(args.hidden_dims))
    actor_key, critic_key, key = jax.random.split(jax.random.PRNGKey(args.seed), 3)
    params = {
        "actor": init_actor_params(actor_key, obs_dim, action_dim, args.hidden_dims),
        "critic": critic.init(critic_key, jnp.zeros((1, obs_dim)), jnp.zeros((1, action_dim)))["params"],
        "log_alpha": jnp.zeros(()),  # alpha starts at 1
    }
    optimizer = optax.adam(args.learning_rate)
    state = TrainState(params, params["critic"], optimizer.init(params), key)
    update_and_act = make_update_and_act(actor, critic, optimizer, args.discount, args.tau, target_entropy)
    policy = jax.jit(lambda actor_params, o: jnp.tanh(actor.apply({"params": actor_params}, o)[0]))  # the mean

    size = min(args.buffer_size, args.total_steps)
    buffer = {
        "obs": np.zeros((size, obs_dim), np.float32),
        "action": np.zeros((size, action_dim), np.float32),
        "reward": np.zeros(size, np.float32),
        "mask": np.zeros(size, np.float32),
        "next_obs": np.zeros((size, obs_dim), np.float32),
    }

    info = {"config": asdict(args), "obs_dim": int(obs_dim), "action_dim": int(action_dim), "evaluations": []}
    start = time.time()
    metrics, episode_return, last_return = None, 0.0, float("nan")
    action = env.action_space.sample()
    bar = tqdm(range(1, args.total_steps + 1), unit="step", smoothing=0.05)
    for step in bar:
        next_obs, reward, terminated, truncated, _ = env.step(action)
        i = (step - 1) % size
        buffer["obs"][i], buffer["action"][i], buffer["reward"][i] = obs, action, reward
        buffer["mask"][i], buffer["next_obs"][i] = float(not terminated), next_obs  # truncation still bootstraps
        episode_return += reward
        obs = next_obs
        if terminated or truncated:
            obs, _ = env.reset()
            last_return, episode_return = episode_return, 0.0

        if step < args.seed_steps:
            action = env.action_space.sample()
        else:
            idx = rng.integers(min(step, size), size=args.batch_size)
            batch = {k: v[idx] for k, v in buffer.items()}
            state, action, metrics = update_and_act(state, batch, obs)
            action = np.asarray(action)

        if step % 1000 == 0 and metrics is not None:
            bar.set_postfix(ep_return=f"{last_return:.1f}", alpha=f"{float(metrics['alpha']):.3f}")
        if step % args.eval_every == 0 or step == args.total_steps:
            actor_params = state.params["actor"]
            result = {
                "step": step,
                "minutes": (time.time() - start) / 60,
                "deterministic": evaluate(eval_env, policy, actor_params, args.eval_episodes, 0.0, rng),
                f"noise_{args.eval_noise}": evaluate(
                    eval_env, policy, actor_params, args.eval_episodes, args.eval_noise, rng
                ),
            }
            info["evaluations"].append(result)
            info["steps_trained"] = step
            save_expert(args.save_path, actor_params, info)
            tqdm.write(
                f"step {step}: speed along the direction {result['deterministic']['speed']:.2f} m/s "
                f"(with noise {args.eval_noise}: {result[f'noise_{args.eval_noise}']['speed']:.2f} m/s), "
                f"falls {result['deterministic']['falls']:.0%}, {result['minutes']:.1f} min"
            )

    final = info["evaluations"][-1]
    print(
        f"Saved {os.path.expanduser(args.save_path)} after {args.total_steps} steps in "
        f"{(time.time() - start) / 60:.1f} min ({args.total_steps / (time.time() - start):.0f} steps/s); "
        f"speed {final['deterministic']['speed']:.2f} m/s"
    )


if __name__ == "__main__":
    main(tyro.cli(Args))
