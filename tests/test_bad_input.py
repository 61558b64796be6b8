"""The contract of every script: bad input ends the run at once with one `error:` line and no traceback.

Each case runs a script in this process (as `python <script> <flags>` would, through runpy), so that the whole file
costs one import of JAX rather than one interpreter per case. A case passes when the script exits with the expected
status (2: a bad flag, 1: a bad file or run folder), writes exactly one line that starts with `error:` and contains
the expected text, and raises nothing else. Scripts check every flag before anything slow, so each case takes
milliseconds to a second. Cases are grouped by script; add a script's cases to its own list.
"""

import contextlib
import dataclasses
import glob
import importlib
import io
import json
import os
import re
import runpy
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import NamedTuple

import flax
import jax
import numpy as np
import pytest
import submitit  # noqa: F401  (configures logging when first imported, closing pytest's handlers: not inside a test)
import tyro
from conftest import PRESS_CTRL_C, write_random_minari_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmark"))

import make_dataset  # noqa: E402
import train_expert  # noqa: E402


def run_script(script: str, argv: list[str], cwd: str) -> tuple[int, str]:
    """Run `script` as __main__ with `argv`; return (exit status, stderr). Any exception but SystemExit propagates."""
    stderr = io.StringIO()
    old_argv, old_cwd, old_handler = sys.argv, os.getcwd(), signal.getsignal(signal.SIGINT)
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
        signal.signal(signal.SIGINT, old_handler)  # the scripts install their own for Ctrl-C
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
    # benchmark/train_expert.py
    Case("benchmark/train_expert.py", ["--env-id", "Hopper-v4"], 2, "--env-id Hopper-v4: no recipe"),
    Case("benchmark/train_expert.py", ["--total-steps", "0"], 2, "--total-steps 0: must be positive"),
    Case("benchmark/train_expert.py", ["--checkpoint-every", "-1"], 2, "--checkpoint-every -1"),
    Case("benchmark/train_expert.py", ["--batch-size", "512", "--buffer-size", "100"], 2, "--batch-size 512"),
    Case("benchmark/train_expert.py", ["--discount", "1.0"], 2, "--discount 1.0: must be in [0, 1)"),
    Case("benchmark/train_expert.py", ["--tau", "0"], 2, "--tau 0.0"),
    Case("benchmark/train_expert.py", ["--learning-starts", "-5"], 2, "--learning-starts -5"),
    Case("benchmark/train_expert.py", ["--env-id", "ant-xy", "--eval-episodes", "0"], 2, "--eval-episodes 0"),
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

# fql.py ---------------------------------------------------------------------------------------------------------------


def write_dataset(folder: str, name: str = "cube-single-play-v0", **changes) -> None:
    """`<name>.npz` and `<name>-val.npz` in OGBench's layout (random numbers with cube-single's shapes, 3 episodes of 10
    steps); `changes` replaces or (with None) removes arrays of both files."""
    rng = np.random.default_rng(0)
    arrays = {
        "observations": rng.standard_normal((30, 28)).astype(np.float32),
        "actions": rng.uniform(-1, 1, (30, 5)).astype(np.float32),
        "terminals": np.arange(30) % 10 == 9,
        "qpos": rng.standard_normal((30, 21)),
        "qvel": rng.standard_normal((30, 20)),
    }
    arrays.update(changes)
    for suffix in ("", "-val"):
        np.savez(os.path.join(folder, f"{name}{suffix}.npz"), **{k: v for k, v in arrays.items() if v is not None})


