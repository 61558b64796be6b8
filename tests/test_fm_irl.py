"""fm_irl.py: the teacher's flow matching, discriminator and reward, the regulariser's gradient path, the return
normaliser and GAE against hand computations, and end-to-end runs (Minari and OGBench demonstrations, save, load,
evaluate, resume, NaN stop, a missing dataset)."""

import dataclasses
import glob
import json
import os
import subprocess
import sys
from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import fm_irl
from benchmark.summarize import read_events

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OBS_DIM, ACTION_DIM = 3, 2
fast_jit = partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})  # compiles in half the time
# A tiny configuration of the whole code path: 4 envs x 64 steps per iteration, small networks.
SMALL = ["--num-envs", "4", "--num-steps", "64", "--num-minibatches", "4", "--num-epochs", "1", "--hidden-dim", "16"]
SMALL += ["--teacher-hidden-dim", "16", "--teacher-depth", "2", "--teacher-batch-size", "16"]
SMALL += ["--regularizer-samples", "8", "--eval-every", "256", "--eval-episodes", "2", "--num-eval-envs", "2"]


def small_setup(**overrides):
    args = dataclasses.replace(
        fm_irl.Args(),
        label_dim=3,
        teacher_hidden_dim=32,
        teacher_depth=3,
        teacher_lr=1e-3,
        hidden_dim=32,
        regularizer_samples=16,
        reward_bonus=0.0,
        proper_time_limits=False,
        **overrides,
    )
    nets, student_tx, teacher_tx = fm_irl.make_networks(args, OBS_DIM, ACTION_DIM)
    state = fm_irl.init_train_state(jax.random.PRNGKey(0), nets, student_tx, teacher_tx, args)
    return args, nets, student_tx, teacher_tx, state


def test_antithetic_times_pair_k_with_n_minus_1_minus_k_on_the_grid():
    t = np.asarray(fm_irl.antithetic_times(jax.random.PRNGKey(0), 64, 100))
    np.testing.assert_allclose(t[:32] + t[32:], 0.99, atol=1e-6)  # (k + n - 1 - k) / n
    np.testing.assert_allclose(t * 100, np.round(t * 100), atol=1e-4)  # on the grid k / 100
    assert t.min() >= 0 and t.max() <= 0.99 and len(np.unique(t)) > 20


def normalised_time_embedding(teacher, params, t):
    """The LayerNorm output before its affine map, and the time MLP's u1 - u2 that it normalises."""
    x, labels = jnp.zeros((len(t), teacher.data_dim)), jnp.ones((len(t), 1))
    names = ("time_out", "time_norm")
    apply = fast_jit(partial(teacher.apply, capture_intermediates=lambda m, _: m.name in names))
    _, inter = apply(params, x, labels, t)
    u, e = (np.asarray(inter["intermediates"][name]["__call__"][0]) for name in names)
    norm = params["params"]["time_norm"]
    return (e - np.asarray(norm["bias"])) / np.asarray(norm["scale"]), u[:, 0] - u[:, 1]


def test_released_time_embedding_is_nearly_binary_and_the_sinusoidal_option_is_not():
    teacher = fm_irl.Teacher(OBS_DIM + ACTION_DIM, 32, 3)
    t = jnp.linspace(0, 1, 1001)
    params = teacher.init(jax.random.PRNGKey(0), jnp.zeros((2, 5)), jnp.zeros((2, 1)), t[:2])
    n, d = normalised_time_embedding(teacher, params, t)
    np.testing.assert_allclose(n[:, 0], -n[:, 1], atol=1e-6)  # LayerNorm over 2 features: (n, -n) ...
    np.testing.assert_allclose(np.abs(n[:, 0]), np.abs(d) / 2 / np.sqrt(d**2 / 4 + 1e-5), atol=1e-4)  # ... |n| -> 1
    assert (np.abs(n[:, 0]) > 0.99).mean() < 0.9  # at init u1 - u2 is small: a graded ramp in tau
    params["params"]["time_out"]["kernel"] *= 100  # once the time MLP's weights have grown
    n, _ = normalised_time_embedding(teacher, params, t)
    assert (np.abs(n[:, 0]) > 0.99).mean() > 0.95 and len(np.unique(np.sign(n[1:, 0]))) == 1
    sinusoidal = fm_irl.Teacher(OBS_DIM + ACTION_DIM, 32, 3, "sinusoidal")
    x, labels = jnp.zeros((1001, 5)), jnp.ones((1001, 1))
    v = np.asarray(
        fast_jit(sinusoidal.apply)(sinusoidal.init(jax.random.PRNGKey(0), x[:2], labels[:2], t[:2]), x, labels, t)
    )
    assert len(np.unique(np.round(v[:, 0], 5))) > 500  # the velocity keeps resolving the time


