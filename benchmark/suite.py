"""Run a method's benchmark suite: the paper's task list x seeds, one training run per (task, seed).

    python benchmark/suite.py --method fql-offline --dry-run          # print the 80 commands of the paper's table
    python benchmark/suite.py --method fino --profile quick           # a CPU-sized check of the same code path
    python benchmark/suite.py --method fql-o2o --backend slurm --slurm-partition gpu
    python benchmark/suite.py --method rldt --profile quick           # pretrain per task, then RLDT and its ablations

Per-task alpha, discount and q_agg are tables inside fql.py and fino.py and apply by default (fql.py also switches
to the offline-to-online alpha when --online-steps > 0), so every command passes only the task, the seed and the
profile's step counts and network sizes. Each run starts in the repository root and logs to runs/ as the scripts do;
the commands are appended to `<results-dir>/commands.txt`, where benchmark/summarize.py later writes its tables.
Every command is parsed and checked by its script's own Args before anything starts, so a bad task or extra flag
stops the suite at once rather than every job.

The paper profiles write a checkpoint every 50k steps; on the submitit backends a preempted or timed-out job is
requeued as `<script> --resume <its run folder>` and continues from its last checkpoint (so a paper-scale run also
finishes on allocations shorter than the run).

The quick profile reads small regenerated datasets from data/ (200 episodes, about ten minutes each on two cores):

    python benchmark/make_dataset.py --dataset cube-single-play-v0 --num-episodes 200 --out-dir data
    python benchmark/make_dataset.py --dataset scene-play-v0 --num-episodes 200 --out-dir data

RLDT (`--method rldt`) pretrains one policy per task, then fine-tunes RLDT, `--svgd-type delta` and `--svgd-temp 0`
from it; its quick profile adds a hopper sweep that takes the method apart (no field, the paper's 2-iteration critic
warm-up, `delta` at the field's scale).

FM-IRL (`--method fm-irl`) learns online from demonstrations; its quick profile runs FM-IRL and its reward-only
ablation on hopper (the Minari expert dataset) and pointmaze-medium, 25 hopper demonstrations instead of 1, and a
demonstration-noise sweep on pointmaze-medium, from demonstrations in data/ (seconds each), then
`python benchmark/summarize.py --fm-irl` writes the table and curves:

    for noise in 0.5 1 2; do python benchmark/make_dataset.py --demos pointmaze-medium-singletask-task1-v0 \
        --num-episodes 51 --noise $noise --out-dir data$([ $noise = 0.5 ] || echo /demos-noise$noise); done
"""

import contextlib
import datetime
import importlib
import io
import os
import queue
import shlex
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import submitit
import tyro

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))  # the method scripts, whose Args check the commands

# The paper's task lists: the default task of each OGBench environment (the scripts resolve the aliases).
# FQL offline (the official FQL README): every state-based OGBench environment.
FQL_OFFLINE_TASKS = [
    "antmaze-large",
    "antmaze-giant",
    "humanoidmaze-medium",
    "humanoidmaze-large",
    "antsoccer-arena",
    "cube-single",
    "cube-double",
    "scene",
    "puzzle-3x3",
    "puzzle-4x4",
]
# FQL offline-to-online (the official FQL README, its OGBench part).
FQL_O2O_TASKS = ["humanoidmaze-medium", "antsoccer-arena", "cube-double", "scene", "puzzle-4x4"]
# FINO (the official FINO README, its OGBench part).
FINO_TASKS = [
    "humanoidmaze-medium",
    "humanoidmaze-large",
    "antmaze-large",
    "antmaze-giant",
    "antsoccer-arena",
    "cube-double",
    "puzzle-4x4",
]


@dataclass(frozen=True)
class Profile:
    tasks: list[str]
    seeds: list[int]
    offline_steps: int
    online_steps: int
    eval_every: int
    eval_episodes: int
    hidden_dims: tuple[int, ...]  # of the actor and the critic networks
    dataset_dir: str | None = None  # None: the scripts' default, OGBench's own data folder
    extra_flags: tuple[str, ...] = ()  # method-specific numbers that scale with the budget


