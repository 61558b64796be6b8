"""Summarise benchmark runs into markdown tables and learning curves, read straight from the event files in runs/.

    python benchmark/summarize.py --out-dir benchmark/results/2025-06-01 --dataset-note "regenerated, 200 episodes"
    python benchmark/summarize.py --rldt --methods rldt rldt-delta rldt-temp0    # rldt.py fine-tuning runs
    python benchmark/summarize.py --fm-irl                                       # fm_irl.py runs

One summary per family of methods, the same flags, folder checks and README layout for all three:
- fql.py and fino.py (the default): runs are grouped by method (exp_name), setting (offline or offline-to-online),
  task and step budget. Each table row gives the success rate in %, mean ± std over seeds, at the final evaluation
  and averaged over the last three evaluations, beside the numbers the paper reports; offline-to-online rows read
  "end of offline → end of online".
- `--rldt`: fine-tuning runs of rldt.py and its ablations, one row per (task, method): the return (locomotion) or the
  success (manipulation) of the pretrained policy and after fine-tuning.
- `--fm-irl`: fm_irl.py and its ablations, grouped by variant, task, demonstration noise and budget, in the paper's
  metric (the mean over the last 100 training episodes), beside the paper's curve and final numbers.

Event files are parsed without TensorFlow: TFRecord framing plus tensorboardX's Event protobuf. A resumed run is read
as TensorBoard shows it: what the interrupted run logged after its checkpoint is dropped. Run folders that cannot be
read (no args.json, or one of another tool) are skipped and listed.
"""

import dataclasses
import datetime
import functools
import importlib.metadata
import json
import os
import re
import shlex
import shutil
import struct
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tyro
from google.protobuf.message import DecodeError
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter
from tensorboardX.proto.event_pb2 import Event, SessionLog

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))  # fm_irl.py's task table, for --fm-irl
METRIC = "eval/success"

# The default task of each OGBench environment: "<env>-singletask-v0" means "<env>-singletask-task<N>-v0".
DEFAULT_TASKS = {
    "antmaze-large-navigate": 1,
    "antmaze-giant-navigate": 1,
    "humanoidmaze-medium-navigate": 1,
    "humanoidmaze-large-navigate": 1,
    "antsoccer-arena-navigate": 4,
    "cube-single-play": 2,
    "cube-double-play": 2,
    "scene-play": 2,
    "puzzle-3x3-play": 4,
    "puzzle-4x4-play": 4,
}

# Where each reference number comes from and how far it can be trusted. Neither paper's own tables could be read.
SOURCES = {
    "fql-paper": "FQL paper (Park et al., ICML 2025), default task, 1M offline steps, 8 seeds, mean ± std, as copied "
    "by third parties from the paper; medium trust.",
    "fino-notes": "FINO paper (Shin et al., ICLR 2026), 1M offline + 500k online steps, 10 seeds, mean ± 95% CI, as "
    "quoted by machine-written paper notes; an average over the environment's 5 tasks, not the default task alone; "
    "low trust (unverified, the notes contradict each other on antmaze-giant).",
}

# Success rate (%) reported for (method, setting, task): (paper, official code, source). The official-code column
# is for numbers measured by running the authors' code on the same protocol; there are none yet.
REFERENCES = {
    ("fql", "offline", "antmaze-large-navigate-singletask-task1-v0"): ("80 ± 8", None, "fql-paper"),
    ("fql", "offline", "humanoidmaze-medium-navigate-singletask-task1-v0"): ("19 ± 12", None, "fql-paper"),
    ("fql", "offline", "humanoidmaze-large-navigate-singletask-task1-v0"): ("7 ± 6", None, "fql-paper"),
    ("fql", "offline", "antsoccer-arena-navigate-singletask-task4-v0"): ("39 ± 6", None, "fql-paper"),
    ("fql", "offline", "cube-single-play-singletask-task2-v0"): ("97 ± 2", None, "fql-paper"),
    ("fql", "offline", "cube-double-play-singletask-task2-v0"): ("36 ± 6", None, "fql-paper"),
    ("fql", "offline", "scene-play-singletask-task2-v0"): ("76 ± 9", None, "fql-paper"),
    ("fql", "offline", "puzzle-3x3-play-singletask-task4-v0"): ("16 ± 5", None, "fql-paper"),
    ("fql", "offline", "puzzle-4x4-play-singletask-task4-v0"): ("11 ± 3", None, "fql-paper"),
    ("fino", "offline-to-online", "humanoidmaze-medium-navigate-singletask-task1-v0"): (
        "? → 97 ± 1",
        None,
        "fino-notes",
    ),
    ("fino", "offline-to-online", "antmaze-giant-navigate-singletask-task1-v0"): (
        "0 ± 1 → 99 ± 1, or 79",
        None,
        "fino-notes",
    ),
    ("fino", "offline-to-online", "puzzle-4x4-play-singletask-task4-v0"): ("? → 56 ± 5", None, "fino-notes"),
}


