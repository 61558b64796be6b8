"""The contract of every script: bad input ends the run at once with one `error:` line and no traceback.

Each case runs a script in this process (as `python <script> <flags>` would, through runpy), so that the whole file
costs one import of JAX rather than one interpreter per case. A case passes when the script exits with the expected
status (2: a bad flag, 1: a bad file or run folder), writes exactly one line that starts with `error:` and contains
the expected text, and raises nothing else. Scripts check every flag before anything slow, so each case takes
milliseconds to a second. Cases are grouped by script; add a script's cases to its own list.
"""

import contextlib
import io
import os
import runpy
import sys
from collections.abc import Callable
from typing import NamedTuple

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_script(script: str, argv: list[str], cwd: str) -> tuple[int, str]:
    """Run `script` as __main__ with `argv`; return (exit status, stderr). Any exception but SystemExit propagates."""
    stderr = io.StringIO()
    old_argv, old_cwd = sys.argv, os.getcwd()
    sys.argv = [script, *argv]
    os.chdir(cwd)
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            runpy.run_path(os.path.join(ROOT, script), run_name="__main__")
        status = 0
    except SystemExit as exit_:
        status = exit_.code if isinstance(exit_.code, int) else 1
        if isinstance(exit_.code, str):  # raise SystemExit("error: ...") prints the text on stderr
            stderr.write(exit_.code + "\n")
    finally:
        sys.argv = old_argv
        os.chdir(old_cwd)
    return status, stderr.getvalue()


def assert_clean_error(status: int, stderr: str, expected_status: int, needle: str) -> None:
    error_lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert status == expected_status, stderr
    assert len(error_lines) == 1, stderr
    assert needle in error_lines[0], stderr
    assert "Traceback" not in stderr


class Case(NamedTuple):
    script: str
    argv: list[str]  # `{tmp}` is replaced by a fresh temporary folder, in which the script also runs
    status: int  # 2: a bad flag; 1: a bad file or run folder
    needle: str  # text the error line must contain (`{tmp}` replaced as in argv)
    setup: Callable[[str], None] | None = None  # writes the broken files into the temporary folder first


CASES: list[Case] = []


@pytest.mark.parametrize("case", CASES, ids=[f"{c.script}:{' '.join(c.argv)}" for c in CASES])
def test_bad_input_gives_one_clear_line(case: Case, tmp_path):
    if case.setup is not None:
        case.setup(str(tmp_path))
    argv = [arg.replace("{tmp}", str(tmp_path)) for arg in case.argv]
    status, stderr = run_script(case.script, argv, str(tmp_path))
    assert_clean_error(status, stderr, case.status, case.needle.replace("{tmp}", str(tmp_path)))


# fm_irl.py
def _write_pointmaze_demos(tmp: str, name: str = "pointmaze-medium-singletask-task1-demos-v0.npz", **overrides):
    import numpy as np

    data = {"observations": np.zeros((40, 2), np.float32), "actions": np.zeros((40, 2), np.float32)}
    data |= {"terminals": np.arange(40) % 20 == 19, "env_name": np.array("pointmaze-medium-singletask-task1-v0")}
    data |= {"noise": np.array(0.5)} | overrides
    np.savez(os.path.join(tmp, name), **{k: v for k, v in data.items() if v is not None})


def _write_run_folder(tmp: str, model: bytes | None = None):
    import json

    with open(os.path.join(tmp, "args.json"), "w") as f:
        json.dump({"env_id": "Hopper-v5"}, f)
    if model is not None:
        with open(os.path.join(tmp, "fm_irl.flax"), "wb") as f:
            f.write(model)


