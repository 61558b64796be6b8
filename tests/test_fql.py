"""fql.py: loss structure (gradient isolation, TD target, target update), the loss terms by hand, determinism, an
end-to-end run interrupted and resumed, saving and loading, NaN losses (bad flags and files: test_bad_input.py; the
official code's values: test_fql_golden.py)."""

import contextlib
import dataclasses
import glob
import io
import json
import os
import runpy
import sys

import flax
import flax.linen as nn
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
    settings = dict(actor_hidden_dims=(32, 32), value_hidden_dims=(32, 32), batch_size=BATCH, flow_steps=4)
    settings.update(alpha=10.0, discount=0.99, q_agg="mean")
    args = dataclasses.replace(fql.Args(), **(settings | overrides))
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


def layer_of(params, layer: str) -> dict:
    """The parameters {"kernel", "bias", ...} of the one layer named `layer` (Dense_0, ...) in one network's params."""
    flat = flax.traverse_util.flatten_dict(params)
    (prefix,) = {path[:-1] for path in flat if path[-2] == layer}
    return {path[-1]: value for path, value in flat.items() if path[:-1] == prefix}


def map_layer(params, layer: str, change):
    """`params` with the parameters of the layer named `layer` replaced by change(those parameters)."""
    flat = flax.traverse_util.flatten_dict(params)
    (prefix,) = {path[:-1] for path in flat if path[-2] == layer}
    flat.update({(*prefix, name): value for name, value in change(layer_of(params, layer)).items()})
    return flax.traverse_util.unflatten_dict(flat)


def constant_output(params, value, last_layer: str = "Dense_2"):
    """A network (2x32 hidden, so Dense_2 is its output layer) whose output is `value` for every input."""
    return map_layer(
        params, last_layer, lambda layer: dict(kernel=jnp.zeros_like(layer["kernel"]), bias=jnp.asarray(value))
    )


class LinearCritics(nn.Module):
    """Two critics linear in the action, Q_i(s, a) = w_i . a + c_i, with fql.py's critic interface: (2, B)."""

    @nn.compact
    def __call__(self, observations, actions):
        w = self.param("w", nn.initializers.zeros, (2, actions.shape[-1]))
        c = self.param("c", nn.initializers.zeros, (2,))
        return w @ actions.T + c[:, None]


def linear_critic_setup(w, c, target_w, target_c, onestep_action, **overrides):
    """small_setup with LinearCritics as critic and target critic, and a one-step policy that returns `onestep_action`
    (inside the box) whatever the state and noise."""
    args, nets, tx, state, batch = small_setup(**overrides)
    nets = nets._replace(critic=LinearCritics())
    critic = {"params": {"w": jnp.asarray(w), "c": jnp.asarray(c)}}
    target = {"params": {"w": jnp.asarray(target_w), "c": jnp.asarray(target_c)}}
    params = dict(state.params, critic=critic, onestep=constant_output(state.params["onestep"], onestep_action))
    return args, nets, tx, state._replace(params=params, target_critic=target, opt_state=tx.init(params)), batch


def test_distillation_and_q_terms_give_exactly_zero_gradient_to_the_bc_flow():
    args, nets, _, state, batch = small_setup()
    key = jax.random.PRNGKey(2)  # the key of loss_term_gradients: the same draws before and after the step
    before = fql.fql_loss(state.params, state.target_critic, batch, key, nets, args)[1]
    for term, logged, direction in (("distill_loss", "distill_loss", -1), ("q_loss", "q", +1)):
        grads = loss_term_gradients(term, state, batch, nets, args)
        assert all_zero(grads["bc_flow"]), term
        # ... while the one-step policy does learn from them: a small step against the gradient brings it closer to the
        # BC flow's actions (distillation) or raises the critics' Q at its actions (Q term)
        stepped = jax.tree.map(lambda p, g: p - 1e-3 * g, state.params["onestep"], grads["onestep"])
        after = fql.fql_loss(dict(state.params, onestep=stepped), state.target_critic, batch, key, nets, args)[1]
        assert direction * (after[logged] - before[logged]) > 0, term
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
    # From a target unlike the critic, tau weighs the critic and 1 - tau the target.
    unlike = state._replace(target_critic=jax.tree.map(lambda x: 0.5 * x - 0.1, state.target_critic))
    new_state, _ = fql.update(unlike, batch, jax.random.PRNGKey(3), nets, tx, args)
    expected = jax.tree.map(lambda t, c: 0.1 * c + 0.9 * t, unlike.target_critic, state.params["critic"])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), new_state.target_critic, expected)


