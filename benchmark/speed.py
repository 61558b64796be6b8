"""Speed of each method at the paper configuration, compile time measured apart.

    python benchmark/speed.py --algo fql --steps 2000   # fql, fino: gradient steps per second
    python benchmark/speed.py --algo rldt                # seconds per fine-tuning iteration
    python benchmark/speed.py --algo fm_irl --iterations 3   # seconds per iteration

fql and fino: random data with cube-single's shapes (obs 28, action 5) is placed on the device; the method's own
jitted `train_chunk` runs `--chunk` gradient steps per call. Compile time is measured with `lower().compile()`; the
throughput is the median over the timed calls, after one warm-up call.

rldt and fm_irl (online methods) report seconds per iteration at the Hopper configuration, split into their parts.
rldt: 100 Hopper-v5 environments x 500 chunks of 4 actions, 16 critic rounds, 32 actor steps (rldt_iteration_speed).
fm_irl: 32 Hopper-v5 environments x 128 steps, teacher 4x1024, 1024 regulariser samples x 40 Euler steps at each of
the 320 PPO minibatches, split into rollout, teacher (update and reward relabelling) and PPO (fm_irl_speed).
"""

import importlib
import os
import sys
import time
from dataclasses import dataclass, replace
from functools import partial

import gymnasium as gym
import jax
import numpy as np
import optax
import tyro

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


ALGOS = ("fql", "fino", "rldt", "fm_irl")  # the method files this script measures


@dataclass
class Args:
    """Gradient steps per second of a method's offline update at the paper configuration, compile time separate."""

    algo: str = "fql"
    """the algorithm file to measure (fql, fino, rldt, fm_irl)"""
    steps: int = 2000
    """timed gradient steps (rounded up to whole chunks)"""
    chunk: int = 500
    """gradient steps per jitted call"""
    batch_size: int = 256
    """batch size (the paper's 256)"""
    hidden_dims: tuple[int, ...] = (512, 512, 512, 512)
    """hidden layers of every network (the paper's 4x512)"""
    flow_steps: int = 10
    """Euler steps of the BC flow (the paper's 10)"""
    dataset_size: int = 100_000
    """rows of the random on-device dataset"""
    obs_dim: int = 28
    """observation size of the random data (cube-single's 28)"""
    action_dim: int = 5
    """action size of the random data (cube-single's 5)"""
    # rldt: seconds per fine-tuning iteration instead of gradient steps per second (see rldt_iteration_speed)
    rldt_num_envs: int = 100
    """rldt: parallel Hopper-v5 environments (the paper's 100)"""
    rldt_rollout_steps: int = 500
    """rldt: chunk-steps per environment to time (the paper's 500 per iteration); fewer are scaled up to 500"""
    rldt_critic_rounds: int = 16
    """rldt: critic rounds (of 32 steps) to time, out of the iteration's 16; fewer are scaled up to 16"""
    rldt_actor_steps: int = 32
    """rldt: actor steps to time, out of the iteration's 32; fewer are scaled up to 32"""

    # fm_irl only
    iterations: int = 2
    """fm_irl: timed iterations (compiled ahead, so no warm-up is needed)"""
    teacher_hidden_dim: int = 1024
    """fm_irl: width of the teacher (the paper's 4x1024)"""
    regularizer_samples: int = 1024
    """fm_irl: teacher samples drawn at every PPO minibatch (the paper's 1024 for Hopper)"""


# Every flag's rule, checked before anything slow: (flags, test, what is accepted).
FLAG_RULES = [
    ("algo", lambda v: v in ALGOS, f"not a method this script measures; give one of {', '.join(ALGOS)}"),
    (
        "steps chunk batch_size flow_steps dataset_size obs_dim action_dim rldt_num_envs rldt_rollout_steps "
        "rldt_critic_rounds rldt_actor_steps iterations teacher_hidden_dim regularizer_samples",
        lambda v: v >= 1,
        "must be positive; give an integer >= 1",
    ),
    (
        "hidden_dims",
        lambda v: len(v) > 0 and min(v) >= 1,
        "must be one or more positive layer sizes; give e.g. 512 512 512 512",
    ),
]


def fail(flag: str, value, why: str):
    """A bad flag value: one line on stderr, exit status 2."""
    print(f"error: --{flag} {value}: {why}", file=sys.stderr)
    sys.exit(2)


