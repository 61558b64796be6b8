"""fql.py: loss structure (gradient isolation, TD target, target update), determinism, an end-to-end run interrupted
and resumed, saving and loading, NaN losses (bad flags and files: test_bad_input.py)."""

import contextlib
import dataclasses
import glob
import io
import json
import os
import runpy
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tensorboardX.proto.event_pb2 import SessionLog
from tqdm import tqdm

import fql
from benchmark.summarize import read_events

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OBS_DIM, ACTION_DIM, BATCH = 6, 3, 16
SMALL = ["--actor-hidden-dims", "32", "32", "--value-hidden-dims", "32", "32", "--batch-size", "16"]


def small_setup(**overrides):
    args = dataclasses.replace(
        fql.Args(),
        actor_hidden_dims=(32, 32),
        value_hidden_dims=(32, 32),
        batch_size=BATCH,
        alpha=10.0,
        discount=0.99,
        q_agg="mean",
        flow_steps=4,
        **overrides,
    )
    nets, tx = fql.make_networks(args, ACTION_DIM)
    state = fql.init_train_state(jax.random.PRNGKey(0), nets, tx, OBS_DIM, ACTION_DIM)
    keys = jax.random.split(jax.random.PRNGKey(1), 4)
    batch = {
        "observations": jax.random.normal(keys[0], (BATCH, OBS_DIM)),
        "actions": jax.random.uniform(keys[1], (BATCH, ACTION_DIM), minval=-1, maxval=1),
        "rewards": -jnp.ones(BATCH),
        "masks": jnp.ones(BATCH),
        "next_observations": jax.random.normal(keys[2], (BATCH, OBS_DIM)),
    }
    return args, nets, tx, state, batch


def loss_term_gradients(term, state, batch, nets, args):
    """Gradient of one logged loss term with respect to every parameter group."""
    return jax.grad(lambda p: fql.fql_loss(p, state.target_critic, batch, jax.random.PRNGKey(2), nets, args)[1][term])(
        state.params
    )


def all_zero(tree) -> bool:
    return all(bool(jnp.all(leaf == 0)) for leaf in jax.tree.leaves(tree))


def test_distillation_and_q_terms_give_exactly_zero_gradient_to_the_bc_flow():
    args, nets, _, state, batch = small_setup()
    for term in ("distill_loss", "q_loss"):
        grads = loss_term_gradients(term, state, batch, nets, args)
        assert all_zero(grads["bc_flow"]), term
        assert not all_zero(grads["onestep"]), term  # ... while the one-step policy does learn from them
    assert not all_zero(loss_term_gradients("bc_flow_loss", state, batch, nets, args)["bc_flow"])


def test_actor_loss_gives_no_gradient_to_the_critic_and_critic_loss_none_to_the_policies():
    args, nets, _, state, batch = small_setup()
    actor_grads = loss_term_gradients("actor_loss", state, batch, nets, args)
    assert all_zero(actor_grads["critic"])
    critic_grads = loss_term_gradients("critic_loss", state, batch, nets, args)
    assert all_zero(critic_grads["onestep"]) and all_zero(critic_grads["bc_flow"])
    assert not all_zero(critic_grads["critic"])


def test_target_critic_starts_equal_and_follows_the_pre_update_critic():
    args, nets, tx, state, batch = small_setup(tau=0.1)
    jax.tree.map(np.testing.assert_array_equal, state.target_critic, state.params["critic"])
    new_state, _ = fql.update(state, batch, jax.random.PRNGKey(3), nets, tx, args)
    expected = jax.tree.map(lambda t, c: 0.1 * c + 0.9 * t, state.target_critic, state.params["critic"])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), new_state.target_critic, expected)
    assert not all_zero(jax.tree.map(lambda a, b: a - b, new_state.params["critic"], state.params["critic"]))


def test_q_agg_min_target_is_at_most_the_mean_target():
    args, nets, _, state, batch = small_setup()
    # Make the two target critics disagree so that min and mean differ.
    target = jax.tree.map(lambda x: x * jnp.array([1.0, 3.0]).reshape((2,) + (1,) * (x.ndim - 1)), state.target_critic)
    key = jax.random.PRNGKey(4)
    y_mean = fql.critic_target(state.params["onestep"], target, batch, key, nets, args)
    y_min = fql.critic_target(state.params["onestep"], target, batch, key, nets, dataclasses.replace(args, q_agg="min"))
    assert bool(jnp.all(y_min <= y_mean + 1e-6)) and not np.allclose(y_min, y_mean)
    # mask = 0 removes the bootstrap: the target is the reward alone.
    ended = dict(batch, masks=jnp.zeros(BATCH))
    np.testing.assert_allclose(fql.critic_target(state.params["onestep"], target, ended, key, nets, args), -1.0)


