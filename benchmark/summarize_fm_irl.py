"""Summarise fm_irl.py runs into a markdown table and learning curves, beside the paper's numbers.

    python benchmark/summarize_fm_irl.py --out-dir benchmark/results/2025-06-01-quick-cpu-fm_irl

Runs are grouped by variant (exp_name: fm_irl and its ablations), task, demonstration noise and budget. The metric is
the paper's: the mean over the last 100 training episodes (`charts/success` on the goal-reaching tasks,
`charts/episodic_return` on locomotion), logged every iteration; the separate evaluation (`eval/*`, stochastic student)
is given beside it. The paper's curve values (read off the README's figure, approximate) are shown where the budgets
meet, and its final numbers (README table, official budgets) for scale.
"""

import datetime
import json
import shlex
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tyro
from matplotlib.figure import Figure

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
import fm_irl  # noqa: E402  (its task table)
from benchmark.summarize import describe_hardware, describe_software, fail, format_steps, read_events  # noqa: E402

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
    "Hopper": [(1_500_000, 2000.0), (25_000_000, 3300.0)],
    "Walker2d": [(4_500_000, 3000.0), (8_000_000, 4100.0)],
    "Maze2d": [(5_000_000, 0.87)],
    "Fetch-pick": [(2_300_000, 0.0), (3_500_000, 0.95), (10_000_000, 1.0)],
    "Ant-goal": [(1_200_000, 0.0), (5_000_000, 0.82)],
}


@dataclass
class Args:
    runs_dir: str = "runs"
    """folder holding one sub-folder per run, relative to the repository root"""
    out_dir: str = f"benchmark/results/{datetime.date.today().isoformat()}-fm_irl"
    """folder for README.md and curves/; benchmark/suite.py writes its commands.txt here"""
    dataset_note: str = "not recorded"
    """where the demonstrations came from"""
    hardware: str | None = None
    """hardware the runs used; None: this machine's"""


@dataclass
class Run:
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


def load_run(run_dir: Path) -> Run | None:
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
    return Run(
        path=run_dir,
        variant=args["exp_name"],
        env_id=args["env_id"],
        paper_task=task.paper_task,
        seed=args["seed"],
        demo_noise=args.get("demo_noise"),
        budget=args["total_timesteps"],
        last_step=args["total_timesteps"]
        // (args["num_steps"] * args["num_envs"])
        * args["num_steps"]
        * args["num_envs"],
        metric=metric,
        steps=steps,
        values=np.array([curve[step] for step in steps]),
        eval_final=evals[max(evals)] if evals else None,
        minutes=(max(wall_times) - min(wall_times)) / 60,
    )


def collect_groups(runs_dir: Path) -> dict:
    groups = defaultdict(dict)
    for args_path in sorted(runs_dir.glob("*/args.json")):
        try:
            if not json.loads(args_path.read_text()).get("exp_name", "").startswith("fm_irl"):
                continue
            run = load_run(args_path.parent)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:  # unreadable, or of another tool
            print(f"skipped {args_path.parent.name}: args.json unreadable or incomplete ({type(error).__name__})")
            continue
        if run is not None:  # a later run of the same seed replaces an earlier one
            groups[run.env_id, run.variant, run.demo_noise, run.budget][run.seed] = run
    order = lambda key: (key[0], key[1] != "fm_irl", key[1], key[2] or 0.0, key[3])  # noqa: E731
    return {key: list(groups[key].values()) for key in sorted(groups, key=order)}


def fmt(value: float, metric: str) -> str:
    return f"{value:.0f}" if metric == "episodic_return" else f"{value:.2f}"


def paper_cells(run: Run) -> tuple[str, str]:
    points = [(step, value) for step, value in PAPER_CURVE[run.paper_task] if step <= run.budget]
    at_budget = f"{fmt(points[-1][1], run.metric)} at {format_steps(points[-1][0])}" if points else "— (beyond)"
    mean, std, budget = PAPER_FINAL[run.paper_task]
    return at_budget, f"{fmt(mean, run.metric)} ± {fmt(std, run.metric)} at {format_steps(budget)}"