# The paper's FM-IRL numbers, by paper task: final (mean, std over seeds, at the official budget) from the README
# table, and (environment steps, value) points read off its learning curves.
PAPER_FINAL = {
    "Hopper": (3358.95, 72.31, 25_000_000),
    "Walker2d": (4164.24, 62.19, 8_000_000),
    "Maze2d": (0.8731, 0.0331, 5_000_000),
    "Fetch-pick": (0.9984, 0.0023, 10_000_000),
    "Ant-goal": (0.8225, 0.0284, 5_000_000),
}
# make_dataset.py's default action noise of the demonstrations (the paper's locomotion data is an expert's).
DEFAULT_DEMO_NOISE = {"Maze2d": "0.5", "Fetch-pick": "0.1", "Ant-goal": "0.2", "Hopper": "expert", "Walker2d": "expert"}
PAPER_CURVE = {
    # Hopper: FM-IRL's line (not DRAIL's) read off the README figure at 0.5M, 1M and 1.5M (docs/fm_irl.md, Results)
    "Hopper": [(500_000, 600.0), (1_000_000, 1220.0), (1_500_000, 1630.0), (25_000_000, 3300.0)],
    "Walker2d": [(4_500_000, 3000.0), (8_000_000, 4100.0)],
    "Maze2d": [(5_000_000, 0.87)],
    "Fetch-pick": [(2_300_000, 0.0), (3_500_000, 0.95), (10_000_000, 1.0)],
    "Ant-goal": [(1_200_000, 0.0), (5_000_000, 0.82)],
}


@dataclass
class Args:
    """Summarise benchmark runs (runs/ by default) into markdown tables and learning curves, with their provenance."""

    runs_dir: str = "runs"
    """folder holding one sub-folder per run (args.json and event files), relative to the repository root"""
    out_dir: str | None = None
    """folder for README.md, the tables and curves/, where benchmark/suite.py writes its commands.txt; default:
    benchmark/results/<today>, with -rldt or -fm_irl for those summaries"""
    dataset_note: str = "not recorded"
    """where the datasets came from, e.g. "regenerated, 200 episodes" or "downloaded OGBench datasets" """
    hardware: str | None = None
    """hardware the runs used; None: this machine's CPU and GPUs"""
    methods: list[str] | None = None
    """exp_names to summarise (e.g. fql fino); None: every run that logged `eval/success` (with --fm-irl: every
    exp_name that starts with fm_irl)"""
    rldt: bool = False
    """summarise rldt.py fine-tuning runs instead (return or success before and after fine-tuning; see summarize_rldt)"""
    fm_irl: bool = False
    """summarise fm_irl.py runs instead (the paper's training metric beside its numbers; see summarize_fm_irl)"""


@dataclass
class Run:
    path: Path
    method: str
    setting: str  # "offline" or "offline-to-online"
    env_id: str
    seed: int
    offline_steps: int
    online_steps: int
    eval_episodes: int
    steps: np.ndarray  # global steps of the evaluations
    success: np.ndarray  # success rate in % at those steps
    start_time: float  # wall time of the first event
    minutes: float  # wall-clock from the first to the last event, JIT compilation included


@dataclass
class Row:
    method: str
    setting: str
    env_id: str
    offline_steps: int
    online_steps: int
    runs: list[Run]  # the finished runs, one per seed
    unfinished: int  # runs behind the others of their group (still running or stopped), left out of the numbers
    final: list[tuple[float, float]]  # (mean, std) over seeds per phase: [offline] or [offline, online]
    last3: list[tuple[float, float]]


def canonical_env_id(env_id: str) -> str:
    """Name the task explicitly ("<env>-singletask-task<N>-v0"), as the scripts do, if a run used the short form."""
    match = re.fullmatch(r"(.+)-singletask-v0", env_id)
    return f"{match[1]}-singletask-task{DEFAULT_TASKS[match[1]]}-v0" if match and match[1] in DEFAULT_TASKS else env_id


def read_events(path: Path) -> Iterator[Event]:
    """Events of one file. TFRecord framing: uint64 length, uint32 CRC, payload, uint32 CRC (CRCs are not checked)."""
    with open(path, "rb") as f:
        while len(header := f.read(12)) == 12:
            (length,) = struct.unpack("<Q", header[:8])
            payload = f.read(length)
            if len(payload) < length or len(f.read(4)) < 4:
                return  # a truncated last record: the run is still writing
            try:
                yield Event.FromString(payload)
            except DecodeError:
                return  # a damaged record (a copy cut short, a full disk): keep what came before it


