"""Gradient steps per second of each method's offline update at the paper configuration, compile time separate.

    python benchmark/speed.py --algo fql --steps 2000

Random data with cube-single's shapes (obs 28, action 5) is placed on the device; the method's own jitted
`train_chunk` runs `--chunk` gradient steps per call. Compile time is measured with `lower().compile()`; the
throughput is the median over the timed calls, after one warm-up call.

    python benchmark/speed.py --algo fm_irl --iterations 3

fm_irl (an online method) reports seconds per iteration instead, at the Hopper configuration (32 Hopper-v5
environments x 128 steps, teacher 4x1024, 1024 regulariser samples x 40 Euler steps at each of the 320 PPO
minibatches), split into rollout, teacher (update and reward relabelling) and PPO, compile time apart.
"""

import importlib
import os
import sys
import time
from dataclasses import dataclass, replace
from functools import partial

import jax
import numpy as np
import tyro

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclass
class Args:
    algo: str = "fql"
    """the algorithm file to measure (fql, fino, fm_irl)"""
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
    action_dim: int = 5
    # fm_irl only
    iterations: int = 2
    """fm_irl: timed iterations (compiled ahead, so no warm-up is needed)"""
    teacher_hidden_dim: int = 1024
    """fm_irl: width of the teacher (the paper's 4x1024)"""
    regularizer_samples: int = 1024
    """fm_irl: teacher samples drawn at every PPO minibatch (the paper's 1024 for Hopper)"""


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
    compiled = chunk_fn.lower(state, data, n, jax.random.PRNGKey(1), num_steps=bench.chunk).compile()
    compile_time = time.perf_counter() - start

    key = jax.random.PRNGKey(2)
    state, key, infos = compiled(state, data, n, key)  # warm-up
    jax.block_until_ready(infos)
    times = []
    for _ in range(max(1, -(-bench.steps // bench.chunk))):
        start = time.perf_counter()
        state, key, infos = compiled(state, data, n, key)
        jax.block_until_ready(infos)
        times.append(time.perf_counter() - start)
    steps_per_second = bench.chunk / float(np.median(times))
    print(
        f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), {len(times)} timed calls of {bench.chunk} steps"
    )
    print(f"{bench.algo}: {steps_per_second:.1f} grad steps/s, compile {compile_time:.1f} s")
    return steps_per_second, compile_time


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


SPEED_BENCHMARKS = {"fm_irl": fm_irl_speed}  # methods measured per iteration rather than per gradient step

if __name__ == "__main__":
    bench = tyro.cli(Args)
    SPEED_BENCHMARKS.get(bench.algo, main)(bench)
