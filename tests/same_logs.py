"""No behaviour change: fixed-seed tiny runs log exactly the same numbers at a base revision and in the working tree.

    python tests/same_logs.py                                  # every run of RUNS, against main
    python tests/same_logs.py --scripts fql.py fino.py --base main~2
    python tests/same_logs.py --keep                           # keep the runs of both trees to look at

Each run of RUNS starts `python <tree>/<script> <flags>` twice: in a temporary `git worktree` of the base revision and
in this working tree, each in an empty folder of its own, on the same tiny datasets (made offline, the way
tests/conftest.py makes them) and with the same environment. Then every TensorBoard scalar of the two run folders
(tag, step, value, as TensorBoard shows a resumed run) is compared exactly, except wall-clock timings (TIMINGS). It
prints what differs and exits with status 1 if anything does. A script, not a test (pytest collects only test_*.py):
run it by hand after a change that must not change the numbers; each run takes from seconds to a few minutes on CPU.
The commands are data: add or adjust a script's runs in RUNS (`{data}` is the folder of the tiny datasets).
"""

import glob
import os
import struct
import subprocess
import sys
import tempfile
import warnings
from dataclasses import dataclass

import tyro
from tensorboardX.proto.event_pb2 import Event, SessionLog

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

from conftest import write_random_minari_dataset, write_random_play_dataset  # noqa: E402

FQL_SMALL = ["--actor-hidden-dims", "32", "32", "--value-hidden-dims", "32", "32", "--batch-size", "16"]
FQL_DATA = ["--env-id", "cube-single", "--dataset-dir", "{data}"]
RLDT_TINY = ["--actor-hidden-dims", "32", "32", "32", "--critic-hidden-dims", "32", "32", "--time-dim", "8"]
RLDT_TINY += ["--n-particles", "4", "--critic-steps", "4", "--critic-rounds", "2", "--actor-steps", "2"]
RLDT_TINY += ["--critic-warmup-iterations", "1", "--pretrain-steps", "100", "--pretrain-log-every", "50"]
RLDT_TINY += ["--pretrain-batch-size", "32", "--num-envs", "2", "--eval-episodes", "2", "--eval-every", "1"]
FM_IRL_SMALL = ["--num-envs", "4", "--num-steps", "64", "--num-minibatches", "4", "--num-epochs", "1"]
FM_IRL_SMALL += ["--hidden-dim", "16", "--teacher-hidden-dim", "16", "--teacher-depth", "2", "--teacher-batch-size"]
FM_IRL_SMALL += [
    "16",
    "--regularizer-samples",
    "8",
    "--eval-every",
    "256",
    "--eval-episodes",
    "2",
    "--num-eval-envs",
    "2",
]

# script -> {name of the run: its flags}. Each covers a phase of the script: offline (in compiled calls of several
# steps), online, pretraining and fine-tuning, the online loop.
RUNS = {
    "fql.py": {
        "offline, 10 steps per call": [
            *FQL_DATA,
            "--offline-steps",
            "60",
            "--steps-per-call",
            "10",
            "--log-every",
            "20",
        ]
        + ["--eval-every", "30", "--eval-episodes", "2", "--num-eval-envs", "2", "--seed", "3", *FQL_SMALL],
        "offline to online": [*FQL_DATA, "--offline-steps", "20", "--online-steps", "230", "--buffer-size", "410"]
        + ["--steps-per-call", "1", "--log-every", "5", "--eval-every", "100", "--eval-episodes", "2"]
        + ["--num-eval-envs", "2", *FQL_SMALL],
    },
    "fino.py": {
        "offline, 10 steps per call": [*FQL_DATA, "--offline-steps", "60", "--online-steps", "0"]
        + ["--steps-per-call", "10", "--log-every", "20", "--eval-every", "30", "--eval-episodes", "2"]
        + ["--num-eval-envs", "2", "--seed", "3", *FQL_SMALL],
        "offline to online": [*FQL_DATA, "--offline-steps", "20", "--online-steps", "230", "--buffer-size", "410"]
        + ["--steps-per-call", "1", "--log-every", "5", "--eval-every", "100", "--eval-episodes", "2"]
        + ["--num-eval-envs", "2", "--entropy-every", "110", "--entropy-states", "8", "--entropy-samples", "25"]
        + FQL_SMALL,
    },
    "rldt.py": {
        "pretraining and fine-tuning": [*RLDT_TINY, "--steps-per-iteration", "8", "--iterations", "2"],
        "the delta ablation, another seed": [*RLDT_TINY, "--steps-per-iteration", "8", "--iterations", "2"]
        + ["--svgd-type", "delta", "--seed", "1"],
        "sparse rewards (cube-single)": [*RLDT_TINY, "--env-id", "cube-single", "--dataset-dir", "{data}"]
        + [
            "--dataset-id",
            "cube-single-play-v0",
            "--steps-per-iteration",
            "50",
            "--num-envs",
            "4",
            "--iterations",
            "2",
        ],
    },
    "fm_irl.py": {
        "online loop": [
            "--env-id",
            "hopper",
            "--num-demos",
            "4",
            "--no-full-length-demos",
            "--total-timesteps",
            "1024",
            *FM_IRL_SMALL,
        ],
        "online loop, both ablations, seed 3": [
            "--env-id",
            "hopper",
            "--num-demos",
            "4",
            "--no-full-length-demos",
            "--total-timesteps",
            "768",
        ]
        + ["--disc-bc-coef", "0", "--regularizer-coef", "0", "--seed", "3", *FM_IRL_SMALL],
    },
}
TIMINGS = {"charts/SPS", "charts/rollout_seconds", "charts/critic_seconds", "charts/actor_seconds"}


