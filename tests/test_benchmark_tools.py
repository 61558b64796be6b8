"""benchmark/: suite.py and summarize.py (commands, backends, tables from synthetic event files); make_dataset.py and
train_expert.py (a failure half-way leaves the previous dataset or expert intact; suggested commands are accepted)."""

import dataclasses
import json
import shlex
import subprocess
import sys
import time
import warnings
from pathlib import Path

import jax
import numpy as np
import pytest
import submitit
import tyro
from tensorboardX import SummaryWriter

from benchmark import suite, summarize

ROOT = Path(__file__).resolve().parent.parent


def write_run(runs_dir: Path, env_id: str, exp_name: str, seed: int, offline_steps: int, online_steps: int, success):
    """A run folder as the scripts write it: args.json, and `eval/success` every 10 steps from step 0."""
    run_dir = runs_dir / f"{env_id}__{exp_name}__{seed}__{time.time_ns()}"
    writer = SummaryWriter(str(run_dir))
    args = dict(env_id=env_id, exp_name=exp_name, seed=seed, offline_steps=offline_steps, online_steps=online_steps)
    (run_dir / "args.json").write_text(json.dumps(dict(args, eval_episodes=10)))
    start = time.time()
    for step, value in zip(range(0, 10 * len(success), 10), success, strict=True):
        writer.add_scalar("eval/success", value, step, walltime=start + 6 * step)  # 10 steps per minute
        writer.add_scalar("losses/total_loss", 1.0, step, walltime=start + 6 * step)
    writer.close()
    return run_dir


def table_cells(markdown: str, env_id: str, method: str) -> list[str]:
    """Cells of the row of `env_id` in the section of `method` (values are dyadic, so float32 logging is exact)."""
    section = markdown.split(f"### {method}")[1]
    row = next(line for line in section.splitlines() if line.startswith(f"| `{env_id}` |"))
    return [cell.strip() for cell in row.strip("|").split("|")]


