"""The contract of every script: bad input ends the run at once with one `error:` line and no traceback.

Each case runs a script in this process (as `python <script> <flags>` would, through runpy), so that the whole file
costs one import of JAX rather than one interpreter per case. A case passes when the script exits with the expected
status (2: a bad flag, 1: a bad file or run folder), writes exactly one line that starts with `error:` and contains
the expected text, and raises nothing else. Scripts check every flag before anything slow, so each case takes
milliseconds to a second. Cases are grouped by script; add a script's cases to its own list.
"""

import contextlib
import dataclasses
import io
import json
import os
import runpy
import sys
from collections.abc import Callable
from typing import NamedTuple

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmark"))

import train_expert  # noqa: E402


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


def write_file(name: str, content: bytes):
    """A setup that writes `content` to `<tmp>/<name>` (creating folders)."""

    def setup(tmp: str) -> None:
        path = os.path.join(tmp, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(content)

    return setup


def expert_run_with(resume: bytes, config_args: dict):
    """A setup that fakes a train_expert.py run folder `<tmp>/run` holding a given resume file and config."""

    def setup(tmp: str) -> None:
        write_file("run/resume.msgpack", resume)(tmp)
        args, recipe = train_expert.resolve(train_expert.Args(env_id="Hopper-v5", out_dir=os.path.join(tmp, "run")))
        config = {"args": {**dataclasses.asdict(args), **config_args}, "recipe": dataclasses.asdict(recipe)}
        write_file("run/config.json", json.dumps(config).encode())(tmp)

    return setup


CASES: list[Case] = [
    # benchmark/make_dataset.py
    Case("benchmark/make_dataset.py", [], 2, "--dataset None: give exactly one of"),
    Case("benchmark/make_dataset.py", ["--dataset", "cube-single-v0"], 2, "--dataset cube-single-v0: unknown"),
    Case("benchmark/make_dataset.py", ["--dataset", "mujoco/hopper/bad-v0"], 2, "--dataset mujoco/hopper/bad-v0"),
    Case("benchmark/make_dataset.py", ["--dataset", "mujoco/swimmer/medium-v0"], 2, "mujoco/swimmer/medium-v0"),
    Case(
        "benchmark/make_dataset.py", ["--dataset", "cube-single-play-v0", "--num-episodes", "0"], 2, "--num-episodes 0"
    ),
    Case("benchmark/make_dataset.py", ["--dataset", "cube-single-play-v0", "--noise", "-1"], 2, "--noise -1.0"),
    Case("benchmark/make_dataset.py", ["--dataset", "cube-single-play-v0", "--noise", "nan"], 2, "--noise nan"),
    Case("benchmark/make_dataset.py", ["--dataset", "cube-single-play-v0", "--workers", "0"], 2, "--workers 0"),
    Case("benchmark/make_dataset.py", ["--dataset", "cube-single-play-v0", "--num-steps", "5"], 2, "--num-steps 5"),
    Case("benchmark/make_dataset.py", ["--demos", "cube-single"], 2, "--demos cube-single: not a single-task"),
    Case("benchmark/make_dataset.py", ["--demos", "cube-single-singletask-task9-v0"], 2, "unknown single-task env"),
    Case(
        "benchmark/make_dataset.py",
        ["--dataset", "mujoco/hopper/medium-v0", "--expert-path", "{tmp}/nothing"],
        1,
        "no SAC expert for Hopper-v5 in {tmp}/nothing",
    ),
    Case(
        "benchmark/make_dataset.py",
        ["--dataset", "antmaze-large-navigate-v0", "--expert-path", "{tmp}/none.msgpack", "--out-dir", "{tmp}"],
        1,
        "no expert at {tmp}/none.msgpack",
    ),
    Case(
        "benchmark/make_dataset.py",
        ["--dataset", "antmaze-large-navigate-v0", "--expert-path", "{tmp}/bad.msgpack", "--out-dir", "{tmp}"],
        1,
        "{tmp}/bad.msgpack is not an actor saved by benchmark/train_expert.py",
        write_file("bad.msgpack", b"\x82\xa4not an actor"),
    ),
    Case(
        "benchmark/make_dataset.py",
        ["--dataset", "mujoco/walker2d/medium-v0", "--expert-path", "{tmp}/run"],
        1,
        "{tmp}/run/actor.json is not the record of a train_expert.py run",
        write_file("run/actor.json", b"{truncated"),
    ),
    # benchmark/train_expert.py (and its old name for the ant, benchmark/train_ant_expert.py)
    Case("benchmark/train_expert.py", ["--env-id", "Hopper-v4"], 2, "--env-id Hopper-v4: no recipe"),
    Case("benchmark/train_expert.py", ["--total-steps", "0"], 2, "--total-steps 0: must be positive"),
    Case("benchmark/train_expert.py", ["--checkpoint-every", "-1"], 2, "--checkpoint-every -1"),
    Case("benchmark/train_expert.py", ["--batch-size", "512", "--buffer-size", "100"], 2, "--batch-size 512"),
    Case("benchmark/train_expert.py", ["--discount", "1.0"], 2, "--discount 1.0: must be in [0, 1)"),
    Case("benchmark/train_expert.py", ["--tau", "0"], 2, "--tau 0.0"),
    Case("benchmark/train_expert.py", ["--learning-starts", "-5"], 2, "--learning-starts -5"),
    Case("benchmark/train_ant_expert.py", ["--eval-episodes", "0"], 2, "--eval-episodes 0"),
    Case(
        "benchmark/train_expert.py",
        ["--env-id", "Hopper-v5", "--out-dir", "{tmp}/run"],
        1,
        "{tmp}/run/resume.msgpack is not a readable training state",
        expert_run_with(b"\x93truncated", {}),
    ),
    Case(
        "benchmark/train_expert.py",
        ["--env-id", "Hopper-v5", "--out-dir", "{tmp}/run"],
        1,
        "{tmp}/run holds a run with other settings",
        expert_run_with(b"", {"seed": 7}),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[f"{c.script}:{' '.join(c.argv)}" for c in CASES])
def test_bad_input_gives_one_clear_line(case: Case, tmp_path):
    if case.setup is not None:
        case.setup(str(tmp_path))
    argv = [arg.replace("{tmp}", str(tmp_path)) for arg in case.argv]
    status, stderr = run_script(case.script, argv, str(tmp_path))
    assert_clean_error(status, stderr, case.status, case.needle.replace("{tmp}", str(tmp_path)))