@dataclass
class Args:
    """Run the same fixed-seed tiny runs at a base revision and in the working tree, and compare their logged scalars."""

    base: str = "main"
    """the git revision to compare the working tree with"""
    scripts: tuple[str, ...] = tuple(RUNS)
    """the scripts whose runs to compare"""
    keep: bool = False
    """keep the temporary folder with both trees' runs (its path is printed)"""


def make_data(folder: str) -> None:
    """The tiny datasets of the runs: an OGBench cube-single dataset and Minari hopper datasets."""
    warnings.simplefilter("ignore")  # the environments' float64 bounds, a missing display
    write_random_play_dataset(os.path.join(folder, "cube-single-play-v0.npz"), "cube-single-v0", 4, 101, seed=0)
    write_random_play_dataset(os.path.join(folder, "cube-single-play-v0-val.npz"), "cube-single-v0", 1, 101, seed=100)
    minari = os.path.join(folder, "minari")
    write_random_minari_dataset(minari, "mujoco/hopper/medium-v0", "Hopper-v5", 4, 60, seed=0)
    write_random_minari_dataset(minari, "mujoco/hopper/expert-v0", "Hopper-v5", 4, 60, seed=100)


def read_events(path: str):
    """The events of one file (TFRecord framing: length, CRC, payload, CRC)."""
    with open(path, "rb") as f:
        while len(header := f.read(12)) == 12:
            payload = f.read(struct.unpack("<Q", header[:8])[0])
            f.read(4)
            yield Event.FromString(payload)


def logged_scalars(run_dir: str) -> dict:
    """(tag, step) -> value of every scalar but the timings, as TensorBoard shows the run: an event file that starts
    with a purge at step P (a resumed run) hides what the earlier files logged at steps >= P."""
    scalars = {}
    for path in sorted(glob.glob(os.path.join(run_dir, "events.out.tfevents.*"))):
        for event in read_events(path):
            if event.HasField("session_log") and event.session_log.status == SessionLog.START:
                scalars = {(tag, step): v for (tag, step), v in scalars.items() if step < event.step}
            for value in event.summary.value:
                if value.HasField("simple_value") and value.tag not in TIMINGS:
                    scalars[value.tag, event.step] = value.simple_value
    return scalars


def run(tree: str, script: str, flags: list[str], cwd: str, env: dict) -> dict:
    """Run `script` of `tree` in the empty folder `cwd`; the scalars of the run folder it made."""
    os.makedirs(cwd)
    result = subprocess.run([sys.executable, os.path.join(tree, script), *flags], cwd=cwd, env=env, capture_output=True)
    if result.returncode != 0:
        raise SystemExit(f"error: {script} in {tree} ended with status {result.returncode}:\n{result.stderr[-3000:]}")
    (run_dir,) = glob.glob(os.path.join(cwd, "runs", "*"))
    return logged_scalars(run_dir)


def compare(base: dict, work: dict) -> list[str]:
    """One line per (tag, step) logged by one tree only, or with different values."""
    lines = []
    for key in sorted(set(base) | set(work)):
        if key not in work or key not in base:
            lines.append(f"  {key[0]} at step {key[1]}: logged only by the {'base' if key in base else 'working tree'}")
        elif base[key] != work[key]:
            lines.append(f"  {key[0]} at step {key[1]}: {base[key]!r} at the base, {work[key]!r} in the working tree")
    return lines


def main(args: Args) -> int:
    unknown = set(args.scripts) - set(RUNS)
    if unknown:
        print(f"error: --scripts {' '.join(sorted(unknown))}: no runs for them; give some of {', '.join(RUNS)}")
        return 2
    tmp = tempfile.mkdtemp(prefix="same-logs-")
    base_tree = os.path.join(tmp, "base")
    subprocess.run(
        ["git", "-C", ROOT, "worktree", "add", "--detach", base_tree, args.base], check=True, capture_output=True
    )
    try:
        data = os.path.join(tmp, "data")
        os.makedirs(data)
        make_data(data)
        env = dict(os.environ, JAX_PLATFORMS="cpu", MINARI_DATASETS_PATH=os.path.join(data, "minari"))
        env |= {"HF_HUB_OFFLINE": "1", "JAX_COMPILATION_CACHE_DIR": os.path.join(tmp, "jax-cache")}
        differences = 0
        for script in args.scripts:
            for name, flags in RUNS[script].items():
                flags = [flag.replace("{data}", data) for flag in flags]
                folder = os.path.join(tmp, "runs", f"{script}-{name}".replace(" ", "_").replace(",", ""))
                base = run(base_tree, script, flags, os.path.join(folder, "base"), env)
                work = run(ROOT, script, flags, os.path.join(folder, "work"), env)
                lines = compare(base, work)
                tags = len({tag for tag, _ in work})
                verdict = "the same" if not lines else f"{len(lines)} differences"
                print(f"{script}, {name}: {len(work)} scalars of {tags} tags compared with {args.base}: {verdict}")
                if lines:
                    print("\n".join(lines[:50]))
                differences += len(lines)
        return 1 if differences else 0
    finally:
        subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", base_tree], capture_output=True)
        if args.keep:
            print(f"runs kept in {tmp}")
        else:
            subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    sys.exit(main(tyro.cli(Args)))