def truncated_dataset(folder: str) -> None:
    write_dataset(folder)
    path = os.path.join(folder, "cube-single-play-v0.npz")
    with open(path, "rb") as f:
        content = f.read()
    with open(path, "wb") as f:  # a download cut off half-way
        f.write(content[: len(content) // 2])


def text_dataset(folder: str) -> None:
    write_dataset(folder)
    with open(os.path.join(folder, "cube-single-play-v0.npz"), "w") as f:
        f.write("<html>404 Not Found</html>")


def run_folder(folder: str, script: str, args: dict, model: bytes | None = None, checkpoint: bytes | None = None):
    """`folder/run` as a run of `script` leaves it: args.json, and optionally the saved model and the checkpoint."""
    os.makedirs(os.path.join(folder, "run"))
    with open(os.path.join(folder, "run", "args.json"), "w") as f:
        json.dump(args, f)
    for name, content in ((f"{script[:-3]}.flax", model), ("checkpoint.msgpack", checkpoint)):
        if content is not None:
            with open(os.path.join(folder, "run", name), "wb") as f:
                f.write(content)


def inf_in_validation_split(folder: str) -> None:
    write_dataset(folder)
    path = os.path.join(folder, "cube-single-play-v0-val.npz")
    with np.load(path) as file:
        arrays = dict(file)
    np.savez(path, **dict(arrays, actions=np.full_like(arrays["actions"], np.inf)))


FINO_ARGS = {"env_id": "cube-single-play-singletask-task2-v0", "noise_scale": 0.1, "seed": 0}  # fino.py's own field
FQL_ARGS = {"env_id": "cube-single-play-singletask-task2-v0", "seed": 0, "checkpoint_every": 50}
FQL_CHECKPOINT = flax.serialization.msgpack_serialize(
    {"state": {}, "keys": {}, "step": 50, "env_step": 0, "buffer": {}, "env_rng": ""}  # no beta: not FINO's
)

CASES += [
    # The five of the issue (--eval-episodes 0 now skips evaluation: test_fql.py runs it; a negative count is refused).
    Case(
        "fql.py",
        ["--dataset-dir", "{tmp}"],
        1,
        "dataset file {tmp}/cube-single-play-v0.npz is truncated",
        truncated_dataset,
    ),
    Case(
        "fql.py", ["--offline-steps", "-5"], 2, "error: --offline-steps -5: must not be negative; give 0 (off) or more"
    ),
    Case("fql.py", ["--batch-size", "0"], 2, "error: --batch-size 0: must be positive; give an integer >= 1"),
    Case("fql.py", ["--eval-episodes", "-1"], 2, "error: --eval-episodes -1: must not be negative"),
    Case("fql.py", ["--load-model", "nothere/fql.flax"], 1, "error: saved model nothere/fql.flax not found"),
    # Flags.
    Case(
        "fql.py", ["--env-id", "cheetah"], 2, "error: --env-id cheetah: unknown environment; give one of antmaze-large"
    ),
    Case(
        "fql.py", ["--env-id", "cube-single-navigate-singletask-v0"], 2, "--env-id cube-single-navigate-singletask-v0"
    ),
    Case("fql.py", ["--seed", "-1"], 2, "error: --seed -1: must be in [0, 2^32)"),
    Case("fql.py", ["--exp-name", "a/b"], 2, "error: --exp-name 'a/b': must be a non-empty name without '/'"),
    Case("fql.py", ["--offline-steps", "0"], 2, "error: --offline-steps 0: with --online-steps 0 there is nothing"),
    Case("fql.py", ["--log-every", "1234"], 2, "error: --log-every 1234: must be a multiple of --steps-per-call 50"),
    Case("fql.py", ["--checkpoint-every", "-1"], 2, "error: --checkpoint-every -1: must not be negative"),
    Case("fql.py", ["--actor-hidden-dims"], 2, "error: --actor-hidden-dims (none): must be one or more positive"),
    Case("fql.py", ["--value-hidden-dims", "512", "0"], 2, "error: --value-hidden-dims 512 0: must be one or more"),
    Case("fql.py", ["--learning-rate", "-3e-4"], 2, "error: --learning-rate -0.0003: must be a positive number"),
    Case("fql.py", ["--alpha", "nan"], 2, "error: --alpha nan: must be a finite number >= 0"),
    Case("fql.py", ["--discount", "1.5"], 2, "error: --discount 1.5: must be in [0, 1]"),
    Case("fql.py", ["--tau", "0"], 2, "error: --tau 0.0: must be in (0, 1]"),
    Case("fql.py", ["--load-model", "m.flax", "--resume", "r"], 2, "error: --resume r: takes no other flag"),
    Case("fql.py", ["--load-model", "m.flax", "--eval-episodes", "0"], 2, "--load-model only evaluates"),
    Case("fql.py", ["--video-episodes", "0"], 2, "error: --video-episodes 0: must be positive"),
    Case("fql.py", ["--capture-video", "--eval-episodes", "0"], 2, "error: --eval-episodes 0: --capture-video records"),
    Case("fql.py", ["--capture-video", "--video-episodes", "3", "--eval-episodes", "2"], 2, "--video-episodes (3)"),
    # Datasets.
    Case(
        "fql.py", ["--env-id", "scene", "--dataset-dir", "{tmp}"], 1, "dataset file {tmp}/scene-play-v0.npz not found"
    ),
    Case(
        "fql.py",
        ["--env-id", "humanoidmaze", "--dataset-dir", "{tmp}"],
        1,
        "humanoidmaze-medium-navigate-v0.npz not found",
    ),
    Case(
        "fql.py",
        ["--dataset-dir", "{tmp}"],
        1,
        "cube-single-play-v0.npz is truncated or not an .npz file",
        text_dataset,
    ),
    Case("fql.py", ["--dataset-dir", "{tmp}"], 1, "lacks the keys ['qpos']", lambda tmp: write_dataset(tmp, qpos=None)),
    Case(
        "fql.py",
        ["--dataset-dir", "{tmp}"],
        1,
        "{tmp}/cube-single-play-v0.npz holds arrays of different lengths",
        lambda tmp: write_dataset(tmp, actions=np.zeros((29, 5), np.float32)),
    ),
    Case(
        "fql.py",
        ["--dataset-dir", "{tmp}"],
        1,
        "holds actions of shape (3,) per step where cube-single-play-singletask-task2-v0 has (5,)",
        lambda tmp: write_dataset(tmp, actions=np.zeros((30, 3), np.float32)),
    ),
    Case(
        "fql.py",
        ["--dataset-dir", "{tmp}"],
        1,
        "{tmp}/cube-single-play-v0.npz holds NaN or infinite observations",
        lambda tmp: write_dataset(tmp, observations=np.full((30, 28), np.nan, np.float32)),
    ),
    Case(
        "fql.py",
        ["--dataset-dir", "{tmp}", "--online-steps", "10", "--buffer-size", "10"],
        2,
        "error: --buffer-size 10: must hold the dataset (27 transitions) + 1; give more",
        write_dataset,
    ),
    # Saved models and run folders.
    Case(
        "fql.py",
        ["--load-model", "{tmp}/run/fql.flax"],
        1,
        "{tmp}/run/args.json is not the args.json of a fql.py run",
        lambda tmp: run_folder(tmp, "fql.py", FINO_ARGS, model=b"not a model"),
    ),
    Case(
        "fql.py",
        ["--load-model", "{tmp}/run/fql.flax", "--eval-episodes", "1"],
        1,
        "error: {tmp}/run/fql.flax is not a model saved by fql.py",
        lambda tmp: run_folder(tmp, "fql.py", FQL_ARGS, model=b"\x00\x01 not msgpack"),
    ),
    Case("fql.py", ["--resume", "{tmp}/nothere"], 1, "error: {tmp}/nothere/args.json not found"),
    Case("fql.py", ["--resume", "{tmp}/run", "--seed", "3"], 2, "error: --resume {tmp}/run: takes no other flag"),
    Case(
        "fql.py",
        ["--resume", "{tmp}/run"],
        1,
        "error: {tmp}/run/checkpoint.msgpack not found: the run stopped before its first checkpoint",
        lambda tmp: run_folder(tmp, "fql.py", FQL_ARGS),
    ),
    Case(
        "fql.py",
        ["--resume", "{tmp}/run"],
        1,
        "error: {tmp}/run/checkpoint.msgpack is not a checkpoint of fql.py",
        lambda tmp: run_folder(tmp, "fql.py", FQL_ARGS, checkpoint=b"\x85\xa5state"),  # cut off
    ),
    Case(
        "fql.py",
        ["--resume", "{tmp}/run"],
        1,
        "{tmp}/run/args.json is not the args.json of a fql.py run",
        lambda tmp: run_folder(tmp, "fino.py", FINO_ARGS, checkpoint=b""),
    ),
]

# fino.py --------------------------------------------------------------------------------------------------------------

CASES += [
    Case(
        "fino.py",
        ["--dataset-dir", "{tmp}"],
        1,
        "dataset file {tmp}/cube-single-play-v0.npz is truncated",
        truncated_dataset,
    ),
    Case("fino.py", ["--offline-steps", "-5"], 2, "error: --offline-steps -5: must not be negative"),
    Case("fino.py", ["--batch-size", "0"], 2, "error: --batch-size 0: must be positive"),
    Case("fino.py", ["--load-model", "nothere/fino.flax"], 1, "error: saved model nothere/fino.flax not found"),
    Case("fino.py", ["--env-id", "cheetah"], 2, "error: --env-id cheetah: unknown environment"),
    Case("fino.py", ["--noise-scale", "-0.1"], 2, "error: --noise-scale -0.1: must be >= 0"),
    Case("fino.py", ["--noise-schedule", "paper", "--noise-scale", "2"], 2, "at most 1 with the paper's schedule"),
    Case("fino.py", ["--num-candidates", "0"], 2, "error: --num-candidates 0: must be positive"),
    Case(
        "fino.py",
        ["--entropy-samples", "2"],
        2,
        "error: --entropy-samples 2: must be at least 2 and --gmm-components (3)",
    ),
    Case("fino.py", ["--beta-lr", "nan"], 2, "error: --beta-lr nan: must be a finite number >= 0"),
    Case("fino.py", ["--target-entropy", "inf"], 2, "error: --target-entropy inf: must be finite"),
    Case("fino.py", ["--entropy-every", "0"], 2, "error: --entropy-every 0: must be positive"),
    Case(
        "fino.py",
        ["--dataset-dir", "{tmp}"],
        1,
        "{tmp}/cube-single-play-v0-val.npz holds NaN or infinite actions",
        inf_in_validation_split,
    ),
    Case(
        "fino.py",
        ["--load-model", "{tmp}/run/fino.flax", "--eval-episodes", "1"],
        1,
        "error: {tmp}/run/fino.flax is not a model saved by fino.py",
        lambda tmp: run_folder(tmp, "fino.py", FQL_ARGS, model=flax.serialization.msgpack_serialize({"params": {}})),
    ),
    Case(
        "fino.py",
        ["--resume", "{tmp}/run"],
        1,
        "error: {tmp}/run/checkpoint.msgpack is not a checkpoint of fino.py (KeyError: 'beta')",
        lambda tmp: run_folder(tmp, "fino.py", FQL_ARGS, checkpoint=FQL_CHECKPOINT),
    ),
]


# fql.py and fino.py: the kinds of bad input that once ended in a traceback or in a failure after training ------------


def runs_is_a_file(tmp: str) -> None:
    open(os.path.join(tmp, "runs"), "w").close()  # where the run folder goes


def deleted_validation_split(folder: str) -> None:
    write_dataset(folder)
    os.remove(os.path.join(folder, "cube-single-play-v0-val.npz"))


for script in ("fql.py", "fino.py"):
    CASES += [
        Case(script, ["--seed", "-1"], 2, "error: --seed -1: must be in [0, 2^32)"),
        Case(script, ["--exp-name", "a/b", "--save-model"], 2, "error: --exp-name 'a/b': must be a non-empty name"),
        Case(script, ["--exp-name", "run:1"], 2, "error: --exp-name 'run:1': must be a non-empty name without '/'"),
        Case(script, ["--dataset-dir", "{tmp}"], 1, "{tmp}/runs must be a folder this user can write", runs_is_a_file),
        Case(script, ["--load-model", "{tmp}/run/m.flax", "--eval-episodes", "0"], 2, "--load-model only evaluates"),
        Case(
            script,
            ["--dataset-dir", "{tmp}"],
            1,
            "error: dataset file {tmp}/cube-single-play-v0-val.npz not found",
            deleted_validation_split,
        ),
        Case(
            script,
            ["--dataset-dir", "{tmp}"],
            1,
            "error: dataset file {tmp}/cube-single-play-v0.npz holds NaN or infinite actions",
            lambda tmp: write_dataset(tmp, actions=np.full((30, 5), np.nan, np.float32)),
        ),
        Case(
            script,
            ["--load-model", "{tmp}/run/" + script.replace(".py", ".flax"), "--eval-episodes", "1"],
            1,
            f"is not a model saved by {script}",
            lambda tmp, script=script: run_folder(tmp, script, FQL_ARGS, model=b"\x00 not msgpack"),
        ),
        Case(
            script,
            ["--resume", "{tmp}/run"],
            1,
            "error: {tmp}/run/checkpoint.msgpack not found: the run stopped before its first checkpoint",
            lambda tmp, script=script: run_folder(tmp, script, FQL_ARGS),
        ),
    ]
SUGGESTIONS_CHECKED = (
    "fql.py",
    "fino.py",
    "rldt.py",
    "fm_irl.py",
)  # scripts whose suggested commands the next test parses and checks


# benchmark/suite.py ---------------------------------------------------------------------------------------------------

CASES += [
    Case("benchmark/suite.py", ["--tasks"], 2, "error: --tasks (none): give at least one env id or alias"),
    Case("benchmark/suite.py", ["--seeds", "0", "-1"], 2, "error: --seeds 0 -1: give one or more seeds in [0, 2^32)"),
    Case("benchmark/suite.py", ["--jobs", "0"], 2, "error: --jobs 0: must be positive"),
    Case("benchmark/suite.py", ["--timeout-min", "0"], 2, "error: --timeout-min 0: must be positive"),
    Case("benchmark/suite.py", ["--slurm-gpus-per-node", "-1"], 2, "error: --slurm-gpus-per-node -1: must not be"),
    Case(
        "benchmark/suite.py",
        ["--dataset-dir", "{tmp}/nothere"],
        2,
        "error: --dataset-dir {tmp}/nothere: no such folder",
    ),
    Case(
        "benchmark/suite.py",
        ["--extra-args=--exp-name 'a b"],
        2,
        'error: --extra-args "--exp-name \'a b": cannot be split',
    ),
    # Every command is checked by its script before anything starts: a bad task, a bad extra flag.
    Case(
        "benchmark/suite.py",
        ["--tasks", "cube-triple", "--dry-run"],
        2,
        "error: --env-id cube-triple: unknown environment",
    ),
    Case(
        "benchmark/suite.py", ["--extra-args=--batch-size 0", "--dry-run"], 2, "error: --batch-size 0: must be positive"
    ),
]

# benchmark/speed.py ---------------------------------------------------------------------------------------------------

CASES += [
    Case(
        "benchmark/speed.py",
        ["--algo", "sac"],
        2,
        "error: --algo sac: not a method this script measures; give one of fql",
    ),
    Case("benchmark/speed.py", ["--chunk", "0"], 2, "error: --chunk 0: must be positive"),
    Case("benchmark/speed.py", ["--steps", "-1"], 2, "error: --steps -1: must be positive"),
    Case("benchmark/speed.py", ["--hidden-dims"], 2, "error: --hidden-dims (none): must be one or more positive layer"),
]

# benchmark/summarize.py -----------------------------------------------------------------------------------------------


def unreadable_run(folder: str) -> None:
    os.makedirs(os.path.join(folder, "runs", "broken"))
    with open(os.path.join(folder, "runs", "broken", "args.json"), "w") as f:
        f.write('{"env_id": "cube-single-play-singletask-task2-v0", "exp_na')  # cut off while written


CASES += [
    Case(
        "benchmark/summarize.py", ["--runs-dir", "{tmp}/nothere"], 2, "error: --runs-dir {tmp}/nothere: no such folder"
    ),
    Case(
        "benchmark/summarize.py", ["--runs-dir", "{tmp}", "--methods"], 2, "error: --methods (none): give one or more"
    ),
    Case(
        "benchmark/summarize.py",
        ["--runs-dir", "{tmp}", "--out-dir", "{tmp}/f"],
        2,
        "--out-dir {tmp}/f: is a file",
        lambda tmp: open(os.path.join(tmp, "f"), "w").close(),
    ),
    Case(
        "benchmark/summarize.py",
        ["--runs-dir", "{tmp}", "--dataset-note", " "],
        2,
        "error: --dataset-note '': must not be empty",
    ),
    Case(
        "benchmark/summarize.py", ["--runs-dir", "{tmp}"], 1, "error: no run under {tmp} has logged `eval/success` yet"
    ),
    Case(
        "benchmark/summarize.py",
        ["--runs-dir", "{tmp}/runs"],
        1,
        "error: no run under {tmp}/runs has logged",
        unreadable_run,
    ),
]


# Values of the wrong type are refused by tyro itself, before any of the scripts' code: with its own box of a few
# lines (the flag, the expected type, a "did you mean" for a misspelt flag), exit status 2 and no traceback.
TYRO_CASES = [
    ("fql.py", ["--batch-size", "abc"], "--batch-size"),
    ("fino.py", ["--q-agg", "max"], "--q-agg"),
    ("benchmark/suite.py", ["--method", "sac"], "--method"),
    ("benchmark/speed.py", ["--chunk", "1.5"], "--chunk"),
    ("benchmark/summarize.py", ["--out-dri", "x"], "--out-dri"),
]


@pytest.mark.parametrize(("script", "argv", "flag"), TYRO_CASES, ids=[f"{c[0]}:{' '.join(c[1])}" for c in TYRO_CASES])
def test_a_value_of_the_wrong_type_gets_tyros_message_and_status_2(script, argv, flag, tmp_path):
    status, stderr = run_script(script, argv, str(tmp_path))
    assert status == 2 and flag in stderr and "Traceback" not in stderr, stderr


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
    Case("rldt.py", ["--actor-lr", "nan"], 2, "--actor-lr nan: must be a positive number"),
    Case("rldt.py", ["--seed", "-1"], 2, "--seed -1: must be in [0, 2^32)"),
    Case("rldt.py", ["--exp-name", "a/b", "--save-model"], 2, "--exp-name 'a/b': must be a non-empty name without '/'"),
    Case("rldt.py", [], 1, "{tmp}/runs must be a folder this user can write", write_file("runs", b"")),
    Case(
        "rldt.py", ["--load-model", "{tmp}/m.flax", "--eval-episodes", "0"], 2, "--eval-episodes 0: --load-model only"
    ),
    Case("rldt.py", ["--resume", "{tmp}/nothing"], 1, "{tmp}/nothing/args.json not found"),
    Case("rldt.py", ["--resume", "{tmp}/run", "--seed", "3"], 2, "error: --resume {tmp}/run: takes no other flag"),
    Case(
        "rldt.py",
        ["--resume", "{tmp}/run"],
        1,
        "{tmp}/run/checkpoint.msgpack is not a checkpoint of rldt.py (KeyError",
        lambda tmp: (
            write_file("run/args.json", b'{"eval_every": 4}')(tmp),
            write_file("run/checkpoint.msgpack", flax.serialization.msgpack_serialize({"phase": "finetune"}))(tmp),
        ),
    ),
    Case("rldt.py", ["--pretrained", "{tmp}/missing.flax"], 1, "{tmp}/missing.flax not found"),
    Case("rldt.py", ["--pretrained", "{tmp}/model.flax"], 1, "is not a model saved by rldt.py", rldt_broken_model),
    Case("rldt.py", ["--load-model", "{tmp}/model.flax"], 1, "is not a model saved by rldt.py", rldt_broken_model),
    Case(
        "rldt.py",
        ["--env-id", "cube-single", "--dataset-dir", "{tmp}"],
        1,
        "dataset file {tmp}/cube-single-singletask-task2-demos-v0.npz not found",
    ),
    Case(
        "rldt.py",
        ["--env-id", "cube-single", "--dataset-dir", "{tmp}"],
        1,
        "lacks the keys ['actions', 'terminals']",
        rldt_demos_without_terminals,
    ),
]


def damage_minari(root: str, kind: str) -> None:
    """`root` holds the tiny hopper dataset; damage it as a broken download or a wrong file would."""
    import h5py

    data = os.path.join(root, "mujoco", "hopper", "medium-v0", "data", "main_data.hdf5")
    if kind == "truncated":  # a download cut off half-way
        with open(data, "rb") as f:
            content = f.read()
        with open(data, "wb") as f:
            f.write(content[: len(content) // 2])
    elif kind == "nan":
        with h5py.File(data, "r+") as f:
            f["episode_1/observations"][3, 2] = float("nan")
    elif kind == "deleted":  # metadata.json is still there, the data file is not
        os.remove(data)
    elif kind == "walker":  # a dataset of another environment
        write_random_minari_dataset(root, "mujoco/walker2d/medium-v0", "Walker2d-v5", 2, 20, seed=0)


HOPPER_DATA = "Minari dataset mujoco/hopper/medium-v0 ({tmp}/minari/mujoco/hopper/medium-v0)"
RLDT_MINARI_CASES = [  # (how the dataset is damaged, flags, what the error line says)
    ("truncated", [], f"{HOPPER_DATA} cannot be read (OSError: Unable to synchronously open file (truncated file"),
    ("nan", [], f"{HOPPER_DATA} holds NaN or infinite observations"),
    ("deleted", [], f"{HOPPER_DATA} cannot be read (ValueError: No data found"),
    (
        "walker",
        ["--env-id", "Hopper-v5", "--dataset-id", "mujoco/walker2d/medium-v0"],
        "Minari dataset mujoco/walker2d/medium-v0 ({tmp}/minari/mujoco/walker2d/medium-v0) holds observations of "
        "shape (17,) per step where Hopper-v5 has (11,)",
    ),
]


@pytest.mark.parametrize(("kind", "argv", "needle"), RLDT_MINARI_CASES, ids=[c[0] for c in RLDT_MINARI_CASES])
def test_rldt_reads_the_whole_minari_dataset_at_start(kind, argv, needle, tmp_path, minari_root, monkeypatch):
    """A damaged or wrong dataset is named (id and folder) with what is wrong, before anything trains; the commands
    that remake it pass their own flag checks."""
    root = str(tmp_path / "minari")
    shutil.copytree(minari_root, root)
    damage_minari(root, kind)
    monkeypatch.setenv("MINARI_DATASETS_PATH", root)
    status, stderr = run_script("rldt.py", argv, str(tmp_path))
    assert_clean_error(status, stderr, 1, needle.replace("{tmp}", str(tmp_path)))
    assert "python benchmark/train_expert.py" in stderr and "python benchmark/make_dataset.py" in stderr, stderr
    check_suggested_commands(stderr)


# fm_irl.py
def _write_pointmaze_demos(tmp: str, name: str = "pointmaze-medium-singletask-task1-demos-v0.npz", **overrides):
    data = {"observations": np.zeros((40, 2), np.float32), "actions": np.zeros((40, 2), np.float32)}
    data |= {"terminals": np.arange(40) % 20 == 19, "env_name": np.array("pointmaze-medium-singletask-task1-v0")}
    data |= {"noise": np.array(0.5)} | overrides
    np.savez(os.path.join(tmp, name), **{k: v for k, v in data.items() if v is not None})


def _write_run_folder(tmp: str, model: bytes | None = None):
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
    Case("fm_irl.py", ["--gamma", "1.5"], 2, "--gamma 1.5: must be in [0, 1]"),
    Case("fm_irl.py", ["--demo-frac", "0"], 2, "--demo-frac 0.0: must be in (0, 1]"),
    Case("fm_irl.py", ["--learning-rate", "0"], 2, "--learning-rate 0.0: must be a positive number"),
    Case("fm_irl.py", ["--regularizer-coef", "-1"], 2, "--regularizer-coef -1.0: must be a finite number >= 0"),
    Case("fm_irl.py", ["--eval-episodes", "-1"], 2, "--eval-episodes -1: must not be negative"),
    Case("fm_irl.py", ["--checkpoint-every", "-5"], 2, "--checkpoint-every -5: must not be negative"),
    Case("fm_irl.py", ["--demo-noise", "0.3"], 2, "--demo-noise 0.3: applies to OGBench demonstrations only"),
    Case("fm_irl.py", _MAZE, 1, "dataset file {tmp}/pointmaze-medium-singletask-task1-demos-v0.npz not found"),
    Case(
        "fm_irl.py",
        [*_MAZE, "--demo-noise", "1"],
        1,
        "dataset file {tmp}/demos-noise1/pointmaze-medium-singletask-task1-demos-v0.npz not found",
    ),
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
        "is truncated or not an .npz file",
        lambda tmp: open(os.path.join(tmp, "d.npz"), "wb").write(b"not a zip file"),
    ),
    Case("fm_irl.py", ["--resume", "{tmp}"], 1, "{tmp}/args.json not found"),
    Case("fm_irl.py", ["--resume", "{tmp}", "--seed", "3"], 2, "error: --resume {tmp}: takes no other flag"),
    Case("fm_irl.py", ["--resume", "{tmp}"], 1, "{tmp}/checkpoint.msgpack not found", _write_run_folder),
    Case(
        "fm_irl.py",
        ["--resume", "{tmp}"],
        1,
        "{tmp}/checkpoint.msgpack is not a checkpoint of fm_irl.py (KeyError: 'state')",
        lambda tmp: _write_run_folder(tmp) or write_file("checkpoint.msgpack", b"\x81\xa9iteration\x03")(tmp),
    ),
    Case("fm_irl.py", ["--load-model", "{tmp}/fm_irl.flax"], 1, "saved model {tmp}/fm_irl.flax not found"),
    Case(
        "fm_irl.py",
        ["--load-model", "{tmp}/fm_irl.flax", "--eval-episodes", "1"],
        1,
        "{tmp}/fm_irl.flax is not a model saved by fm_irl.py",
        lambda tmp: _write_run_folder(tmp, model=b"\x00garbage"),
    ),
]


# fm_irl.py: the kinds of bad input that once ended in a traceback, a false NaN report or a failure after training
_SMALL = ["--num-envs", "4", "--num-steps", "64", "--num-minibatches", "4", "--num-epochs", "1", "--hidden-dim", "16"]
_SMALL += ["--teacher-hidden-dim", "16", "--teacher-depth", "2", "--teacher-batch-size", "16", "--num-demos", "2"]
_SMALL += ["--regularizer-samples", "8", "--total-timesteps", "256", "--eval-episodes", "1", "--no-full-length-demos"]


def _write_fm_irl_model(tmp: str) -> None:
    """A model as `fm_irl.py --save-model` writes it (untrained), with its args.json."""
    import jax

    import fm_irl

    args = fm_irl.with_task_defaults(fm_irl.Args(hidden_dim=8, teacher_hidden_dim=8), fm_irl.resolve_task("hopper"))
    nets, student_tx, teacher_tx = fm_irl.make_networks(args, 11, 3)
    state = fm_irl.init_train_state(jax.random.PRNGKey(0), nets, student_tx, teacher_tx, args)
    stats = {"mean": np.zeros(11, np.float32), "var": np.ones(11, np.float32), "count": 1.0}
    model = {"student": state.student, "teacher": state.teacher, "obs_stats": stats}
    with open(os.path.join(tmp, "fm_irl.flax"), "wb") as f:
        f.write(flax.serialization.to_bytes(model))
    with open(os.path.join(tmp, "args.json"), "w") as f:
        json.dump(dataclasses.asdict(args), f)


CASES += [
    Case(
        "fm_irl.py",
        [*_MAZE, *_SMALL, "--seed", "-1"],
        2,
        "error: --seed -1: must be in [0, 2^32)",
        _write_pointmaze_demos,
    ),
    Case(
        "fm_irl.py",
        [*_MAZE, *_SMALL, "--exp-name", "a/b", "--save-model"],
        2,
        "error: --exp-name 'a/b': must be a non-empty name",
        _write_pointmaze_demos,
    ),
    Case(
        "fm_irl.py",
        [*_MAZE, *_SMALL],
        1,
        "{tmp}/runs must be a folder this user can write",
        lambda tmp: _write_pointmaze_demos(tmp) or write_file("runs", b"")(tmp),
    ),
    Case(
        "fm_irl.py",
        ["--load-model", "{tmp}/fm_irl.flax", "--eval-episodes", "0"],
        2,
        "error: --eval-episodes 0: --load-model only evaluates",
        _write_fm_irl_model,
    ),
    Case(  # a mistyped dataset id: no command suggested that would be refused in turn
        "fm_irl.py",
        ["--dataset-id", "mujoco/hoper/expert-v0", *_SMALL],
        1,
        "error: Minari dataset mujoco/hoper/expert-v0 (",
    ),
    Case(  # 20 demonstration transitions are kept, but a rollout holds 16
        "fm_irl.py",
        [*_MAZE, "--num-envs", "2", "--num-steps", "8", "--teacher-batch-size", "18", "--total-timesteps", "16"],
        2,
        "error: --teacher-batch-size 18: must be even (antithetic time pairs) and at most the 16 transitions",
        _write_pointmaze_demos,
    ),
    Case(
        "fm_irl.py",
        [*_MAZE, *_SMALL],
        1,
        "error: dataset file {tmp}/pointmaze-medium-singletask-task1-demos-v0.npz holds NaN or infinite observations",
        lambda tmp: _write_pointmaze_demos(tmp, observations=np.full((40, 2), np.nan, np.float32)),
    ),
    Case(
        "fm_irl.py",
        [*_MAZE, *_SMALL],
        1,
        "error: dataset file {tmp}/pointmaze-medium-singletask-task1-demos-v0.npz holds observations of shape (3,)",
        lambda tmp: _write_pointmaze_demos(tmp, observations=np.zeros((40, 3), np.float32)),
    ),
]


# benchmark/summarize.py --rldt and --fm-irl: the same folder checks; damaged run folders are skipped
CASES += [
    Case("benchmark/summarize.py", ["--rldt", "--runs-dir", "{tmp}/nothere"], 2, "error: --runs-dir {tmp}/nothere"),
    Case(
        "benchmark/summarize.py",
        ["--rldt", "--runs-dir", "{tmp}"],
        1,
        "error: no rldt.py fine-tuning run under {tmp} has logged an evaluation yet",
        write_file("r1/args.json", b"{not json"),
    ),
    Case("benchmark/summarize.py", ["--fm-irl", "--runs-dir", "{tmp}/nothere"], 2, "error: --runs-dir {tmp}/nothere"),
    Case(
        "benchmark/summarize.py",
        ["--fm-irl", "--runs-dir", "{tmp}", "--out-dir", "{tmp}/f"],
        2,
        "--out-dir {tmp}/f: is a file",
        write_file("f", b""),
    ),
    Case(
        "benchmark/summarize.py",
        ["--fm-irl", "--runs-dir", "{tmp}", "--dataset-note", " "],
        2,
        "--dataset-note '': must",
    ),
    Case("benchmark/summarize.py", ["--rldt", "--fm-irl"], 2, "error: --fm-irl (with --rldt): give one of them"),
    Case(
        "benchmark/summarize.py",
        ["--fm-irl", "--runs-dir", "{tmp}"],
        1,
        "error: no fm_irl.py run under {tmp} has logged a training episode yet",
        write_file("r1/args.json", b"{not json"),
    ),
]


# benchmark/make_dataset.py and benchmark/train_expert.py: the probe kinds that lost or mixed data, or ended in a
# traceback (issue 18). Refusals that suggest commands are checked to accept them in tests/test_benchmark_tools.py.


def hopper_expert(tmp: str) -> None:
    """`<tmp>/hopper.msgpack` (+ .json): a small random actor with a Hopper-v5 expert's sizes and record."""
    recipe = dataclasses.replace(train_expert.RECIPES["Hopper-v5"], hidden_dims=(8,))
    params = train_expert.init_actor_params(jax.random.PRNGKey(0), 11, 3, recipe)
    evaluation = {"step": 10, "minutes": 0.0, "deterministic": {"return_mean": 1.0, "return_std": 0.0}}
    info = {"env_id": "Hopper-v5", "config": {"recipe": dataclasses.asdict(recipe)}, "evaluations": [evaluation]}
    train_expert.save_expert(os.path.join(tmp, "hopper.msgpack"), params, info)


def cube_parts(config: bytes | None = None):
    """A setup that leaves `<tmp>/cube-single-play-v0.parts` as an interrupted run does: one episode file, and a
    config.json with the settings of the default command (`config` None), or with the given bytes (b"": none)."""

    def setup(tmp: str) -> None:
        parts = os.path.join(tmp, "cube-single-play-v0.parts")
        _, spec, _ = make_dataset.resolve(make_dataset.Args(dataset="cube-single-play-v0"))
        make_dataset.prepare_parts_dir(parts, spec, seed=0)
        np.savez(os.path.join(parts, "episode_000000.npz"), observations=np.zeros((2, 28), np.float32))
        if config is not None:
            os.remove(os.path.join(parts, "config.json"))
            if config:
                write_file("cube-single-play-v0.parts/config.json", config)(tmp)

    return setup


def expert_folder(files: dict[str, bytes], config: bytes | None = None):
    """A setup that fakes a train_expert.py run folder `<tmp>/run` holding these files, and a config.json with the
    settings of `_SAC` below (`config` None), or with the given bytes (b"": none)."""

    def setup(tmp: str) -> None:
        for name, content in files.items():
            write_file(f"run/{name}", content)(tmp)
        if config is None:
            flags = dict(total_steps=10, learning_starts=10, eval_episodes=1)
            args, recipe = train_expert.resolve(train_expert.Args(out_dir=os.path.join(tmp, "run"), **flags))
            config_json = {"args": dataclasses.asdict(args), "recipe": dataclasses.asdict(recipe)}
            write_file("run/config.json", json.dumps(config_json).encode())(tmp)
        elif config:
            write_file("run/config.json", config)(tmp)

    return setup


_MD, _TE = "benchmark/make_dataset.py", "benchmark/train_expert.py"
# Each case also names a tiny dataset in the temporary folder: the code before the fix ran on, and must not have
# filled the home folder or trained for hours while it failed these cases.
_CUBE = ["--dataset", "cube-single-play-v0", "--out-dir", "{tmp}", "--workers", "1", "--num-episodes", "1"]
_MINARI = ["--expert-path", "{tmp}/hopper.msgpack", "--out-dir", "{tmp}", "--workers", "1"]
_SAC = ["--out-dir", "{tmp}/run", "--total-steps", "10", "--learning-starts", "10", "--eval-episodes", "1"]
CASES += [
    # make_dataset.py: flags that cannot make the dataset, refused before anything is collected or touched.
    Case(
        _MD,
        [*_MINARI, "--dataset", "mujoco/hopper/medium-v0", "--num-steps", "100"],
        2,
        "error: --num-steps 100: fewer than one episode of up to 1000 steps (Minari keeps whole episodes only)",
        hopper_expert,
    ),
    Case(
        _MD,
        [*_MINARI, "--dataset", "mujoco/walker2d/medium-v0", "--num-steps", "2000"],
        2,
        "error: --expert-path {tmp}/hopper.msgpack: an actor of Hopper-v5 (11 inputs, 3 actions), where Walker2d-v5 "
        "needs one of Walker2d-v5 (17 inputs, 6 actions)",
        hopper_expert,
    ),
    Case(_MD, [*_CUBE, "--max-episode-steps", "5", "--seed", "-1"], 2, "error: --seed -1: must be in [0, 2^32)"),
    Case(
        _MD,
        ["--dataset", "cube-single-play-v0", "--out-dir", "{tmp}/f", "--num-episodes", "1", "--workers", "1"],
        2,
        "error: --out-dir {tmp}/f: is a file; give a folder",
        write_file("f", b""),
    ),
    Case(
        _MD,
        [
            *_MINARI,
            "--dataset",
            "mujoco/hopper/expert-v0",
            "--noise",
            "0.2",
            "--num-steps",
            "30",
            "--max-episode-steps",
            "30",
        ],
        2,
        "error: --noise 0.2: Minari's policy samples its own actions",
        hopper_expert,
    ),
    Case(_MD, [*_CUBE, "--max-episode-steps", "5", "--expert-path", "x"], 2, "error: --expert-path x: only antmaze"),
    Case(_MD, [*_CUBE, "--max-episode-steps", "1"], 2, "error: --max-episode-steps 1: OGBench's loader drops"),
    # make_dataset.py: a parts folder continues only under the settings it was made with.
    Case(
        _MD,
        _CUBE,
        1,
        "error: {tmp}/cube-single-play-v0.parts/config.json, the settings of the 1 episodes in "
        "{tmp}/cube-single-play-v0.parts, is unreadable (JSONDecodeError",
        cube_parts(b'{"kind": "pl'),
    ),
    Case(
        _MD,
        [*_CUBE, "--max-episode-steps", "5"],
        1,
        "error: {tmp}/cube-single-play-v0.parts holds 1 episodes without the settings they were made with",
        cube_parts(b""),
    ),
    Case(
        _MD,
        [*_CUBE, "--noise", "0.3"],
        1,
        "error: {tmp}/cube-single-play-v0.parts holds 1 episodes made with other settings (--noise 0.3 here, 0.1 "
        "there); one dataset must not mix two.",
        cube_parts(),
    ),
    # train_expert.py: flags.
    Case(_TE, [*_SAC, "--seed", "-1"], 2, "error: --seed -1: must be in [0, 2^32)"),
    Case(_TE, ["--out-dir", "{tmp}/f"], 2, "error: --out-dir {tmp}/f: is a file; give a folder", write_file("f", b"")),
    Case(_TE, [*_SAC, "--eval-noise", "nan"], 2, "error: --eval-noise nan: must be a finite number >= 0"),
    Case(
        _TE,
        [*_SAC, "--checkpoint-every", "3"],
        2,
        "error: --checkpoint-every 3: must be a multiple of the 5 environments that Hopper-v5's recipe steps together",
    ),
    Case(
        _TE,
        ["--env-id", "Hoper-v5"],
        2,
        "error: --env-id Hoper-v5: no recipe for it (accepted: Hopper-v5, Walker2d-v5, HalfCheetah-v5, Ant-v5, "
        "ant-xy); did you mean Hopper-v5: python benchmark/train_expert.py --env-id Hopper-v5",
    ),
    # train_expert.py: a run folder continues only under the settings it was started with.
    Case(
        _TE,
        [*_SAC, "--discount", "0.5"],
        1,
        "error: {tmp}/run holds a run (resume.msgpack) without the settings it was started with (no config.json)",
        expert_folder({"resume.msgpack": b""}, config=b""),
    ),
    Case(
        _TE,
        _SAC,
        1,
        "error: {tmp}/run/config.json, the settings of the run in {tmp}/run, is unreadable (JSONDecodeError",
        expert_folder({"resume.msgpack": b""}, config=b'{"args": {"env_'),
    ),
    Case(
        _TE,
        [*_SAC, "--discount", "0.5"],
        1,
        "error: {tmp}/run holds a run with other settings (--discount 0.5 here, 0.99 in that run)",
        expert_folder({"resume.msgpack": b""}),
    ),
    Case(
        _TE,
        _SAC,
        1,
        "error: {tmp}/run holds an expert (actor.msgpack) but not the training state to continue it",
        expert_folder({"actor.msgpack": b"weights"}),
    ),
    # suite.py: its folders, as make_dataset.py's and train_expert.py's --out-dir (--dry-run: the code before the fix
    # ran the suite on).
    *(
        Case(
            "benchmark/suite.py",
            [flag, "{tmp}/f", "--dry-run"],
            2,
            f"error: {flag} {{tmp}}/f: must name a folder (made if missing), not a file",
            write_file("f", b""),
        )
        for flag in ("--results-dir", "--log-dir")
    ),
]


# Every script's cases are listed above this line.
@pytest.mark.parametrize("case", CASES, ids=[f"{c.script}:{' '.join(c.argv)}" for c in CASES])
def test_bad_input_gives_one_clear_line(case: Case, tmp_path):
    if case.setup is not None:
        case.setup(str(tmp_path))
    argv = [arg.replace("{tmp}", str(tmp_path)) for arg in case.argv]
    status, stderr = run_script(case.script, argv, str(tmp_path))
    assert_clean_error(status, stderr, case.status, case.needle.replace("{tmp}", str(tmp_path)))
    if case.script in SUGGESTIONS_CHECKED:
        check_suggested_commands(stderr)


def check_suggested_commands(message: str) -> None:
    """Each command a message suggests (`python <script> <flags>`) passes that script's own flag check, and a
    `python -c` one compiles: a suggested fix is never itself refused."""
    for command in re.findall(r"\bpython (.+)$", message, flags=re.MULTILINE):
        argv = shlex.split(command)
        if argv[0] == "-c":
            compile(argv[1], "<suggested command>", "exec")
            continue
        module = importlib.import_module(os.path.basename(argv[0])[: -len(".py")])
        module.check_args(tyro.cli(module.Args, args=argv[1:], prog=argv[0]))


@pytest.mark.parametrize("script", ["fql.py", "fino.py"])
def test_ctrl_c_ends_the_run_with_one_line_and_status_130_and_its_command_finishes_the_run(
    script, tmp_path, cube_single_dir
):
    """A real SIGINT once the bar reaches step 120 of 200 (checkpoints at 50 and 100); then the suggested command."""
    flags = ["--env-id", "cube-single", "--dataset-dir", cube_single_dir, "--offline-steps", "200"]
    flags += ["--online-steps", "0", "--steps-per-call", "10", "--log-every", "50", "--checkpoint-every", "50"]
    flags += ["--eval-episodes", "0", "--actor-hidden-dims", "16", "--value-hidden-dims", "16", "--batch-size", "8"]
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
    command = [sys.executable, "-c", PRESS_CTRL_C, "120", os.path.join(ROOT, script), *flags]
    interrupted = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    (run_dir,) = glob.glob("runs/*", root_dir=tmp_path)
    lines = [line for line in interrupted.stderr.splitlines() if line.strip()]
    resume = f"python {script} --resume {run_dir}"
    assert interrupted.returncode == 130, interrupted.stderr
    assert lines[-1] == f"interrupted: the last checkpoint is in {run_dir} (step 100); continue the run with: {resume}"
    assert (
        sum(line.startswith(("interrupted", "error")) for line in lines) == 1 and "Traceback" not in interrupted.stderr
    )
    assert not glob.glob(str(tmp_path / run_dir / "*.tmp"))

    _, resumed_script, *resume_flags = shlex.split(lines[-1].split(": ")[-1])
    resumed = subprocess.run(
        [sys.executable, os.path.join(ROOT, resumed_script), *resume_flags],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from the checkpoint at step 100" in resumed.stdout and "no evaluation" in resumed.stdout


@pytest.mark.parametrize("script", ["fql.py", "fino.py", "rldt.py", "fm_irl.py"])
def test_track_without_wandb_is_refused_at_start(script, tmp_path, monkeypatch):
    """--track needs wandb, which requirements.txt leaves out; the case runs whether or not this machine has it."""
    monkeypatch.setitem(sys.modules, "wandb", None)  # importlib.util.find_spec("wandb") now answers None
    status, stderr = run_script(script, ["--track"], str(tmp_path))
    assert_clean_error(status, stderr, 2, "error: --track: wandb is not installed")


@pytest.mark.parametrize("backend", [{"__EGL_VENDOR_LIBRARY_FILENAMES": "/nonexistent"}, {"MUJOCO_GL": "nonsense"}])
def test_capture_video_where_mujoco_cannot_render_stops_at_start_naming_mujoco_gl(backend, tmp_path):
    """MUJOCO_GL unset, so egl, with no EGL driver to be found; or a backend MuJoCo does not know. In a fresh process:
    MuJoCo reads MUJOCO_GL once. The run stops at the flag check, before any dataset is looked for."""
    env = {k: v for k, v in os.environ.items() if k != "MUJOCO_GL"} | backend | {"JAX_PLATFORMS": "cpu"}
    command = [sys.executable, os.path.join(ROOT, "fql.py"), "--capture-video", "--dataset-dir", str(tmp_path / "no")]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    needle = f"error: --capture-video: MuJoCo cannot render with MUJOCO_GL={backend.get('MUJOCO_GL', 'egl')} ("
    assert_clean_error(result.returncode, result.stderr, 2, needle)
    assert "set MUJOCO_GL to a backend that works here" in result.stderr and not os.path.exists(tmp_path / "runs")


# fm_irl.py with a broken Minari dataset: each is named (id and folder) with what is wrong and how to make a good one.
def _break_minari(kind: str, root: str) -> None:
    import h5py

    data_file = os.path.join(root, "mujoco", "hopper", "expert-v0", "data", "main_data.hdf5")
    if kind == "truncated":
        os.truncate(data_file, os.path.getsize(data_file) // 2)
    elif kind == "deleted":
        os.remove(data_file)
    elif kind == "nan":
        with h5py.File(data_file, "r+") as f:
            f["episode_1"]["observations"][3] = np.nan


MINARI_CASES = [
    ("truncated", [], "cannot be read (OSError"),
    ("deleted", [], "cannot be read (ValueError: No data found in data path"),
    ("nan", [], "holds NaN or infinite observations"),
    (
        "another environment",
        ["--env-id", "Walker2d-v5", "--dataset-id", "mujoco/hopper/expert-v0"],
        "holds observations",
    ),
]


@pytest.mark.parametrize(("kind", "flags", "needle"), MINARI_CASES, ids=[c[0] for c in MINARI_CASES])
def test_a_broken_minari_dataset_is_named_with_what_is_wrong(kind, flags, needle, tmp_path, monkeypatch):
    from conftest import write_random_minari_dataset

    root = str(tmp_path / "minari")
    write_random_minari_dataset(root, "mujoco/hopper/expert-v0", "Hopper-v5", 3, 30, seed=0)
    _break_minari(kind, root)
    monkeypatch.setenv("MINARI_DATASETS_PATH", root)
    status, stderr = run_script("fm_irl.py", [*(flags or ["--env-id", "hopper"]), *_SMALL], str(tmp_path))
    folder = os.path.join(root, "mujoco", "hopper", "expert-v0")
    assert_clean_error(status, stderr, 1, f"error: Minari dataset mujoco/hopper/expert-v0 ({folder}) {needle}")
    assert "python benchmark/make_dataset.py --dataset mujoco/hopper/expert-v0" in stderr
    check_suggested_commands(stderr)