@pytest.fixture(scope="module")
def summary(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bench")
    runs = root / "runs"
    cube = "cube-single-play-singletask-task2-v0"
    write_run(runs, cube, "fql", 1, 40, 0, [0, 1, 1, 1, 1])  # superseded by the later seed-1 run
    write_run(runs, cube, "fql", 0, 40, 0, [0, 0.25, 0.5, 0.5, 0.75])
    write_run(runs, cube, "fql", 1, 40, 0, [0, 0.5, 0.5, 0.75, 0.5])
    write_run(runs, cube, "fql", 2, 40, 0, [0, 0.25, 0.25, 0.5, 0.25])
    # Offline-to-online: 20 offline steps, then 30 online; the short id of the default task joins the explicit one.
    write_run(runs, "scene-play-singletask-v0", "fql", 0, 20, 30, [0, 0.25, 0.5, 0.5, 0.75, 1.0])
    write_run(runs, "scene-play-singletask-task2-v0", "fql", 1, 20, 30, [0, 0.5, 0.5, 0.75, 0.75, 0.75])
    # FINO: seed 1 is unfinished (behind seed 0), so it is left out of the numbers.
    write_run(runs, "cube-double-play-singletask-task2-v0", "fino", 0, 20, 20, [0, 0.5, 0.5, 0.5, 0.25])
    write_run(runs, "cube-double-play-singletask-task2-v0", "fino", 1, 20, 20, [0, 0.25])
    write_run(runs, "puzzle-3x3-play-singletask-task4-v0", "fql", 0, 40, 0, [])  # crashed before evaluating

    out = root / "results"
    out.mkdir()
    (out / "commands.txt").write_text("# suite\npython fql.py --env-id cube-single --seed 0\n")
    summarize.main(summarize.Args(runs_dir=str(runs), out_dir=str(out), dataset_note="synthetic test runs"))
    return out


def test_offline_table(summary):
    cells = table_cells((summary / "fql.md").read_text(), "cube-single-play-singletask-task2-v0", "fql, offline")
    task, steps, seeds, episodes, final, last3, paper, official, minutes = cells
    assert (steps, seeds, episodes) == ("40", "3", "10")
    assert final == "50.0 ± 20.4"  # finals 75, 50, 25: std sqrt(1250 / 3)
    assert last3 == "50.0 ± 11.8"  # means of the last three: 58.33, 58.33, 33.33
    assert (paper, official, minutes) == ("97 ± 2 [fql-paper]", "—", "4")
    assert "- [fql-paper] FQL paper" in (summary / "fql.md").read_text()


def test_offline_to_online_table(summary):
    cells = table_cells((summary / "fql.md").read_text(), "scene-play-singletask-task2-v0", "fql, offline-to-online")
    assert cells[1:4] == ["20 + 30", "2", "10"]
    assert cells[4] == "50.0 ± 0.0 → 87.5 ± 12.5"  # end of offline: 50, 50; end of online: 100, 75
    assert cells[5] == "29.2 ± 4.2 → 75.0 ± 0.0"  # offline evals 0-50 and 0-50-50; online 50-75-100 and 75-75-75
    assert cells[6] == "—"  # no paper number for FQL offline-to-online


def test_running_and_skipped_runs(summary):
    cells = table_cells((summary / "fino.md").read_text(), "cube-double-play-singletask-task2-v0", "fino")
    assert cells[2] == "1 (+1 unfinished)"
    assert cells[4] == "50.0 ± 0.0 → 25.0 ± 0.0"
    readme = (summary / "README.md").read_text()
    assert "superseded by the later run" in readme
    assert "no `eval/success` logged yet" in readme
    assert "Datasets: synthetic test runs." in readme
    assert "python fql.py --env-id cube-single --seed 0" in readme  # from commands.txt
    curves = sorted(path.name for path in (summary / "curves").glob("*.png"))
    assert curves == [
        f"{task}-singletask-task2-v0.png" for task in ("cube-double-play", "cube-single-play", "scene-play")
    ]


def test_methods_filter(summary):
    rows, skipped = summarize.collect_rows(summary.parent / "runs", methods=["fino"])
    assert [(row.method, row.env_id) for row in rows] == [("fino", "cube-double-play-singletask-task2-v0")]
    assert skipped == []


def test_truncated_event_file(tmp_path):
    run_dir = write_run(tmp_path, "scene-play-singletask-task2-v0", "fql", 0, 10, 0, [0.5, 0.75])
    events_path = next(run_dir.glob("events.out.tfevents.*"))
    with open(events_path, "ab") as f:
        f.write(b"\x40\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00partial")  # a record still being written
    run = summarize.load_run(run_dir)
    assert run.steps.tolist() == [0, 10] and run.success.tolist() == [50.0, 75.0]


def test_dry_run_prints_quick_commands():
    command = [sys.executable, "benchmark/suite.py", "--method", "fql-o2o", "--profile", "quick", "--dry-run"]
    lines = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True).stdout.splitlines()
    flags = (
        "--offline-steps 30000 --online-steps 7500 --eval-every 2500 --eval-episodes 10 "
        "--actor-hidden-dims 256 256 --value-hidden-dims 256 256 --dataset-dir data"
    )
    assert lines == [
        f"python fql.py --env-id {task} --seed {seed} {flags}" for task in ("cube-single", "scene") for seed in (0, 1)
    ]


def test_paper_commands_and_overrides():
    commands = suite.build_commands(suite.Args(method="fql-offline"))
    assert len(commands) == 10 * 8
    assert suite.format_command(commands[0]) == (
        "python fql.py --env-id antmaze-large --seed 0 --offline-steps 1000000 --online-steps 0 --eval-every 100000 "
        "--eval-episodes 50 --actor-hidden-dims 512 512 512 512 --value-hidden-dims 512 512 512 512 "
        "--checkpoint-every 50000"
    )
    commands = suite.build_commands(suite.Args(method="fino"))
    assert len(commands) == 7 * 10 and commands[0][0] == "fino.py"
    assert "--online-steps 500000 --eval-every 50000" in suite.format_command(commands[0])
    args = suite.Args(method="fql-o2o", tasks=["cube-double-task3"], seeds=[5], dataset_dir="d", extra_args="--track")
    (command,) = suite.build_commands(args)
    assert command[:5] == ["fql.py", "--env-id", "cube-double-task3", "--seed", "5"]
    assert command[-5:] == ["--dataset-dir", "d", "--checkpoint-every", "50000", "--track"]