def load_run(run_dir: Path) -> Run | None:
    """A run from its args.json and event files; None if it has not logged an evaluation yet. The event files are read
    in order (their names start with the time); one that starts with a purge at step P (a resumed run) drops what
    the earlier files logged at steps >= P, as TensorBoard does."""
    args = json.loads((run_dir / "args.json").read_text())
    offline_steps, online_steps = args.get("offline_steps", 0), args.get("online_steps", 0)
    success = {}  # step -> value; a step logged twice keeps the last value
    wall_times = []
    for path in sorted(run_dir.glob("events.out.tfevents.*")):
        for event in read_events(path):
            wall_times.append(event.wall_time)
            if event.HasField("session_log") and event.session_log.status == SessionLog.START:
                success = {step: value for step, value in success.items() if step < event.step}
            for value in event.summary.value:
                if value.tag == METRIC and value.HasField("simple_value"):
                    success[event.step] = value.simple_value
    if not success:
        return None
    steps = np.array(sorted(success))
    return Run(
        path=run_dir,
        method=args["exp_name"],
        setting="offline-to-online" if online_steps > 0 else "offline",
        env_id=canonical_env_id(args["env_id"]),
        seed=args["seed"],
        offline_steps=offline_steps,
        online_steps=online_steps,
        eval_episodes=args["eval_episodes"],
        steps=steps,
        success=100.0 * np.array([success[step] for step in steps]),
        start_time=min(wall_times),
        minutes=(max(wall_times) - min(wall_times)) / 60,
    )


def summarize_group(runs: list[Run]) -> Row:
    """Mean ± std over seeds of the final and last-3 evaluations of each phase, for runs that reached the end."""
    last_step = max(run.steps[-1] for run in runs)
    finished = [run for run in runs if run.steps[-1] == last_step]
    first = finished[0]
    phases = ["offline", "online"] if first.online_steps > 0 else ["offline"]
    final, last3 = [], []
    for phase in phases:
        scores = []
        for run in finished:
            in_phase = run.steps <= run.offline_steps if phase == "offline" else run.steps > run.offline_steps
            scores.append((run.success[in_phase][-1], run.success[in_phase][-3:].mean()))
        scores = np.array(scores)
        final.append((scores[:, 0].mean(), scores[:, 0].std()))
        last3.append((scores[:, 1].mean(), scores[:, 1].std()))
    return Row(
        method=first.method,
        setting=first.setting,
        env_id=first.env_id,
        offline_steps=first.offline_steps,
        online_steps=first.online_steps,
        runs=finished,
        unfinished=len(runs) - len(finished),
        final=final,
        last3=last3,
    )


def collect_rows(runs_dir: Path, methods: list[str] | None) -> tuple[list[Row], list[str]]:
    """Group the runs under runs_dir into table rows; also say which run folders were skipped and why."""
    groups, skipped = defaultdict(dict), []
    runs = []
    for args_path in sorted(runs_dir.glob("*/args.json")):
        try:
            if methods is not None and json.loads(args_path.read_text())["exp_name"] not in methods:
                continue
            run = load_run(args_path.parent)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:  # unreadable, or of another tool
            skipped.append(
                f"{args_path.parent.name}: args.json unreadable or incomplete ({type(error).__name__}: {error})"
            )
            continue
        if run is None:
            skipped.append(f"{args_path.parent.name}: no `{METRIC}` logged yet")
        else:
            runs.append(run)
    for run in sorted(runs, key=lambda run: run.start_time):
        key = (run.method, run.setting, run.env_id, run.offline_steps, run.online_steps)
        if run.seed in groups[key]:
            skipped.append(f"{groups[key][run.seed].path.name}: superseded by the later run {run.path.name}")
        groups[key][run.seed] = run
    rows = [summarize_group(list(group.values())) for _, group in sorted(groups.items())]
    return rows, skipped


def format_steps(n: int) -> str:
    for unit, size in (("M", 1_000_000), ("k", 1_000)):
        if n >= size:
            return f"{n / size:g}{unit}"
    return str(n)


def format_budget(row: Row) -> str:
    """Offline gradient steps, plus online env steps for offline-to-online rows: "1M", "1M + 500k"."""
    return format_steps(row.offline_steps) + (f" + {format_steps(row.online_steps)}" if row.online_steps else "")


def format_scores(scores: list[tuple[float, float]]) -> str:
    return " → ".join(f"{mean:.1f} ± {std:.1f}" for mean, std in scores)