def shown(value) -> str:
    """A flag's value as given: list items joined ((none) if empty), '' for a blank text."""
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value)) or "(none)"
    return "''" if isinstance(value, str) and not value.strip() else str(value)


def check_args(bench: Args) -> None:
    """Every flag, before anything slow."""
    for names, ok, why in FLAG_RULES:
        for name in names.split():
            if not ok(value := getattr(bench, name)):
                fail(name.replace("_", "-"), shown(value), why)


def main(bench: Args) -> tuple[float, float]:
    algo = importlib.import_module(bench.algo)
    args = replace(
        algo.Args(),
        batch_size=bench.batch_size,
        actor_hidden_dims=bench.hidden_dims,
        value_hidden_dims=bench.hidden_dims,
        flow_steps=bench.flow_steps,
        alpha=300.0,
        discount=0.99,
        q_agg="mean",
    )
    rng = np.random.default_rng(0)
    n, obs_dim, action_dim = bench.dataset_size, bench.obs_dim, bench.action_dim
    data = jax.device_put(
        {
            "observations": rng.standard_normal((n, obs_dim), np.float32),
            "actions": rng.uniform(-1, 1, (n, action_dim)).astype(np.float32),
            "rewards": -rng.integers(0, 2, n).astype(np.float32),
            "masks": np.ones(n, np.float32),
            "next_observations": rng.standard_normal((n, obs_dim), np.float32),
        }
    )
    nets, tx = algo.make_networks(args, action_dim)
    state = algo.init_train_state(jax.random.PRNGKey(0), nets, tx, obs_dim, action_dim)
    chunk_fn = jax.jit(partial(algo.train_chunk, nets=nets, tx=tx, args=args), static_argnames="num_steps")

    start = time.perf_counter()
    key = jax.random.PRNGKey(2)
    compiled = chunk_fn.lower(state, data, n, key, 0, num_steps=bench.chunk).compile()
    compile_time = time.perf_counter() - start

    state, infos = compiled(state, data, n, key, 0)  # warm-up
    jax.block_until_ready(infos)
    times = []
    for call in range(1, max(1, -(-bench.steps // bench.chunk)) + 1):
        start = time.perf_counter()
        state, infos = compiled(state, data, n, key, call * bench.chunk)
        jax.block_until_ready(infos)
        times.append(time.perf_counter() - start)
    steps_per_second = bench.chunk / float(np.median(times))
    print(
        f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), {len(times)} timed calls of {bench.chunk} steps"
    )
    print(f"{bench.algo}: {steps_per_second:.1f} grad steps/s, compile {compile_time:.1f} s")
    return steps_per_second, compile_time


# A unit normalisation (the benchmark has no dataset): observations and actions pass through unchanged.
RLDT_UNIT_NORMALIZER = {k: np.full(n, v, np.float32) for k, n, v in (("obs_min", 11, -1), ("obs_max", 11, 1))} | {
    k: np.full(3, v, np.float32) for k, v in (("action_min", -1), ("action_max", 1))
}


# rldt: one fine-tuning iteration at the paper's gym configuration (Hopper-v5, 100 envs x 500 chunks of 4 actions,
# 16 critic rounds of 32 full-batch steps on 100 segments, 32 actor steps on 13 segments x 8 particles), timed in its
# three parts with a random policy and random critic data of the right shapes. Compile time is measured separately.
def rldt_iteration_speed(bench: Args) -> tuple[float, float]:
    import rldt

    task = rldt.resolve_task("hopper", None)
    args = rldt.apply_domain_defaults(rldt.Args(env_id="hopper", num_envs=bench.rldt_num_envs), task)
    envs = gym.vector.SyncVectorEnv(
        [partial(rldt.make_env, task, args.horizon, RLDT_UNIT_NORMALIZER) for _ in range(args.num_envs)],
        autoreset_mode=gym.vector.AutoresetMode.DISABLED,
    )
    obs_dim, action_dim = envs.single_observation_space.shape[0], envs.single_action_space.shape[1]
    nets = rldt.make_networks(args, action_dim)
    actor = rldt.init_actor(jax.random.PRNGKey(0), nets, obs_dim)
    tx_actor, _ = rldt.actor_optimizer(args)
    tx_critic = optax.adam(args.critic_lr)
    actor_state = rldt.ActorState(actor, tx_actor.init(actor))
    critic_state = rldt.init_critic(jax.random.PRNGKey(1), nets, obs_dim, tx_critic)
    rng = np.random.default_rng(0)
    n, T, D = args.num_envs, args.steps_per_iteration, nets.actor.output_dim
    batch = {
        "states": rng.uniform(-1, 1, (n, T + 1, obs_dim)).astype(np.float32),
        "actions": rng.uniform(-1, 1, (n, T, D)).astype(np.float32),
        "rewards": rng.normal(size=(n, T)).astype(np.float32),
        "dones": (rng.uniform(size=(n, T)) < 0.01).astype(np.float32),
        "loss_mask": np.ones((n, T), np.float32),
    }
    states, weights = rldt.actor_batch(batch, 0, rng, args, sparse=False)
    key = jax.random.PRNGKey(2)

    explore_fn = jax.jit(partial(rldt.explore, nets, args=args))
    critic_fn = jax.jit(partial(rldt.critic_round, nets=nets, tx=tx_critic, args=args, clip=(-1e6, 1e6)))
    actor_fn = jax.jit(partial(rldt.actor_step, nets=nets, tx=tx_actor, args=args))
    obs = envs.reset(seed=0)[0]
    start = time.perf_counter()
    explore_fn = explore_fn.lower(actor, obs, key).compile()
    critic_fn = critic_fn.lower(critic_state, actor, batch, key).compile()
    actor_fn = actor_fn.lower(actor_state, actor, critic_state.params, states, weights, key).compile()
    compile_time = time.perf_counter() - start

    class Quiet:
        def update(self, n):
            pass

    start = time.perf_counter()
    rldt.collect(envs, obs, explore_fn, actor, key, bench.rldt_rollout_steps, Quiet())
    rollout = (time.perf_counter() - start) * T / bench.rldt_rollout_steps
    critic_times, actor_times = [], []
    for _ in range(bench.rldt_critic_rounds):
        start = time.perf_counter()
        critic_state, infos = critic_fn(critic_state, actor, batch, key)
        jax.block_until_ready(infos)
        critic_times.append(time.perf_counter() - start)
    for _ in range(bench.rldt_actor_steps):
        start = time.perf_counter()
        actor_state, info = actor_fn(actor_state, actor, critic_state.params, states, weights, key)
        jax.block_until_ready(info)
        actor_times.append(time.perf_counter() - start)
    critic = float(np.mean(critic_times)) * args.critic_rounds
    actor_time = float(np.mean(actor_times)) * args.actor_steps
    total = rollout + critic + actor_time
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()})")
    print(
        f"timed {bench.rldt_rollout_steps}/{T} rollout chunk-steps x {n} envs, {bench.rldt_critic_rounds}/"
        f"{args.critic_rounds} critic rounds, {bench.rldt_actor_steps}/{args.actor_steps} actor steps (scaled up)"
    )
    print(f"rollout {rollout:.1f} s, critic {critic:.1f} s, actor {actor_time:.1f} s per iteration")
    print(f"rldt: {total:.1f} s/iteration, compile {compile_time:.1f} s")
    return total, compile_time