def test_local_backend_round_robin_over_gpus(tmp_path):
    code = "import os, sys; open(sys.argv[1], 'w').write(os.environ['CUDA_VISIBLE_DEVICES'])"
    commands = [["-c", code, str(tmp_path / str(i))] for i in range(4)]
    assert suite.run_local(commands, jobs=4, gpus=["0", "1"]) == [0, 0, 0, 0]  # two runs share each GPU
    assert sorted((tmp_path / str(i)).read_text() for i in range(4)) == ["0", "0", "1", "1"]


def test_submitit_local_backend(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # each job unpickles benchmark.suite.ResumableRun
    marker = tmp_path / "marker.txt"
    commands = [
        ["-c", f"import pathlib; pathlib.Path({str(marker)!r}).write_text('done')"],
        ["-c", "import sys; sys.exit('error: dataset missing; make it with: python benchmark/make_dataset.py')"],
    ]
    args = suite.Args(backend="submitit-local", jobs=2, log_dir=str(tmp_path / "submitit"), timeout_min=2)
    assert suite.launch(commands, args) == [0, 1]
    assert marker.read_text() == "done"
    output = capsys.readouterr().out
    assert "error: dataset missing; make it with" in output and "Traceback" not in output


FAKE_RUN = """
import os, sys, time
if "--resume" in sys.argv:  # the requeued job: finish the run in its folder
    run_dir = sys.argv[sys.argv.index("--resume") + 1]
    print(f"run folder: {run_dir}")
    open(os.path.join(run_dir, "resumed_with"), "w").write(" ".join(sys.argv[1:]))
else:  # the first job: start a run, write a checkpoint, then work until preempted
    run_dir = os.path.join(sys.argv[1], "runs", "fake__0__1")
    os.makedirs(run_dir, exist_ok=True)
    print(f"run folder: {run_dir}")
    open(os.path.join(run_dir, "checkpoint.msgpack"), "wb").close()
    time.sleep(60)
"""


def test_submitit_requeues_a_preempted_run_with_resume_and_its_run_folder(tmp_path, monkeypatch):
    script = tmp_path / "fake_run.py"
    script.write_text(FAKE_RUN)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    executor = submitit.LocalExecutor(folder=tmp_path / "submitit")
    executor.update_parameters(timeout_min=6 / 60, signal_delay_s=2)  # the preemption signal 4 s after each start
    (job,) = suite.submit(executor, [[str(script), str(tmp_path)]])
    assert suite.wait_for(job) == 0
    run_dir = tmp_path / "runs" / "fake__0__1"
    assert (run_dir / "resumed_with").read_text() == f"--resume {run_dir}"
    assert f"requeued as: python {script} --resume {run_dir}" in job.stdout()


def test_a_run_preempted_before_its_first_checkpoint_is_requeued_unchanged(tmp_path):
    run = suite.ResumableRun()
    run.run_dir = str(tmp_path)  # a run folder, but no checkpoint.msgpack in it yet
    command = ["fql.py", "--env-id", "scene", "--seed", "3"]
    assert run.checkpoint(command).args == (command,)
    (tmp_path / "checkpoint.msgpack").write_bytes(b"")
    assert run.checkpoint(command).args == (["fql.py", "--resume", str(tmp_path)],)


def test_a_resumed_run_is_read_as_tensorboard_shows_it(tmp_path):
    """Interrupted after logging steps 0-30, the run resumed from its checkpoint at step 10 (purge from step 11) and
    has logged step 20 again so far: step 30 of the interrupted run is hidden, step 20 is the new value."""
    run_dir = write_run(tmp_path, "scene-play-singletask-task2-v0", "fql", 0, 40, 0, [0.0, 0.25, 0.5, 0.75])
    writer = SummaryWriter(str(run_dir), purge_step=11, filename_suffix=".resumed")
    writer.add_scalar("eval/success", 1.0, 20)
    writer.close()
    run = summarize.load_run(run_dir)
    assert run.steps.tolist() == [0, 10, 20] and run.success.tolist() == [0.0, 25.0, 100.0]


# benchmark/make_dataset.py and benchmark/train_expert.py: a generation or training that fails half-way leaves the
# previous dataset or expert byte for byte, and every command that a refusal suggests is accepted as written.

sys.path.insert(0, str(ROOT / "benchmark"))  # as the worker processes import it: by name
import make_dataset  # noqa: E402
import train_expert  # noqa: E402


def files_of(folder: Path, leave_out: str = "\0") -> dict[str, bytes]:
    """Every file under `folder` (but those under `leave_out`) with its bytes."""
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and not str(path.relative_to(folder)).startswith(leave_out)
    }