def format_table(rows: list[Row]) -> str:
    """One markdown table for rows of one (method, setting), followed by the sources of its reference numbers."""
    lines = [
        "| task | steps | seeds | episodes | final (%) | last 3 (%) | paper (%) | official code (%) | minutes/run |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    sources = []
    for row in rows:
        seeds = f"{len(row.runs)}" + (f" (+{row.unfinished} unfinished)" if row.unfinished else "")
        paper, official, source = REFERENCES.get((row.method, row.setting, row.env_id), (None, None, None))
        if source is not None and source not in sources:
            sources.append(source)
        cells = [
            f"`{row.env_id}`",
            format_budget(row),
            seeds,
            str(row.runs[0].eval_episodes),
            format_scores(row.final),
            format_scores(row.last3),
            f"{paper} [{source}]" if paper else "—",
            f"{official} [{source}]" if official else "—",
            f"{np.mean([run.minutes for run in row.runs]):.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [""] + [f"- [{source}] {SOURCES[source]}" for source in sources]
    return "\n".join(lines).rstrip() + "\n"


def plot_curves(rows: list[Row], out_dir: Path) -> list[Path]:
    """One PNG per task: success over steps, mean over seeds with a ±std band, one line per method and setting."""
    by_task = defaultdict(list)
    for row in rows:
        by_task[row.env_id].append(row)
    paths = []
    for env_id, task_rows in sorted(by_task.items()):
        fig = Figure(figsize=(6, 4), layout="tight")
        ax = fig.subplots()
        for row in task_rows:
            steps = sorted(set.intersection(*(set(run.steps.tolist()) for run in row.runs)))
            curves = np.array([[run.success[run.steps == step][0] for step in steps] for run in row.runs])
            label = f"{row.method} {row.setting}, {format_budget(row)} steps ({len(row.runs)} seeds)"
            line = plot_band(ax, steps, curves, label)
            if row.online_steps > 0:
                ax.axvline(row.offline_steps, color=line.get_color(), linestyle=":")
        ax.set(
            title=env_id,
            xlabel="step (gradient steps offline, then env steps online)",
            ylabel="success (%)",
            ylim=(0, 100),
        )
        ax.legend()
        paths.append(save_figure(fig, out_dir, env_id))
    return paths


def plot_band(ax, steps, curves: np.ndarray, label: str, **style):
    """The mean over seeds (the rows of `curves`) with a ±std band around it; returns the line."""
    mean, std = curves.mean(axis=0), curves.std(axis=0)
    (line,) = ax.plot(steps, mean, label=label, **style)
    ax.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    return line


def save_figure(fig: Figure, out_dir: Path, name: str) -> Path:
    path = out_dir / "curves" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def describe_hardware() -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    models = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
    cpu = f"{models[0] if models else 'CPU'} ({os.cpu_count()} cores)"
    gpus = []
    if shutil.which("nvidia-smi"):
        query = ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"]
        gpus = subprocess.run(query, capture_output=True, text=True).stdout.split("\n")
    names = sorted({name for name in gpus if name})
    gpu = ", ".join(f"{gpus.count(name)}x {name}" for name in names) or "no GPU"
    return f"{cpu}, {gpu}"


def describe_software() -> str:
    versions = []
    for package in ("jax", "flax", "optax", "ogbench", "mujoco"):
        try:
            versions.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    return ", ".join(versions)


def write_readme(args: Args, out_dir: Path, title: str, facts, results, curves: list[Path], extra=()) -> None:
    """README.md of a summary: how it was made and on what, the suite's commands, the tables, the curves, `extra`."""
    commands_path = out_dir / "commands.txt"
    commands = (
        commands_path.read_text() if commands_path.exists() else "(no commands.txt: benchmark/suite.py writes it)"
    )
    command = ["python", "benchmark/summarize.py"] + ["--rldt"] * args.rldt + ["--fm-irl"] * args.fm_irl
    command += ["--runs-dir", args.runs_dir, "--out-dir", args.out_dir, "--dataset-note", args.dataset_note]
    command += ["--hardware", args.hardware] if args.hardware else []
    command += ["--methods", *args.methods] if args.methods else []
    readme = [
        f"# {title}",
        "",
        f"- Summary made on {datetime.date.today()} by `{shlex.join(command)}`.",
        f"- Hardware: {args.hardware or describe_hardware() + ' (the machine this summary was made on)'}.",
        f"- Software: {describe_software()}.",
        *facts,
        "",
        "## Commands",
        "",
        "```",
        commands.rstrip(),
        "```",
        "",
        "## Results",
        "",
        *results,
        "## Learning curves",
        "",
        *(f"![{path.stem}](curves/{path.name})\n" for path in curves),
        *extra,
    ]
    (out_dir / "README.md").write_text("\n".join(readme) + "\n")


# Every flag's rule, checked before reading anything: (flags, test, what is accepted). None: the default.
FLAG_RULES = [
    (
        "runs_dir",
        lambda v: (REPO_ROOT / os.path.expanduser(v)).is_dir(),
        "no such folder (relative to the repository root); give the folder of the runs",
    ),
    (
        "out_dir",
        lambda v: not (REPO_ROOT / os.path.expanduser(v)).is_file(),
        "is a file; give a folder (made if missing)",
    ),
    ("methods", lambda v: len(v) > 0, "give one or more exp_names (e.g. fql fino), or leave out --methods for all"),
    ("dataset_note hardware", lambda v: bool(v.strip()), "must not be empty; describe it, or leave the flag out"),
]


def fail(flag: str, value, why: str):
    """A bad flag value: one line on stderr, exit status 2."""
    print(f"error: --{flag} {value}: {why}", file=sys.stderr)
    sys.exit(2)


def shown(value) -> str:
    """A flag's value as given: list items joined ((none) if empty), '' for a blank text."""
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value)) or "(none)"
    return "''" if isinstance(value, str) and not value.strip() else str(value)