class HandSetVelocity(nn.Module):
    """v(x_t, c, t) = 2 c x_t: with x0 = 0 and t = 1/2 it is exactly x1 - x0 for the expert label and 0 otherwise."""

    @nn.compact
    def __call__(self, x, label, t):
        return 2.0 * label[:, :1] * x


def test_discriminator_and_reward_from_hand_set_losses():
    args = dataclasses.replace(fm_irl.Args(), label_dim=2)
    x1 = jnp.array([[1.0, 2.0], [0.5, -0.5], [0.0, 3.0]])
    x0, t = jnp.zeros_like(x1), jnp.full(3, 0.5)
    teacher = HandSetVelocity()
    expert_label_loss = fm_irl.flow_matching_losses(teacher, {}, x1, 1.0, x0, t, args.label_dim)
    agent_label_loss = fm_irl.flow_matching_losses(teacher, {}, x1, 0.0, x0, t, args.label_dim)
    np.testing.assert_allclose(expert_label_loss, 0.0)
    np.testing.assert_allclose(agent_label_loss, [2.5, 0.25, 4.5])  # mean over dims of (x1 - x0)^2
    logits = agent_label_loss - expert_label_loss  # the pairs fit the expert branch: D > 1/2, positive reward
    d = jax.nn.sigmoid(logits)
    np.testing.assert_allclose(d, np.exp(-0.0) / (np.exp(-0.0) + np.exp(-np.array([2.5, 0.25, 4.5]))), rtol=1e-6)
    np.testing.assert_allclose(fm_irl.airl_reward(logits), [2.5, 0.25, 4.5], rtol=1e-5)
    assert np.all(fm_irl.airl_reward(-logits) < 0)  # agent-like pairs get negative rewards
    # Saturation of the float32 formula (also compiled, where a naive `1 - D + 1e-20` loses its 1e-20).
    extreme = jnp.array([-200.0, -60.0, 60.0, 200.0])
    for reward in (fm_irl.airl_reward(extreme), jax.jit(fm_irl.airl_reward)(extreme)):
        np.testing.assert_allclose(reward, [-46.0517, -46.0517, 46.0517, 46.0517], rtol=1e-4)


def test_teacher_separates_expert_pairs_from_uniform_noise_on_a_2d_toy():
    args = dataclasses.replace(fm_irl.Args(), label_dim=1, teacher_hidden_dim=32, teacher_depth=2, teacher_lr=1e-3)
    nets, student_tx, teacher_tx = fm_irl.make_networks(args, 1, 1)
    state = fm_irl.init_train_state(jax.random.PRNGKey(0), nets, student_tx, teacher_tx, args)

    def expert(key, n):  # (s, a) on the curve a = 0.8 sin(3 s)
        s = jax.random.uniform(key, (n, 1), minval=-1, maxval=1)
        return jnp.concatenate([s, 0.8 * jnp.sin(3 * s)], -1)

    def noise(key, n):
        return jax.random.uniform(key, (n, 2), minval=-1.5, maxval=1.5)

    @fast_jit
    def train(params, opt_state, key):
        def step(carry, key):
            params, opt_state = carry
            k1, k2, k3 = jax.random.split(key, 3)
            grads, _ = jax.grad(fm_irl.teacher_loss, has_aux=True)(params, expert(k1, 128), noise(k2, 128), k3, nets, args)  # fmt: skip
            updates, opt_state = teacher_tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), None

        return jax.lax.scan(step, (params, opt_state), jax.random.split(key, 300))[0]

    params, _ = train(state.teacher, state.teacher_opt, jax.random.PRNGKey(1))
    keys = jax.random.split(jax.random.PRNGKey(2), 4)
    logits = fast_jit(partial(fm_irl.discriminator_logits, nets.teacher, args=args))
    expert_logits = logits(params, expert(keys[0], 4000), keys[1])
    noise_logits = logits(params, noise(keys[2], 4000), keys[3])
    assert jax.nn.sigmoid(expert_logits).mean() > 0.55 > 0.45 > jax.nn.sigmoid(noise_logits).mean()
    assert fm_irl.airl_reward(expert_logits).mean() > fm_irl.airl_reward(noise_logits).mean() + 0.8
    # The quirk of the released time embedding: trained, it is the same vector at every tau.
    n, _ = normalised_time_embedding(nets.teacher, params, jnp.linspace(0, 1, 101))
    assert (np.abs(n[:, 0]) > 0.95).all() and len(np.unique(np.sign(n[:, 0]))) == 1