# Paper scale: a checkpoint every 50k steps, from which a requeued job resumes.
PAPER_FQL = dict(
    eval_every=100_000, eval_episodes=50, hidden_dims=(512, 512, 512, 512), extra_flags=("--checkpoint-every", "50000")
)
PAPER_FINO = dict(PAPER_FQL, eval_every=50_000)
# Quick: the same commands sized for a 2-core CPU, about an hour per method. Two manipulation tasks whose small
# regenerated datasets live in data/, 30k offline (+ 7.5k online) steps, 2x256 networks, 10 eval episodes, 2 seeds.
QUICK = dict(
    tasks=["cube-single", "scene"],
    seeds=[0, 1],
    offline_steps=30_000,
    eval_every=2_500,
    eval_episodes=10,
    hidden_dims=(256, 256),
    dataset_dir="data",
)
SUITES = {  # method: (script, {profile: Profile})
    "fql-offline": (
        "fql.py",
        {
            # 1M gradient steps, evaluated every 100k with 50 episodes (official defaults), 8 seeds
            "paper": Profile(
                tasks=FQL_OFFLINE_TASKS, seeds=list(range(8)), offline_steps=1_000_000, online_steps=0, **PAPER_FQL
            ),
            "quick": Profile(online_steps=0, **QUICK),
        },
    ),
    "fql-o2o": (
        "fql.py",
        {
            # 1M offline + 1M online steps
            "paper": Profile(
                tasks=FQL_O2O_TASKS, seeds=list(range(8)), offline_steps=1_000_000, online_steps=1_000_000, **PAPER_FQL
            ),
            "quick": Profile(online_steps=7_500, **QUICK),
        },
    ),
    "fino": (
        "fino.py",
        {
            # 1M offline + 500k online steps, evaluated every 50k, 10 seeds (the FINO paper)
            "paper": Profile(
                tasks=FINO_TASKS, seeds=list(range(10)), offline_steps=1_000_000, online_steps=500_000, **PAPER_FINO
            ),
            # FINO re-estimates the entropy 10 times in 500k online steps; keep 3 updates in the quick 7.5k.
            "quick": Profile(online_steps=7_500, extra_flags=("--entropy-every", "2500"), **QUICK),
        },
    ),
}


# FM-IRL (fm_irl.py): online imitation from demonstrations, so its suites list whole runs: the tasks, the two ablations
# (as exp_names) and, in the quick profile, a sweep over the noise of the demonstrations. Per-task settings are a table
# inside fm_irl.py; a profile only passes the budget, the evaluation schedule and (quick) smaller networks.
FM_IRL_VARIANTS = {
    "fm_irl": [],
    "fm_irl_no_regularizer": ["--regularizer-coef", "0"],  # the teacher as reward only (DRAIL with flow matching)
    "fm_irl_no_disc_bc": ["--disc-bc-coef", "0"],  # no flow-matching BC term in the teacher loss
}


@dataclass(frozen=True)
class Sweep:
    """Extra runs of one task beside a profile's variants (FM-IRL and RLDT profiles)."""

    task: str
    exp_name: str  # the run name that keeps its runs apart from the method's own in the summary
    flags: tuple[str, ...]  # what the sweep changes in the method's command
    seeds: tuple[int, ...]


@dataclass(frozen=True)
class FmIrlProfile:
    tasks: dict[str, list[str]]  # task -> its flags (budget, evaluation, demonstrations)
    variants: list[str]
    seeds: list[int]
    flags: tuple[str, ...] = ()  # appended to every command
    sweeps: tuple[Sweep, ...] = ()  # extra FM-IRL runs, each with its own seeds