def test_acting_is_stochastic_and_clipped():
    args, nets, _, state, batch = small_setup()
    obs = batch["observations"]
    a1 = fql.sample_actions(nets, state.params["onestep"], obs, jax.random.PRNGKey(5))
    a2 = fql.sample_actions(nets, state.params["onestep"], obs, jax.random.PRNGKey(6))
    assert not np.allclose(a1, a2) and float(jnp.abs(a1).max()) <= 1.0


def test_train_chunk_is_deterministic_and_does_not_depend_on_how_steps_are_grouped():
    args, nets, tx, state, batch = small_setup()
    data = jax.tree.map(lambda x: jnp.concatenate([x] * 4), batch)
    chunk = jax.jit(
        lambda state, first, n: fql.train_chunk(
            state, data, 4 * BATCH, jax.random.PRNGKey(7), first, n, nets, tx, args
        ),
        static_argnums=2,
    )
    (state_a, infos_a), (_, infos_b) = chunk(state, 0, 2), chunk(state, 0, 2)
    middle, infos_c1 = chunk(state, 0, 1)
    state_c, infos_c2 = chunk(middle, 1, 1)  # the same two steps in two calls
    for k in infos_a:
        np.testing.assert_array_equal(infos_a[k], infos_b[k])
        np.testing.assert_array_equal(infos_a[k], np.concatenate([infos_c1[k], infos_c2[k]]))
    jax.tree.map(np.testing.assert_array_equal, state_a, state_c)
    assert np.isfinite(infos_a["total_loss"]).all() and infos_a["total_loss"].shape == (2,)
    assert infos_a["total_loss"][0] != infos_a["total_loss"][1]


def test_env_id_aliases_resolve_to_the_paper_default_tasks():
    assert fql.resolve_env_id("antmaze") == (
        "antmaze-large",
        "antmaze-large-navigate-singletask-task1-v0",
        "antmaze-large-navigate-v0",
    )
    assert fql.resolve_env_id("cube-single")[1] == "cube-single-play-singletask-task2-v0"
    assert fql.resolve_env_id("puzzle-3x3-task1")[1] == "puzzle-3x3-play-singletask-task1-v0"
    assert fql.resolve_env_id("scene-play-singletask-v0")[1] == "scene-play-singletask-task2-v0"
    with pytest.raises(ValueError, match="unknown environment; give one of antmaze-large.*cube-single"):
        fql.resolve_env_id("cube-triple")


def test_relabelled_rewards_and_masks(cube_single_dir):
    _, train, val = fql.load_data(
        "cube-single-play-singletask-task2-v0", "cube-single-play-v0", cube_single_dir, "post"
    )
    for data in (train, val):
        assert set(np.unique(data["rewards"])) <= {-1.0, 0.0}  # one cube: r = #successes - 1
        np.testing.assert_array_equal(data["masks"], (data["rewards"] != 0).astype(np.float32))
        assert np.abs(data["actions"]).max() <= 1 - 1e-5
    assert train["observations"].shape == (400, 28) and train["actions"].shape == (400, 5)


def run_in_process(script: str, argv: list[str], cwd, interrupt_at: int | None = None) -> str:
    """Run `python <script> <argv>` in this process (no second JAX import), in `cwd`; return what it printed. With
    `interrupt_at`, press Ctrl-C (raise KeyboardInterrupt) once the progress bar reaches that step."""
    original_update, stdout, old_argv, old_cwd = tqdm.update, io.StringIO(), sys.argv, os.getcwd()

    def update(bar, n=1):
        original_update(bar, n)
        if interrupt_at is not None and bar.n >= interrupt_at:
            raise KeyboardInterrupt

    tqdm.update, sys.argv = update, [script, *argv]
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(stdout):
            try:
                runpy.run_path(os.path.join(ROOT, script), run_name="__main__")
            except SystemExit as exit_:
                if exit_.code not in (None, 0):
                    raise
        assert interrupt_at is None, "the run ended before the interruption"
    except KeyboardInterrupt:
        assert interrupt_at is not None
    finally:
        tqdm.update, sys.argv = original_update, old_argv
        os.chdir(old_cwd)
    return stdout.getvalue()


def logged_scalars(run_dir: str) -> dict:
    """(tag, step) -> value of every scalar of a run but its timings, as TensorBoard shows a resumed run: a later event
    file that starts with a purge at step P drops what earlier files logged at steps >= P."""
    scalars = {}
    for path in sorted(glob.glob(os.path.join(run_dir, "events.out.tfevents.*"))):
        for event in read_events(path):
            if event.HasField("session_log") and event.session_log.status == SessionLog.START:
                scalars = {(tag, step): v for (tag, step), v in scalars.items() if step < event.step}
            for value in event.summary.value:
                if value.HasField("simple_value") and value.tag != "charts/SPS":
                    scalars[value.tag, event.step] = value.simple_value
    return scalars