def check_args(args: Args) -> Args:
    """Every flag, before reading anything; returns the Args with the default --out-dir of the summary filled in."""
    if args.rldt and args.fm_irl:
        fail("fm-irl", "(with --rldt)", "give one of them, or neither for fql.py and fino.py runs")
    if args.out_dir is None:
        suffix = "-rldt" if args.rldt else "-fm_irl" if args.fm_irl else ""
        args = dataclasses.replace(args, out_dir=f"benchmark/results/{datetime.date.today().isoformat()}{suffix}")
    for names, ok, why in FLAG_RULES:
        for name in names.split():
            value = getattr(args, name)
            if value is not None and not ok(value):
                fail(name.replace("_", "-"), shown(value), why)
    return args


def main(args: Args) -> None:
    args = check_args(args)
    runs_dir = REPO_ROOT / os.path.expanduser(args.runs_dir)
    out_dir = REPO_ROOT / os.path.expanduser(args.out_dir)
    rows, skipped = collect_rows(runs_dir, args.methods)
    if not rows:
        raise SystemExit(
            f"error: no run under {runs_dir} has logged `{METRIC}` yet"
            + "".join(f"\n  skipped {reason}" for reason in skipped)
            + "\n  Make runs with: python benchmark/suite.py --method fql-offline --profile quick"
        )
    out_dir.mkdir(parents=True, exist_ok=True)

    tables = defaultdict(list)  # (method, setting) -> rows
    for row in rows:
        tables[row.method, row.setting].append(row)
    sections = defaultdict(list)  # method -> one markdown section per setting
    for (method, setting), table_rows in sorted(tables.items()):
        sections[method].append(f"### {method}, {setting}\n\n{format_table(table_rows)}")
    for method, method_sections in sections.items():
        (out_dir / f"{method}.md").write_text("\n".join(method_sections))
    curves = plot_curves(rows, out_dir)

    all_runs = [run for row in rows for run in row.runs]
    first_day, last_day = (datetime.date.fromtimestamp(f(run.start_time for run in all_runs)) for f in (min, max))
    facts = [
        f"- Runs: {len(all_runs)} finished, from `{args.runs_dir}/`, started between {first_day} and {last_day}.",
        f"- Datasets: {args.dataset_note}. The reference numbers come from the published OGBench datasets; a "
        "regenerated dataset is statistically equivalent to the published one, not identical.",
        f"- Metric: `{METRIC}` in %, mean ± std over seeds (numpy std, ddof=0). *final*: the last evaluation of a "
        "phase; *last 3*: the mean of its last three evaluations. Offline-to-online rows read offline → online. "
        "*episodes*: evaluation episodes per evaluation. *minutes/run*: wall-clock from the first to the last "
        "logged event of a run, JIT compilation included. Runs behind the other seeds of their group are counted "
        "as unfinished and left out of the numbers.",
    ]
    results = [section for method_sections in sections.values() for section in method_sections]
    skipped_lines = ["", "## Skipped run folders", "", *(f"- {reason}" for reason in skipped)] if skipped else []
    write_readme(args, out_dir, "Benchmark results", facts, results, curves, skipped_lines)
    print(f"{len(rows)} table rows from {len(all_runs)} runs written to {out_dir}")