FM_IRL_PROFILES = {
    # The paper's five tasks (stand-ins for the goal-reaching ones) at the official budgets, seeds 1-4.
    "paper": FmIrlProfile(
        tasks={task: [] for task in ["hopper", "walker2d", "pointmaze-medium", "cube-single", "antmaze-large"]},
        variants=["fm_irl"],
        seeds=[1, 2, 3, 4],
    ),
    # The official seeds 1-4 on a 2-core CPU (hopper about 11 minutes a run, pointmaze 5): a 4x128 teacher, 32
    # regulariser samples, 500k (hopper) and 320k (pointmaze) environment steps, the paper's rollout sizes and learning
    # rate schedule (fm_irl.py decays it over the task's official budget); FM-IRL and its reward-only ablation, then 25
    # hopper demonstrations instead of 1 and noisier pointmaze demonstrations (pointmaze's are in data/, see above).
    "quick": FmIrlProfile(
        tasks={
            "hopper": ["--total-timesteps", "500000", "--eval-every", "100000", "--eval-episodes", "5"],
            "pointmaze-medium": [  # its demonstrations are in data/; hopper's come from Minari's own folder
                *("--total-timesteps", "320000", "--eval-every", "80000", "--eval-episodes", "10"),
                *("--dataset-dir", "data"),
            ],
        },
        variants=["fm_irl", "fm_irl_no_regularizer"],
        seeds=[1, 2, 3, 4],
        flags=("--teacher-hidden-dim", "128", "--regularizer-samples", "32"),
        sweeps=(
            Sweep("hopper", "fm_irl_25_demos", ("--num-demos", "25"), (1, 2)),
            Sweep("pointmaze-medium", "fm_irl", ("--demo-noise", "1"), (1, 2)),  # the summary has a noise column
            Sweep("pointmaze-medium", "fm_irl", ("--demo-noise", "2"), (1, 2)),
        ),
    ),
}


def profile_names(tasks: list[str], names, script: str) -> list[str]:
    """Each task under the profile's own name for it, if `names` has one that `script` resolves to the same environment
    (`Hopper-v5` -> `hopper`), so that the profile's settings and sweeps follow the task, not its spelling."""
    resolve = importlib.import_module(script).resolve_task

    def env_id(name: str) -> str | None:
        try:
            with contextlib.redirect_stderr(io.StringIO()):  # an unknown task is reported later, by check_commands
                task = resolve(name) if script == "fm_irl" else resolve(name, None)
        except SystemExit:
            return None
        return task.env_id if task else None

    known = {env_id(name): name for name in names}
    return [task if task in names else known.get(env_id(task) or "", task) for task in tasks]


def build_fm_irl_commands(args: "Args") -> list[list[str]]:
    """One argv per (task, variant, seed), then per (sweep, seed); --tasks and --seeds narrow both."""
    profile = FM_IRL_PROFILES[args.profile]
    seeds = args.seeds if args.seeds is not None else profile.seeds
    tasks = profile_names(args.tasks, profile.tasks, "fm_irl") if args.tasks else list(profile.tasks)
    runs = []  # (task, exp_name, what it changes, seed)
    for task in tasks:
        runs += [(task, variant, FM_IRL_VARIANTS[variant], seed) for variant in profile.variants for seed in seeds]
    for sweep in profile.sweeps:
        if sweep.task in tasks:
            runs += [(sweep.task, sweep.exp_name, sweep.flags, seed) for seed in args.seeds or sweep.seeds]
    commands = []
    for task, exp_name, changes, seed in runs:
        argv = ["fm_irl.py", "--env-id", task, "--seed", str(seed), "--exp-name", exp_name, *changes]
        argv += [*profile.flags, *profile.tasks.get(task, [])]
        argv += ["--dataset-dir", args.dataset_dir] if args.dataset_dir else []
        commands.append(argv + shlex.split(args.extra_args))
    return commands