def test_q_agg_min_target_is_at_most_the_mean_target():
    args, nets, _, state, batch = small_setup()
    batch = dict(batch, rewards=jnp.array([-1.0, 0.0, -2.0, -1.0] * 4), masks=jnp.array([1.0, 1.0, 0.0, 0.0] * 4))
    # Make the two target critics disagree so that min and mean differ, and blind to the action (its rows of the first
    # layer zeroed), so that Q'(s', a') can be evaluated here without the next action's noise.
    target = jax.tree.map(lambda x: x * jnp.array([1.0, 3.0]).reshape((2,) + (1,) * (x.ndim - 1)), state.target_critic)
    target = map_layer(target, "Dense_0", lambda layer: dict(layer, kernel=layer["kernel"].at[:, OBS_DIM:].set(0.0)))
    key = jax.random.PRNGKey(4)
    y_mean = fql.critic_target(state.params["onestep"], target, batch, key, nets, args)
    y_min = fql.critic_target(state.params["onestep"], target, batch, key, nets, dataclasses.replace(args, q_agg="min"))
    assert bool(jnp.all(y_min <= y_mean + 1e-6)) and not np.allclose(y_min, y_mean)
    # The value: r + gamma * mask * agg_i Q'_i(s', .), gamma = 0.99.
    next_q = np.asarray(nets.critic.apply(target, batch["next_observations"], jnp.zeros((BATCH, ACTION_DIM))))
    r, m = np.asarray(batch["rewards"]), np.asarray(batch["masks"])
    np.testing.assert_allclose(y_mean, r + 0.99 * m * next_q.mean(axis=0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(y_min, r + 0.99 * m * next_q.min(axis=0), rtol=1e-6, atol=1e-6)
    # mask = 0 removes the bootstrap: the target is the reward alone.
    ended = dict(batch, masks=jnp.zeros(BATCH))
    np.testing.assert_allclose(fql.critic_target(state.params["onestep"], target, ended, key, nets, args), r)


def test_td_target_by_hand_for_mean_and_min_with_masks():
    """Two target critics that answer 2 and -1 everywhere: y = r + 0.9 * mask * (0.5 for mean, -1 for min)."""
    args, nets, _, state, batch = small_setup(discount=0.9)
    target = constant_output(state.target_critic, [[2.0], [-1.0]])
    batch = dict(batch, rewards=jnp.array([-1.0, 0.0, -2.0, -1.0] * 4), masks=jnp.array([1.0, 1.0, 0.0, 0.0] * 4))
    key = jax.random.PRNGKey(8)
    y_mean = fql.critic_target(state.params["onestep"], target, batch, key, nets, args)
    y_min = fql.critic_target(state.params["onestep"], target, batch, key, nets, dataclasses.replace(args, q_agg="min"))
    np.testing.assert_allclose(y_mean, [-0.55, 0.45, -2.0, -1.0] * 4, rtol=1e-6)
    np.testing.assert_allclose(y_min, [-1.9, -0.9, -2.0, -1.0] * 4, rtol=1e-6)


def test_loss_terms_by_hand_with_linear_critics():
    """Linear critics, a one-step policy that answers b = (0.2, -0.5, 0.9) and a BC flow whose Euler actions all land on
    the clip at (1, -1, 1): the critic, distillation and Q terms by hand, and how the logged terms add up."""
    w, c = np.array([[1.0, -1.0, 0.5], [0.5, 0.0, -1.0]]), np.array([0.1, -0.3])
    target_w, target_c = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]]), np.array([0.5, -0.5])
    b = np.array([0.2, -0.5, 0.9])
    for normalize in (False, True):
        args, nets, _, state, batch = linear_critic_setup(w, c, target_w, target_c, b, normalize_q_loss=normalize)
        bc_flow = constant_output(state.params["bc_flow"], [50.0, -50.0, 50.0])  # the Euler chain ends at +-50 + z
        params = dict(state.params, bc_flow=bc_flow)
        batch = dict(batch, rewards=jnp.array([-1.0, 0.0] * 8), masks=jnp.array([1.0, 1.0, 0.0, 1.0] * 4))
        _, info = fql.fql_loss(params, state.target_critic, batch, jax.random.PRNGKey(9), nets, args)

        # TD target: next actions are b, Q' = (0.2 + 0.5, 2 * (-0.5) - 0.5) = (0.7, -1.5), mean -0.4; gamma 0.99
        y = np.asarray(batch["rewards"]) + 0.99 * np.asarray(batch["masks"]) * -0.4
        q_data = w @ np.asarray(batch["actions"]).T + c[:, None]  # (2, B) at the dataset actions
        np.testing.assert_allclose(info["critic_loss"], np.mean((q_data - y) ** 2), rtol=1e-5)  # mean over both critics
        # Distillation towards (1, -1, 1): ((0.2 - 1)^2 + (-0.5 + 1)^2 + (0.9 - 1)^2) / 3 = 0.3
        np.testing.assert_allclose(info["distill_loss"], 0.3, rtol=1e-5)
        # Q term at b: Q = (0.2 + 0.5 + 0.45 + 0.1, 0.1 - 0.9 - 0.3) = (1.25, -1.1), mean 0.075
        np.testing.assert_allclose(info["q"], 0.075, rtol=1e-5)
        np.testing.assert_allclose(info["q_loss"], -1.0 if normalize else -0.075, rtol=1e-5)  # normalised: / |0.075|
        # The logged terms add up as the paper writes them: alpha = 10 on the distillation only.
        actor = info["bc_flow_loss"] + 10.0 * info["distill_loss"] + info["q_loss"]
        np.testing.assert_allclose(info["actor_loss"], actor, rtol=1e-6)
        np.testing.assert_allclose(info["total_loss"], info["critic_loss"] + actor, rtol=1e-6)