# rldt: fine-tuning runs of rldt.py and its ablations, one row per (task, method). Locomotion has no success rate, so
# the metric is eval/episodic_return there and eval/success on manipulation; "before" is the evaluation of the
# pretrained policy, logged before the first iteration. A block of its own, reached with --rldt.
def load_rldt_run(run_dir: Path) -> dict | None:
    args = json.loads((run_dir / "args.json").read_text())
    values = defaultdict(dict)  # tag -> {step: value}
    wall_times = []
    for path in sorted(run_dir.glob("events.out.tfevents.*")):
        for event in read_events(path):
            wall_times.append(event.wall_time)
            for value in event.summary.value:
                if value.tag.startswith("eval/") and value.HasField("simple_value"):
                    values[value.tag][event.step] = value.simple_value
    metric = "eval/success" if "eval/success" in values else "eval/episodic_return"
    if metric not in values or args.get("iterations", 0) == 0:
        return None
    steps = np.array(sorted(values[metric]))
    scale = 100.0 if metric == "eval/success" else 1.0
    curve = scale * np.array([values[metric][step] for step in steps])
    per_iteration = args["num_envs"] * args["steps_per_iteration"] * args["horizon"]
    unchanged = (steps - steps[0]) // per_iteration <= args.get("critic_warmup_iterations", 0)
    return dict(
        path=run_dir,
        args=args,
        metric=metric,
        steps=steps - steps[0],  # environment steps of fine-tuning
        per_iteration=per_iteration,
        actor_start=args.get("critic_warmup_iterations", 0) * per_iteration,  # env steps before the first actor step
        curve=curve,
        pretrained=curve[unchanged].mean(),  # every evaluation before the first actor update: the same policy
        start_time=min(wall_times),
        minutes=(max(wall_times) - min(wall_times)) / 60,
    )


def summarize_rldt(args: Args) -> None:
    args = check_args(args)
    runs_dir, out_dir = REPO_ROOT / args.runs_dir, REPO_ROOT / args.out_dir
    groups = defaultdict(dict)  # (env_id, method, iterations) -> {seed: run}; later runs supersede earlier ones
    for args_path in sorted(runs_dir.glob("*/args.json")):
        try:
            saved = json.loads(args_path.read_text())
            if args.methods is not None and saved["exp_name"] not in args.methods:
                continue
            run = load_rldt_run(args_path.parent)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:  # unreadable, or of another tool
            print(f"skipped {args_path.parent.name}: args.json unreadable or incomplete ({type(error).__name__})")
            continue
        if run is not None:
            key = (saved["env_id"], saved["exp_name"], saved["iterations"])
            if (
                run["args"]["seed"] not in groups[key]
                or run["start_time"] > groups[key][run["args"]["seed"]]["start_time"]
            ):
                groups[key][run["args"]["seed"]] = run
    if not groups:
        raise SystemExit(f"error: no rldt.py fine-tuning run under {runs_dir} has logged an evaluation yet")
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = [
        "| task | method | metric | seeds | iterations x env steps | before fine-tuning | before, all warm-up evaluations "
        "| final | last 3 | best | minutes/run |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    by_task = defaultdict(list)
    for (env_id, method, iterations), seeds in sorted(groups.items()):
        runs = [run for run in seeds.values() if len(run["curve"]) == max(len(r["curve"]) for r in seeds.values())]
        curves = np.array([run["curve"] for run in runs])
        last3 = curves[:, 1:][:, -3:].mean(axis=1)  # the last three evaluations after fine-tuning began
        pretrained = np.array([run["pretrained"] for run in runs])
        metric = "success (%)" if runs[0]["metric"] == "eval/success" else "return"
        cells = [
            f"`{env_id}`",
            method,
            metric,
            str(len(runs)),
            f"{iterations} x {format_steps(runs[0]['per_iteration'])}",
            f"{curves[:, 0].mean():.1f} ± {curves[:, 0].std():.1f}",
            f"{pretrained.mean():.1f} ± {pretrained.std():.1f}",
            f"{curves[:, -1].mean():.1f} ± {curves[:, -1].std():.1f}",
            f"{last3.mean():.1f} ± {last3.std():.1f}",
            f"{curves.max(axis=1).mean():.1f} ± {curves.max(axis=1).std():.1f}",
            f"{np.mean([run['minutes'] for run in runs]):.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
        by_task[env_id].append((method, runs[0]["steps"], curves, metric, runs[0]["actor_start"]))
    table = "\n".join(lines) + "\n"
    (out_dir / "rldt.md").write_text("### rldt, fine-tuning\n\n" + table)
    curve_paths = []
    for env_id, rows in sorted(by_task.items()):
        fig = Figure(figsize=(8, 4), layout="tight")
        ax = fig.subplots()
        for start in sorted({row[4] for row in rows}):
            ax.axvline(start, color="gray", linestyle="--", linewidth=1, label=f"actor updates begin ({start:,} steps)")
        for method, steps, curves, _, _ in rows:
            plot_band(ax, steps, curves, f"{method} ({len(curves)} seeds)", marker="o")
        ax.set(title=env_id, xlabel="environment steps of fine-tuning (0: the pretrained policy)", ylabel=rows[0][3])
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))  # 150k, not 150000 (long labels collide)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")  # beside the curves, not on them
        curve_paths.append(save_figure(fig, out_dir, f"rldt-{env_id}"))
    facts = [
        f"- Datasets: {args.dataset_note}.",
        "- Metric: `eval/success` in % (manipulation) or `eval/episodic_return` (locomotion), mean ± std over seeds "
        "(numpy std, ddof=0). *before fine-tuning*: the pretrained policy (all methods start from the same one); "
        "*before, all warm-up evaluations*: the mean of each run's evaluations up to the last critic-only iteration, "
        "where the policy is still the pretrained one and only the evaluation episodes differ; "
        "*final*: the last evaluation; *last 3*: the mean of each run's last three evaluations after the pretrained "
        "one; *best*: the best evaluation of each run, averaged. *minutes/run*: wall-clock "
        "from the first to the last logged event, JIT compilation included. `rldt-delta` and `rldt-temp0` are the "
        "ablations `--svgd-type delta` and `--svgd-temp 0`.",
    ]
    write_readme(args, out_dir, "Benchmark results: rldt.py", facts, [table], curve_paths)
    print(f"{len(lines) - 2} rldt table rows written to {out_dir}")