@dataclass
class Args:
    """Run a method's benchmark suite (the paper's tasks x seeds), locally, with submitit locally, or on slurm."""

    method: Literal["fql-offline", "fql-o2o", "fino", "rldt", "fm-irl"] = "fql-offline"
    """the suite to run: FQL offline, FQL offline-to-online, FINO (offline-to-online), RLDT and its ablations, or
    FM-IRL (online)"""
    profile: Literal["paper", "quick"] = "paper"
    """`paper`: the paper's tasks, seeds, steps and networks; `quick`: the same code path sized for a CPU"""
    tasks: list[str] | None = None
    """env ids or aliases to run instead of the profile's tasks (e.g. `cube-single-task3`)"""
    seeds: list[int] | None = None
    """seeds to run instead of the profile's: 0..7 for FQL, 0..9 for FINO, 0..1 for quick"""
    dataset_dir: str | None = None
    """folder of the OGBench npz files, relative to the repository root; None: OGBench's own (paper), `data` (quick)"""
    extra_args: str = ""
    """flags appended to every command, e.g. `--extra-args="--track --save-model"`; they come last, so they win"""
    dry_run: bool = False
    """print the commands and exit"""
    backend: Literal["local", "submitit-local", "slurm"] = "local"
    """`local`: a pool of subprocesses; `submitit-local`: submitit's LocalExecutor; `slurm`: a submitit job array"""
    jobs: int | None = None
    """runs at the same time; None: one per visible GPU (1 without GPUs), or the whole array on slurm"""
    results_dir: str = f"benchmark/results/{datetime.date.today().isoformat()}"
    """folder (relative to the repository root) where commands.txt is appended; summarize.py writes there too"""
    log_dir: str = "runs/submitit"
    """submitit's folder for job pickles and the stdout/stderr of each job"""
    timeout_min: int = 24 * 60
    """wall-clock limit of one job in minutes (submitit backends); a run that times out is requeued and resumes from
    its last checkpoint, up to 100 times"""
    slurm_partition: str | None = None
    """slurm partition; None: the cluster's default"""
    slurm_gpus_per_node: int = 1
    """GPUs per run on slurm (0: CPU-only jobs)"""
    slurm_cpus_per_task: int = 8
    """CPU cores per run on slurm"""
    slurm_mem_gb: int = 32
    """memory per run on slurm, in GB"""


# Every flag's rule, checked before anything starts: (flags, test, what is accepted). None: the profile's value.
FLAG_RULES = [
    ("tasks", lambda v: len(v) > 0, "give at least one env id or alias, or leave out --tasks for the profile's tasks"),
    ("seeds", lambda v: len(v) > 0 and all(0 <= seed < 2**32 for seed in v), "give one or more seeds in [0, 2^32)"),
    (
        "dataset_dir",
        lambda v: (REPO_ROOT / os.path.expanduser(v)).is_dir(),
        "no such folder (relative to the repository root); make the datasets with benchmark/make_dataset.py",
    ),
    ("jobs", lambda v: v >= 1, "must be positive; give an integer >= 1, or leave it out"),
    ("timeout_min slurm_cpus_per_task slurm_mem_gb", lambda v: v >= 1, "must be positive; give an integer >= 1"),
    ("slurm_gpus_per_node", lambda v: v >= 0, "must not be negative; give 0 (CPU-only jobs) or more"),
    (
        "results_dir log_dir",
        lambda v: bool(v) and not (REPO_ROOT / os.path.expanduser(v)).is_file(),
        "must name a folder (made if missing), not a file",
    ),
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


def check_args(args: Args) -> None:
    """Every flag, before anything slow: the rules above, then the line between flags."""
    for names, ok, why in FLAG_RULES:
        for name in names.split():
            value = getattr(args, name)
            if value is not None and not ok(value):
                fail(name.replace("_", "-"), shown(value), why)
    try:
        shlex.split(args.extra_args)
    except ValueError as error:
        fail("extra-args", repr(args.extra_args), f"cannot be split into flags ({error}); check the quotes")


def check_commands(commands: list[list[str]]) -> None:
    """Parse every command with its script's own Args and checks, as the run would at its start: a bad task or extra
    flag ends the suite here, with the script's one-line message, instead of ending every job."""
    for argv in commands:
        module = importlib.import_module(Path(argv[0]).stem)
        module.check_args(tyro.cli(module.Args, args=argv[1:], prog=argv[0]))


def build_commands(args: Args) -> list[list[str]]:
    """One argv (script and flags, without the interpreter) per (task, seed)."""
    script, profiles = SUITES[args.method]
    profile = profiles[args.profile]
    tasks = args.tasks or profile.tasks
    seeds = args.seeds if args.seeds is not None else profile.seeds
    dataset_dir = args.dataset_dir or profile.dataset_dir
    hidden_dims = [str(d) for d in profile.hidden_dims]
    commands = []
    for task in tasks:
        for seed in seeds:
            argv = [script, "--env-id", task, "--seed", str(seed)]
            argv += ["--offline-steps", str(profile.offline_steps), "--online-steps", str(profile.online_steps)]
            argv += ["--eval-every", str(profile.eval_every), "--eval-episodes", str(profile.eval_episodes)]
            argv += ["--actor-hidden-dims", *hidden_dims, "--value-hidden-dims", *hidden_dims]
            if dataset_dir is not None:
                argv += ["--dataset-dir", dataset_dir]
            argv += list(profile.extra_flags)
            commands.append(argv + shlex.split(args.extra_args))
    return commands


def format_command(argv: list[str]) -> str:
    return "python " + shlex.join(argv)


def visible_gpus() -> list[str]:
    """GPU indices in CUDA_VISIBLE_DEVICES if set, else those listed by `nvidia-smi -L`; empty without GPUs."""
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        return [device for device in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if device]
    if shutil.which("nvidia-smi") is None:
        return []
    listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout
    return [str(i) for i, line in enumerate(line for line in listing.splitlines() if line.startswith("GPU "))]


def run_local(commands: list[list[str]], jobs: int, gpus: list[str]) -> list[int]:
    """Run the commands in a pool of `jobs` subprocesses, round-robin over the GPUs; return their exit codes."""
    free_devices = queue.Queue()  # a device is handed to one run at a time, then returned
    for i in range(jobs):
        free_devices.put(gpus[i % len(gpus)] if gpus else None)

    def run_one(index: int, argv: list[str]) -> int:
        device = free_devices.get()
        env = dict(os.environ)
        if device is not None:
            env["CUDA_VISIBLE_DEVICES"] = device
            if jobs > len(gpus):  # runs share a GPU: stop JAX from grabbing most of its memory
                env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
        where = "" if device is None else f" on GPU {device}"
        print(f"[{index + 1}/{len(commands)}]{where} {format_command(argv)}", flush=True)
        returncode = subprocess.run([sys.executable, *argv], cwd=REPO_ROOT, env=env).returncode
        free_devices.put(device)
        return returncode

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(run_one, range(len(commands)), commands))


