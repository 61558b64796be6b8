"""Regenerate OGBench datasets offline, with OGBench's own data-collection procedure.

Machines without internet cannot download the OGBench datasets. This script rebuilds them from the scripted oracles
that ship in the `ogbench` package (manipulation `play`, point-maze `navigate`) and from an ant direction-following
expert trained by `benchmark/train_ant_expert.py` (ant-maze `navigate`). It writes `<dataset>.npz` and
`<dataset>-val.npz` with the official keys, so `ogbench.make_env_and_datasets(name, dataset_path=...)` loads them
unchanged. The data is statistically equivalent to the published files, not identical (MuJoCo version, seeds, expert).

    python benchmark/make_dataset.py --dataset cube-single-play-v0
    python benchmark/make_dataset.py --dataset antmaze-large-navigate-v0 --num-episodes 100 --out-dir data

With `--demos <single-task env>` it writes demonstrations of one task instead (episodes that start from the task's
initial state and end at its goal or at the time limit), e.g. for methods that pretrain on expert data:

    python benchmark/make_dataset.py --demos cube-single-singletask-task2-v0 --num-episodes 50 --noise 0.3

Every episode is seeded from `--seed` and its index alone, so the output does not depend on `--workers`. Finished
episodes are kept in `<out-dir>/<name>.parts/` until the end; rerunning the same command resumes an interrupted run.
"""

import json
import multiprocessing
import os
import shutil
import time
from dataclasses import asdict, dataclass

import gymnasium
import numpy as np
import ogbench  # noqa: F401  (registers the OGBench envs)
import tyro
from tqdm import tqdm

DEFAULT_DATA_DIR = "~/.ogbench/data"
DEFAULT_EXPERT_PATH = "~/.ogbench/experts/ant_xy_sac.msgpack"

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
    """OGBench dataset to regenerate, e.g. `cube-single-play-v0`, `antmaze-large-navigate-v0` (a wrong name lists all)"""
    demos: str | None = None
    """instead of a dataset, demonstrations of this single task, e.g. `cube-single-singletask-task2-v0`"""
    num_episodes: int | None = None
    """training episodes (validation gets max(1, N // 10) more); default: the official count, or 100 demonstrations"""
    max_episode_steps: int | None = None
    """stored steps per episode; default: the official 1001 or 2001, or the task's time limit for demonstrations"""
    noise: float | None = None
    """action noise; default: the official 0.1 (manipulation plan oracles), 0.5 (pointmaze), 0.2 (antmaze expert)"""
    noise_smoothing: float = 0.5
    """standard deviation (in steps) of the Gaussian filter that smooths the manipulation oracles' plan noise"""
    out_dir: str = DEFAULT_DATA_DIR
    """folder for the .npz files (OGBench's own data folder by default)"""
    seed: int = 0
    """base seed; episode i is seeded from (seed, i) alone"""
    workers: int = os.cpu_count() or 1
    """parallel worker processes; the default is this machine's core count"""
    expert_path: str = DEFAULT_EXPERT_PATH
    """ant direction-following expert made by benchmark/train_ant_expert.py (antmaze only)"""


# ----------------------------------------------------------------------------------------------------------------
# What to collect
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """Everything a worker needs to collect one episode, besides its seed (picklable)."""

    kind: str  # "play", "navigate" or "demos"
    family: str  # "manipspace", "pointmaze" or "antmaze"
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
    """Actor weights of the ant expert as numpy arrays (inference runs in numpy, so workers never start JAX)."""
    from flax import serialization

    with open(path, "rb") as f:
        params = serialization.msgpack_restore(f.read())
    return {name: {k: np.asarray(v, dtype=np.float64) for k, v in layer.items()} for name, layer in params.items()}


def expert_action(params: dict, ob: np.ndarray) -> np.ndarray:
    """Deterministic action tanh(mean) of the SAC actor in train_ant_expert.py: GELU hidden layers, then `mean`."""
    x = ob
    num_hidden = sum(name.startswith("hidden_") for name in params)
    for i in range(num_hidden):
        x = x @ params[f"hidden_{i}"]["kernel"] + params[f"hidden_{i}"]["bias"]
        x = 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))  # GELU (tanh form, as flax)
    return np.tanh(x @ params["mean"]["kernel"] + params["mean"]["bias"])


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


_collector = None  # one per worker process


def init_worker(spec: Spec) -> None:
    global _collector
    if spec.kind == "demos":
        _collector = (ManipulationDemoCollector if spec.family == "manipspace" else MazeDemoCollector)(spec)
    else:
        _collector = {"play": PlayCollector, "navigate": NavigateCollector}[spec.kind](spec)


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


def resolve(args: Args) -> tuple[str, Spec, int]:
    """Output name, collection spec and number of training episodes from the command line."""
    if (args.dataset is None) == (args.demos is None):
        raise SystemExit("Give exactly one of --dataset (an OGBench dataset) or --demos (a single-task env id).")
    if args.demos is not None:
        return resolve_demos(args)
    if args.dataset not in DATASET_SIZES:
        names = "\n  ".join(DATASET_SIZES)
        raise SystemExit(f"Unknown dataset '{args.dataset}'. This script can make:\n  {names}")
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
        expert_path=os.path.expanduser(args.expert_path) if family == "antmaze" else None,
    )
    return args.dataset, spec, args.num_episodes or num_episodes