# fm_irl: runs of fm_irl.py and its ablations (exp_names starting with fm_irl), grouped by variant, task, demonstration
# noise and budget. The metric is the paper's: the mean over the last 100 training episodes (`charts/success` on the
# goal-reaching tasks, `charts/episodic_return` on locomotion), logged every iteration; the separate evaluation
# (`eval/*`, stochastic student) is given beside it. The paper's curve values (read off the README's figure,
# approximate) are shown where the budgets meet, and its final numbers (README table, official budgets) for scale.
# A block of its own, reached with --fm-irl.
@dataclass
class FmIrlRun:
    path: Path
    variant: str
    env_id: str
    paper_task: str
    seed: int
    demo_noise: float | None
    budget: int
    last_step: int  # of the whole run, once finished
    metric: str  # "success" or "episodic_return"
    steps: np.ndarray
    values: np.ndarray  # the training metric at `steps`
    eval_final: float | None
    minutes: float


def load_fm_irl_run(run_dir: Path) -> FmIrlRun | None:
    import fm_irl  # its task table: which paper task a run stands in for, and its metric

    args = json.loads((run_dir / "args.json").read_text())
    task = fm_irl.resolve_task(args["env_id"])
    metric = "episodic_return" if task.locomotion else "success"
    curve, evals, wall_times = {}, {}, []
    for path in sorted(run_dir.glob("events.out.tfevents.*")):
        for event in read_events(path):
            wall_times.append(event.wall_time)
            for value in event.summary.value:
                if value.tag == f"charts/{metric}":
                    curve[event.step] = value.simple_value
                elif value.tag == f"eval/{metric}":
                    evals[event.step] = value.simple_value
    if not curve:
        return None
    steps = np.array(sorted(curve))
    per_iteration = args["num_steps"] * args["num_envs"]
    return FmIrlRun(
        path=run_dir,
        variant=args["exp_name"],
        env_id=args["env_id"],
        paper_task=task.paper_task,
        seed=args["seed"],
        demo_noise=args.get("demo_noise"),
        budget=args["total_timesteps"],
        last_step=args["total_timesteps"] // per_iteration * per_iteration,
        metric=metric,
        steps=steps,
        values=np.array([curve[step] for step in steps]),
        eval_final=evals[max(evals)] if evals else None,
        minutes=(max(wall_times) - min(wall_times)) / 60,
    )


def fm_irl_groups(runs_dir: Path, methods: list[str] | None) -> dict:
    """{(env_id, variant, demo noise, budget): [run per seed]}; a later run of a seed replaces an earlier one."""
    groups = defaultdict(dict)
    for args_path in sorted(runs_dir.glob("*/args.json")):
        try:
            exp_name = json.loads(args_path.read_text()).get("exp_name", "")
            if not (exp_name in methods if methods is not None else exp_name.startswith("fm_irl")):
                continue
            run = load_fm_irl_run(args_path.parent)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:  # unreadable, or of another tool
            print(f"skipped {args_path.parent.name}: args.json unreadable or incomplete ({type(error).__name__})")
            continue
        if run is not None:
            groups[run.env_id, run.variant, run.demo_noise, run.budget][run.seed] = run
    order = lambda key: (key[0], key[1] != "fm_irl", key[1], key[2] or 0.0, key[3])  # noqa: E731
    return {key: list(groups[key].values()) for key in sorted(groups, key=order)}


def format_fm_irl(value: float, metric: str) -> str:
    return f"{value:.0f}" if metric == "episodic_return" else f"{value:.2f}"


