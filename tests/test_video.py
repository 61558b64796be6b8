"""--capture-video: the first evaluation episodes recorded as MP4 files and as TensorBoard's eval/video, every logged
number the same as without it, and a saved policy recorded without training (bad flags: test_bad_input.py).

Evaluation episodes are cut to two steps (the time limit the env is registered with), so that a video costs three
renders: the reset and each step."""

import glob
import os

import gymnasium as gym
import imageio.v3 as iio
import ogbench  # noqa: F401  (registers the OGBench environments)
from test_fql import logged_scalars, run_in_process

from benchmark.summarize import read_events

FQL_TINY = ["--offline-steps", "2", "--steps-per-call", "1", "--log-every", "1", "--eval-every", "2"]
FQL_TINY += ["--actor-hidden-dims", "8", "--value-hidden-dims", "8", "--batch-size", "4"]


def video_steps(run_dir: str) -> list[int]:
    """The steps at which the run logged eval/video (a GIF, as TensorBoard shows it)."""
    steps = []
    for path in glob.glob(os.path.join(run_dir, "events.out.tfevents.*")):
        for event in read_events(path):
            for value in event.summary.value:
                if value.tag == "eval/video":
                    assert value.image.encoded_image_string.startswith(b"GIF")
                    steps.append(event.step)
    return sorted(steps)


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
    assert video_steps(video) == [0, 2] and video_steps(plain) == []
    scalars = logged_scalars(video)
    assert ("eval/episodic_length", 2) in scalars and scalars == logged_scalars(plain)

    output = run_in_process("fql.py", ["--load-model", f"{video}/fql.flax", "--capture-video"], tmp_path)
    assert f"videos: {video}/videos/loaded_seed0_0.mp4" in output
    assert iio.imread(f"{video}/videos/loaded_seed0_0.mp4").shape == (3, 200, 200, 3)
