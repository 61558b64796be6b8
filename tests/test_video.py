"""--capture-video: the first evaluation episodes recorded as MP4 files and as TensorBoard's eval/video, every logged
number the same as without it, and a saved policy recorded without training (bad flags: test_bad_input.py).

Evaluation episodes are cut to two steps (the time limit the env is registered with), so that a video costs three
renders: the reset and each step."""

import glob
import os
import subprocess
import sys

import gymnasium as gym
import imageio.v3 as iio
import ogbench  # noqa: F401  (registers the OGBench environments)
import pytest
from test_fql import logged_scalars, run_in_process

from benchmark.summarize import read_events

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Reading a video back starts ffmpeg, a fork that JAX warns of; the fork execs ffmpeg at once, so nothing can deadlock.
pytestmark = pytest.mark.filterwarnings(r"ignore:os\.fork\(\) was called:RuntimeWarning")

FQL_TINY = ["--offline-steps", "2", "--steps-per-call", "1", "--log-every", "1", "--eval-every", "2"]
FQL_TINY += ["--actor-hidden-dims", "8", "--value-hidden-dims", "8", "--batch-size", "4"]


def logged_videos(run_dir: str) -> dict:
    """step -> (height, width) of each eval/video the run logged (a GIF, as TensorBoard shows it)."""
    videos = {}
    for path in glob.glob(os.path.join(run_dir, "events.out.tfevents.*")):
        for event in read_events(path):
            for value in event.summary.value:
                if value.tag == "eval/video":
                    assert value.image.encoded_image_string.startswith(b"GIF")
                    videos[event.step] = (value.image.height, value.image.width)
    return videos


def test_fql_records_the_first_episodes_of_each_evaluation_and_logs_the_same_numbers(
    tmp_path, cube_single_dir, monkeypatch
):
    """Evaluations at steps 0 and 2, each of three episodes on two envs in lockstep: --video-episodes 2 records the
    first two (one per env) as 3-frame 200x200 MP4 files and one eval/video; every scalar is that of the run without
    the flag. Then --load-model --capture-video records the saved policy beside it."""
    monkeypatch.setattr(gym.registry["cube-single-singletask-task2-v0"], "max_episode_steps", 2)
    flags = ["--dataset-dir", cube_single_dir, *FQL_TINY, "--eval-episodes", "3", "--num-eval-envs", "2"]
    (tmp_path / "plain").mkdir(), (tmp_path / "video").mkdir()
    run_in_process("fql.py", flags, tmp_path / "plain")
    run_in_process("fql.py", [*flags, "--capture-video", "--video-episodes", "2", "--save-model"], tmp_path / "video")
    (plain,), (video,) = glob.glob(f"{tmp_path}/plain/runs/*"), glob.glob(f"{tmp_path}/video/runs/*")

    assert sorted(os.listdir(os.path.join(video, "videos"))) == [f"eval_{s}_{e}.mp4" for s in (0, 2) for e in (0, 1)]
    for path in glob.glob(os.path.join(video, "videos", "*")):
        assert iio.imread(path).shape == (3, 200, 200, 3), path
    assert logged_videos(video) == {0: (200, 400), 2: (200, 400)} and logged_videos(plain) == {}  # side by side
    scalars = logged_scalars(video)
    assert ("eval/episodic_length", 2) in scalars and scalars == logged_scalars(plain)

    output = run_in_process("fql.py", ["--load-model", f"{video}/fql.flax", "--capture-video"], tmp_path)
    assert f"videos: {video}/videos/loaded_seed0_0.mp4" in output
    assert iio.imread(f"{video}/videos/loaded_seed0_0.mp4").shape == (3, 200, 200, 3)


RLDT_TINY = ["--actor-hidden-dims", "8", "--critic-hidden-dims", "8", "--time-dim", "4", "--pretrain-steps", "2"]
RLDT_TINY += ["--pretrain-log-every", "1", "--pretrain-batch-size", "4", "--iterations", "0", "--num-envs", "2"]


