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


# rldt.py
def rldt_broken_model(folder: str) -> None:
    """A model file that is not msgpack, with a valid args.json beside it."""
    with open(os.path.join(folder, "args.json"), "w") as f:
        f.write('{"env_id": "Hopper-v5", "dataset_id": "mujoco/hopper/medium-v0"}')
    with open(os.path.join(folder, "model.flax"), "wb") as f:
        f.write(b"not a model")


def rldt_demos_without_terminals(folder: str) -> None:
    import numpy as np

    np.savez(os.path.join(folder, "cube-single-singletask-task2-demos-v0.npz"), observations=np.zeros((4, 28)))


CASES += [
    Case("rldt.py", ["--env-id", "cheetah"], 2, "--env-id cheetah: unknown task"),
    Case("rldt.py", ["--env-id", "Hopper-v5"], 2, "needs --dataset-id"),
    Case("rldt.py", ["--num-envs", "0"], 2, "--num-envs 0: must be positive"),
    Case("rldt.py", ["--num-envs", "1"], 2, "--num-envs 1: each critic needs its own segments"),
    Case("rldt.py", ["--env-id", "cube-single", "--num-envs", "1"], 2, "at least 4 needed"),
    Case("rldt.py", ["--env-id", "cube-single", "--steps-per-iteration", "30"], 2, "multiple of the 50 chunks"),
    Case("rldt.py", ["--svgd-temp", "-1"], 2, "--svgd-temp -1.0: must be a finite number >= 0"),
    Case("rldt.py", ["--discount", "1.5"], 2, "--discount 1.5: must be in [0, 1]"),
    Case("rldt.py", ["--reward-scale", "0"], 2, "--reward-scale 0.0: must be a finite non-zero number"),
    Case("rldt.py", ["--critic-steps", "500"], 2, "--critic-steps 500: must be a multiple of --critic-rounds 16"),
    Case("rldt.py", ["--min-extrp-step", "8"], 2, "--min-extrp-step 8: must be in [0, 7]"),
    Case("rldt.py", ["--actor-hidden-dims", "64", "64"], 2, "--actor-hidden-dims 64 64: give an odd number"),
    Case("rldt.py", ["--time-dim", "5"], 2, "--time-dim 5: must be even"),
    Case("rldt.py", ["--eval-every", "0"], 2, "--eval-every 0: must be positive"),
    Case("rldt.py", ["--actor-lr", "nan"], 2, "--actor-lr nan: must be positive"),
    Case("rldt.py", ["--resume", "{tmp}/nothing"], 1, "--resume {tmp}/nothing: cannot read"),
    Case("rldt.py", ["--pretrained", "{tmp}/missing.flax"], 1, "{tmp}/missing.flax not found"),
    Case("rldt.py", ["--pretrained", "{tmp}/model.flax"], 1, "is not a policy saved by rldt.py", rldt_broken_model),
    Case("rldt.py", ["--load-model", "{tmp}/model.flax"], 1, "is not a policy saved by rldt.py", rldt_broken_model),
    Case("rldt.py", ["--env-id", "cube-single", "--dataset-dir", "{tmp}"], 1, "demonstration file not found"),
    Case(
        "rldt.py",
        ["--env-id", "cube-single", "--dataset-dir", "{tmp}"],
        1,
        "lacks the keys ['actions', 'terminals']",
        rldt_demos_without_terminals,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[f"{c.script}:{' '.join(c.argv)}" for c in CASES])
def test_bad_input_gives_one_clear_line(case: Case, tmp_path):
    if case.setup is not None:
        case.setup(str(tmp_path))
    argv = [arg.replace("{tmp}", str(tmp_path)) for arg in case.argv]
    status, stderr = run_script(case.script, argv, str(tmp_path))
    assert_clean_error(status, stderr, case.status, case.needle.replace("{tmp}", str(tmp_path)))
