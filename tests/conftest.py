"""Shared fixtures: tiny OGBench-format datasets written by the tests themselves (no download)."""

import atexit
import os
import shutil
import sys
import tempfile

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# One JAX compilation cache for the session (read when jax is imported, inherited by the scripts the tests start):
# runs of a script with the same shapes, such as an interrupted run and its resumption, compile once between them.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="jax-cache-")
    atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

# MuJoCo picks its OpenGL backend from MUJOCO_GL once, when first imported (here by the first env a fixture makes): the
# --capture-video tests render off-screen with egl, the backend the scripts choose when MUJOCO_GL is not set.
os.environ.setdefault("MUJOCO_GL", "egl")


# `python -c PRESS_CTRL_C <step> <script> <flags>`: runs the script and presses Ctrl-C (a real SIGINT) once its progress
# bar reaches <step>; the Ctrl-C tests of every script use it.
PRESS_CTRL_C = """
import os, runpy, signal, sys
from tqdm import tqdm
update, at = tqdm.update, int(sys.argv.pop(1))

def update_then_press_ctrl_c(bar, n=1):
    update(bar, n)
    if bar.n >= at:
        os.kill(os.getpid(), signal.SIGINT)

tqdm.update, sys.argv = update_then_press_ctrl_c, sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """The tests make their own datasets, so a script that looks for a missing one must find the machine offline: no
    test downloads anything, and the tests pass the same on a machine that is online (a test's subprocess runs have
    every file they need)."""
    import socket

    def no_connection(*args, **kwargs):
        raise OSError("the tests run offline")

    monkeypatch.setattr(socket, "create_connection", no_connection)


def write_random_play_dataset(path: str, env_name: str, num_episodes: int, episode_steps: int, seed: int) -> None:
    """Roll a uniformly random policy in an OGBench data-collection env and save it in OGBench's npz layout.

    Each stored step holds the observation, the action taken from it, and the MuJoCo state *before* the step
    (`prev_qpos`, ...), exactly as OGBench's generators store them; `terminals` marks each episode's last step.
    """
    import gymnasium
    import ogbench  # noqa: F401  (registers the environments)

    env = gymnasium.make(env_name, terminate_at_goal=False, mode="data_collection", max_episode_steps=episode_steps)
    rng = np.random.default_rng(seed)
    keys = ("observations", "actions", "terminals", "qpos", "qvel", "button_states")
    data = {k: [] for k in keys}
    for episode in range(num_episodes):
        obs, _ = env.reset(seed=seed + episode)
        for t in range(episode_steps):
            action = rng.uniform(-1, 1, env.action_space.shape).astype(np.float32)
            next_obs, _, _, _, info = env.step(action)
            data["observations"].append(obs)
            data["actions"].append(action)
            data["terminals"].append(t == episode_steps - 1)
            data["qpos"].append(info["prev_qpos"])
            data["qvel"].append(info["prev_qvel"])
            data["button_states"].append(info.get("prev_button_states", np.zeros(0)))
            obs = next_obs
    arrays = {k: np.asarray(v) for k, v in data.items()}
    arrays["observations"] = arrays["observations"].astype(np.float32)
    if arrays["button_states"].shape[-1] == 0:
        del arrays["button_states"]
    np.savez_compressed(path, **arrays)


@pytest.fixture(scope="session")
def cube_single_dir(tmp_path_factory) -> str:
    """A folder holding a 4-episode cube-single-play-v0 dataset (+ val), made offline in a few seconds."""
    folder = tmp_path_factory.mktemp("ogbench_data")
    write_random_play_dataset(str(folder / "cube-single-play-v0.npz"), "cube-single-v0", 4, 101, seed=0)
    write_random_play_dataset(str(folder / "cube-single-play-v0-val.npz"), "cube-single-v0", 1, 101, seed=100)
    return str(folder)


def write_random_minari_dataset(
    root: str, dataset_id: str, env_id: str, num_episodes: int, max_episode_steps: int, seed: int
) -> None:
    """Roll a uniformly random policy through `minari.DataCollector` and save a Minari dataset under `root`.

    The dataset has the layout, metadata fields and episode structure of the published `mujoco/*` datasets, only
    tiny and random; `minari.load_dataset(dataset_id)` finds it when MINARI_DATASETS_PATH is `root`.
    """
    import gymnasium
    import minari

    previous = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = root
    try:
        env = minari.DataCollector(gymnasium.make(env_id, max_episode_steps=max_episode_steps))
        env.action_space.seed(seed)
        for episode in range(num_episodes):
            env.reset(seed=seed + episode)
            done = False
            while not done:
                _, _, terminated, truncated, _ = env.step(env.action_space.sample())
                done = terminated or truncated
        env.create_dataset(
            dataset_id,
            eval_env=env_id,
            algorithm_name="random (test fixture)",
            author="tests",
            author_email="tests@example.invalid",
            code_permalink="tests/conftest.py",
            description="A tiny random dataset written by the tests.",
        )
        env.close()
    finally:
        if previous is None:
            del os.environ["MINARI_DATASETS_PATH"]
        else:
            os.environ["MINARI_DATASETS_PATH"] = previous


@pytest.fixture(scope="session")
def minari_root(tmp_path_factory) -> str:
    """A MINARI_DATASETS_PATH holding tiny `mujoco/hopper/{medium,expert}-v0` datasets (4 random episodes of at most
    60 steps each), made offline in about a second. Point a run at it with `MINARI_DATASETS_PATH=<minari_root>`."""
    import warnings

    root = str(tmp_path_factory.mktemp("minari_datasets"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_random_minari_dataset(root, "mujoco/hopper/medium-v0", "Hopper-v5", 4, 60, seed=0)
        write_random_minari_dataset(root, "mujoco/hopper/expert-v0", "Hopper-v5", 4, 60, seed=100)
    return root