def table(groups: dict) -> str:
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
        paper_at_budget, paper_final = paper_cells(run)
        unfinished = f" (+{len(runs) - len(finished)} unfinished)" if len(finished) < len(runs) else ""
        demo_noise = f"{DEFAULT_DEMO_NOISE[run.paper_task]} (default)" if noise is None else f"{noise:g}"
        running = "" if last_step == runs[0].last_step else " (running)"
        cells = [
            f"`{env_id}` ({run.paper_task})",
            variant,
            demo_noise,
            f"{format_steps(last_step)}{running}",
            f"{len(finished)}{unfinished}",
            f"{fmt(finals.mean(), run.metric)} ± {fmt(finals.std(), run.metric)}",
            fmt(np.mean(evals), run.metric) if evals else "—",
            paper_at_budget,
            paper_final,
            f"{np.mean([r.minutes for r in finished]):.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(groups: dict, out_dir: Path) -> list[Path]:
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
            label = f"{variant}" + (f", demo noise {noise:g}" if noise is not None else "") + f" ({len(runs)} seeds)"
            (line,) = ax.plot(steps, curves.mean(0), label=label)
            mean, std = curves.mean(0), curves.std(0)
            ax.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.15)
        run = entries[0][1][0]
        budget = max(key[3] for key, _ in entries)
        points = [(s, v) for s, v in PAPER_CURVE[run.paper_task] if s <= budget]
        if points:
            ax.plot(*zip(*points, strict=True), "k*", markersize=10, label="paper's FM-IRL curve (approx.)")
        ylabel = f"training {'return' if run.metric == 'episodic_return' else 'success'} (last 100 episodes)"
        ax.set(title=f"{env_id} (stand-in for {run.paper_task})", xlabel="environment steps", ylabel=ylabel)
        ax.legend(fontsize=7)
        path = out_dir / "curves" / f"{env_id}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
        paths.append(path)
    return paths


def check_args(args: Args) -> None:
    """Every flag, before reading anything."""
    if not (REPO_ROOT / args.runs_dir).is_dir():
        fail("runs-dir", args.runs_dir, "no such folder (relative to the repository root); give the folder of the runs")
    if (REPO_ROOT / args.out_dir).is_file():
        fail("out-dir", args.out_dir, "is a file; give a folder (made if missing)")
    for flag in ("dataset_note", "hardware"):
        if getattr(args, flag) is not None and not getattr(args, flag).strip():
            fail(flag.replace("_", "-"), "''", "must not be empty; describe it, or leave the flag out")


def main(args: Args) -> None:
    check_args(args)
    out_dir = REPO_ROOT / args.out_dir
    groups = collect_groups(REPO_ROOT / args.runs_dir)
    if not groups:
        raise SystemExit(f"error: no fm_irl.py run under {REPO_ROOT / args.runs_dir} has logged a training episode yet")
    out_dir.mkdir(parents=True, exist_ok=True)
    curves = plot(groups, out_dir)
    commands_path = out_dir / "commands.txt"
    commands = commands_path.read_text() if commands_path.exists() else "(no commands.txt)"
    command = ["python", "benchmark/summarize_fm_irl.py", "--runs-dir", args.runs_dir, "--out-dir", args.out_dir]
    command += ["--dataset-note", args.dataset_note] + (["--hardware", args.hardware] if args.hardware else [])
    readme = [
        "# FM-IRL benchmark results",
        "",
        f"- Summary made on {datetime.date.today()} by `{shlex.join(command)}`.",
        f"- Hardware: {args.hardware or describe_hardware() + ' (the machine this summary was made on)'}.",
        f"- Software: {describe_software()}.",
        f"- Demonstrations: {args.dataset_note}.",
        "- Metric: the paper's, the mean over the last 100 training episodes (stochastic student) of the success "
        "(goal-reaching tasks) or the return (locomotion), at the last logged iteration; mean ± std over seeds "
        "(numpy std, ddof=0). *final, eval*: the last separate evaluation, mean over seeds. The paper's curve values "
        "are read off its figure (approximate) and given where its curve reaches our budget; its final numbers are "
        "at the official budgets with the official networks, beside ours for scale only. *minutes/run*: wall-clock "
        "from the first to the last event, compilation included.",
        "",
        "## Commands",
        "",
        "```",
        commands.rstrip(),
        "```",
        "",
        "## Results",
        "",
        table(groups),
        "## Learning curves",
        "",
        *(f"![{path.stem}](curves/{path.name})\n" for path in curves),
    ]
    (out_dir / "README.md").write_text("\n".join(readme) + "\n")
    print(f"{len(groups)} rows written to {out_dir}")


if __name__ == "__main__":
    main(tyro.cli(Args))