_MAZE = ["--env-id", "pointmaze-medium", "--dataset-dir", "{tmp}"]
CASES += [
    Case("fm_irl.py", ["--env-id", "cheetah"], 2, "--env-id cheetah: unknown task"),
    Case("fm_irl.py", ["--env-id", "hopper-task2"], 2, "--env-id hopper-task2: unknown task"),
    Case("fm_irl.py", ["--num-envs", "3"], 2, "--num-envs 3: must be even"),
    Case("fm_irl.py", ["--num-envs", "0"], 2, "--num-envs 0: must be positive"),
    Case("fm_irl.py", ["--teacher-batch-size", "7"], 2, "--teacher-batch-size 7: must be even"),
    Case("fm_irl.py", ["--total-timesteps", "100"], 2, "--total-timesteps 100: is less than one iteration of 4096"),
    Case("fm_irl.py", ["--num-minibatches", "9999"], 2, "--num-minibatches 9999: exceeds the 4096 transitions"),
    Case("fm_irl.py", ["--gamma", "1.5"], 2, "--gamma 1.5: must lie in [0, 1]"),
    Case("fm_irl.py", ["--demo-frac", "0"], 2, "--demo-frac 0.0: must lie in (0, 1]"),
    Case("fm_irl.py", ["--learning-rate", "0"], 2, "--learning-rate 0.0: must be positive"),
    Case("fm_irl.py", ["--regularizer-coef", "-1"], 2, "--regularizer-coef -1.0: must be >= 0"),
    Case("fm_irl.py", ["--eval-episodes", "-1"], 2, "--eval-episodes -1: must be >= 0"),
    Case("fm_irl.py", ["--checkpoint-every", "-5"], 2, "--checkpoint-every -5: must be >= 0"),
    Case("fm_irl.py", ["--demo-noise", "0.3"], 2, "--demo-noise 0.3: applies to OGBench demonstrations only"),
    Case("fm_irl.py", _MAZE, 1, "demonstration file not found: {tmp}/pointmaze-medium-singletask-task1-demos-v0.npz"),
    Case("fm_irl.py", [*_MAZE, "--demo-noise", "1"], 1, "not found: {tmp}/demos-noise1/pointmaze-medium"),
    Case(
        "fm_irl.py", _MAZE, 1, "lacks the keys ['terminals']", lambda tmp: _write_pointmaze_demos(tmp, terminals=None)
    ),
    Case(
        "fm_irl.py",
        _MAZE,
        1,
        "holds demonstrations of cube-single-singletask-task2-v0, not pointmaze-medium-singletask-task1-v0",
        lambda tmp: _write_pointmaze_demos(tmp, env_name=__import__("numpy").array("cube-single-singletask-task2-v0")),
    ),
    Case(
        "fm_irl.py",
        [*_MAZE, "--num-demos", "5"],
        1,
        "holds 2 demonstrations, fewer than --num-demos 5",
        _write_pointmaze_demos,
    ),  # fmt: skip
    Case(
        "fm_irl.py",
        ["--env-id", "pointmaze-medium", "--dataset-id", "{tmp}/d.npz", "--demo-noise", "1"],
        1,
        "was made with noise 0.5, not --demo-noise 1",
        lambda tmp: _write_pointmaze_demos(tmp, name="d.npz"),
    ),
    Case(
        "fm_irl.py",
        ["--env-id", "pointmaze-medium", "--dataset-id", "{tmp}/d.npz"],
        1,
        "is not a readable .npz file",
        lambda tmp: open(os.path.join(tmp, "d.npz"), "wb").write(b"not a zip file"),
    ),
    Case("fm_irl.py", ["--resume", "{tmp}"], 1, "cannot read {tmp}/args.json"),
    Case("fm_irl.py", ["--resume", "{tmp}"], 1, "{tmp}/checkpoint.msgpack cannot be read", _write_run_folder),
    Case("fm_irl.py", ["--load-model", "{tmp}/fm_irl.flax"], 1, "cannot read {tmp}/args.json"),
    Case(
        "fm_irl.py",
        ["--load-model", "{tmp}/fm_irl.flax", "--eval-episodes", "1"],
        1,
        "{tmp}/fm_irl.flax is not a model saved by fm_irl.py",
        lambda tmp: _write_run_folder(tmp, model=b"\x00garbage"),
    ),
]