def test_regularizer_gradient_reaches_only_the_students_mean_network():
    args, nets, _, _, state = small_setup()
    sample = fast_jit(partial(fm_irl.teacher_samples, num_samples=16, nets=nets, args=args))
    states, actions = sample(state.teacher, jax.random.PRNGKey(3))
    assert states.shape == (16, OBS_DIM) and actions.shape == (16, ACTION_DIM)
    batch = {
        "obs": jnp.ones((8, OBS_DIM)),
        "actions": jnp.zeros((8, ACTION_DIM)),
        "log_probs": jnp.zeros(8),
        "values": jnp.zeros(8),
        "advantages": jnp.ones(8),
        "returns": jnp.ones(8),
    }
    reg_term = fast_jit(jax.grad(lambda s: fm_irl.ppo_loss(s, batch, states, actions, nets, args)[1]["regularizer_loss"]))  # fmt: skip
    grads = reg_term(state.student)
    assert all(bool(jnp.all(g == 0)) for g in jax.tree.leaves(grads["critic"]))
    assert bool(jnp.all(grads["actor"]["params"]["log_std"] == 0))
    for layer in ("hidden_0", "hidden_1", "mean"):
        assert bool(jnp.any(grads["actor"]["params"][layer]["kernel"] != 0)), layer

    def through_the_teacher(teacher_params):
        states, actions = fm_irl.teacher_samples(teacher_params, jax.random.PRNGKey(3), 16, nets, args)
        return fm_irl.regularizer_loss(state.student["actor"], states, actions, nets, args)

    assert all(bool(jnp.all(g == 0)) for g in jax.tree.leaves(fast_jit(jax.grad(through_the_teacher))(state.teacher)))
    loss = fm_irl.regularizer_loss(state.student["actor"], states, actions, nets, args)
    mean = nets.actor.apply(state.student["actor"], states)[0]
    np.testing.assert_allclose(loss, 1.0 * 0.5 * np.mean((np.asarray(mean) - np.asarray(actions)) ** 2), rtol=1e-6)


def test_running_stats_merge_like_one_pass_over_all_data():
    rng = np.random.default_rng(0)
    batches = [rng.normal(size=(4, 3)).astype(np.float32) * 3 + 1 for _ in range(5)]
    stats = fm_irl.RunningMeanStd(np.zeros(3, np.float32), np.ones(3, np.float32), 1e-4)
    for batch in batches:
        stats = fm_irl.update_running_stats(stats, batch)
    everything = np.concatenate(batches)
    np.testing.assert_allclose(stats.mean, everything.mean(0), rtol=1e-4)
    np.testing.assert_allclose(stats.var, everything.var(0), rtol=1e-4)
    assert stats.count == pytest.approx(20 + 1e-4)