def resolve_demos(args: Args) -> tuple[str, Spec, int]:
    """`cube-single-singletask-task2-v0` (or `cube-single-play-singletask-task2-v0`, or no `-taskN` for the default
    task) -> output `cube-single-singletask-task2-demos-v0`, collected on `cube-single-singletask-task2-v0`."""
    words = args.demos.split("-")
    if "singletask" not in words:
        raise SystemExit(
            f"--demos expects a single-task env id such as cube-single-singletask-task2-v0, not '{args.demos}'."
        )
    base = words[: words.index("singletask")]
    base = base[:-1] if base[-1] in DATASET_TYPES else base
    env_base = "-".join(base)
    family = family_of(env_base)
    try:  # the env resolves the default task itself
        task_env = gymnasium.make("-".join(base + words[words.index("singletask") :]))
    except gymnasium.error.Error as error:
        raise SystemExit(f"Unknown single-task env '{args.demos}': {error}") from None
    task_id = task_env.unwrapped._reward_task_id
    env_name = f"{env_base}-singletask-task{task_id}-v0"
    spec = Spec(
        kind="demos",
        family=family,
        env_name=env_name,
        max_episode_steps=args.max_episode_steps or task_env.spec.max_episode_steps,
        noise=DEFAULT_NOISE[family] if args.noise is None else args.noise,
        noise_smoothing=args.noise_smoothing,
        expert_path=os.path.expanduser(args.expert_path) if family == "antmaze" else None,
    )
    task_env.close()
    return f"{env_base}-singletask-task{task_id}-demos-v0", spec, args.num_episodes or DEFAULT_NUM_DEMOS


def check_expert(spec: Spec) -> None:
    if spec.expert_path is not None and not os.path.exists(spec.expert_path):
        raise SystemExit(
            f"No ant expert at {spec.expert_path}. The antmaze datasets need one; train it (CPU: about an hour) with:\n"
            f"  python benchmark/train_ant_expert.py --save-path {spec.expert_path}\n"
            "or point --expert-path at an existing checkpoint."
        )


def collect_all(spec: Spec, seeds: list[int], parts_dir: str, workers: int) -> None:
    """Collect every episode whose file is not yet in `parts_dir`, with a progress bar in episodes/s."""
    jobs = [(s, os.path.join(parts_dir, f"episode_{i:06d}.npz")) for i, s in enumerate(seeds)]
    todo = [job for job in jobs if not os.path.exists(job[1])]
    if len(todo) < len(jobs):
        print(f"Resuming: {len(jobs) - len(todo)} of {len(jobs)} episodes already collected in {parts_dir}")
    bar = tqdm(total=len(todo), unit="ep", desc="episodes", smoothing=0.05)
    if workers == 1 or len(todo) <= 1:
        init_worker(spec)
        for job in todo:
            collect_to_file(job)
            bar.update()
    else:
        # "spawn" keeps workers clean of the parent's threads; each builds its env and policy once.
        with multiprocessing.get_context("spawn").Pool(workers, initializer=init_worker, initargs=(spec,)) as pool:
            for _ in pool.imap_unordered(collect_to_file, todo):
                bar.update()
    bar.close()


def prepare_parts_dir(parts_dir: str, spec: Spec, seed: int) -> None:
    """Episodes already in `parts_dir` can be reused only if they were made with the same spec and seed."""
    config = {**asdict(spec), "seed": seed}
    config_path = os.path.join(parts_dir, "config.json")
    if os.path.exists(config_path):
        with open(config_path) as f:
            previous = json.load(f)
        if previous != config:
            raise SystemExit(
                f"{parts_dir} holds episodes of another configuration:\n  {previous}\nnot\n  {config}\n"
                "Delete that folder or rerun with the same options."
            )
    os.makedirs(parts_dir, exist_ok=True)
    with open(config_path, "w") as f:
        json.dump(config, f)


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


def save_npz(path: str, data: dict) -> None:
    with open(path + ".tmp", "wb") as f:
        np.savez_compressed(f, **data)
    os.replace(path + ".tmp", path)


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


def main(args: Args) -> None:
    name, spec, num_train = resolve(args)
    check_expert(spec)
    num_val = max(1, num_train // 10)
    out_dir = os.path.expanduser(args.out_dir)
    parts_dir = os.path.join(out_dir, f"{name}.parts")
    prepare_parts_dir(parts_dir, spec, args.seed)
    print(
        f"Making {name}: {num_train} train + {num_val} val episodes of up to {spec.max_episode_steps} steps on "
        f"{spec.env_name}, noise {spec.noise}, seed {args.seed}, {args.workers} workers"
    )

    start = time.time()
    seeds = [episode_seed(args.seed, i) for i in range(num_train + num_val)]
    collect_all(spec, seeds, parts_dir, args.workers)
    paths = [os.path.join(parts_dir, f"episode_{i:06d}.npz") for i in range(num_train + num_val)]
    outputs = {}
    for split, split_paths in (("", paths[:num_train]), ("-val", paths[num_train:])):
        data, stats = load_episodes(split_paths)
        if spec.kind == "demos":
            data.update(demo_metadata(spec, stats))
        outputs[os.path.join(out_dir, f"{name}{split}.npz")] = (data, stats)
        save_npz(os.path.join(out_dir, f"{name}{split}.npz"), data)
    shutil.rmtree(parts_dir)
    summarize(outputs, time.time() - start)


if __name__ == "__main__":
    main(tyro.cli(Args))
