"""Regenerate OGBench datasets offline, with OGBench's own data-collection procedure.

Machines without internet cannot download the OGBench datasets. This script rebuilds them from the scripted oracles
that ship in the `ogbench` package (manipulation `play`, point-maze `navigate`) and from an ant direction-following
expert trained by `benchmark/train_expert.py --env-id ant-xy` (ant-maze `navigate`). It writes `<dataset>.npz` and
`<dataset>-val.npz` with the official keys, so `ogbench.make_env_and_datasets(name, dataset_path=...)` loads them
unchanged. The data is statistically equivalent to the published files, not identical (MuJoCo version, seeds, expert).

    python benchmark/make_dataset.py --dataset cube-single-play-v0
    python benchmark/make_dataset.py --dataset antmaze-large-navigate-v0 --num-episodes 100 --out-dir data

With `--demos <single-task env>` it writes demonstrations of one task instead (episodes that start from the task's
initial state and end at its goal or at the time limit), e.g. for methods that pretrain on expert data:

    python benchmark/make_dataset.py --demos cube-single-singletask-task2-v0 --num-episodes 50 --noise 0.3

With `--dataset mujoco/<env>/<level>-v0` it makes a Minari dataset of gymnasium MuJoCo locomotion (`hopper`,
`walker2d`, `halfcheetah`, `ant`; `simple`, `medium` or `expert`) the way Minari made its own: 1M steps of whole
episodes from a SAC policy (a checkpoint of benchmark/train_expert.py, chosen per level as MINARI_TARGET_RETURNS
says), actions sampled from the policy, written by `minari.DataCollector` into Minari's folder
(`MINARI_DATASETS_PATH`, default ~/.minari/datasets), where `minari.load_dataset("mujoco/hopper/medium-v0")` finds it:

    python benchmark/train_expert.py --env-id Hopper-v5
    python benchmark/make_dataset.py --dataset mujoco/hopper/medium-v0

Every episode is seeded from `--seed` and its index alone, so the output does not depend on `--workers`. Finished
episodes are kept in `<out-dir>/<name>.parts/` until the end; rerunning the same command (Ctrl-C prints it) resumes an
interrupted run, and may change --num-episodes, --num-steps or --workers. One dataset, one set of settings: the
folder's `config.json` keeps the settings its episodes were made with (and the expert file's checksum), and a command
with other settings is refused with the one that continues them and one that starts anew in another folder.

Nothing existing is touched until its replacement is complete and checked: flags that cannot make the dataset (fewer
steps than one episode, an expert of another environment) are refused before anything slow; the new files are
written under temporary names, read back and checked (whole episodes, finite values, the environment's observation
and action shapes, the metadata Minari loads), and only then renamed into place, Ctrl-C held until they are in.
"""

import contextlib
import dataclasses
import hashlib
import json
import math
import multiprocessing
import os
import shlex
import shutil
import signal
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import asdict, dataclass

import gymnasium
import numpy as np
import ogbench  # noqa: F401  (registers the OGBench envs)
import tyro
from tqdm import tqdm

# OGBench's environments declare float64 bounds; gymnasium warns about the cast (in raw colour codes) at every env made.
warnings.filterwarnings("ignore", message=".*precision lowered by casting to float32", category=UserWarning)

DEFAULT_DATA_DIR = "~/.ogbench/data"
DEFAULT_EXPERT_PATH = "~/.ogbench/experts/ant_xy_sac/actor.msgpack"  # made by train_expert.py --env-id ant-xy
MINARI_EXPERT_DIR = "~/.minari/experts/{env_id}"  # made by train_expert.py --env-id <env_id>

# Official sizes (ogbench data_gen_scripts/commands.sh): train episodes and stored steps per episode.
DATASET_SIZES = {
    "cube-single-play-v0": (1000, 1001),
    "cube-double-play-v0": (1000, 1001),
    "cube-triple-play-v0": (3000, 1001),
    "cube-quadruple-play-v0": (5000, 1001),
    "scene-play-v0": (1000, 1001),
    "puzzle-3x3-play-v0": (1000, 1001),
    "puzzle-4x4-play-v0": (1000, 1001),
    "puzzle-4x5-play-v0": (3000, 1001),
    "puzzle-4x6-play-v0": (5000, 1001),
    "pointmaze-medium-navigate-v0": (1000, 1001),
    "pointmaze-large-navigate-v0": (1000, 1001),
    "pointmaze-giant-navigate-v0": (500, 2001),
    "pointmaze-teleport-navigate-v0": (1000, 1001),
    "antmaze-medium-navigate-v0": (1000, 1001),
    "antmaze-large-navigate-v0": (1000, 1001),
    "antmaze-giant-navigate-v0": (500, 2001),
    "antmaze-teleport-navigate-v0": (1000, 1001),
}

# Official action noise per family: plan-oracle noise scale (manipulation) or Gaussian std (mazes).
DEFAULT_NOISE = {"manipspace": 0.1, "pointmaze": 0.5, "antmaze": 0.2}

# Minari's gymnasium MuJoCo datasets: dataset id `mujoco/<name>/<level>-v0` -> the env the data comes from.
MINARI_ENVS = {"hopper": "Hopper-v5", "walker2d": "Walker2d-v5", "halfcheetah": "HalfCheetah-v5", "ant": "Ant-v5"}
MINARI_LEVELS = ("simple", "medium", "expert")
MINARI_STEPS = 1_000_000  # steps of every published mujoco dataset (whole episodes only)
# Which checkpoint of one train_expert.py run makes each level. Minari kept the best evaluation of a separate SB3 run
# per level (e.g. Hopper 1M / 4M / 25M steps for simple / medium / expert). Here `expert` is the best checkpoint of the
# run (the final one can sit in one of SAC's dips), and `simple` and `medium` are the checkpoints whose return comes
# closest to that of Minari's policy for the level: the deterministic return on its Hugging Face model card
# (farama-minari/<Env>-v5-<ALGO>-<level>) where it is published, else that of the published expert (or medium) scaled
# by Hopper's published ratios (simple 3177.53 / 4098.17 = 0.775, medium 3483.58 / 4098.17 = 0.850). A run whose best
# stays below Minari's expert keeps the level's ratio to it instead, so that medium never becomes the expert itself.
MINARI_TARGET_RETURNS = {
    ("hopper", "simple"): 3177.53,  # published
    ("hopper", "medium"): 3483.58,  # published
    ("walker2d", "simple"): 5392.1,  # 0.775 x 6956.61, the published expert
    ("walker2d", "medium"): 5913.1,  # 0.850 x 6956.61
    ("halfcheetah", "simple"): 7249.97,  # published (TQC)
    ("halfcheetah", "medium"): 14995.5,  # 0.850 x 17641.80, the published expert (TQC)
    ("ant", "simple"): 5490.9,  # 0.775 / 0.850 x 6022.47, the published medium
    ("ant", "medium"): 6022.47,  # published (the card was updated several times)
}
# Minari's expert returns (ant: 6022.47 / 0.850, derived from its medium).
MINARI_EXPERT_RETURNS = {"hopper": 4098.17, "walker2d": 6956.61, "halfcheetah": 17641.80, "ant": 7085.26}

# Range of the per-episode probability that a new cube target is on top of another cube.
P_STACK_RANGE = {"single": (0.0, 0.0), "double": (0.0, 0.25), "triple": (0.05, 0.35), "quadruple": (0.1, 0.5)}