def make_executor(args: Args) -> submitit.Executor:
    folder = REPO_ROOT / args.log_dir
    if args.backend == "submitit-local":
        executor = submitit.LocalExecutor(folder=folder, max_num_timeout=100)
        executor.update_parameters(timeout_min=args.timeout_min)
        return executor
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm", slurm_max_num_timeout=100)
    executor.update_parameters(
        name=args.method,
        timeout_min=args.timeout_min,
        slurm_partition=args.slurm_partition,
        gpus_per_node=args.slurm_gpus_per_node,
        cpus_per_task=args.slurm_cpus_per_task,
        mem_gb=args.slurm_mem_gb,
        slurm_array_parallelism=args.jobs or 256,
    )
    return executor


class ResumableRun(submitit.helpers.Checkpointable):
    """One run as a submitit job. When the job is preempted or times out, submitit calls `checkpoint`, which requeues
    it as `<script> --resume <run folder>` if the run has written a checkpoint, else as the same command again.

    The run folder is the one the script prints at its start (`run folder: runs/...`, as every script of the project
    does): matching args.json files would need each script's alias resolution (`cube-single` is saved as
    `cube-single-play-singletask-task2-v0`) and could not tell apart two jobs of one task and seed."""

    def __init__(self):
        self.process, self.run_dir = None, None

    def __call__(self, argv: list[str]) -> int:
        env = dict(os.environ, PYTHONUNBUFFERED="1")  # the run folder line arrives at once
        self.process = subprocess.Popen(
            [sys.executable, *argv], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, text=True
        )
        for line in self.process.stdout:  # copied to the job's log as it comes
            print(line, end="", flush=True)
            if line.startswith("run folder: "):
                self.run_dir = line.removeprefix("run folder: ").strip()
        return self.process.wait()

    def checkpoint(self, argv: list[str]) -> submitit.helpers.DelayedSubmission:
        if self.process is not None:
            self.process.kill()  # the checkpoint on disk is complete: the scripts write it atomically
            self.process.wait()
        if self.run_dir is not None and (REPO_ROOT / self.run_dir / "checkpoint.msgpack").exists():
            argv = [argv[0], "--resume", self.run_dir]
        print(f"requeued as: {format_command(argv)}", flush=True)
        return submitit.helpers.DelayedSubmission(ResumableRun(), argv)


