"""Offline dataset generation (benchmark/make_dataset.py, benchmark/train_expert.py): tiny versions of every family,
loaded through OGBench or Minari."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import ogbench
import pytest

BENCHMARK_DIR = Path(__file__).resolve().parents[1] / "benchmark"
sys.path.insert(0, str(BENCHMARK_DIR))  # also seen by the worker processes, which import make_dataset by name

import make_dataset  # noqa: E402
import train_expert  # noqa: E402


def make(tmp_path, **kwargs) -> str:
    """Run make_dataset in-process (one worker unless asked) and return the output folder."""
    make_dataset.main(make_dataset.Args(out_dir=str(tmp_path), workers=kwargs.pop("workers", 1), **kwargs))
    return str(tmp_path)


def load(name: str, path: str):
    return ogbench.make_env_and_datasets(name, dataset_path=path)


def check_split(dataset: dict, episodes: int, steps: int, obs_dim: int, action_dim: int) -> None:
    transitions = episodes * (steps - 1)  # OGBench drops the last stored step of each episode
    assert dataset["observations"].shape == (transitions, obs_dim)
    assert dataset["next_observations"].shape == (transitions, obs_dim)
    assert dataset["actions"].shape == (transitions, action_dim)
    assert dataset["terminals"].sum() == episodes
    assert np.abs(dataset["actions"]).max() <= 1.0


def test_manipulation_play(tmp_path):
    out = make(tmp_path, dataset="cube-single-play-v0", num_episodes=2, max_episode_steps=41)
    raw = np.load(f"{out}/cube-single-play-v0.npz")
    assert sorted(raw) == ["actions", "observations", "qpos", "qvel", "terminals"]
    assert raw["terminals"].dtype == bool and raw["observations"].dtype == np.float32
    assert not os.path.exists(f"{out}/cube-single-play-v0.parts")

    # The stored qpos is the state of the stored observation (before the action): its cube position is the one the
    # observation holds, as (xyz - (0.425, 0, 0)) * 10 in entries 19:22.
    cube_from_obs = raw["observations"][:, 19:22] / 10 + np.array([0.425, 0.0, 0.0])
    np.testing.assert_allclose(raw["qpos"][:, 14:17], cube_from_obs, atol=1e-6)

    # The single-task name relabels rewards from qpos, as the algorithm scripts load it. The short random episodes never
    # solve task 1, so plant the cube at its goal (0.425, -0.1, 0.02) at stored steps 3 and 45 (transitions 3 and 44).
    arrays = dict(raw)
    arrays["qpos"][[3, 45], 14:17] = [0.425, -0.1, 0.02]
    np.savez(f"{out}/planted.npz", **arrays)
    shutil.copyfile(f"{out}/cube-single-play-v0-val.npz", f"{out}/planted-val.npz")
    _, train, val = load("cube-single-play-singletask-task1-v0", f"{out}/planted.npz")
    check_split(train, episodes=2, steps=41, obs_dim=28, action_dim=5)
    check_split(val, episodes=1, steps=41, obs_dim=28, action_dim=5)
    rewards = np.full(80, -1.0)
    rewards[[3, 44]] = 0.0
    np.testing.assert_array_equal(train["rewards"], rewards)
    np.testing.assert_array_equal(train["masks"], -rewards)
    assert set(np.unique(train["rewards"])) <= {-1.0, 0.0}


def test_puzzle_play_has_button_states(tmp_path):
    out = make(tmp_path, dataset="puzzle-3x3-play-v0", num_episodes=1, max_episode_steps=21)
    raw = np.load(f"{out}/puzzle-3x3-play-v0.npz")
    assert raw["button_states"].shape == (21, 9) and raw["button_states"].dtype == np.int64


def test_pointmaze_navigate_does_not_depend_on_worker_count(tmp_path):
    one = make(tmp_path / "one", dataset="pointmaze-medium-navigate-v0", num_episodes=2, max_episode_steps=31)
    two = make(
        tmp_path / "two", dataset="pointmaze-medium-navigate-v0", num_episodes=2, max_episode_steps=31, workers=2
    )
    for split in ("", "-val"):
        a, b = (
            np.load(f"{one}/pointmaze-medium-navigate-v0{split}.npz"),
            np.load(f"{two}/pointmaze-medium-navigate-v0{split}.npz"),
        )
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    _, train, val = load("pointmaze-medium-navigate-v0", f"{one}/pointmaze-medium-navigate-v0.npz")
    check_split(train, episodes=2, steps=31, obs_dim=2, action_dim=2)


def test_interrupted_run_resumes_to_the_same_files(tmp_path, capsys):
    args = dict(dataset="pointmaze-medium-navigate-v0", num_episodes=2, max_episode_steps=21)
    fresh = make(tmp_path / "fresh", **args)

    # Simulate an interruption after the first episode, then rerun the same command.
    name, spec, _ = make_dataset.resolve(make_dataset.Args(**args))
    parts = tmp_path / "resumed" / f"{name}.parts"
    make_dataset.prepare_parts_dir(str(parts), spec, seed=0)
    make_dataset.collect_all(spec, [make_dataset.episode_seed(0, 0)], str(parts), workers=1)
    capsys.readouterr()
    resumed = make(tmp_path / "resumed", **args)
    assert "Resuming: 1 of 3 episodes already collected" in capsys.readouterr().out  # the finished one was kept
    a, b = np.load(f"{fresh}/{name}.npz"), np.load(f"{resumed}/{name}.npz")
    np.testing.assert_array_equal(a["observations"], b["observations"])


def save_random_expert(path, hidden_dims=(32, 32), recipe="ant-xy", obs_dim=29, action_dim=8) -> dict:
    recipe = dataclasses.replace(train_expert.RECIPES[recipe], hidden_dims=hidden_dims)
    params = train_expert.init_actor_params(jax.random.PRNGKey(0), obs_dim, action_dim, recipe)
    train_expert.save_expert(str(path), params, {"config": {"recipe": dataclasses.asdict(recipe)}})
    return params


def test_antmaze_navigate_with_a_saved_expert(tmp_path):
    expert = tmp_path / "expert.msgpack"
    save_random_expert(expert)
    out = make(
        tmp_path, dataset="antmaze-large-navigate-v0", num_episodes=2, max_episode_steps=16, expert_path=str(expert)
    )
    _, train, val = load("antmaze-large-navigate-singletask-task1-v0", f"{out}/antmaze-large-navigate-v0.npz")
    check_split(train, episodes=2, steps=16, obs_dim=29, action_dim=8)
    assert set(np.unique(train["rewards"])) <= {-1.0, 0.0}


@pytest.mark.parametrize("recipe", ["ant-xy", "Hopper-v5"])  # GELU with OGBench's init; ReLU with PyTorch's
def test_numpy_expert_matches_the_flax_actor(tmp_path, recipe):
    params = save_random_expert(tmp_path / "expert.msgpack", hidden_dims=(16, 16), recipe=recipe)
    obs = np.random.default_rng(0).normal(size=(5, 29))
    actor = train_expert.make_actor(dataclasses.replace(train_expert.RECIPES[recipe], hidden_dims=(16, 16)), 8)
    mean, log_std = actor.apply({"params": params}, jnp.asarray(obs))
    loaded = make_dataset.load_expert(str(tmp_path / "expert.msgpack"))
    np.testing.assert_allclose(make_dataset.expert_action(loaded, obs), jnp.tanh(mean), atol=1e-5)
    np.testing.assert_allclose(make_dataset.actor_head(loaded, obs)[1], log_std, atol=1e-5)


def test_upside_down_torso_is_detected_from_the_quaternion():
    qpos = np.zeros(15)
    for quaternion, on_its_back in [((1, 0, 0, 0), False), ((0, 1, 0, 0), True), ((0, 0, 1, 0), True)]:
        qpos[3:7] = quaternion
        assert make_dataset.torso_upside_down(qpos) == on_its_back
    qpos[3:7] = (np.cos(0.3), np.sin(0.3), 0, 0)  # tilted by 0.6 rad about x: still upright
    assert not make_dataset.torso_upside_down(qpos)
    qpos[3:7] = (np.cos(1.0), 0, np.sin(1.0), 0)  # tilted by 2 rad about y: past the side, on its back
    assert make_dataset.torso_upside_down(qpos)


def test_missing_expert_prints_the_command_that_trains_one(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(BENCHMARK_DIR / "make_dataset.py"),
            "--dataset",
            "antmaze-large-navigate-v0",
            "--expert-path",
            str(tmp_path / "none.msgpack"),
            "--out-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "python benchmark/train_expert.py --env-id ant-xy" in result.stderr
    assert "Traceback" not in result.stderr


def test_cube_demos(tmp_path):
    out = make(tmp_path, demos="cube-single-singletask-task2-v0", num_episodes=2)
    name = "cube-single-singletask-task2-demos-v0"
    raw = np.load(f"{out}/{name}.npz")
    assert str(raw["env_name"]) == "cube-single-singletask-task2-v0" and int(raw["task_id"]) == 2
    assert raw["episode_success"].shape == (2,) and raw["episode_success"].all()  # noise 0.1 plan oracle: solved
    lengths = np.diff(np.flatnonzero(np.concatenate([[True], raw["terminals"]])))
    assert (lengths < 200).all()  # ended at the goal, before the 200-step limit

    _, train, val = load("cube-single-play-singletask-task2-v0", f"{out}/{name}.npz")
    assert train["terminals"].sum() == 2 and val["terminals"].sum() == 1
    assert train["observations"].shape[1] == 28


def test_pointmaze_demos_default_task(tmp_path):
    out = make(tmp_path, demos="pointmaze-medium-navigate-singletask-v0", num_episodes=1, noise=0.1)
    raw = np.load(f"{out}/pointmaze-medium-singletask-task1-demos-v0.npz")
    assert raw["episode_success"].all() and raw["terminals"].sum() == 1


def press(state: np.ndarray, button: int, rows: int, cols: int) -> None:
    """Puzzle rule: a press toggles the button and its 4 neighbours."""
    r, c = divmod(button, cols)
    for dr, dc in ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)):
        if 0 <= r + dr < rows and 0 <= c + dc < cols:
            state[(r + dr) * cols + c + dc] ^= 1


@pytest.mark.parametrize("rows, cols", [(3, 3), (4, 4), (4, 5)])
def test_lights_out_presses_reach_the_goal(rows, cols):
    rng = np.random.default_rng(0)
    goal = rng.integers(2, size=rows * cols)
    start = goal.copy()
    for button in np.flatnonzero(rng.integers(2, size=rows * cols)):  # a solvable start: random presses from the goal
        press(start, button, rows, cols)
    state = start.copy()
    for button in make_dataset.lights_out_presses(start, goal, rows, cols):
        press(state, button, rows, cols)
    np.testing.assert_array_equal(state, goal)


# Minari locomotion datasets: a tiny SAC expert, then a 2-episode dataset that minari.load_dataset opens.

SAC_FLAGS = dict(env_id="Hopper-v5", checkpoint_every=200, learning_starts=300, eval_episodes=1, seed=0)


@pytest.fixture(scope="module")
def tiny_expert(tmp_path_factory) -> str:
    """A SAC run of 600 transitions (300 random, then 60 gradient steps on 5 envs), checkpoints at 200, 400, 600."""
    out_dir = str(tmp_path_factory.mktemp("expert"))
    train_expert.main(train_expert.Args(total_steps=600, out_dir=out_dir, **SAC_FLAGS))
    return out_dir


def test_sac_expert_keeps_every_checkpoint_and_resumes(tiny_expert, tmp_path, capsys):
    with open(f"{tiny_expert}/actor.json") as f:
        info = json.load(f)
    assert [e["step"] for e in info["evaluations"]] == [200, 400, 600]
    assert info["config"]["recipe"]["activation"] == "relu" and info["config"]["recipe"]["num_envs"] == 5
    for step in (200, 400, 600):
        assert os.path.exists(f"{tiny_expert}/checkpoints/actor_{step:09d}.msgpack")
    assert os.path.exists(f"{tiny_expert}/learning_curve.png")

    # Continue a copy of the run to 800 transitions: it starts from the saved state, not from scratch.
    resumed = tmp_path / "resumed"
    subprocess.run(["cp", "-r", tiny_expert, str(resumed)], check=True)
    capsys.readouterr()
    train_expert.main(train_expert.Args(total_steps=800, out_dir=str(resumed), **SAC_FLAGS))
    assert "Resuming" in capsys.readouterr().out
    with open(resumed / "actor.json") as f:
        evaluations = json.load(f)["evaluations"]
    assert [e["step"] for e in evaluations] == [200, 400, 600, 800]
    assert evaluations[3]["minutes"] >= evaluations[2]["minutes"]  # training time counts on across sessions
    # The restored training state is the saved one: the step-600 actor is what the resumed run started from.
    saved = make_dataset.load_expert(f"{tiny_expert}/actor.msgpack")
    again = make_dataset.load_expert(f"{resumed}/checkpoints/actor_000000600.msgpack")
    np.testing.assert_array_equal(saved["mean"]["kernel"], again["mean"]["kernel"])


def test_minari_dataset_opens_with_minari_and_resumes(tiny_expert, tmp_path, capsys):
    import minari

    args = dict(dataset="mujoco/hopper/expert-v0", expert_path=tiny_expert, num_episodes=2)
    fresh = make(tmp_path / "fresh", **args)
    os.environ["MINARI_DATASETS_PATH"] = fresh
    try:
        dataset = minari.load_dataset("mujoco/hopper/expert-v0")
        episodes = list(dataset.iterate_episodes())
        metadata = dataset.storage.metadata
    finally:
        del os.environ["MINARI_DATASETS_PATH"]
    assert dataset.total_episodes == 2 and len(episodes) == 2
    for episode in episodes:
        assert episode.observations.shape == (len(episode.actions) + 1, 11) and episode.actions.shape[1] == 3
        assert episode.terminations[-1] or episode.truncations[-1]
    assert json.loads(metadata["env_spec"])["id"] == "Hopper-v5"
    assert json.loads(metadata["eval_env_spec"])["id"] == "Hopper-v5"
    with open(f"{tiny_expert}/actor.json") as f:  # expert-v0 comes from the run's best checkpoint
        best = max(json.load(f)["evaluations"], key=lambda e: e["deterministic"]["return_mean"])
    assert "train_expert.py" in metadata["algorithm_name"] and f"actor_{best['step']:09d}" in metadata["description"]
    assert not os.path.exists(f"{fresh}/mujoco/hopper/expert-v0.parts")

    # Interrupted after the first episode, the same command keeps it and makes the same dataset.
    name, spec, _ = make_dataset.resolve(make_dataset.Args(**args))
    parts = tmp_path / "resumed" / f"{name}.parts"
    make_dataset.prepare_parts_dir(str(parts), spec, seed=0)
    make_dataset.collect_all(spec, [make_dataset.episode_seed(0, 0)], str(parts), workers=1)
    capsys.readouterr()
    resumed = make(tmp_path / "resumed", **args)
    assert "Resuming: 1 of" in capsys.readouterr().out
    for path in (fresh, resumed):
        os.environ["MINARI_DATASETS_PATH"] = path
        try:
            observations = [e.observations for e in minari.load_dataset(name).iterate_episodes()]
        finally:
            del os.environ["MINARI_DATASETS_PATH"]
        if path == fresh:
            expected = observations
    for a, b in zip(expected, observations, strict=True):
        np.testing.assert_array_equal(a, b)


def test_minari_steps_budget_keeps_whole_episodes_only(tiny_expert, tmp_path):
    """Minari's rule: an episode starts only if a whole episode (max_episode_steps) still fits in the budget."""
    import minari

    out = make(
        tmp_path, dataset="mujoco/hopper/medium-v0", expert_path=tiny_expert, num_steps=300, max_episode_steps=100
    )
    os.environ["MINARI_DATASETS_PATH"] = out
    try:
        dataset = minari.load_dataset("mujoco/hopper/medium-v0")
        lengths = [len(e.actions) for e in dataset.iterate_episodes()]
    finally:
        del os.environ["MINARI_DATASETS_PATH"]
    assert sum(lengths[:-1]) <= 300 - 100 < sum(lengths)  # the last episode began with >= 100 steps left
    assert dataset.total_steps == sum(lengths)


def test_checkpoint_rule_per_level(tmp_path):
    returns = {100: 1000.0, 200: 3400.0, 300: 4200.0, 400: 3300.0, 500: 2300.0}
    evaluations = [{"step": s, "deterministic": {"return_mean": r}} for s, r in returns.items()]
    (tmp_path / "actor.json").write_text(json.dumps({"evaluations": evaluations}))
    pick = lambda name, level: os.path.basename(make_dataset.pick_checkpoint(str(tmp_path), "X-v5", name, level))  # noqa: E731
    # Best 4200 beats Minari's Hopper expert (4098.17): the levels aim at Minari's own returns.
    assert pick("hopper", "medium") == "actor_000000200.msgpack"  # closest to Minari's 3483.58
    assert pick("hopper", "simple") == "actor_000000400.msgpack"  # closest to Minari's 3177.53
    assert pick("hopper", "expert") == "actor_000000300.msgpack"  # the best one, not the last
    # Below Minari's HalfCheetah expert (17641.80): medium aims at 0.850 x 4200 = 3570, simple at 0.411 x 4200 = 1726.
    assert pick("halfcheetah", "medium") == "actor_000000200.msgpack"
    assert pick("halfcheetah", "simple") == "actor_000000500.msgpack"