def save_hopper_expert(path: Path) -> None:
    """A small random actor with a Hopper-v5 expert's sizes and record (train_expert.py's files)."""
    recipe = dataclasses.replace(train_expert.RECIPES["Hopper-v5"], hidden_dims=(8,))
    params = train_expert.init_actor_params(jax.random.PRNGKey(0), 11, 3, recipe)
    evaluation = {"step": 10, "minutes": 0.0, "deterministic": {"return_mean": 1.0, "return_std": 0.0}}
    info = {"env_id": "Hopper-v5", "config": {"recipe": dataclasses.asdict(recipe)}, "evaluations": [evaluation]}
    train_expert.save_expert(str(path), params, info)


def test_make_dataset_failing_half_way_leaves_the_previous_dataset_byte_for_byte(tmp_path, monkeypatch, capsys):
    flags = dict(dataset="pointmaze-medium-navigate-v0", num_episodes=2, max_episode_steps=21, workers=1)
    make_dataset.main(make_dataset.Args(out_dir=str(tmp_path), **flags))
    previous = files_of(tmp_path)
    assert sorted(previous) == ["pointmaze-medium-navigate-v0-val.npz", "pointmaze-medium-navigate-v0.npz"]
    parts = tmp_path / "pointmaze-medium-navigate-v0.parts"
    again = make_dataset.Args(out_dir=str(tmp_path), seed=1, **flags)  # a new generation into the same folder

    # Ctrl-C after its first episode: exit status 130, the command that resumes, and the old files untouched.
    collect = make_dataset.collect_to_file

    def interrupted_after_one(job):
        if any(parts.glob("episode_*.npz")):
            raise KeyboardInterrupt
        collect(job)

    monkeypatch.setattr(make_dataset, "collect_to_file", interrupted_after_one)
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        make_dataset.main(again)
    assert stop.value.code == 130
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"interrupted: 1 finished episodes are kept in {parts}; the same command resumes: python "
        f"benchmark/make_dataset.py --dataset pointmaze-medium-navigate-v0 --num-episodes 2 --max-episode-steps 21 "
        f"--out-dir {tmp_path} --seed 1 --workers 1"
    )
    assert files_of(tmp_path, leave_out=parts.name) == previous

    # Resumed, it collects the rest, but the new files fail their check (NaN observations): nothing is replaced, no
    # temporary file is left, and the episodes stay for the next try.
    monkeypatch.setattr(make_dataset, "collect_to_file", collect)
    load = make_dataset.load_episodes

    def with_nan(paths):
        data, stats = load(paths)
        data["observations"][3] = np.nan
        return data, stats

    monkeypatch.setattr(make_dataset, "load_episodes", with_nan)
    with pytest.raises(SystemExit, match="pointmaze-medium-navigate-v0.npz holds NaN or infinite observations; noth"):
        make_dataset.main(again)
    assert files_of(tmp_path, leave_out=parts.name) == previous
    assert len(list(parts.glob("episode_*.npz"))) == 3

    # Without the fault the same command swaps the new files in.
    monkeypatch.setattr(make_dataset, "load_episodes", load)
    make_dataset.main(again)
    assert sorted(files_of(tmp_path)) == sorted(previous) and files_of(tmp_path) != previous