def fm_irl_table(groups: dict) -> str:
    lines = [
        "| task (paper task) | variant | demo noise | steps | seeds | final, training (mean ± std) | final, eval | "
        "paper curve where budgets meet | paper final | minutes/run |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (env_id, variant, noise, _), runs in groups.items():
        last_step = max(run.steps[-1] for run in runs)
        finished = [run for run in runs if run.steps[-1] == last_step]
        finals = np.array([run.values[-1] for run in finished])
        evals = [run.eval_final for run in finished if run.eval_final is not None]
        run = finished[0]
        fmt = functools.partial(format_fm_irl, metric=run.metric)
        # a run ends on a whole iteration, up to 1% short of a round budget such as 500k (499,712 steps)
        points = [(step, value) for step, value in PAPER_CURVE[run.paper_task] if step <= 1.01 * run.budget]
        paper_at_budget = f"{fmt(points[-1][1])} at {format_steps(points[-1][0])}" if points else "— (beyond)"
        mean, std, budget = PAPER_FINAL[run.paper_task]
        unfinished = f" (+{len(runs) - len(finished)} unfinished)" if len(finished) < len(runs) else ""
        demo_noise = f"{DEFAULT_DEMO_NOISE[run.paper_task]} (default)" if noise is None else f"{noise:g}"
        running = "" if last_step == runs[0].last_step else " (running)"
        cells = [
            f"`{env_id}` ({run.paper_task})",
            variant,
            demo_noise,
            f"{format_steps(last_step)}{running}",
            f"{len(finished)}{unfinished}",
            f"{fmt(finals.mean())} ± {fmt(finals.std())}",
            fmt(np.mean(evals)) if evals else "—",
            paper_at_budget,
            f"{fmt(mean)} ± {fmt(std)} at {format_steps(budget)}",
            f"{np.mean([r.minutes for r in finished]):.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def fm_irl_curves(groups: dict, out_dir: Path) -> list[Path]:
    """One PNG per task: the training metric of each variant (mean ± std over seeds), and the paper's curve points."""
    by_task = defaultdict(list)
    for key, runs in groups.items():
        by_task[key[0]].append((key, runs))
    paths = []
    for env_id, entries in by_task.items():
        fig = Figure(figsize=(6.5, 4), layout="tight")
        ax = fig.subplots()
        for (_, variant, noise, _), runs in entries:
            steps = sorted(set.intersection(*(set(run.steps.tolist()) for run in runs)))
            curves = np.array([[run.values[run.steps == step][0] for step in steps] for run in runs])
            noise_label = f", demo noise {noise:g}" if noise is not None else ""
            plot_band(ax, steps, curves, f"{variant}{noise_label} ({len(runs)} seeds)")
        run = entries[0][1][0]
        budget = max(key[3] for key, _ in entries)
        points = [(s, v) for s, v in PAPER_CURVE[run.paper_task] if s <= 1.01 * budget]
        if points:
            ax.plot(*zip(*points, strict=True), "k*", markersize=10, label="paper's FM-IRL curve (approx.)")
        ylabel = f"training {'return' if run.metric == 'episodic_return' else 'success'} (last 100 episodes)"
        ax.set(title=f"{env_id} (stand-in for {run.paper_task})", xlabel="environment steps", ylabel=ylabel)
        ax.legend(fontsize=7)
        paths.append(save_figure(fig, out_dir, env_id))
    return paths


def summarize_fm_irl(args: Args) -> None:
    args = check_args(args)
    runs_dir, out_dir = REPO_ROOT / args.runs_dir, REPO_ROOT / args.out_dir
    groups = fm_irl_groups(runs_dir, args.methods)
    if not groups:
        raise SystemExit(f"error: no fm_irl.py run under {runs_dir} has logged a training episode yet")
    out_dir.mkdir(parents=True, exist_ok=True)
    curves = fm_irl_curves(groups, out_dir)
    facts = [
        f"- Demonstrations: {args.dataset_note}.",
        "- Metric: the paper's, the mean over the last 100 training episodes (stochastic student) of the success "
        "(goal-reaching tasks) or the return (locomotion), at the last logged iteration; mean ± std over seeds "
        "(numpy std, ddof=0). *final, eval*: the last separate evaluation, mean over seeds. The paper's curve values "
        "are read off its figure (approximate) and given where its curve reaches our budget; its final numbers are "
        "at the official budgets with the official networks, beside ours for scale only. *minutes/run*: wall-clock "
        "from the first to the last event, compilation included.",
    ]
    write_readme(args, out_dir, "FM-IRL benchmark results", facts, [fm_irl_table(groups)], curves)
    print(f"{len(groups)} rows written to {out_dir}")


if __name__ == "__main__":
    cli_args = tyro.cli(Args)
    if cli_args.rldt:
        summarize_rldt(cli_args)
    elif cli_args.fm_irl:
        summarize_fm_irl(cli_args)
    else:
        main(cli_args)
