"""Gradient steps per second of each method's offline update at the paper configuration, compile time separate.

    python benchmark/speed.py --algo fql --steps 2000

Random data with cube-single's shapes (obs 28, action 5) is placed on the device; the method's own jitted
`train_chunk` runs `--chunk` gradient steps per call. Compile time is measured with `lower().compile()`; the
throughput is the median over the timed calls, after one warm-up call.
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
    """the algorithm file to measure (fql, fino)"""
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


if __name__ == "__main__":
    main(tyro.cli(Args))
