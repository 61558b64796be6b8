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


ALGOS = ("fql", "fino")  # the method files whose offline update this script measures


@dataclass
class Args:
    """Gradient steps per second of a method's offline update at the paper configuration, compile time separate."""

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
    """observation size of the random data (cube-single's 28)"""
    action_dim: int = 5
    """action size of the random data (cube-single's 5)"""


def fail(flag: str, value, why: str):
    """A bad flag value: one line on stderr, exit status 2."""
    print(f"error: --{flag} {value}: {why}", file=sys.stderr)
    sys.exit(2)


def check_args(bench: Args) -> None:
    """Every flag, before anything slow."""
    if bench.algo not in ALGOS:
        fail("algo", bench.algo, f"not a method this script measures; give one of {', '.join(ALGOS)}")
    for flag in ("steps", "chunk", "batch_size", "flow_steps", "dataset_size", "obs_dim", "action_dim"):
        if getattr(bench, flag) < 1:
            fail(flag.replace("_", "-"), getattr(bench, flag), "must be positive; give an integer >= 1")
    if not bench.hidden_dims or min(bench.hidden_dims) < 1:
        shown = " ".join(map(str, bench.hidden_dims)) or "(none)"
        fail("hidden-dims", shown, "must be one or more positive layer sizes; give e.g. 512 512 512 512")


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


if __name__ == "__main__":
    bench = tyro.cli(Args)
    check_args(bench)
    main(bench)