def test_return_normaliser_against_a_hand_computation():
    rng = np.random.default_rng(1)
    raw = rng.normal(size=(6, 4)).astype(np.float32) * 5
    start_masks = np.ones((6, 4), np.float32)
    start_masks[0] = 0  # the first observations start episodes
    start_masks[3, 1] = 0  # env 1 starts a new episode at step 3
    normalizer = fm_irl.RewardNormalizer(fm_irl.RunningMeanStd(*jnp.array([0.0, 1.0, 1e-4])), jnp.zeros(4))
    rewards, after = fm_irl.normalize_rewards(jnp.asarray(raw), jnp.asarray(start_masks), normalizer, 0.9)

    returns, mean, var, count, expected = np.zeros(4), 0.0, 1.0, 1e-4, []  # the official loop, in float64
    for t in range(6):
        returns = returns * start_masks[t] * 0.9 + raw[t]
        delta, total = returns.mean() - mean, count + 4
        var = (var * count + returns.var() * 4 + delta**2 * count * 4 / total) / total
        mean, count = mean + delta * 4 / total, total
        expected.append(raw[t] / np.sqrt(var + 1e-8))  # divided, not centred
    np.testing.assert_allclose(rewards, np.array(expected), rtol=1e-4)
    np.testing.assert_allclose(after.returns, returns, rtol=1e-5)
    np.testing.assert_allclose(after.stats.var, var, rtol=1e-4)


def gae_by_hand(rewards, values, next_value, dones, time_limits, gamma, lam, proper):
    """The official storage's loop, written out."""
    advantages, gae = np.zeros_like(rewards), 0.0
    values_ext = np.concatenate([values, next_value[None]])
    for t in reversed(range(len(rewards))):
        mask = 1.0 - dones[t]
        delta = rewards[t] + gamma * values_ext[t + 1] * mask - values[t]
        gae = delta + gamma * lam * mask * gae
        if proper:
            gae = gae * (1.0 - time_limits[t])
        advantages[t] = gae
    return advantages, advantages + values


@pytest.mark.parametrize("proper", [False, True])
def test_gae_with_and_without_proper_time_limits(proper):
    args = dataclasses.replace(fm_irl.Args(), gamma=0.9, gae_lambda=0.8, proper_time_limits=proper)
    rng = np.random.default_rng(2)
    rewards, values = rng.normal(size=(5, 2)).astype(np.float32), rng.normal(size=(5, 2)).astype(np.float32)
    next_value = rng.normal(size=2).astype(np.float32)
    dones, time_limits = np.zeros((5, 2), np.float32), np.zeros((5, 2), np.float32)
    dones[1, 0] = 1  # env 0 terminates at step 1
    dones[3, 1] = time_limits[3, 1] = 1  # env 1 hits the time limit at step 3
    advantages, returns = fm_irl.compute_gae(rewards, values, next_value, 1 - dones, 1 - time_limits, args)
    expected = gae_by_hand(rewards, values, next_value, dones, time_limits, 0.9, 0.8, proper)
    np.testing.assert_allclose(advantages, expected[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(returns, expected[1], rtol=1e-5, atol=1e-6)
    if proper:  # the truncated step's return is V(s_t) and its advantage 0; earlier steps bootstrap through it
        assert advantages[3, 1] == 0 and returns[3, 1] == values[3, 1]
        assert advantages[2, 1] != pytest.approx(rewards[2, 1] - values[2, 1])
    else:  # a truncation is a termination
        np.testing.assert_allclose(advantages[3, 1], rewards[3, 1] - values[3, 1], rtol=1e-6)


def test_task_table_and_aliases():
    hopper = fm_irl.resolve_task("hopper")
    assert hopper == fm_irl.Task("Hopper", "Hopper-v5", "mujoco/hopper/expert-v0", 1) and hopper.locomotion
    maze = fm_irl.resolve_task("pointmaze-medium-task3")
    assert maze.paper_task == "Maze2d" and maze.env_id == "pointmaze-medium-singletask-task3-v0"
    assert maze.dataset == "pointmaze-medium-singletask-task3-demos-v0" and not maze.locomotion
    assert fm_irl.resolve_task("cube-single-play-singletask-task2-v0").paper_task == "Fetch-pick"
    assert fm_irl.resolve_task("Walker2d-v5").paper_task == "Walker2d"
    assert fm_irl.resolve_task("hopper-task2") is None and fm_irl.resolve_task("cheetah") is None
    args = fm_irl.with_task_defaults(fm_irl.Args(env_id="hopper", teacher_lr=3e-4), hopper)
    assert (args.teacher_lr, args.label_dim, args.reward_bonus, args.num_steps) == (3e-4, 10, 20.0, 128)
    assert args.clip_actions and not args.proper_time_limits and args.regularizer_samples == 1024


# End-to-end runs. The runs share a persistent compilation cache, so that each shape compiles once.
@pytest.fixture(scope="module")
def run_env(tmp_path_factory, minari_root):
    cache = str(tmp_path_factory.mktemp("jax_cache"))
    return dict(
        os.environ,
        PYTHONPATH=ROOT,
        JAX_PLATFORMS="cpu",
        MINARI_DATASETS_PATH=minari_root,
        HF_HUB_OFFLINE="1",
        JAX_COMPILATION_CACHE_DIR=cache,
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
        XLA_FLAGS="--xla_backend_optimization_level=0",  # compiles in about half the time
    )


def run_fm_irl(cwd, env, *flags, check=True):
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "fm_irl.py"), *flags], cwd=cwd, env=env, capture_output=True, text=True
    )
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def scalars(run_dir, paths=None) -> dict:
    values = {}
    for path in paths or sorted(glob.glob(os.path.join(run_dir, "events.out.tfevents.*"))):
        for event in read_events(path):
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    values[(value.tag, event.step)] = value.simple_value
    return values