def test_rldt_records_hopper_evaluations_at_full_size_and_logs_the_same_numbers(tmp_path, minari_root, monkeypatch):
    """Gymnasium renders only in the mode its env was made with: --capture-video makes the evaluation envs with
    rgb_array, which changes no logged number. One frame per action, not per chunk: 3 frames of 480x480 for an episode
    of two actions (one chunk of --horizon 4 cut short by the time limit). Then the saved policy, beside it."""
    monkeypatch.setattr(gym.registry["Hopper-v5"], "max_episode_steps", 2)
    monkeypatch.setenv("MINARI_DATASETS_PATH", minari_root)
    flags = [*RLDT_TINY, "--eval-episodes", "2"]
    (tmp_path / "plain").mkdir(), (tmp_path / "video").mkdir()
    run_in_process("rldt.py", flags, tmp_path / "plain")
    run_in_process("rldt.py", [*flags, "--capture-video", "--save-model"], tmp_path / "video")
    (plain,), (video,) = glob.glob(f"{tmp_path}/plain/runs/*"), glob.glob(f"{tmp_path}/video/runs/*")

    assert os.listdir(os.path.join(video, "videos")) == ["eval_2_0.mp4"]
    assert iio.imread(os.path.join(video, "videos", "eval_2_0.mp4")).shape == (3, 480, 480, 3)
    assert iio.immeta(os.path.join(video, "videos", "eval_2_0.mp4"))["fps"] == 125  # Hopper's real time: dt 8 ms
    assert logged_videos(video) == {2: (240, 240)}  # every other pixel in TensorBoard
    scalars = logged_scalars(video)
    assert ("eval/episodic_length", 2) in scalars and scalars == logged_scalars(plain)

    output = run_in_process("rldt.py", ["--load-model", f"{video}/rldt.flax", "--capture-video"], tmp_path)
    assert f"videos: {video}/videos/loaded_seed0_0.mp4" in output
    assert iio.imread(f"{video}/videos/loaded_seed0_0.mp4").shape == (3, 480, 480, 3)


FM_IRL_TINY = ["--num-demos", "4", "--no-full-length-demos", "--total-timesteps", "64", "--num-envs", "2"]
FM_IRL_TINY += ["--num-steps", "32", "--num-minibatches", "2", "--num-epochs", "1", "--hidden-dim", "8"]
FM_IRL_TINY += ["--teacher-hidden-dim", "8", "--teacher-depth", "2", "--teacher-batch-size", "8"]
FM_IRL_TINY += ["--regularizer-samples", "4", "--eval-every", "64", "--eval-episodes", "1"]

# `python <script> <flags>` with episodes of two steps, in a process of its own: MuJoCo not yet imported.
TWO_STEP_HOPPER = """
import runpy, sys
import gymnasium as gym
gym.registry["Hopper-v5"].max_episode_steps = 2
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_fm_irl_records_a_saved_student_in_a_fresh_process_that_chooses_mujoco_gl_itself(
    tmp_path, minari_root, monkeypatch
):
    """The "show me" command where the user has not set MUJOCO_GL: the script sets egl before MuJoCo is first imported
    (fm_irl.py imports it only where checkpoints need it) and records the saved student beside it."""
    monkeypatch.setattr(gym.registry["Hopper-v5"], "max_episode_steps", 2)
    monkeypatch.setenv("MINARI_DATASETS_PATH", minari_root)
    run_in_process("fm_irl.py", [*FM_IRL_TINY, "--capture-video", "--save-model"], tmp_path)
    (run_dir,) = glob.glob(f"{tmp_path}/runs/*")
    assert iio.imread(os.path.join(run_dir, "videos", "eval_64_0.mp4")).shape == (3, 480, 480, 3)
    assert logged_videos(run_dir) == {64: (240, 240)}

    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")} | {"PYTHONPATH": ROOT}
    model = os.path.join(run_dir, "fm_irl.flax")
    command = [sys.executable, "-c", TWO_STEP_HOPPER, os.path.join(ROOT, "fm_irl.py"), "--load-model", model]
    shown = subprocess.run([*command, "--capture-video"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr[-3000:]
    assert f"videos: {run_dir}/videos/loaded_seed0_0.mp4" in shown.stdout
    assert iio.imread(f"{run_dir}/videos/loaded_seed0_0.mp4").shape == (3, 480, 480, 3)