# 40 offline + 250 online steps: one 200-step episode, then 50 steps. Checkpoints every 20 steps; the online one waits
# for the end of the episode (step 240). One gradient step per compiled call, as online: the run compiles one update.
RUN = ["--env-id", "cube-single", "--offline-steps", "40", "--online-steps", "250", "--buffer-size", "500"]
RUN += ["--steps-per-call", "1", "--log-every", "5", "--checkpoint-every", "20", *SMALL]


def test_offline_to_online_run_interrupted_twice_and_resumed_gives_the_uninterrupted_run(tmp_path, cube_single_dir):
    """Interrupted offline (step 30) and online (step 260), the run resumes twice and logs exactly the uninterrupted
    run's losses, episodes and evaluations, and ends with its parameters: the checkpoints hold the parameters, optimiser
    and target critic, the keys, the step counters, the replay buffer (500 rows: it wraps around) and the env's RNG."""
    flags = [*RUN, "--dataset-dir", cube_single_dir, "--eval-every", "40", "--eval-episodes", "2", "--num-eval-envs"]
    flags += ["2", "--save-model"]
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    output = run_in_process("fql.py", flags, tmp_path / "a")
    assert "run folder: runs/cube-single-play-singletask-task2-v0__fql__0__" in output and "final success" in output
    (run_a,) = glob.glob(str(tmp_path / "a" / "runs" / "*"))
    saved = json.load(open(os.path.join(run_a, "args.json")))
    assert saved["alpha"] == 300.0 and saved["q_agg"] == "mean" and saved["actor_hidden_dims"] == [32, 32]

    run_in_process("fql.py", flags, tmp_path / "b", interrupt_at=30)
    (run_b,) = glob.glob(str(tmp_path / "b" / "runs" / "*"))
    resume = ["--resume", os.path.relpath(run_b, tmp_path / "b")]
    assert "resuming from the checkpoint at step 20" in run_in_process("fql.py", resume, tmp_path / "b", 260)
    assert "resuming from the checkpoint at step 240" in run_in_process("fql.py", resume, tmp_path / "b")
    assert not glob.glob(run_b + "/*.tmp")

    scalars_a, scalars_b = logged_scalars(run_a), logged_scalars(run_b)
    assert {("losses/critic_loss", 40), ("losses/critic_loss", 290), ("charts/episodic_return", 240)} <= set(scalars_a)
    assert ("eval/success", 290) in scalars_a and scalars_b == scalars_a
    with open(os.path.join(run_a, "fql.flax"), "rb") as a, open(os.path.join(run_b, "fql.flax"), "rb") as b:
        assert a.read() == b.read()

    loaded = run_in_process(
        "fql.py", ["--load-model", os.path.join(run_a, "fql.flax"), "--eval-episodes", "2"], tmp_path
    )
    assert "cube-single-play-singletask-task2-v0: success" in loaded


def test_eval_episodes_0_skips_evaluation(tmp_path, cube_single_dir):
    output = run_in_process(
        "fql.py", [*RUN, "--dataset-dir", cube_single_dir, "--online-steps", "5", "--eval-episodes", "0"], tmp_path
    )
    assert "eval success" not in output and "no evaluation (--eval-episodes 0)" in output
    (run_dir,) = glob.glob(str(tmp_path / "runs" / "*"))
    assert ("losses/critic_loss", 45) in logged_scalars(run_dir)
    assert not any(tag.startswith("eval/") for tag, _ in logged_scalars(run_dir))


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_parameters(tmp_path, cube_single_dir):
    for suffix in ("", "-val"):  # observations that are finite, but overflow the networks at the first step
        with np.load(os.path.join(cube_single_dir, f"cube-single-play-v0{suffix}.npz")) as f:
            np.savez(tmp_path / f"cube-single-play-v0{suffix}.npz", **dict(f, observations=f["observations"] * 1e30))
    with pytest.raises(SystemExit, match=r"NaN or infinite at step 1 \(parameters of step 0 saved to runs/"):
        run_in_process("fql.py", [*RUN, "--dataset-dir", str(tmp_path), "--eval-episodes", "0"], tmp_path)
    (model,) = glob.glob(str(tmp_path / "runs" / "*" / "fql.flax"))
    assert os.path.getsize(model) > 0 and not glob.glob(str(tmp_path / "runs" / "*" / "*.tmp"))