HOPPER = ["--env-id", "hopper", "--num-demos", "4", "--total-timesteps", "1024", *SMALL]


def test_minari_demonstrations_end_to_end_then_save_load_evaluate_and_resume(tmp_path, run_env):
    # Four iterations of 256 steps; the only checkpoint is written after the third.
    result = run_fm_irl(tmp_path, run_env, *HOPPER, "--save-model", "--checkpoint-every", "768")
    assert "run folder: runs/Hopper-v5__fm_irl__0__" in result.stdout and "Hopper-v5: final" in result.stdout
    (run_dir,) = glob.glob(str(tmp_path / "runs" / "Hopper-v5__fm_irl__0__*"))
    saved = json.load(open(os.path.join(run_dir, "args.json")))
    assert (saved["label_dim"], saved["reward_bonus"], saved["teacher_lr"], saved["clip_actions"]) == (10, 20.0, 1e-4, True)  # fmt: skip
    logged = scalars(run_dir)
    for tag in ("losses/teacher_loss", "losses/regularizer_loss", "losses/value_loss", "charts/expert_disc_val"):
        assert (tag, 1024) in logged, tag
    assert ("charts/episodic_return", 1024) in logged and ("eval/episodic_return", 1024) in logged
    teacher_terms = sum(logged[(f"losses/{k}", 1024)] for k in ("expert_loss", "agent_loss", "disc_bc_loss"))
    assert logged[("losses/teacher_loss", 1024)] == pytest.approx(teacher_terms, rel=1e-5)
    loaded = run_fm_irl(tmp_path, run_env, "--load-model", os.path.join(run_dir, "fm_irl.flax"), "--eval-episodes", "2")
    assert "Hopper-v5: episodic_return" in loaded.stdout

    # Resume after the checkpoint (with its saved flags only): the last iteration is redone, with its numbers.
    refused = run_fm_irl(tmp_path, run_env, "--resume", run_dir, "--total-timesteps", "99", check=False)
    assert refused.returncode == 2 and "takes no other flag" in refused.stderr
    resumed = run_fm_irl(tmp_path, run_env, "--resume", run_dir)
    assert "resuming after iteration 3 (step 768)" in resumed.stdout
    *before, resumed_file = sorted(glob.glob(os.path.join(run_dir, "events.out.tfevents.*")))
    expected = {k: v for k, v in scalars(run_dir, before).items() if k[1] == 1024 and k[0] != "charts/SPS"}
    got = scalars(run_dir, [resumed_file])
    assert {k[1] for k in got} == {1024} and len(expected) > 15
    assert {k: got[k] for k in expected} == expected