def submit(executor: submitit.Executor, commands: list[list[str]]) -> list[submitit.Job]:
    """Submit the commands as one job array; each job runs its command as a subprocess (output in the job's logs) and
    is requeued with `--resume` when preempted."""
    with executor.batch():
        return [executor.submit(ResumableRun(), argv) for argv in commands]


def wait_for(job: submitit.Job) -> int:
    """Exit code of a submitted run; on failure, show the end of its stderr (the script's own error message)."""
    try:
        returncode = job.result()
    except submitit.core.utils.UncompletedJobError:  # killed or timed out before the command returned
        returncode = -1
    if returncode != 0:
        stderr_tail = "\n".join((job.stderr() or "").splitlines()[-20:])
        print(f"--- end of {job.paths.stderr} ---\n{stderr_tail}", flush=True)
    return returncode


def run_submitit_local(commands: list[list[str]], args: Args) -> list[int]:
    """LocalExecutor starts every submitted job at once, so submit `--jobs` at a time and wait for each wave."""
    executor = make_executor(args)
    wave_size = args.jobs or 1
    returncodes = []
    for start in range(0, len(commands), wave_size):
        wave = commands[start : start + wave_size]
        jobs = submit(executor, wave)
        for index, (argv, job) in enumerate(zip(wave, jobs, strict=True), start=start):
            print(f"[{index + 1}/{len(commands)}] job {job.job_id}: {format_command(argv)}", flush=True)
        returncodes += [wait_for(job) for job in jobs]
    return returncodes


def launch(commands: list[list[str]], args: Args) -> list[int]:
    """Run the commands with the chosen backend; return their exit codes (none for slurm, which only submits)."""
    if args.backend == "local":
        gpus = visible_gpus()
        return run_local(commands, args.jobs or max(len(gpus), 1), gpus)
    if args.backend == "submitit-local":
        return run_submitit_local(commands, args)
    jobs = submit(make_executor(args), commands)
    print(f"submitted {len(jobs)} slurm jobs, array {jobs[0].job_id.split('_')[0]}; logs in {args.log_dir}")
    return []