def fm_irl_speed(bench: Args) -> tuple[float, float]:
    """Seconds per FM-IRL iteration at the Hopper configuration: rollout, teacher (update and relabelling), PPO."""
    import fm_irl

    task = fm_irl.resolve_task("hopper")
    args = fm_irl.with_task_defaults(
        replace(
            fm_irl.Args(),
            env_id="hopper",
            teacher_hidden_dim=bench.teacher_hidden_dim,
            regularizer_samples=bench.regularizer_samples,
        ),
        task,
    )
    rng = np.random.default_rng(0)
    envs = fm_irl.TrainingEnvs(args.env_id, args.num_envs, args.seed)
    obs_dim, action_dim = envs.obs.shape[1], envs.low.shape[0]
    demos = jax.device_put(
        {
            "observations": rng.standard_normal((1000, obs_dim), np.float32),  # one 1000-step trajectory
            "actions": rng.uniform(-1, 1, (1000, action_dim)).astype(np.float32),
        }
    )
    nets, student_tx, teacher_tx = fm_irl.make_networks(args, obs_dim, action_dim)
    state = fm_irl.init_train_state(jax.random.PRNGKey(0), nets, student_tx, teacher_tx, args)
    stats = fm_irl.RunningMeanStd(*jax.numpy.array([0.0, 1.0, 1e-4]))
    normalizer = fm_irl.RewardNormalizer(stats, jax.numpy.zeros(args.num_envs))
    batch_size = args.num_steps * args.num_envs
    teacher_steps = min(1000, batch_size) // args.teacher_batch_size
    policy = jax.jit(partial(fm_irl.act, nets=nets))
    teacher_fn = jax.jit(
        partial(fm_irl.teacher_update, num_updates=teacher_steps, nets=nets, teacher_tx=teacher_tx, args=args)
    )
    relabel_fn = jax.jit(partial(fm_irl.relabel_rewards, nets=nets, args=args))
    ppo_fn = jax.jit(partial(fm_irl.ppo_update, nets=nets, student_tx=student_tx, args=args))

    key = jax.random.PRNGKey(1)
    start = time.perf_counter()
    collect = partial(fm_irl.collect_rollout, envs, policy, num_steps=args.num_steps, clip_actions=args.clip_actions)
    rollout = jax.device_put(collect(state.student, key))
    act_compile_and_rollout = time.perf_counter() - start
    stats = jax.tree.map(jax.numpy.asarray, envs.obs_stats)
    start = time.perf_counter()
    teacher_fn = teacher_fn.lower(state, demos, stats, rollout.obs, rollout.actions, key).compile()
    masks = rollout.start_masks
    relabel_fn = relabel_fn.lower(state.teacher, rollout.obs, rollout.actions, masks, normalizer, key).compile()
    rewards = jax.numpy.zeros_like(rollout.values)
    ppo_fn = ppo_fn.lower(state, rollout, rewards, 1e-4, key).compile()
    compile_time = time.perf_counter() - start

    times = {"rollout": [], "teacher": [], "PPO": []}
    for iteration in range(bench.iterations):  # everything is compiled already
        key, rollout_key, teacher_key, reward_key, ppo_key = jax.random.split(key, 5)
        start = time.perf_counter()
        rollout = jax.block_until_ready(jax.device_put(collect(state.student, rollout_key)))
        middle = time.perf_counter()
        stats = jax.tree.map(jax.numpy.asarray, envs.obs_stats)
        state, _ = teacher_fn(state, demos, stats, rollout.obs, rollout.actions, teacher_key)
        x = (rollout.obs, rollout.actions, rollout.start_masks)
        rewards, normalizer, _ = relabel_fn(state.teacher, *x, normalizer, reward_key)
        jax.block_until_ready(rewards)
        end = time.perf_counter()
        state, info = ppo_fn(state, rollout, rewards, 1e-4, ppo_key)
        jax.block_until_ready(info)
        measured = {"rollout": middle - start, "teacher": end - middle, "PPO": time.perf_counter() - end}
        for k, v in measured.items():
            times[k].append(v)
        print(f"iteration {iteration}: " + ", ".join(f"{k} {v:.2f} s" for k, v in measured.items()), flush=True)
    parts = {k: float(np.median(v)) for k, v in times.items()}
    per_iteration = sum(parts.values())
    print(
        f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}); Hopper-v5, {args.num_envs} envs x "
        f"{args.num_steps} steps, teacher {args.teacher_depth}x{args.teacher_hidden_dim}, {args.regularizer_samples} "
        f"regulariser samples x {args.regularizer_flow_steps} Euler steps x {args.num_epochs * args.num_minibatches} "
        f"minibatches; medians of {bench.iterations} iterations: "
        + ", ".join(f"{k} {v:.2f} s" for k, v in parts.items())
        + f"; first rollout (with the policy's compile) {act_compile_and_rollout:.1f} s"
    )
    print(f"fm_irl: {per_iteration:.2f} s/iteration, compile {compile_time:.1f} s")
    return per_iteration, compile_time


# methods whose speed is not gradient steps/s of an offline update
BENCHMARKS = {"rldt": rldt_iteration_speed, "fm_irl": fm_irl_speed}


if __name__ == "__main__":
    bench = tyro.cli(Args)
    check_args(bench)
    BENCHMARKS.get(bench.algo, main)(bench)