# Runs a script with Ctrl-C pressed (a real SIGINT) once its progress bar reaches a given step.
PRESS_CTRL_C_AT = """
import os, runpy, signal, sys
from tqdm import tqdm
update, at = tqdm.update, int(sys.argv.pop(1))
def update_and_press(bar, n=1):
    update(bar, n)
    if bar.n >= at:
        os.kill(os.getpid(), signal.SIGINT)
tqdm.update, sys.argv = update_and_press, sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_ctrl_c_ends_with_one_line_and_status_130_and_the_suggested_resume_finishes(tmp_path, run_env):
    flags = [*HOPPER, "--checkpoint-every", "256"]  # four iterations of 256 steps; Ctrl-C in the third
    command = [sys.executable, "-c", PRESS_CTRL_C_AT, "600", os.path.join(ROOT, "fm_irl.py"), *flags]
    interrupted = subprocess.run(command, cwd=tmp_path, env=run_env, capture_output=True, text=True)
    (run_dir,) = glob.glob("runs/*", root_dir=tmp_path)
    lines = [line for line in interrupted.stderr.splitlines() if line.strip() and "%|" not in line]
    assert interrupted.returncode == 130 and "Traceback" not in interrupted.stderr, interrupted.stderr[-3000:]
    resume = f"python fm_irl.py --resume {run_dir}"
    assert lines[-1] == f"interrupted: the last checkpoint is in {run_dir} (step 512); continue the run with: {resume}"
    assert sum(line.startswith(("interrupted", "error")) for line in lines) == 1
    assert not glob.glob(str(tmp_path / run_dir / "*.tmp"))
    resumed = run_fm_irl(tmp_path, run_env, *lines[-1].split(": python fm_irl.py ")[-1].split())
    assert "resuming after iteration 2 (step 512)" in resumed.stdout and "Hopper-v5: final" in resumed.stdout


def write_demos(path, env_name, noise, num_episodes=3, steps=40):
    import gymnasium as gym

    env = gym.make(env_name)
    rng = np.random.default_rng(0)
    data = {"observations": [], "actions": [], "terminals": []}
    for episode in range(num_episodes):
        obs, _ = env.reset(seed=episode)
        for t in range(steps):
            action = rng.uniform(-1, 1, env.action_space.shape).astype(np.float32)
            data["observations"].append(obs)
            data["actions"].append(action)
            data["terminals"].append(t == steps - 1)
            obs = env.step(action)[0]
    arrays = {k: np.asarray(v) for k, v in data.items()}
    np.savez(path, **arrays, env_name=np.array(env_name), noise=np.array(noise))


def test_ogbench_demonstrations_with_demo_noise_and_both_ablations_end_to_end(tmp_path, run_env):
    env_name = "pointmaze-medium-singletask-task1-v0"
    (tmp_path / "demos-noise1.5").mkdir()
    write_demos(tmp_path / "demos-noise1.5" / "pointmaze-medium-singletask-task1-demos-v0.npz", env_name, 1.5)
    flags = ["--env-id", "pointmaze-medium", "--dataset-dir", str(tmp_path), "--num-demos", "3"]
    ablations = ["--disc-bc-coef", "0", "--regularizer-coef", "0"]
    result = run_fm_irl(tmp_path, run_env, *flags, "--demo-noise", "1.5", *SMALL, *ablations, "--total-timesteps", "512", "--eval-episodes", "1")  # fmt: skip
    assert "demos-noise1.5/pointmaze-medium-singletask-task1-demos-v0.npz, 60 of their 120 steps" in result.stdout
    assert "pointmaze-medium-singletask-task1-v0: final" in result.stdout and "eval success" in result.stdout
    (run_dir,) = glob.glob(str(tmp_path / "runs" / "*"))
    logged = scalars(run_dir)
    assert ("eval/success", 512) in logged and ("charts/mean_reward", 256) in logged
    assert json.load(open(os.path.join(run_dir, "args.json")))["label_dim"] == 1
    for step in (256, 512):  # no flow-matching BC term in the teacher loss, no regulariser in the student's
        teacher_terms = logged[("losses/expert_loss", step)] + logged[("losses/agent_loss", step)]
        assert logged[("losses/teacher_loss", step)] == pytest.approx(teacher_terms, rel=1e-5)
        assert logged[("losses/regularizer_loss", step)] == 0
    wrong_noise = run_fm_irl(tmp_path, run_env, *flags, "--demo-noise", "1.0", check=False)
    assert wrong_noise.returncode == 1 and "demos-noise1/pointmaze-medium-singletask-task1-demos-v0.npz not found" in wrong_noise.stderr  # fmt: skip
    assert "--noise 1 --out-dir" in wrong_noise.stderr


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_parameters(tmp_path, run_env):
    result = run_fm_irl(tmp_path, run_env, *HOPPER, "--teacher-lr", "1e30", check=False)  # the teacher diverges
    assert (
        result.returncode == 1 and "error: the loss became NaN or infinite at step 256 (teacher loss" in result.stderr
    )
    (model,) = glob.glob(str(tmp_path / "runs" / "*" / "fm_irl.flax"))
    assert os.path.getsize(model) > 0 and not glob.glob(str(tmp_path / "runs" / "*" / "*.tmp"))


def test_a_missing_minari_dataset_says_how_to_make_it(tmp_path, run_env):
    env = dict(run_env, MINARI_DATASETS_PATH=str(tmp_path))
    result = run_fm_irl(tmp_path, env, "--env-id", "walker2d", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()[-3:]
    assert (
        lines[0].startswith("error: Minari dataset mujoco/walker2d/expert-v0 (")
        and "is not on this machine" in lines[0]
    )
    assert lines[1:] == [
        "  python benchmark/train_expert.py --env-id Walker2d-v5",
        "  python benchmark/make_dataset.py --dataset mujoco/walker2d/expert-v0",
    ]


def test_suite_builds_the_quick_profile_with_ablations_and_the_noise_sweep():
    from benchmark import suite

    commands = [suite.format_command(c) for c in suite.build_fm_irl_commands(suite.Args(method="fm-irl", profile="quick"))]  # fmt: skip
    assert len(commands) == 16  # 2 tasks x 3 variants x 2 seeds + 2 noise levels x 2 seeds
    assert sum("--exp-name fm_irl_no_regularizer --regularizer-coef 0" in c for c in commands) == 4
    assert sum("--exp-name fm_irl_no_disc_bc --disc-bc-coef 0" in c for c in commands) == 4
    assert [c.split("--demo-noise ")[1] for c in commands if "--demo-noise" in c] == ["1", "1", "2", "2"]
    assert all("--teacher-hidden-dim 128 --regularizer-samples 32" in c for c in commands)
    assert all(("--dataset-dir data" in c) == ("pointmaze" in c) for c in commands)
    paper = suite.build_fm_irl_commands(suite.Args(method="fm-irl", seeds=[3], tasks=["walker2d"]))
    assert [suite.format_command(c) for c in paper] == ["python fm_irl.py --env-id walker2d --seed 3 --exp-name fm_irl"]


def test_summary_table_and_curves_from_synthetic_runs(tmp_path):
    from tensorboardX import SummaryWriter

    from benchmark import summarize_fm_irl

    for seed in (0, 1):
        for variant, scale in (("fm_irl", 1.0), ("fm_irl_no_regularizer", 0.5)):
            run_dir = tmp_path / "runs" / f"pointmaze__{variant}__{seed}"
            run_dir.mkdir(parents=True)
            args = {"exp_name": variant, "env_id": "pointmaze-medium-singletask-task1-v0", "seed": seed}
            args |= {"demo_noise": None, "total_timesteps": 32_000, "num_steps": 500, "num_envs": 32}
            (run_dir / "args.json").write_text(json.dumps(args))
            writer = SummaryWriter(str(run_dir))
            for step in (16_000, 32_000):
                writer.add_scalar("charts/success", scale * step / 32_000 - 0.1 * seed, step)
            writer.add_scalar("eval/success", scale, 32_000)
            writer.close()
    out = tmp_path / "out"
    summarize_fm_irl.main(summarize_fm_irl.Args(runs_dir=str(tmp_path / "runs"), out_dir=str(out)))
    readme = (out / "README.md").read_text()
    assert "| fm_irl | 0.5 (default) | 32k | 2 | 0.95 ± 0.05 | 1.00 | — (beyond) | 0.87 ± 0.03 at 5M |" in readme
    assert "| fm_irl_no_regularizer | 0.5 (default) | 32k | 2 | 0.45 ± 0.05 | 0.50 |" in readme
    assert (out / "curves" / "pointmaze-medium-singletask-task1-v0.png").exists()