@dataclass
class Args:
    """Regenerate an OGBench dataset (`--dataset`) or record demonstrations of one task (`--demos`).

    Writes `<name>.npz` and `<name>-val.npz` in OGBench's format. Demonstrations are named
    `<env>-singletask-task<N>-demos-v0.npz`; each episode starts from the task's initial state and ends at its goal or
    time limit, and the files add `env_name`, `task_id`, `noise` and a per-episode `episode_success`.
    """

    dataset: str | None = None
    """dataset to make: OGBench (`cube-single-play-v0`, `antmaze-large-navigate-v0`, ...) or Minari
    (`mujoco/hopper/medium-v0`, ...); a wrong name lists all"""
    demos: str | None = None
    """instead of a dataset, demonstrations of this single task, e.g. `cube-single-singletask-task2-v0`"""
    num_episodes: int | None = None
    """training episodes (OGBench: validation gets max(1, N // 10) more); default: the official count, 100
    demonstrations, or as many whole episodes as fit in --num-steps (Minari)"""
    num_steps: int | None = None
    """Minari only: steps of the dataset, made of whole episodes (Minari's rule); default: the published 1M"""
    max_episode_steps: int | None = None
    """stored steps per episode; default: the official 1001 or 2001, or the task's time limit (demonstrations, Minari)"""
    noise: float | None = None
    """action noise, >= 0; default: the official 0.1 (manipulation plan oracles), 0.5 (pointmaze), 0.2 (antmaze
    expert). Not for Minari, whose policy samples its own actions"""
    noise_smoothing: float = 0.5
    """standard deviation (in steps) of the Gaussian filter that smooths the manipulation oracles' plan noise"""
    out_dir: str | None = None
    """output folder; default: OGBench's ~/.ogbench/data, or for Minari its datasets folder (MINARI_DATASETS_PATH or
    ~/.minari/datasets)"""
    seed: int = 0
    """base seed, in [0, 2^32); episode i is seeded from (seed, i) alone"""
    workers: int = os.cpu_count() or 1
    """parallel worker processes; the default is this machine's core count"""
    expert_path: str | None = None
    """the policy that acts: antmaze, the ant expert's actor file (default ~/.ogbench/experts/ant_xy_sac/actor.msgpack);
    Minari, the run folder of benchmark/train_expert.py (default ~/.minari/experts/<Env>-v5) or one checkpoint file"""


# ----------------------------------------------------------------------------------------------------------------
# What to collect
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """Everything a worker needs to collect one episode, besides its seed (picklable)."""

    kind: str  # "play", "navigate", "demos" or "minari"
    family: str  # "manipspace", "pointmaze", "antmaze" or "locomotion"
    env_name: str  # the gymnasium id that is stepped
    max_episode_steps: int
    noise: float
    noise_smoothing: float
    expert_path: str | None


def family_of(env_name: str) -> str:
    if env_name.startswith("pointmaze"):
        return "pointmaze"
    if env_name.startswith("antmaze"):
        return "antmaze"
    if env_name.split("-")[0] in ("cube", "scene", "puzzle"):
        return "manipspace"
    raise SystemExit(f"No generator for '{env_name}': only cube, scene, puzzle, pointmaze and antmaze are supported.")


def episode_seed(seed: int, index: int) -> int:
    """A seed for episode `index`, independent across indices and of how episodes are spread over workers."""
    return int(np.random.SeedSequence(seed, spawn_key=(index,)).generate_state(1)[0])


# ----------------------------------------------------------------------------------------------------------------
# Policies
# ----------------------------------------------------------------------------------------------------------------


def make_plan_oracles(env, env_name: str, noise: float, noise_smoothing: float) -> dict:
    """OGBench's non-Markovian plan oracles, keyed by the sub-task kind the env reports in `privileged/target_task`."""
    from ogbench.manipspace.oracles.plan.button_plan import ButtonPlanOracle
    from ogbench.manipspace.oracles.plan.cube_plan import CubePlanOracle
    from ogbench.manipspace.oracles.plan.drawer_plan import DrawerPlanOracle
    from ogbench.manipspace.oracles.plan.window_plan import WindowPlanOracle

    kw = dict(env=env, noise=noise, noise_smoothing=noise_smoothing)
    if env_name.startswith("cube"):
        return {"cube": CubePlanOracle(**kw)}
    if env_name.startswith("scene"):
        return {
            "cube": CubePlanOracle(**kw),
            "button": ButtonPlanOracle(**kw),
            "drawer": DrawerPlanOracle(**kw),
            "window": WindowPlanOracle(**kw),
        }
    return {"button": ButtonPlanOracle(gripper_always_closed=True, **kw)}


def load_expert(path: str) -> dict:
    """Actor weights of a train_expert.py policy as numpy arrays (inference runs in numpy, so workers never start
    JAX), with its activation and log-std floor from the JSON beside the weights (files of the first ant trainer have
    none: GELU)."""
    from flax import serialization

    with open(path, "rb") as f:
        params = serialization.msgpack_restore(f.read())
    expert = {name: {k: np.asarray(v, dtype=np.float64) for k, v in layer.items()} for name, layer in params.items()}
    info_path = os.path.splitext(path)[0] + ".json"
    recipe = {}
    if os.path.exists(info_path):
        with open(info_path) as f:
            recipe = json.load(f).get("config", {}).get("recipe", {})
    expert["activation"] = recipe.get("activation", "gelu")
    expert["log_std_min"] = recipe.get("log_std_min", -5.0)
    return expert