def test_one_actor_step_raises_a_linear_critic():
    """With Q linear in the action, the Q term's gradient on the one-step policy's output bias is -mean_i w_i (the mean
    of both critics, not their min), and one update with alpha = 0 moves the policy's actions up that Q."""
    w, c = np.array([[1.0, -1.0, 0.5], [-0.5, 0.5, 2.0]]), np.array([0.0, -3.0])  # critic 2 is the lower one
    args, nets, tx, state, batch = linear_critic_setup(w, c, w, c, [0.2, -0.5, 0.1], alpha=0.0)
    grads = loss_term_gradients("q_loss", state, batch, nets, args)
    np.testing.assert_allclose(layer_of(grads["onestep"], "Dense_2")["bias"], -w.mean(axis=0), rtol=1e-6)

    noise = jax.random.normal(jax.random.PRNGKey(10), (BATCH, ACTION_DIM))
    obs = batch["observations"]

    def mean_q(onestep_params):
        actions = jnp.clip(nets.onestep.apply(onestep_params, obs, noise), -1, 1)
        return float(nets.critic.apply(state.params["critic"], obs, actions).mean())

    new_state, _ = fql.update(state, batch, jax.random.PRNGKey(11), nets, tx, args)
    assert mean_q(new_state.params["onestep"]) > mean_q(state.params["onestep"]) + 1e-4


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


def test_relabelled_rewards_and_masks(cube_single_dir, tmp_path):
    # The random policy of the fixture never solves the task: plant the cube at task 2's goal (0.50, 0, 0.02) in the
    # stored MuJoCo state (qpos[14:17]) of a few steps, inside OGBench's 0.04 success radius and just outside it.
    goal = np.array([0.50, 0.0, 0.02])
    planted = {"": {5: 0.0, 8: 0.03, 9: 0.05, 150: 0.0, 303: 0.0}, "-val": {10: 0.0}}  # stored step: distance to goal
    for suffix, steps in planted.items():
        with np.load(os.path.join(cube_single_dir, f"cube-single-play-v0{suffix}.npz")) as f:
            arrays = dict(f)
        for step, distance in steps.items():
            arrays["qpos"][step, 14:17] = goal + [distance, 0.0, 0.0]
        np.savez(tmp_path / f"cube-single-play-v0{suffix}.npz", **arrays)
    _, train, val = fql.load_data("cube-single-play-singletask-task2-v0", "cube-single-play-v0", str(tmp_path), "post")
    # Stored step 101 e + t of episode e is transition 100 e + t (OGBench drops each episode's last stored step).
    expected = {"train": np.full(400, -1.0), "val": np.full(100, -1.0)}
    expected["train"][[5, 8, 149, 300]] = 0.0
    expected["val"][10] = 0.0
    for data, rewards in ((train, expected["train"]), (val, expected["val"])):
        np.testing.assert_array_equal(data["rewards"], rewards)  # one cube: r = #successes - 1
        np.testing.assert_array_equal(data["masks"], -rewards)  # 0 on success: no bootstrap from there
        assert set(np.unique(data["rewards"])) <= {-1.0, 0.0}
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