# rldt: pretrain one policy per task (seed 0), then fine-tune RLDT and its two ablations from it for every seed (and,
# in the quick profile, a sweep on hopper), as the official code fine-tunes one pretrained checkpoint per task. A block
# of its own, run in two stages.
RLDT_VARIANTS = {"rldt": (), "rldt-delta": ("--svgd-type", "delta"), "rldt-temp0": ("--svgd-temp", "0")}
RLDT_QUICK_ACTOR = ("--actor-hidden-dims", "256", "256", "256")
RLDT_QUICK_HOPPER = ("--num-envs", "10", "--eval-episodes", "50")
RLDT_QUICK_CUBE = ("--num-envs", "16", "--eval-episodes", "48")
# hopper: the paper's actor learning rate, but the critic trains alone for 20 iterations (2 in the paper): with
# Polyak 0.995 its values climb slowly, and a hopper run's mean Q is 5 after 2 iterations and 39 after 20, where the
# visited states' discounted returns-to-go average about 53. Actor steps against the younger critic lose return.
RLDT_QUICK_HOPPER_FINETUNE = ("--iterations", "40", "--eval-every", "4", "--critic-warmup-iterations", "20")
# cube-single: the same 20-iteration critic warm-up (its mean Q levels off near 0.25 within 4 iterations, but the
# warm-up's six evaluations of the unchanged policy give a baseline of 288 episodes per seed), then 12 actor
# iterations at lr 1e-4, twice the first profile's 6 (2026-11-21).
RLDT_QUICK_CUBE_FINETUNE = (
    "--iterations",
    "32",
    "--eval-every",
    "4",
    "--actor-lr",
    "1e-4",
    "--critic-warmup-iterations",
    "20",
)
# hopper: the parts of RLDT apart (docs/rldt.md, "What the field does at the official temperature"): the paper's
# 2-iteration warm-up; no field (consistency and trust region only); and `delta` with both regularisers 4.9 times
# stronger, the norm ratio of delta's actor gradient to the field's measured by benchmark/rldt_field.py on hopper.
RLDT_QUICK_HOPPER_SWEEPS = (
    Sweep("hopper", "rldt-warmup2", ("--critic-warmup-iterations", "2"), (0, 1)),
    Sweep("hopper", "rldt-none", ("--svgd-type", "none"), (0, 1)),
    Sweep(
        "hopper",
        "rldt-delta-scaled",
        ("--svgd-type", "delta", "--consistency-coef", "2.45", "--kl-coef", "0.98"),
        (0, 1),
    ),
)
RLDT_PROFILES = {  # profile: (tasks, seeds, {task: (pretraining flags, fine-tuning flags)}, sweeps)
    # The paper's settings are rldt.py's per-domain defaults; its seed count is unknown, 5 is this project's choice.
    "paper": (["hopper", "walker2d", "halfcheetah"], list(range(5)), {}, ()),
    # Quick (about 50 minutes per task on 2 idle CPU cores, two runs at a time): 3x256 policies, few environments, a
    # 20-iteration critic warm-up (see above), evaluated every 4 iterations. The cube-single demonstrations (10
    # episodes, noise 0.3) come from
    #   python benchmark/make_dataset.py --demos cube-single-singletask-task2-v0 --num-episodes 10 --noise 0.3 --out-dir data/rldt
    "quick": (
        ["hopper", "cube-single"],
        [0, 1],
        {
            "hopper": (
                ("--pretrain-steps", "30000", *RLDT_QUICK_HOPPER, *RLDT_QUICK_ACTOR),
                ("--steps-per-iteration", "100", *RLDT_QUICK_HOPPER, *RLDT_QUICK_HOPPER_FINETUNE),
            ),
            "cube-single": (
                (
                    "--dataset-dir",
                    "data/rldt",
                    "--pretrain-steps",
                    "10000",
                    "--pretrain-lr",
                    "1e-3",
                    "--pretrain-min-lr",
                    "1e-4",
                    *RLDT_QUICK_CUBE,
                    *RLDT_QUICK_ACTOR,
                ),
                (*RLDT_QUICK_CUBE, *RLDT_QUICK_CUBE_FINETUNE),
            ),
        },
        RLDT_QUICK_HOPPER_SWEEPS,
    ),
}


def rldt_commands(args: Args, pretrained: dict[str, str]) -> tuple[list[list[str]], list[list[str]]]:
    """(pretraining commands, fine-tuning commands); `pretrained` maps a task to its pretrained policy file."""
    tasks, seeds, flags, sweeps = RLDT_PROFILES[args.profile]
    tasks = profile_names(args.tasks, flags, "rldt") if args.tasks else tasks
    seeds = args.seeds if args.seeds is not None else seeds
    extra = shlex.split(args.extra_args)
    pretrain, finetune = [], []
    for task in tasks:
        pretrain_flags, finetune_flags = flags.get(task, ((), ()))
        dataset = ["--dataset-dir", args.dataset_dir] if args.dataset_dir else []
        base = ["rldt.py", "--env-id", task, *dataset]
        pretrain.append(
            [*base, "--seed", "0", "--iterations", "0", "--exp-name", "rldt-pretrain", *pretrain_flags, *extra]
        )
        policy = pretrained.get(task, f"<pretrained.flax of the {task} pretraining run>")
        runs = [(variant, changes, seed) for variant, changes in RLDT_VARIANTS.items() for seed in seeds]
        for sweep in sweeps:
            if sweep.task == task:
                runs += [(sweep.exp_name, sweep.flags, seed) for seed in args.seeds or sweep.seeds]
        for exp_name, changes, seed in runs:
            run = [*base, "--seed", str(seed), "--pretrained", policy, "--exp-name", exp_name]
            finetune.append([*run, *without_flags(finetune_flags, changes), *changes, *extra])
    return pretrain, finetune