def test_make_dataset_minari_failing_half_way_leaves_the_previous_dataset_byte_for_byte(tmp_path, monkeypatch):
    import minari
    from conftest import write_random_minari_dataset

    root = tmp_path / "minari"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_random_minari_dataset(str(root), "mujoco/hopper/medium-v0", "Hopper-v5", 2, 30, seed=0)
    previous = files_of(root)
    save_hopper_expert(tmp_path / "expert.msgpack")
    flags = dict(dataset="mujoco/hopper/medium-v0", expert_path=str(tmp_path / "expert.msgpack"), workers=1)
    command = make_dataset.Args(out_dir=str(root), num_episodes=1, max_episode_steps=30, **flags)

    # The probe of the issue, fewer steps than one episode: refused before anything, the old dataset untouched.
    with pytest.raises(SystemExit) as stop:
        make_dataset.main(dataclasses.replace(command, num_steps=10))
    assert stop.value.code == 2 and files_of(root) == previous

    # Minari fails half-way through writing the new dataset (a full disk): the old one stays as it was.
    create_dataset = minari.DataCollector.create_dataset

    def create_then_fail(self, *args, **kwargs):
        create_dataset(self, *args, **kwargs)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(minari.DataCollector, "create_dataset", create_then_fail)
    with pytest.raises(OSError, match="No space left"):
        make_dataset.main(command)
    assert files_of(root, leave_out="mujoco/hopper/medium-v0.parts") == previous

    # Without the fault the same command puts the new dataset in its place; Minari loads it, nothing else is left.
    monkeypatch.setattr(minari.DataCollector, "create_dataset", create_dataset)
    make_dataset.main(command)
    assert sorted(files_of(root)) == sorted(previous) and files_of(root) != previous
    assert sorted(path.name for path in (root / "mujoco" / "hopper").iterdir()) == [
        "medium-v0",
        "namespace_metadata.json",
    ]
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    assert minari.load_dataset("mujoco/hopper/medium-v0").total_episodes == 1


SAC_FLAGS = dict(env_id="Hopper-v5", learning_starts=10, checkpoint_every=10, eval_episodes=1)


def nan_actor_from_update(n: int):
    """A make_update_and_act whose update turns the actor's weights to NaN from its n-th call on."""
    make = train_expert.make_update_and_act

    def make_poisoned(*args, **kwargs):
        update_and_act, calls = make(*args, **kwargs), []

        def poisoned(state, batch, obs):
            state, actions, metrics = update_and_act(state, batch, obs)
            calls.append(None)
            if len(calls) >= n:
                nan_actor = jax.tree.map(lambda x: x * np.nan, state.params["actor"])
                state = state._replace(params={**state.params, "actor": nan_actor})
            return state, actions, metrics

        return poisoned

    return make_poisoned


