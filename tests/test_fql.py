"""fql.py: loss structure (gradient isolation, TD target, target update), determinism, end-to-end runs, bad input."""

import dataclasses
import glob
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fql

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


def test_train_chunk_is_deterministic_given_the_seed():
    args, nets, tx, state, batch = small_setup()
    data = jax.tree.map(lambda x: jnp.concatenate([x] * 4), batch)
    chunk = jax.jit(lambda state, key: fql.train_chunk(state, data, 4 * BATCH, key, 5, nets, tx, args))
    (_, _, infos_a), (_, _, infos_b) = chunk(state, jax.random.PRNGKey(7)), chunk(state, jax.random.PRNGKey(7))
    for k in infos_a:
        np.testing.assert_array_equal(infos_a[k], infos_b[k])
    assert np.isfinite(infos_a["total_loss"]).all() and infos_a["total_loss"].shape == (5,)


def test_env_id_aliases_resolve_to_the_paper_default_tasks():
    assert fql.resolve_env_id("antmaze") == (
        "antmaze-large",
        "antmaze-large-navigate-singletask-task1-v0",
        "antmaze-large-navigate-v0",
    )
    assert fql.resolve_env_id("cube-single")[1] == "cube-single-play-singletask-task2-v0"
    assert fql.resolve_env_id("puzzle-3x3-task1")[1] == "puzzle-3x3-play-singletask-task1-v0"
    assert fql.resolve_env_id("scene-play-singletask-v0")[1] == "scene-play-singletask-task2-v0"
    with pytest.raises(SystemExit, match="unknown --env-id 'cube-triple'.*cube-single"):
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


def run_fql(tmp_path, *flags, check=True):
    env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "fql.py"), *flags], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_offline_to_online_end_to_end_then_save_load_and_evaluate(tmp_path, cube_single_dir):
    flags = ["--env-id", "cube-single", "--dataset-dir", cube_single_dir, "--offline-steps", "40", "--online-steps"]
    flags += ["30", "--log-every", "20", "--eval-every", "20", "--eval-episodes", "2", "--num-eval-envs", "2"]
    result = run_fql(tmp_path, *flags, *SMALL, "--save-model")
    assert "final success" in result.stdout
    (run_dir,) = glob.glob(str(tmp_path / "runs" / "cube-single-play-singletask-task2-v0__fql__0__*"))
    saved = json.load(open(os.path.join(run_dir, "args.json")))
    assert saved["alpha"] == 300.0 and saved["q_agg"] == "mean" and saved["actor_hidden_dims"] == [32, 32]
    assert glob.glob(os.path.join(run_dir, "events.out.tfevents.*"))
    loaded = run_fql(tmp_path, "--load-model", os.path.join(run_dir, "fql.flax"), "--eval-episodes", "2")
    assert "cube-single-play-singletask-task2-v0: success" in loaded.stdout


def test_bad_input_gives_clear_messages(tmp_path, cube_single_dir):
    unknown = run_fql(tmp_path, "--env-id", "cheetah", check=False)
    assert unknown.returncode != 0 and "unknown --env-id 'cheetah'" in unknown.stderr
    assert "Traceback" not in unknown.stderr

    missing = run_fql(tmp_path, "--env-id", "scene", "--dataset-dir", str(tmp_path), check=False)
    assert missing.returncode != 0 and "scene-play-v0.npz" in missing.stderr
    assert f"python benchmark/make_dataset.py --dataset scene-play-v0 --out-dir {tmp_path}" in missing.stderr

    broken_dir = tmp_path / "broken"
    broken_dir.mkdir()
    for suffix in ("", "-val"):
        with np.load(os.path.join(cube_single_dir, f"cube-single-play-v0{suffix}.npz")) as f:
            np.savez(broken_dir / f"cube-single-play-v0{suffix}.npz", **{k: f[k] for k in f.files if k != "qpos"})
    broken = run_fql(tmp_path, "--dataset-dir", str(broken_dir), check=False)
    assert broken.returncode != 0 and "lacks the keys ['qpos']" in broken.stderr and "Traceback" not in broken.stderr


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_parameters(tmp_path, cube_single_dir):
    flags = ["--dataset-dir", cube_single_dir, "--offline-steps", "20", "--log-every", "10", "--eval-episodes", "1"]
    result = run_fql(tmp_path, *flags, "--num-eval-envs", "1", "--alpha", "nan", "--save-model", *SMALL, check=False)
    assert result.returncode != 0 and "NaN or infinite at step 1." in result.stderr
    assert "Parameters from step 0 saved" in result.stderr
    (model,) = glob.glob(str(tmp_path / "runs" / "*" / "fql.flax"))
    assert os.path.getsize(model) > 0 and not glob.glob(str(tmp_path / "runs" / "*" / "*.tmp"))