def actor_head(params: dict, ob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and log-std of the tanh-Gaussian actor of train_expert.py: hidden layers, then the `mean` and `log_std`
    heads (numpy, float64)."""
    x = ob
    num_hidden = sum(name.startswith("hidden_") for name in params)
    for i in range(num_hidden):
        x = x @ params[f"hidden_{i}"]["kernel"] + params[f"hidden_{i}"]["bias"]
        if params["activation"] == "relu":
            x = np.maximum(x, 0.0)
        else:
            x = 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))  # GELU (tanh form, as flax)
    mean = x @ params["mean"]["kernel"] + params["mean"]["bias"]
    log_std = np.clip(x @ params["log_std"]["kernel"] + params["log_std"]["bias"], params["log_std_min"], 2.0)
    return mean, log_std


def expert_action(params: dict, ob: np.ndarray) -> np.ndarray:
    """The deterministic action tanh(mean)."""
    return np.tanh(actor_head(params, ob)[0])


def expert_sample(params: dict, ob: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A sampled action tanh(mean + std * noise), as Stable-Baselines3's `predict` acts by default (Minari's data)."""
    mean, log_std = actor_head(params, ob)
    return np.tanh(mean + np.exp(log_std) * rng.standard_normal(mean.shape))


# ----------------------------------------------------------------------------------------------------------------
# Episode collectors: built once per worker process, then called with one seed per episode
# ----------------------------------------------------------------------------------------------------------------


class PlayCollector:
    """Manipulation `play`: plan oracles solve an endless chain of random sub-tasks set by `set_new_target`."""

    def __init__(self, spec: Spec):
        self.spec = spec
        self.env = gymnasium.make(
            spec.env_name, terminate_at_goal=False, mode="data_collection", max_episode_steps=spec.max_episode_steps
        )
        self.oracles = make_plan_oracles(self.env, spec.env_name, spec.noise, spec.noise_smoothing)
        cube_kind = spec.env_name.split("-")[1]
        self.p_stack_range = P_STACK_RANGE.get(cube_kind, (0.5, 0.5))  # irrelevant for scene and puzzle

    def collect(self, seed: int) -> dict:
        np.random.seed(seed)  # the oracles draw their keyframes and noise from the global numpy generator
        ob, info = self.env.reset(seed=seed)
        while True:
            episode = self._rollout(ob, info)
            if self._healthy(episode["qpos"]):
                return episode
            ob, info = self.env.reset()  # rare: redo the episode, continuing the seeded random streams

    def _rollout(self, ob, info) -> dict:
        p_stack = np.random.uniform(*self.p_stack_range)
        oracle = self.oracles[info["privileged/target_task"]]
        oracle.reset(ob, info)
        steps = {"observations": [], "actions": [], "terminals": [], "qpos": [], "qvel": [], "button_states": []}
        attempted = succeeded = 0
        done = False
        while not done:
            action = np.clip(oracle.select_action(ob, info), -1, 1)
            next_ob, _, terminated, truncated, info = self.env.step(action)
            done = terminated or truncated
            if oracle.done:  # the plan is over: count it and chain the next random sub-task
                attempted += 1
                succeeded += int(info["success"])
                target_ob, target_info = self.env.unwrapped.set_new_target(p_stack=p_stack)
                oracle = self.oracles[target_info["privileged/target_task"]]
                oracle.reset(target_ob, target_info)
            append_step(steps, ob, action, done, info)
            ob = next_ob
        return finish_episode(steps, subtasks_attempted=attempted, subtasks_succeeded=succeeded)

    def _healthy(self, qpos: np.ndarray) -> bool:
        """OGBench's scene check: the cube stays visible (not pushed off the table's right or left edge)."""
        if not self.spec.env_name.startswith("scene"):
            return True
        y, z = qpos[:, 15], qpos[:, 16]
        too_far_right = (y >= 0.29).any()
        left_outside_drawer = ((y <= -0.3) & ((z < 0.06) | (z > 0.08))).any()
        return not (too_far_right or left_outside_drawer)


class NavigateCollector:
    """Maze `navigate`: follow the BFS subgoal direction to random goals; a new goal is drawn at each success.

    The point mass takes the unit direction itself as its action; the ant feeds [proprioception without xy,
    direction] to the expert. Both add Gaussian action noise.
    """

    def __init__(self, spec: Spec):
        self.spec = spec
        self.env = gymnasium.make(spec.env_name, terminate_at_goal=False, max_episode_steps=spec.max_episode_steps)
        self.expert = load_expert(spec.expert_path) if spec.family == "antmaze" else None
        maze = self.env.unwrapped.maze_map
        free = [(i, j) for i in range(maze.shape[0]) for j in range(maze.shape[1]) if maze[i, j] == 0]
        self.all_cells = free
        self.goal_cells = [(i, j) for i, j in free if not self._is_hallway(maze, i, j)]

    @staticmethod
    def _is_hallway(maze, i, j) -> bool:
        vertical = maze[i - 1, j] == 0 and maze[i + 1, j] == 0 and maze[i, j - 1] == 1 and maze[i, j + 1] == 1
        horizontal = maze[i, j - 1] == 0 and maze[i, j + 1] == 0 and maze[i - 1, j] == 1 and maze[i + 1, j] == 1
        return vertical or horizontal

    def _pick(self, cells):
        return cells[np.random.randint(len(cells))]

    def collect(self, seed: int) -> dict:
        np.random.seed(seed)  # goals, reset noise on the cells, and the action noise use the global generator
        self.env.unwrapped.action_space.seed(seed)  # the maze's reset takes a few random actions
        task_info = dict(init_ij=self._pick(self.all_cells), goal_ij=self._pick(self.goal_cells))
        ob, _ = self.env.reset(seed=seed, options=dict(task_info=task_info))
        return rollout_maze(self.env, ob, self.expert, self.spec.noise, new_goal_cells=self.goal_cells)


def rollout_maze(env, ob, expert, noise: float, new_goal_cells=None) -> dict:
    """Drive to the current goal along BFS subgoals until the episode ends; optionally chain new goals on success."""
    maze = env.unwrapped
    steps = {"observations": [], "actions": [], "terminals": [], "qpos": [], "qvel": []}
    goals_reached = 0
    done = False
    while not done:
        xy = maze.get_xy()
        subgoal_xy, _ = maze.get_oracle_subgoal(xy, maze.cur_goal_xy)
        direction = (subgoal_xy - xy) / (np.linalg.norm(subgoal_xy - xy) + 1e-6)
        if expert is None:
            action = direction
        else:
            action = expert_action(expert, np.concatenate([maze.get_ob(ob_type="states")[2:], direction]))
        action = np.clip(action + np.random.normal(0, noise, action.shape), -1, 1)
        next_ob, _, terminated, truncated, info = env.step(action)
        done = terminated or truncated
        if info["success"]:
            goals_reached += 1
            if new_goal_cells is not None:
                maze.set_goal(new_goal_cells[np.random.randint(len(new_goal_cells))])
        append_step(steps, ob, action, done, info)
        ob = next_ob
    stats = {"goals_reached": goals_reached} if new_goal_cells is not None else {"success": float(info["success"])}
    if expert is not None:
        stats["ends_upside_down"] = float(torso_upside_down(maze.data.qpos))
    return finish_episode(steps, **stats)


def torso_upside_down(qpos: np.ndarray) -> bool:
    """Whether the ant lies on its back: the torso's up axis (from the quaternion w, x, y, z in qpos[3:7]) points
    down. The maze envs never end an episode for a fall, and the expert does not get the ant back on its feet."""
    _, x, y, _ = qpos[3:7]
    return 1 - 2 * (x * x + y * y) < 0


def append_step(steps: dict, ob, action, done: bool, info: dict) -> None:
    """Store s_t, a_t and the simulator state of s_t (`prev_*`: the env reports it after stepping)."""
    steps["observations"].append(ob)
    steps["actions"].append(action)
    steps["terminals"].append(done)
    steps["qpos"].append(info["prev_qpos"])
    steps["qvel"].append(info["prev_qvel"])
    if "button_states" in steps and "prev_button_states" in info:
        steps["button_states"].append(info["prev_button_states"])


def finish_episode(steps: dict, **stats) -> dict:
    dtypes = {"terminals": bool, "button_states": np.int64}
    episode = {k: np.asarray(v, dtype=dtypes.get(k, np.float32)) for k, v in steps.items() if len(v) > 0}
    episode.update({f"stat_{k}": np.asarray(v) for k, v in stats.items()})
    return episode


# Single-task demonstrations. The plan oracles solve one sub-task at a time from privileged target info that the
# envs only provide while collecting play data; in task mode the planners below pick the next sub-task toward the
# task's goal (read from `cur_task_info`) and supply that target info themselves. They re-plan whenever an oracle
# finishes, so a failed attempt is simply retried until the episode ends.

CUBE_TOLERANCE = 0.04  # a cube is at its goal within this distance (OGBench's success test)


def plan_cube_subtask(env, info: dict, goals: np.ndarray) -> tuple[str, dict]:
    """Next cube to move and where: a free cube whose goal spot is clear and supported, else clear the way."""
    cubes = np.array([info[f"privileged/block_{i}_pos"] for i in range(len(goals))])
    done = np.linalg.norm(cubes - goals, axis=1) <= CUBE_TOLERANCE
    under = [  # index of the cube right below each cube, if any
        next(
            (
                j
                for j in range(len(cubes))
                if j != i
                and np.linalg.norm(cubes[i, :2] - cubes[j, :2]) < 0.02
                and 0.02 < cubes[i, 2] - cubes[j, 2] < 0.06
            ),
            None,
        )
        for i in range(len(cubes))
    ]
    on_top = [i for i in range(len(cubes)) if i not in under]

    def goal_ready(i):
        blocked = any(j != i and np.linalg.norm(cubes[j] - goals[i]) <= CUBE_TOLERANCE for j in range(len(cubes)))
        supported = goals[i, 2] < 0.03 or any(
            j != i and done[j] and np.linalg.norm(goals[j] - goals[i] + [0, 0, 0.04]) < 0.02 for j in range(len(goals))
        )
        return supported and not blocked

    if done.all():  # solved: the episode ends on the next step
        return cube_subtask(info, 0, cubes[0])
    ready = [i for i in on_top if not done[i] and goal_ready(i)]
    if ready:
        return cube_subtask(info, ready[0], goals[ready[0]])
    # Swaps, cycles, or a cube on top of a misplaced one: park a cube that is in the way on a free spot.
    in_the_way = [i for i in on_top if not done[i] or (under[i] is not None and not done[under[i]])]
    return cube_subtask(info, in_the_way[0], free_table_spot(env, np.concatenate([cubes, goals])))


def cube_subtask(info: dict, cube: int, target: np.ndarray) -> tuple[str, dict]:
    return "cube", {
        "privileged/target_block": cube,
        "privileged/target_block_pos": np.asarray(target, dtype=np.float64),
        "privileged/target_block_yaw": info[f"privileged/block_{cube}_yaw"],  # success ignores yaw: keep it
    }


def free_table_spot(env, occupied: np.ndarray) -> np.ndarray:
    """A random table position at least 8 cm from every cube and goal (rejection sampling)."""
    low, high = env._target_sampling_bounds
    for _ in range(100):
        xy = np.random.uniform(low, high)
        if np.min(np.linalg.norm(occupied[:, :2] - xy, axis=1)) > 0.08:
            break
    return np.array([*xy, 0.02])


def button_target(env, button: int) -> dict:
    return {
        "privileged/target_button": button,
        "privileged/target_button_top_pos": env._data.site(f"btntop_{button}").xpos.copy(),
    }


def lights_out_presses(current: np.ndarray, goal: np.ndarray, rows: int, cols: int) -> list[int]:
    """Buttons to press once each to turn `current` into `goal` when a press toggles a button and its 4 neighbours.

    Solves the linear system over GF(2) by Gauss-Jordan elimination (free variables set to 0).
    """
    n = rows * cols
    system = np.zeros((n, n + 1), dtype=np.uint8)
    for button in range(n):
        r, c = divmod(button, cols)
        for dr, dc in ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)):
            if 0 <= r + dr < rows and 0 <= c + dc < cols:
                system[(r + dr) * cols + c + dc, button] = 1
    system[:, n] = (goal - current) % 2
    pivots = []
    for col in range(n):
        row = len(pivots)
        pivot = next((r for r in range(row, n) if system[r, col]), None)
        if pivot is None:
            continue
        system[[row, pivot]] = system[[pivot, row]]
        for r in range(n):
            if r != row and system[r, col]:
                system[r] ^= system[row]
        pivots.append(col)
    return [col for row, col in enumerate(pivots) if system[row, n]]