def test_train_expert_failing_half_way_leaves_the_previous_expert_byte_for_byte(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # MuJoCo logs the NaN actions below to MUJOCO_LOG.TXT in the working folder
    run = tmp_path / "run"
    train_expert.main(train_expert.Args(total_steps=20, out_dir=str(run), **SAC_FLAGS))
    previous = files_of(run)
    assert {"config.json", "resume.msgpack", "actor.msgpack", "checkpoints/actor_000000020.msgpack"} <= set(previous)
    longer = train_expert.Args(total_steps=40, out_dir=str(run), **SAC_FLAGS)  # the same run, trained on to 40

    # Ctrl-C in the evaluation of its next checkpoint (30): exit status 130, the command that continues, no change.
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    evaluate = train_expert.evaluate
    monkeypatch.setattr(train_expert, "evaluate", interrupted)
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        train_expert.main(longer)
    assert stop.value.code == 130
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith(
            f"interrupted: its last checkpoint, at 20 transitions, in {run}; continue with: python "
            "benchmark/train_expert.py --env-id Hopper-v5 --total-steps 40 --checkpoint-every 10 --learning-starts 10 "
            f"--eval-episodes 1 --out-dir {run}"
        )
    )
    assert files_of(run) == previous
    monkeypatch.setattr(train_expert, "evaluate", evaluate)

    # The actor's weights turn NaN in the update just before the checkpoint at 30: the checkpoint, read back from its
    # temporary files, fails its check and nothing is renamed in (no temporary file is left either).
    monkeypatch.setattr(train_expert, "make_update_and_act", nan_actor_from_update(2))
    with pytest.raises(SystemExit, match="the actor at 30 transitions has NaN or infinite weights .*; the last good"):
        train_expert.main(longer)
    assert files_of(run) == previous

    # From the first update on: the loss is NaN at the next one, which stops the run at its step.
    monkeypatch.setattr(train_expert, "make_update_and_act", nan_actor_from_update(1))
    with pytest.raises(SystemExit, match="loss became NaN or infinite at 30 transitions; stopped, the last checkpoint"):
        train_expert.main(longer)
    assert files_of(run) == previous


def suggested_commands(message: str) -> list[list[str]]:
    """The commands in a message, each from `python benchmark/` to the end of its line, split as the shell would."""
    lines = [line for line in message.splitlines() if "python benchmark/" in line]
    return [shlex.split(line[line.index("python benchmark/") :]) for line in lines]


def accepted_by_train_expert(argv: list[str]) -> train_expert.Args:
    """The resolved Args of a train_expert.py command that its flag checks accept (they exit otherwise)."""
    assert argv[:2] == ["python", "benchmark/train_expert.py"], argv
    args = tyro.cli(train_expert.Args, args=argv[2:])
    train_expert.check_args(args)
    return train_expert.resolve(args)[0]


def expert_config(args: train_expert.Args) -> dict:
    args, recipe = train_expert.resolve(args)
    return json.loads(json.dumps({"args": dataclasses.asdict(args), "recipe": dataclasses.asdict(recipe)}))