def without_flags(flags: tuple[str, ...], changes: tuple[str, ...]) -> list[str]:
    """`flags` less every flag (and its values) that `changes` sets again, so that each flag appears once."""
    kept, keep = [], True
    for word in flags:
        if word.startswith("--"):  # a flag; the words up to the next one are its values
            keep = word not in changes
        if keep:
            kept.append(word)
    return kept


def rldt_pretrained_policy(task: str) -> str | None:
    """The newest pretrained.flax of a `rldt-pretrain` run of this task under runs/, relative to the repository."""
    from rldt import resolve_task

    env_id = resolve_task(task, None).env_id
    found = sorted(REPO_ROOT.glob(f"runs/{env_id}__rldt-pretrain__0__*/pretrained.flax"), key=os.path.getmtime)
    return str(found[-1].relative_to(REPO_ROOT)) if found else None


def run_rldt_suite(args: Args) -> int:
    """Pretrain one policy per task, then fine-tune every variant and seed from it; the exit status of the whole."""
    pretrain, _ = rldt_commands(args, {})
    check_commands(pretrain)
    if args.dry_run:
        print("\n".join(format_command(argv) for argv in sum(rldt_commands(args, {}), [])))
        return 0
    results_dir = REPO_ROOT / args.results_dir
    results_dir.mkdir(parents=True, exist_ok=True)

    def record(commands):
        with open(results_dir / "commands.txt", "a") as f:
            f.write("".join(format_command(argv) + "\n" for argv in commands))

    with open(results_dir / "commands.txt", "a") as f:
        f.write(f"# {datetime.datetime.now():%Y-%m-%d %H:%M} {format_command(sys.argv)}\n")
    record(pretrain)
    if args.backend == "slurm":  # the fine-tuning jobs need the pretrained policies: wait for them
        returncodes = [wait_for(job) for job in submit(make_executor(args), pretrain)]
    else:
        returncodes = launch(pretrain, args)
    tasks = [argv[2] for argv, code in zip(pretrain, returncodes, strict=True) if code == 0]
    pretrained = {task: path for task in tasks if (path := rldt_pretrained_policy(task))}
    finetune = [argv for argv in rldt_commands(args, pretrained)[1] if argv[2] in pretrained]
    record(finetune)
    returncodes += launch(finetune, args)
    if args.backend == "slurm":
        return 0
    failed = len(pretrain) + len(finetune) - returncodes.count(0)
    print(f"{len(returncodes) - failed}/{len(pretrain) + len(finetune)} runs finished; tables and plots:")
    methods = dict.fromkeys(argv[argv.index("--exp-name") + 1] for argv in finetune)
    print(f"python benchmark/summarize.py --rldt --methods {' '.join(methods)} --out-dir {args.results_dir}")
    return 1 if failed else 0


if __name__ == "__main__":
    args = tyro.cli(Args)
    check_args(args)
    if args.method == "rldt":
        sys.exit(run_rldt_suite(args))
    commands = build_fm_irl_commands(args) if args.method == "fm-irl" else build_commands(args)
    check_commands(commands)
    if args.dry_run:
        print("\n".join(format_command(argv) for argv in commands))
        sys.exit(0)

    results_dir = REPO_ROOT / args.results_dir
    results_dir.mkdir(parents=True, exist_ok=True)
    with open(results_dir / "commands.txt", "a") as f:
        f.write(f"# {datetime.datetime.now():%Y-%m-%d %H:%M} {format_command(sys.argv)}\n")
        f.write("".join(format_command(argv) + "\n" for argv in commands))

    returncodes = launch(commands, args)
    if args.backend == "slurm":
        sys.exit(0)
    failed = [argv for argv, returncode in zip(commands, returncodes, strict=True) if returncode != 0]
    for argv in failed:
        print(f"FAILED: {format_command(argv)}")
    print(f"{len(commands) - len(failed)}/{len(commands)} runs finished; tables and plots:")
    print(f"python benchmark/summarize.py{' --fm-irl' * (args.method == 'fm-irl')} --out-dir {args.results_dir}")
    sys.exit(1 if failed else 0)