def plan_puzzle_subtask(env, info: dict) -> tuple[str, dict]:
    """Press the closest button of a lights-out solution from the current button states."""
    presses = lights_out_presses(
        info["button_states"], env.cur_task_info["goal_button_states"], env._num_rows, env._num_cols
    )
    if not presses:  # solved; the episode ends on the next step
        presses = [0]
    distance = [
        np.linalg.norm(button_target(env, b)["privileged/target_button_top_pos"] - info["proprio/effector_pos"])
        for b in presses
    ]
    return "button", button_target(env, presses[int(np.argmin(distance))])


def plan_scene_subtask(env, info: dict) -> tuple[str, dict]:
    """Scene: cube first (opening the drawer if the cube is or goes in it), then drawer, window, and lock buttons.

    Button 0 locks the drawer and button 1 the window while their state is 0, so they are unlocked when needed and
    set to their goal states last.
    """
    goal = env.cur_task_info["goal"]
    buttons = info["button_states"]
    drawer, window = info["privileged/drawer_pos"][0], info["privileged/window_pos"][0]

    def slide(name, target, lock_button):
        """Move the drawer or the window to `target`, unlocking it first."""
        if buttons[lock_button] == 0:
            return "button", button_target(env, lock_button)
        joint = env._data.joint(f"{name}_slide")
        handle = info[f"privileged/{name}_handle_pos"] + (target - joint.qpos[0]) * joint.xaxis  # along the slide
        return name, {
            f"privileged/target_{name}_pos": np.array([target]),
            f"privileged/target_{name}_handle_pos": handle,
        }

    # A goal inside the drawer is reached by placing the cube where that spot is now, then moving the drawer.
    cube, cube_goal = info["privileged/block_0_pos"], goal["block_xyzs"][0]
    drawer_shift = (goal["drawer_pos"] - drawer) * env._data.joint("drawer_slide").xaxis
    goal_in_drawer = env._is_in_drawer(cube_goal - drawer_shift)
    cube_target = cube_goal - drawer_shift if goal_in_drawer else cube_goal
    if np.linalg.norm(cube - cube_target) > CUBE_TOLERANCE:
        if (goal_in_drawer or env._is_in_drawer(cube)) and drawer > -0.12:  # drawer closed: open it first
            return slide("drawer", -0.16, 0)
        return cube_subtask(info, 0, cube_target)
    if abs(drawer - goal["drawer_pos"]) > 0.04:
        return slide("drawer", goal["drawer_pos"], 0)
    if abs(window - goal["window_pos"]) > 0.04:
        return slide("window", goal["window_pos"], 1)
    wrong = np.flatnonzero(buttons != goal["button_states"])
    return "button", button_target(env, int(wrong[0]) if len(wrong) else 0)


class ManipulationDemoCollector:
    """Demonstrations of one manipulation task: plan oracles chained by a planner until success or the time limit."""

    def __init__(self, spec: Spec):
        self.spec = spec
        self.env = gymnasium.make(spec.env_name, max_episode_steps=spec.max_episode_steps)
        self.oracles = make_plan_oracles(self.env, spec.env_name, spec.noise, spec.noise_smoothing)
        self.plan = {"cube": self._plan_cubes, "scene": plan_scene_subtask, "puzzle": plan_puzzle_subtask}[
            spec.env_name.split("-")[0]
        ]

    def _plan_cubes(self, env, info):
        return plan_cube_subtask(env, info, env.cur_task_info["goal_xyzs"])

    def _start_subtask(self, ob, info):
        kind, target = self.plan(self.env.unwrapped, info)
        oracle = self.oracles[kind]
        oracle.reset(ob, {**info, **target})
        return oracle

    def collect(self, seed: int) -> dict:
        np.random.seed(seed)
        ob, info = self.env.reset(seed=seed)
        oracle = self._start_subtask(ob, info)
        steps = {"observations": [], "actions": [], "terminals": [], "qpos": [], "qvel": [], "button_states": []}
        subtasks = 0
        done = False
        while not done:
            action = np.clip(oracle.select_action(ob, info), -1, 1)
            next_ob, _, terminated, truncated, info = self.env.step(action)
            done = terminated or truncated
            if oracle.done and not done:
                subtasks += 1
                oracle = self._start_subtask(next_ob, info)
            append_step(steps, ob, action, done, info)
            ob = next_ob
        return finish_episode(steps, success=float(info["success"]), subtasks_attempted=subtasks)


class MazeDemoCollector:
    """Demonstrations of one maze task: drive from the task's start to its goal; the episode ends at the goal."""

    def __init__(self, spec: Spec):
        self.spec = spec
        self.env = gymnasium.make(spec.env_name, max_episode_steps=spec.max_episode_steps)
        self.expert = load_expert(spec.expert_path) if spec.family == "antmaze" else None

    def collect(self, seed: int) -> dict:
        np.random.seed(seed)
        self.env.unwrapped.action_space.seed(seed)
        ob, _ = self.env.reset(seed=seed)
        return rollout_maze(self.env, ob, self.expert, self.spec.noise)


class LocomotionCollector:
    """Minari locomotion: one episode of the SAC policy in the gymnasium MuJoCo env, actions sampled from it."""

    def __init__(self, spec: Spec):
        self.env = gymnasium.make(spec.env_name, max_episode_steps=spec.max_episode_steps)
        self.expert = load_expert(spec.expert_path)

    def collect(self, seed: int) -> dict:
        rng = np.random.default_rng(seed)
        ob, _ = self.env.reset(seed=seed)
        steps = {"observations": [ob], "actions": [], "rewards": [], "terminations": [], "truncations": []}
        done = False
        while not done:
            action = expert_sample(self.expert, ob, rng).astype(np.float32)  # what the env receives, exactly
            ob, reward, terminated, truncated, _ = self.env.step(action)
            done = terminated or truncated
            for key, value in zip(steps, (ob, action, reward, terminated, truncated), strict=True):
                steps[key].append(value)
        episode = {k: np.asarray(v) for k, v in steps.items()}
        episode["stat_return"] = np.asarray(episode["rewards"].sum())
        episode["stat_length"] = np.asarray(len(episode["actions"]))
        episode["stat_terminated"] = np.asarray(float(terminated))
        episode["seed"] = np.asarray(seed)  # the replay into minari.DataCollector resets with it
        return episode


_collector = None  # one per worker process


def init_worker(spec: Spec) -> None:
    global _collector
    if spec.kind == "demos":
        _collector = (ManipulationDemoCollector if spec.family == "manipspace" else MazeDemoCollector)(spec)
    elif spec.kind == "minari":
        _collector = LocomotionCollector(spec)
    else:
        _collector = {"play": PlayCollector, "navigate": NavigateCollector}[spec.kind](spec)