def test_train_expert_suggests_commands_that_are_accepted(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    started = train_expert.Args(seed=3, learning_starts=300, total_steps=1000, out_dir=str(run))
    (run / "config.json").write_text(json.dumps(expert_config(started)))
    (run / "resume.msgpack").write_bytes(b"")
    other = train_expert.resolve(dataclasses.replace(started, discount=0.5, learning_starts=None, total_steps=2000))[0]

    # Other settings: the command that continues the run in the folder, and one that starts this run elsewhere.
    with pytest.raises(SystemExit) as refusal:
        train_expert.check_run_folder(other, expert_config(other))
    assert "(--seed 3 here" not in str(refusal.value)  # the seed is the same; the discount and learning starts differ
    assert "--discount 0.5 here, 0.99 in that run; --learning-starts 10000 here, 300 in that run" in str(refusal.value)
    continued, elsewhere = (accepted_by_train_expert(argv) for argv in suggested_commands(str(refusal.value)))
    assert train_expert.check_run_folder(continued, expert_config(continued)) is True  # it resumes that run
    assert (continued.seed, continued.learning_starts, continued.discount, continued.total_steps) == (
        3,
        300,
        0.99,
        2000,
    )
    assert train_expert.check_run_folder(elsewhere, expert_config(elsewhere)) is False  # a fresh folder
    assert dataclasses.replace(elsewhere, out_dir=other.out_dir) == other

    # No settings in the folder: only the new folder is offered.
    (run / "config.json").unlink()
    with pytest.raises(SystemExit) as refusal:
        train_expert.check_run_folder(other, expert_config(other))
    (elsewhere,) = (accepted_by_train_expert(argv) for argv in suggested_commands(str(refusal.value)))
    assert train_expert.check_run_folder(elsewhere, expert_config(elsewhere)) is False

    # A mistyped --env-id: the closest recipe, with the other flags as given.
    with pytest.raises(SystemExit):
        train_expert.check_args(train_expert.Args(env_id="hoper-v5", checkpoint_every=100, out_dir=str(run)))
    (suggestion,) = suggested_commands(capsys.readouterr().err)
    assert (
        accepted_by_train_expert(suggestion)
        == train_expert.resolve(train_expert.Args(env_id="Hopper-v5", checkpoint_every=100, out_dir=str(run)))[0]
    )


def accepted_by_make_dataset(argv: list[str]) -> tuple[make_dataset.Args, make_dataset.Spec]:
    """The Args and spec of a make_dataset.py command that its flag checks accept (they exit otherwise)."""
    assert argv[:2] == ["python", "benchmark/make_dataset.py"], argv
    args = tyro.cli(make_dataset.Args, args=argv[2:])
    make_dataset.check_args(args)
    _, spec, _ = make_dataset.resolve(args)
    make_dataset.check_spec(args, spec)
    return args, spec


def test_make_dataset_suggests_commands_that_are_accepted(tmp_path, capsys):
    parts = tmp_path / "cube-single-play-v0.parts"
    _, spec, _ = make_dataset.resolve(make_dataset.Args(dataset="cube-single-play-v0", seed=4))
    make_dataset.prepare_parts_dir(str(parts), spec, seed=4)
    other = make_dataset.Args(dataset="cube-single-play-v0", noise=0.3, num_episodes=5, out_dir=str(tmp_path))

    # Other settings: the command that continues the episodes in the folder, and one that makes this dataset elsewhere.
    with pytest.raises(SystemExit) as refusal:
        make_dataset.check_parts_dir(str(parts), str(tmp_path), make_dataset.resolve(other)[1], other)
    assert "(--noise 0.3 here, 0.1 there; --seed 0 here, 4 there)" in str(refusal.value)
    (continued, continued_spec), (elsewhere, elsewhere_spec) = (
        accepted_by_make_dataset(argv) for argv in suggested_commands(str(refusal.value))
    )
    make_dataset.check_parts_dir(str(parts), str(tmp_path), continued_spec, continued)  # accepted: it continues them
    assert (continued.noise, continued.seed, continued.num_episodes) == (0.1, 4, 5)
    assert elsewhere == dataclasses.replace(other, out_dir=f"{tmp_path}-2")
    assert elsewhere_spec == dataclasses.replace(spec, noise=0.3)
    make_dataset.check_parts_dir(f"{tmp_path}-2/{parts.name}", f"{tmp_path}-2", elsewhere_spec, elsewhere)

    # No settings beside the episodes: only the new folder is offered.
    (parts / "episode_000000.npz").write_bytes(b"")
    (parts / "config.json").unlink()
    with pytest.raises(SystemExit) as refusal:
        make_dataset.check_parts_dir(str(parts), str(tmp_path), make_dataset.resolve(other)[1], other)
    ((elsewhere, _),) = (accepted_by_make_dataset(argv) for argv in suggested_commands(str(refusal.value)))
    assert elsewhere.out_dir == f"{tmp_path}-2"

    # An expert of another environment: the command that trains the right one.
    save_hopper_expert(tmp_path / "expert.msgpack")
    walker = make_dataset.Args(dataset="mujoco/walker2d/expert-v0", expert_path=str(tmp_path / "expert.msgpack"))
    with pytest.raises(SystemExit):
        make_dataset.check_spec(walker, make_dataset.resolve(walker)[1])
    (suggestion,) = suggested_commands(capsys.readouterr().err)
    assert accepted_by_train_expert(suggestion).env_id == "Walker2d-v5"