def init_pool_worker(spec: Spec) -> None:
    """A worker of the pool: Ctrl-C is the main process's to handle (it stops the pool), not a traceback per worker."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    init_worker(spec)


def collect_to_file(job: tuple[int, str]) -> None:
    """Collect one episode and save it atomically, so an interrupted run can resume from the finished files."""
    seed, path = job
    episode = _collector.collect(seed)
    with open(path + ".tmp", "wb") as f:
        np.savez(f, **episode)
    os.replace(path + ".tmp", path)


# ----------------------------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------------------------


DATASET_TYPES = ("play", "navigate", "stitch", "explore", "noisy")
DEFAULT_NUM_DEMOS = 100


def parse_minari_id(dataset: str) -> tuple[str, str] | None:
    """`mujoco/hopper/medium-v0` -> ("hopper", "medium"); None for anything else."""
    parts = dataset.split("/")
    if len(parts) != 3 or parts[0] != "mujoco" or parts[1] not in MINARI_ENVS:
        return None
    level = parts[2].removesuffix("-v0")
    return (parts[1], level) if level in MINARI_LEVELS and parts[2].endswith("-v0") else None


def resolve(args: Args) -> tuple[str, Spec, int]:
    """Output name, collection spec and number of training episodes from the command line."""
    if args.demos is not None:
        return resolve_demos(args)
    if parse_minari_id(args.dataset) is not None:
        return resolve_minari(args)
    num_episodes, max_episode_steps = DATASET_SIZES[args.dataset]
    env_name = args.dataset.replace("-play-", "-").replace("-navigate-", "-")
    family = family_of(env_name)
    spec = Spec(
        kind="play" if family == "manipspace" else "navigate",
        family=family,
        env_name=env_name,
        max_episode_steps=args.max_episode_steps or max_episode_steps,
        noise=DEFAULT_NOISE[family] if args.noise is None else args.noise,
        noise_smoothing=args.noise_smoothing,
        expert_path=os.path.expanduser(args.expert_path or DEFAULT_EXPERT_PATH) if family == "antmaze" else None,
    )
    return args.dataset, spec, args.num_episodes or num_episodes


def resolve_demos(args: Args) -> tuple[str, Spec, int]:
    """`cube-single-singletask-task2-v0` (or `cube-single-play-singletask-task2-v0`, or no `-taskN` for the default
    task) -> output `cube-single-singletask-task2-demos-v0`, collected on `cube-single-singletask-task2-v0`."""
    words = args.demos.split("-")
    if "singletask" not in words or words.index("singletask") == 0:
        fail("demos", args.demos, "not a single-task env id; give one such as cube-single-singletask-task2-v0")
    base = words[: words.index("singletask")]
    base = base[:-1] if base[-1] in DATASET_TYPES else base
    env_base = "-".join(base)
    family = family_of(env_base)
    try:  # the env resolves the default task itself
        task_env = gymnasium.make("-".join(base + words[words.index("singletask") :]))
    except gymnasium.error.Error as error:
        fail("demos", args.demos, f"unknown single-task env ({error})")
    task_id = task_env.unwrapped._reward_task_id
    env_name = f"{env_base}-singletask-task{task_id}-v0"
    spec = Spec(
        kind="demos",
        family=family,
        env_name=env_name,
        max_episode_steps=args.max_episode_steps or task_env.spec.max_episode_steps,
        noise=DEFAULT_NOISE[family] if args.noise is None else args.noise,
        noise_smoothing=args.noise_smoothing,
        expert_path=os.path.expanduser(args.expert_path or DEFAULT_EXPERT_PATH) if family == "antmaze" else None,
    )
    task_env.close()
    return f"{env_base}-singletask-task{task_id}-demos-v0", spec, args.num_episodes or DEFAULT_NUM_DEMOS


def resolve_minari(args: Args) -> tuple[str, Spec, int | None]:
    """`mujoco/hopper/medium-v0` -> the checkpoint that acts and the collection spec (episodes: as many as fit)."""
    name, level = parse_minari_id(args.dataset)
    env_id = MINARI_ENVS[name]
    expert = os.path.expanduser(args.expert_path or MINARI_EXPERT_DIR.format(env_id=env_id))
    checkpoint = expert if os.path.isfile(expert) else pick_checkpoint(expert, env_id, name, level)
    spec = Spec(
        kind="minari",
        family="locomotion",
        env_name=env_id,
        max_episode_steps=args.max_episode_steps or gymnasium.spec(env_id).max_episode_steps,
        noise=0.0,  # the policy samples its own actions
        noise_smoothing=0.0,
        expert_path=checkpoint,
    )
    return args.dataset, spec, args.num_episodes


def pick_checkpoint(run_dir: str, env_id: str, name: str, level: str) -> str:
    """The checkpoint of a train_expert.py run that makes `level` (see MINARI_TARGET_RETURNS)."""
    info_path = os.path.join(run_dir, "actor.json")
    if not os.path.exists(info_path):
        raise SystemExit(
            f"error: no SAC expert for {env_id} in {run_dir} (no actor.json). Train one (hours on a CPU; it resumes "
            f"if interrupted) with:\n  python benchmark/train_expert.py --env-id {env_id}"
        )
    try:
        with open(info_path) as f:
            returns = {e["step"]: e["deterministic"]["return_mean"] for e in json.load(f)["evaluations"]}
        best = max(returns, key=returns.get)
    except (ValueError, KeyError, TypeError) as error:
        raise SystemExit(
            f"error: {info_path} is not the record of a train_expert.py run ({type(error).__name__}: {error}).\n"
            f"  Give --expert-path one of its checkpoints ({run_dir}/checkpoints/actor_<steps>.msgpack), or train "
            f"an expert in a new folder: python benchmark/train_expert.py --env-id {env_id} "
            f"--out-dir {new_folder(run_dir)}"
        ) from None
    if level == "expert":
        step = best
    else:
        published = MINARI_TARGET_RETURNS[(name, level)]
        target = min(published, published / MINARI_EXPERT_RETURNS[name] * returns[best])
        step = min(returns, key=lambda s: abs(returns[s] - target))
        if target < published:
            print(
                f"{level}: the run's best ({returns[best]:.0f}) is below Minari's expert "
                f"({MINARI_EXPERT_RETURNS[name]:.0f}); aiming at {target:.0f}, the same fraction of the best as "
                f"Minari's {level} policy ({published:.0f}) of its expert"
            )
        if step == best:
            print(
                f"warning: no checkpoint of this run comes closer to {target:.0f} than its best; the best stands in "
                f"for {level}, as for expert. Train longer (--total-steps) to tell them apart."
            )
    print(f"{level}: checkpoint at {step} transitions of {run_dir} (deterministic return {returns[step]:.1f})")
    return os.path.join(run_dir, "checkpoints", f"actor_{step:09d}.msgpack")


def collect_all(spec: Spec, seeds: list[int], parts_dir: str, workers: int, note_resume: bool = True) -> None:
    """Collect every episode whose file is not yet in `parts_dir`, with a progress bar in episodes/s."""
    jobs = [(s, os.path.join(parts_dir, f"episode_{i:06d}.npz")) for i, s in enumerate(seeds)]
    todo = [job for job in jobs if not os.path.exists(job[1])]
    if len(todo) < len(jobs) and note_resume:
        print(f"Resuming: {len(jobs) - len(todo)} of {len(jobs)} episodes already collected in {parts_dir}")
    with tqdm(total=len(todo), unit="ep", desc="episodes", smoothing=0.05) as bar:
        if workers == 1 or len(todo) <= 1:
            init_worker(spec)
            for job in todo:
                collect_to_file(job)
                bar.update()
        else:
            # "spawn" keeps workers clean of the parent's threads; each builds its env and policy once, and leaves
            # Ctrl-C to this process, which stops them.
            context = multiprocessing.get_context("spawn")
            with context.Pool(workers, initializer=init_pool_worker, initargs=(spec,)) as pool:
                for _ in pool.imap_unordered(collect_to_file, todo):
                    bar.update()


def load_episodes(paths: list[str]) -> tuple[dict, dict]:
    """Concatenate episode files in order: the OGBench arrays and the per-episode statistics."""
    episodes = [dict(np.load(p)) for p in paths]
    data = {k: np.concatenate([e[k] for e in episodes]) for k in episodes[0] if not k.startswith("stat_")}
    stat_keys = [k for k in episodes[0] if k.startswith("stat_") and all(k in e for e in episodes)]
    stats = {k[5:]: np.array([e[k] for e in episodes]) for k in stat_keys}
    return data, stats


def demo_metadata(spec: Spec, stats: dict) -> dict:
    """Extra keys of a demonstration file (ignored by OGBench's loader): which task, how noisy, which episodes won."""
    return {
        "env_name": np.array(spec.env_name),
        "task_id": np.array(int(spec.env_name.split("-task")[-1].split("-")[0])),
        "noise": np.array(spec.noise),
        "episode_success": stats["success"].astype(bool),
    }


def write_ogbench_files(spec: Spec, splits: dict[str, list[str]], shapes: tuple) -> dict:
    """Write each split's `.npz` under a temporary name, check it read back from disk, and only when all pass rename
    them into place (together: Ctrl-C is held until both are in). Returns {path: (arrays, per-episode stats)}."""
    outputs, staged = {}, []
    try:
        for path, paths in splits.items():
            data, stats = load_episodes(paths)
            if spec.kind == "demos":
                data.update(demo_metadata(spec, stats))
            staged.append((path + ".tmp", path))
            with open(path + ".tmp", "wb") as f:
                np.savez_compressed(f, **data)
            if problem := npz_problem(path + ".tmp", spec, *shapes):
                raise SystemExit(
                    f"error: the new {os.path.basename(path)} holds {problem}; nothing was replaced in "
                    f"{os.path.dirname(path)}, and the collected episodes stay in {os.path.dirname(paths[0])}."
                )
            outputs[path] = (data, stats)
    except BaseException:  # a failed check, an error or Ctrl-C: no temporary file is left behind
        for temporary, _ in staged:
            if os.path.exists(temporary):
                os.remove(temporary)
        raise
    with hold_ctrl_c():
        for temporary, final in staged:
            os.replace(temporary, final)
    return outputs


def summarize(outputs: dict, elapsed: float) -> None:
    """Sizes, shapes, action statistics and per-episode statistics (sub-tasks, goals reached, success)."""
    for path, (data, stats) in outputs.items():
        episodes = int(data["terminals"].sum())
        transitions = len(data["terminals"]) - episodes  # OGBench's loader drops the last step of each episode
        print(f"\n{path}: {os.path.getsize(path) / 2**20:.1f} MiB, {episodes} episodes, {transitions} transitions")
        print(
            f"  observations {data['observations'].shape[1:]}, actions {data['actions'].shape[1:]}, "
            f"qpos {data['qpos'].shape[1:]}, keys {sorted(data)}"
        )
        print(f"  action mean {np.round(data['actions'].mean(0), 3)}, std {np.round(data['actions'].std(0), 3)}")
        for key, values in stats.items():
            print(f"  {key} per episode: mean {values.mean():.2f}, min {values.min():g}, max {values.max():g}")
    print(f"\nDone in {elapsed / 60:.1f} min.")


@contextlib.contextmanager
def minari_datasets_path(root: str):
    """Point Minari at `root` (it reads MINARI_DATASETS_PATH at every call) for the duration of the block."""
    previous = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = root
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = previous


def minari_root(args: Args) -> str:
    return os.path.expanduser(args.out_dir or os.environ.get("MINARI_DATASETS_PATH") or "~/.minari/datasets")


def episode_lengths(paths: list[str], cache: dict) -> list[int]:
    for path in paths:
        if path not in cache:
            with np.load(path) as episode:
                cache[path] = int(episode["stat_length"])
    return [cache[path] for path in paths]


def collect_minari(spec: Spec, args: Args, parts_dir: str, num_steps: int) -> list[int]:
    """Collect episodes 0, 1, ... in waves until Minari's rule closes the dataset: before episode k starts, stop if
    fewer than `max_episode_steps` steps of the budget remain (so every stored episode is whole). Returns the indices
    kept (a prefix; episodes collected past the end are discarded)."""
    seeds, cache = [], {}
    path = lambda i: os.path.join(parts_dir, f"episode_{i:06d}.npz")  # noqa: E731
    while True:
        lengths = episode_lengths([path(i) for i in range(len(seeds))], cache)
        kept, total = 0, 0
        while kept < len(lengths) and num_steps - total >= spec.max_episode_steps:
            if args.num_episodes is not None and kept == args.num_episodes:
                return list(range(kept))
            total, kept = total + lengths[kept], kept + 1
        if kept < len(lengths) or num_steps - total < spec.max_episode_steps or kept == args.num_episodes:
            return list(range(kept))
        mean_length = np.mean(lengths) if lengths else spec.max_episode_steps
        more = math.ceil((num_steps - total) / mean_length) + args.workers  # a little past the end, in parallel
        if args.num_episodes is not None:
            more = min(more, args.num_episodes - len(seeds))
        first_wave = not seeds
        seeds += [episode_seed(args.seed, i) for i in range(len(seeds), len(seeds) + more)]
        collect_all(spec, seeds, parts_dir, args.workers, note_resume=first_wave)


def write_minari_dataset(spec: Spec, args: Args, dataset_id: str, paths: list[str], root: str, shapes) -> None:
    """Replay the collected episodes through `minari.DataCollector` into a new dataset, check it, and put it in place.

    Each episode is reset with its seed and stepped with its recorded actions: the simulator is deterministic, so the
    replay reproduces the recorded observations (checked) and the dataset is exactly what DataCollector records
    while the policy acts. It is made in a temporary folder of `root`, loaded back through Minari and checked, and
    only then swapped in for the old one.
    """
    import minari

    os.makedirs(root, exist_ok=True)
    tmp_root = tempfile.mkdtemp(prefix=".make_dataset-", dir=root)
    try:
        with minari_datasets_path(tmp_root):
            env = minari.DataCollector(gymnasium.make(spec.env_name, max_episode_steps=spec.max_episode_steps))
            for path in tqdm(paths, unit="ep", desc="writing with minari.DataCollector"):
                with np.load(path) as episode:
                    ob, _ = env.reset(seed=int(episode["seed"]))
                    for action in episode["actions"]:
                        ob, *_ = env.step(action)
                    if not np.array_equal(ob, episode["observations"][-1]):
                        raise SystemExit(f"error: replaying {path} did not reproduce its observations (simulator?)")
            with open(os.path.splitext(spec.expert_path)[0] + ".json") as f:
                evaluation = json.load(f)["evaluations"][-1]
            description = (
                f"Regenerated offline by benchmark/make_dataset.py with Minari's procedure: whole episodes of "
                f"{spec.env_name} within {args.num_steps or MINARI_STEPS} steps, actions sampled from a SAC policy "
                f"trained by benchmark/train_expert.py (checkpoint {os.path.basename(spec.expert_path)}: "
                f"{evaluation['step']} transitions, deterministic return "
                f"{evaluation['deterministic']['return_mean']:.1f} +- {evaluation['deterministic']['return_std']:.1f})."
                f" Statistically equivalent to the published {dataset_id}, not identical."
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Minari's reminders about the e-mail and permalink fields
                env.create_dataset(
                    dataset_id,
                    eval_env=spec.env_name,
                    algorithm_name="SAC (JAX, benchmark/train_expert.py)",
                    author="flow-matching RL reference implementations",
                    code_permalink="benchmark/make_dataset.py",
                    description=description,
                    requirements=["mujoco>=3.2", "gymnasium>=1.0"],
                )
            env.close()
        if problem := minari_problem(tmp_root, dataset_id, spec, len(paths), *shapes):
            raise SystemExit(
                f"error: the new {dataset_id} holds {problem}; nothing was replaced in {root}, and the collected "
                f"episodes stay in {os.path.dirname(paths[0])}."
            )
        for folder in (os.path.dirname(os.path.dirname(dataset_id)), os.path.dirname(dataset_id)):  # namespaces
            made = os.path.join(tmp_root, folder, "namespace_metadata.json")
            if os.path.exists(made) and not os.path.exists(os.path.join(root, folder, "namespace_metadata.json")):
                os.makedirs(os.path.join(root, folder), exist_ok=True)
                os.replace(made, os.path.join(root, folder, "namespace_metadata.json"))
        swap_in_folder(os.path.join(tmp_root, dataset_id), os.path.join(root, dataset_id))
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)


def summarize_minari(root: str, dataset_id: str, elapsed: float) -> None:
    """Steps, episodes, returns and lengths of the dataset as Minari loads it."""
    import minari

    with minari_datasets_path(root):
        dataset = minari.load_dataset(dataset_id)
        returns, lengths, terminated = [], [], []
        for episode in dataset.iterate_episodes():
            returns.append(episode.rewards.sum())
            lengths.append(len(episode.actions))
            terminated.append(bool(episode.terminations[-1]))
    returns, lengths = np.array(returns), np.array(lengths)
    print(f"\n{dataset_id} in {root}: {dataset.total_steps} steps, {dataset.total_episodes} episodes")
    print(
        f"  return mean {returns.mean():.1f}, std {returns.std():.1f}, min {returns.min():.1f}, max {returns.max():.1f}"
    )
    print(f"  episode length mean {lengths.mean():.1f}, min {lengths.min()}, max {lengths.max()}")
    print(f"  episodes ended by termination {np.mean(terminated):.1%}")
    print(f"\nDone in {elapsed / 60:.1f} min.")


def main(args: Args) -> None:
    check_args(args)
    name, spec, num_train = resolve(args)
    shapes = check_spec(args, spec)  # the flags that cannot make this dataset, before anything slow
    root = minari_root(args) if spec.kind == "minari" else os.path.expanduser(args.out_dir or DEFAULT_DATA_DIR)
    parts_dir = os.path.join(root, f"{name}.parts")
    check_parts_dir(parts_dir, root, spec, args)  # one dataset, one set of settings
    prepare_parts_dir(parts_dir, spec, args.seed)
    start = time.time()
    try:
        if spec.kind == "minari":
            num_steps = args.num_steps or MINARI_STEPS
            print(
                f"Making {name}: whole episodes of up to {spec.max_episode_steps} steps on {spec.env_name} within "
                f"{num_steps} steps, policy {spec.expert_path}, seed {args.seed}, {args.workers} workers"
            )
            kept = collect_minari(spec, args, parts_dir, num_steps)
            paths = [os.path.join(parts_dir, f"episode_{i:06d}.npz") for i in kept]
            write_minari_dataset(spec, args, name, paths, root, shapes)
        else:
            num_val = max(1, num_train // 10)
            print(
                f"Making {name}: {num_train} train + {num_val} val episodes of up to {spec.max_episode_steps} steps "
                f"on {spec.env_name}, noise {spec.noise}, seed {args.seed}, {args.workers} workers"
            )
            collect_all(spec, [episode_seed(args.seed, i) for i in range(num_train + num_val)], parts_dir, args.workers)
            paths = [os.path.join(parts_dir, f"episode_{i:06d}.npz") for i in range(num_train + num_val)]
            splits = {
                os.path.join(root, f"{name}.npz"): paths[:num_train],
                os.path.join(root, f"{name}-val.npz"): paths[num_train:],
            }
            outputs = write_ogbench_files(spec, splits, shapes)
    except KeyboardInterrupt:
        collected = len([f for f in os.listdir(parts_dir) if f.startswith("episode_") and f.endswith(".npz")])
        print(
            f"interrupted: {collected} finished episodes are kept in {parts_dir}; the same command resumes: "
            f"{command_line(args)}",
            file=sys.stderr,
        )
        sys.exit(130)
    shutil.rmtree(parts_dir)
    if spec.kind == "minari":
        summarize_minari(root, name, time.time() - start)
    else:
        summarize(outputs, time.time() - start)


# ----------------------------------------------------------------------------------------------------------------
# RUN PLUMBING: flag checks, the parts folder's settings, checking and swapping in the result, Ctrl-C; nothing here
# changes the data
# ----------------------------------------------------------------------------------------------------------------

# Every flag's rule, checked before anything slow: (flags, test, what is accepted). None takes the dataset's default.
FLAG_RULES = [
    ("seed", lambda v: 0 <= v < 2**32, "must be in [0, 2^32); give a non-negative integer"),
    ("num_episodes num_steps max_episode_steps workers", lambda v: v >= 1, "must be positive; give an integer >= 1"),
    ("noise noise_smoothing", lambda v: v >= 0, "must be a finite number >= 0"),
]
# What decides the episodes in a parts folder, by the flag that sets it (None: no flag does).
SETTING_FLAGS = {
    "kind": None,
    "family": None,
    "env_name": None,
    "max_episode_steps": "max_episode_steps",
    "noise": "noise",
    "noise_smoothing": "noise_smoothing",
    "expert_path": "expert_path",
    "seed": "seed",
    "expert_sha256": None,
}


def fail(flag: str, value, why: str) -> None:
    """A bad flag: one line on stderr, exit status 2."""
    print(f"error: --{flag} {value}: {why}", file=sys.stderr)
    sys.exit(2)


def check_args(args: Args) -> None:
    """Every flag on its own, before anything slow: the rules above, then the lines between flags."""
    for names, ok, why in FLAG_RULES:
        for name in names.split():
            value = getattr(args, name)
            if value is not None and not (math.isfinite(value) and ok(value)):
                fail(name.replace("_", "-"), value, why)
    if (args.dataset is None) == (args.demos is None):
        fail("dataset", args.dataset, "give exactly one of --dataset (a dataset id) or --demos (a single-task env id)")
    minari = args.dataset is not None and parse_minari_id(args.dataset) is not None
    if args.dataset is not None and args.dataset not in DATASET_SIZES and not minari:
        names = ", ".join(list(DATASET_SIZES) + [f"mujoco/{name}/<level>-v0" for name in MINARI_ENVS])
        fail("dataset", args.dataset, f"unknown; this script makes {names} (levels: {', '.join(MINARI_LEVELS)})")
    if args.num_steps is not None and not minari:
        fail("num-steps", args.num_steps, "only Minari datasets (mujoco/...) are sized in steps; use --num-episodes")
    if args.noise is not None and minari:
        fail("noise", args.noise, "Minari's policy samples its own actions; leave out --noise")
    uses_expert = minari or "antmaze" in (args.dataset or args.demos)
    if args.expert_path is not None and not uses_expert:
        fail("expert-path", args.expert_path, "only antmaze and Minari (mujoco/...) datasets are made by an expert")
    out_dir = minari_root(args) if minari else os.path.expanduser(args.out_dir or DEFAULT_DATA_DIR)
    shown = args.out_dir if args.out_dir is not None else f"{out_dir} (the default)"
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        fail("out-dir", shown, "is a file; give a folder (made if missing)")
    parent = os.path.dirname(os.path.abspath(out_dir))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
        fail("out-dir", shown, f"cannot be made: {parent} is not a writable folder; give another folder")


def check_spec(args: Args, spec: Spec) -> tuple[tuple, tuple]:
    """The flags that cannot make this dataset, refused before anything slow: fewer steps than one episode, an expert
    for another environment. Returns the environment's observation and action shapes, which the result must have."""
    env = gymnasium.make(spec.env_name)
    shapes = env.observation_space.shape, env.action_space.shape
    env.close()
    if spec.kind == "minari" and (args.num_steps or MINARI_STEPS) < spec.max_episode_steps:
        why = f"fewer than one episode of up to {spec.max_episode_steps} steps (Minari keeps whole episodes only)"
        fail(
            "num-steps",
            args.num_steps,
            f"{why}; give at least {spec.max_episode_steps}, or a lower --max-episode-steps",
        )
    if spec.kind != "minari" and spec.max_episode_steps < 2:
        why = "OGBench's loader drops the last stored step of each episode, so one step holds no transition"
        fail("max-episode-steps", spec.max_episode_steps, f"{why}; give at least 2")
    if spec.expert_path is not None:
        check_expert(spec, *shapes)
    return shapes


def check_expert(spec: Spec, obs_shape: tuple, action_shape: tuple) -> None:
    """The policy file exists, loads, and is an actor of this environment: its input and output sizes, and the
    environment that train_expert.py recorded beside it (here, not in a worker, where it would be a traceback)."""
    env_id = "ant-xy" if spec.family == "antmaze" else spec.env_name
    train = f"  python benchmark/train_expert.py --env-id {env_id}"
    if not os.path.exists(spec.expert_path):
        raise SystemExit(
            f"error: no expert at {spec.expert_path}. Train it (hours on a CPU; it resumes if interrupted) with:\n"
            f"{train}\n  or point --expert-path at an existing checkpoint."
        )
    info_path = os.path.splitext(spec.expert_path)[0] + ".json"
    try:
        expert = load_expert(spec.expert_path)
        expert_action(expert, np.zeros(expert["hidden_0"]["kernel"].shape[0]))
        info = {}
        if spec.family == "locomotion" or os.path.exists(info_path):  # the first ant trainer wrote no JSON
            with open(info_path) as f:
                info = json.load(f)
        if spec.family == "locomotion":  # the dataset's description quotes the checkpoint's evaluation
            float(info["evaluations"][-1]["deterministic"]["return_mean"])
    except Exception as error:  # msgpack, JSON and shape errors of a damaged or foreign file
        raise SystemExit(
            f"error: {spec.expert_path} is not an actor saved by benchmark/train_expert.py with its record "
            f"{os.path.basename(info_path)} beside it ({type(error).__name__}: {error}). Retrain it with:\n{train}"
        ) from None
    # The ant expert reads the proprioception without x, y and the 2-D direction: as many numbers as the maze's
    # observation. A locomotion expert reads the observation itself.
    sizes = expert["hidden_0"]["kernel"].shape[0], expert["mean"]["kernel"].shape[1]
    trained_on = info.get("env_id")
    if sizes != (obs_shape[0], action_shape[0]) or trained_on not in (None, env_id):
        fail(
            "expert-path",
            spec.expert_path,
            f"an actor of {trained_on or 'another environment'} ({sizes[0]} inputs, {sizes[1]} actions), where "
            f"{spec.env_name} needs one of {env_id} ({obs_shape[0]} inputs, {action_shape[0]} actions); train it with "
            f"python benchmark/train_expert.py --env-id {env_id}",
        )


def parts_settings(spec: Spec, seed: int) -> dict:
    """What decides the episodes of a parts folder: the collection spec, the seed, and the expert file's content."""
    settings = {**asdict(spec), "seed": seed}
    if spec.expert_path is not None:
        with open(spec.expert_path, "rb") as f:
            settings["expert_sha256"] = hashlib.sha256(f.read()).hexdigest()
    return settings


def prepare_parts_dir(parts_dir: str, spec: Spec, seed: int) -> None:
    """Make the parts folder and record the settings of its episodes (kept if it holds them already)."""
    os.makedirs(parts_dir, exist_ok=True)
    config_path = os.path.join(parts_dir, "config.json")
    with open(config_path + ".tmp", "w") as f:
        json.dump(parts_settings(spec, seed), f)
    os.replace(config_path + ".tmp", config_path)


def check_parts_dir(parts_dir: str, root: str, spec: Spec, args: Args) -> None:
    """One dataset, one set of settings: the episodes already in `parts_dir` are continued only under the settings
    they were made with. A folder whose settings are missing, unreadable or other is refused (exit status 1) with the
    differing settings, the command that continues it, and one that makes this dataset in a new folder."""
    if not os.path.isdir(parts_dir):
        return
    episodes = len([f for f in os.listdir(parts_dir) if f.startswith("episode_") and f.endswith(".npz")])
    config_path = os.path.join(parts_dir, "config.json")
    elsewhere = command_line(dataclasses.replace(args, out_dir=new_folder(root)))
    discard = f"Delete that folder to discard them, or make this dataset in a new folder: {elsewhere}"
    if not os.path.exists(config_path):
        if episodes:
            raise SystemExit(
                f"error: {parts_dir} holds {episodes} episodes without the settings they were made with (no "
                f"config.json); continuing them could mix two datasets.\n  {discard}"
            )
        return
    try:
        with open(config_path) as f:
            previous = dict(json.load(f))
    except (OSError, ValueError, TypeError) as error:
        raise SystemExit(
            f"error: {config_path}, the settings of the {episodes} episodes in {parts_dir}, is unreadable "
            f"({type(error).__name__}: {error}); continuing them could mix two datasets.\n  {discard}"
        ) from None
    settings = parts_settings(spec, args.seed)
    differing = [key for key in {**previous, **settings} if previous.get(key) != settings.get(key)]
    if not differing:
        return
    flags = [SETTING_FLAGS.get(key) for key in differing]
    named = "; ".join(
        f"{'--' + flag.replace('_', '-') if flag else key} {settings.get(key)} here, {previous.get(key)} there"
        for key, flag in zip(differing, flags, strict=True)
    )
    # The command that continues them: this one with their settings put back, offered only if it reproduces them
    # (no flag puts back an expert file that has changed since).
    ways = f"Make this dataset in a new folder: {elsewhere}"
    if all(flags):
        continued = dataclasses.replace(
            args, **{flag: previous[key] for key, flag in zip(differing, flags, strict=True)}
        )
        if parts_settings(resolve(continued)[1], continued.seed) == previous:
            ways = f"Continue them: {command_line(continued)}\n  or make this dataset in a new folder: {elsewhere}"
    raise SystemExit(
        f"error: {parts_dir} holds {episodes} episodes made with other settings ({named}); one dataset must not mix "
        f"two.\n  {ways}"
    )


def new_folder(path: str) -> str:
    """`<path>-2`, or -3, ...: the first that does not exist yet."""
    number = 2
    while os.path.exists(f"{path.rstrip('/')}-{number}"):
        number += 1
    return f"{path.rstrip('/')}-{number}"


def command_line(args: Args) -> str:
    """The command for these Args: each flag whose value is not its default."""
    defaults, argv = Args(), ["python", "benchmark/make_dataset.py"]
    for field in dataclasses.fields(Args):
        value = getattr(args, field.name)
        if value != getattr(defaults, field.name):
            argv += [f"--{field.name.replace('_', '-')}", str(value)]
    return shlex.join(argv)


def npz_problem(path: str, spec: Spec, obs_shape: tuple, action_shape: tuple) -> str | None:
    """What is wrong with a new OGBench file, read back from disk, or None: whole episodes, equal lengths, finite
    values, the environment's observation and action shapes, and a success flag per demonstration."""
    with np.load(path) as file:
        data = {key: file[key] for key in file}
    missing = {"observations", "actions", "terminals", "qpos", "qvel"} - set(data)
    if missing:
        return f"no {sorted(missing)}"
    per_step = {key: len(value) for key, value in data.items() if value.ndim > 0 and key != "episode_success"}
    if len(set(per_step.values())) != 1:
        return f"arrays of different lengths {per_step}"
    episodes = int(data["terminals"].sum())
    if episodes < 1 or not data["terminals"][-1]:
        return f"{episodes} whole episodes (the last step must end one)"
    for key, shape in (("observations", obs_shape), ("actions", action_shape)):
        if data[key].shape[1:] != shape:
            return f"{key} of shape {data[key].shape[1:]} per step, where {spec.env_name} has {shape}"
    for key, value in data.items():
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            return f"NaN or infinite {key}"
    if spec.kind == "demos" and len(data["episode_success"]) != episodes:
        return f"{len(data['episode_success'])} success flags for {episodes} episodes"
    return None


def minari_problem(root: str, dataset_id: str, spec: Spec, episodes: int, obs_shape, action_shape) -> str | None:
    """What is wrong with a new Minari dataset, loaded back through Minari from `root`, or None: its metadata (the
    environment, the episode count), and each episode's shapes and finite values."""
    import minari

    try:
        with minari_datasets_path(root):
            dataset = minari.load_dataset(dataset_id)
            env_id = json.loads(dataset.storage.metadata["env_spec"])["id"]
            if env_id != spec.env_name or dataset.total_episodes != episodes or episodes < 1:
                return f"{dataset.total_episodes} episodes of {env_id} (expected {episodes} >= 1 of {spec.env_name})"
            for episode in dataset.iterate_episodes():
                steps = len(episode.actions)
                if episode.observations.shape != (steps + 1, *obs_shape) or episode.actions.shape != (
                    steps,
                    *action_shape,
                ):
                    shapes = f"observations {episode.observations.shape}, actions {episode.actions.shape}"
                    return f"episode {episode.id} of {shapes}"
                for key in ("observations", "actions", "rewards"):
                    if not np.isfinite(getattr(episode, key)).all():
                        return f"NaN or infinite {key} in episode {episode.id}"
    except Exception as error:  # Minari's metadata or HDF5 errors
        return f"a dataset Minari cannot load ({type(error).__name__}: {error})"
    return None


def swap_in_folder(new: str, final: str) -> None:
    """Put the folder `new` at `final`: one rename if there is none yet; else the old one is renamed aside first and
    deleted once the new one is in. Ctrl-C is held meanwhile, so no interruption leaves `final` missing."""
    os.makedirs(os.path.dirname(final), exist_ok=True)
    aside = final + ".replaced"
    with hold_ctrl_c():
        if os.path.exists(final):
            shutil.rmtree(aside, ignore_errors=True)
            os.replace(final, aside)
        os.replace(new, final)
    shutil.rmtree(aside, ignore_errors=True)


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


if __name__ == "__main__":
    main(tyro.cli(Args))
