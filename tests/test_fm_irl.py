"""fm_irl.py: the teacher's flow matching, discriminator, teacher loss and relabelled reward against hand-set losses,
the regulariser's gradient path, PPO's loss terms and step direction, the return normaliser and GAE against hand
values and closed forms, and end-to-end runs (Minari and OGBench demonstrations, save, load, evaluate, resume, NaN
stop, a missing dataset). tests/test_fm_irl_golden.py compares the same functions with the official code."""

import dataclasses
import glob
import json
import os
import subprocess
import sys
import types
from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import PRESS_CTRL_C

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
    """v(x_t, c, t) = 2 c x_t (or 2 (1 - c) x_t): with x0 = 0 and t = 1/2 it is exactly x1 - x0 for the expert (agent)
    label and 0 for the other."""

    fits_expert: bool = True

    @nn.compact
    def __call__(self, x, label, t):
        c = label[:, :1] if self.fits_expert else 1.0 - label[:, :1]
        return 2.0 * c * x


def with_draws_x0_zero_and_t_half(monkeypatch):
    """Every flow-matching loss of the discriminator and the teacher loss is taken at x0 = 0, tau = 1/2."""

    def fixed(teacher, params, x1, label, key, args):
        t = jnp.full(x1.shape[:1], 0.5)
        return fm_irl.flow_matching_losses(teacher, params, x1, label, jnp.zeros_like(x1), t, args.label_dim)

    monkeypatch.setattr(fm_irl, "sampled_flow_matching_losses", fixed)


def test_discriminator_and_reward_from_hand_set_losses(monkeypatch):
    args = dataclasses.replace(fm_irl.Args(), label_dim=2)
    x1 = jnp.array([[1.0, 2.0], [0.5, -0.5], [0.0, 3.0]])
    x0, t = jnp.zeros_like(x1), jnp.full(3, 0.5)
    teacher = HandSetVelocity()
    expert_label_loss = fm_irl.flow_matching_losses(teacher, {}, x1, 1.0, x0, t, args.label_dim)
    agent_label_loss = fm_irl.flow_matching_losses(teacher, {}, x1, 0.0, x0, t, args.label_dim)
    np.testing.assert_allclose(expert_label_loss, 0.0)
    np.testing.assert_allclose(agent_label_loss, [2.5, 0.25, 4.5])  # mean over dims of (x1 - x0)^2
    # The pairs fit the expert branch (lower loss under the expert label): logit l_0 - l_1 > 0, D > 1/2, and the
    # reward log D - log(1 - D) is the logit itself, positive.
    with_draws_x0_zero_and_t_half(monkeypatch)
    key = jax.random.PRNGKey(0)
    logits = fm_irl.discriminator_logits(teacher, {}, x1, key, args)
    np.testing.assert_allclose(logits, [2.5, 0.25, 4.5])
    assert np.all(jax.nn.sigmoid(logits) > 0.5)
    np.testing.assert_allclose(fm_irl.airl_reward(logits), [2.5, 0.25, 4.5], rtol=1e-5)
    # Pairs that fit the agent branch: D < 1/2 and negative rewards.
    agent_logits = fm_irl.discriminator_logits(HandSetVelocity(fits_expert=False), {}, x1, key, args)
    np.testing.assert_allclose(agent_logits, [-2.5, -0.25, -4.5])
    assert np.all(jax.nn.sigmoid(agent_logits) < 0.5)
    np.testing.assert_allclose(fm_irl.airl_reward(agent_logits), [-2.5, -0.25, -4.5], rtol=1e-5)
    # Saturation of the float32 formula (also compiled, where a naive `1 - D + 1e-20` loses its 1e-20).
    extreme = jnp.array([-200.0, -60.0, 60.0, 200.0])
    for reward in (fm_irl.airl_reward(extreme), jax.jit(fm_irl.airl_reward)(extreme)):
        np.testing.assert_allclose(reward, [-46.0517, -46.0517, 46.0517, 46.0517], rtol=1e-4)


def test_teacher_loss_from_hand_set_losses(monkeypatch):
    """Expert and agent batches are the same pairs, whose logits are 2.5, 0.25, 4.5 (the case above)."""
    with_draws_x0_zero_and_t_half(monkeypatch)
    args = dataclasses.replace(fm_irl.Args(), label_dim=2, disc_bc_coef=0.5)
    nets = fm_irl.Networks(HandSetVelocity(), None, None, 1, 1)
    x1 = jnp.array([[1.0, 2.0], [0.5, -0.5], [0.0, 3.0]])
    loss, info = fm_irl.teacher_loss({}, x1, x1, jax.random.PRNGKey(0), nets, args)
    # -log D = log(1 + e^-l) and -log(1 - D) = log(1 + e^l), averaged over l = 2.5, 0.25, 4.5 (by hand)
    np.testing.assert_allclose(info["expert_loss"], 0.2219590, rtol=1e-5)
    np.testing.assert_allclose(info["agent_loss"], 2.6386256, rtol=1e-5)
    np.testing.assert_allclose(info["expert_disc_val"], 0.8251105, rtol=1e-5)  # mean of 1 / (1 + e^-l)
    np.testing.assert_allclose(info["agent_disc_val"], 0.8251105, rtol=1e-5)
    np.testing.assert_allclose(info["disc_bc_loss"], 0.0, atol=1e-7)  # the expert label fits the pairs exactly
    np.testing.assert_allclose(loss, 0.2219590 + 2.6386256, rtol=1e-5)
    # A teacher that fits the agent label instead: its FM-BC term is the expert-label loss, weighted by 0.5.
    nets = nets._replace(teacher=HandSetVelocity(fits_expert=False))
    loss, info = fm_irl.teacher_loss({}, x1, x1, jax.random.PRNGKey(0), nets, args)
    np.testing.assert_allclose(info["expert_loss"], 2.6386256, rtol=1e-5)
    np.testing.assert_allclose(info["disc_bc_loss"], (2.5 + 0.25 + 4.5) / 3, rtol=1e-6)
    np.testing.assert_allclose(loss, 2.6386256 + 0.2219590 + 0.5 * (2.5 + 0.25 + 4.5) / 3, rtol=1e-5)


def test_relabel_rewards_are_the_airl_reward_plus_the_bonus_normalised(monkeypatch):
    """Two environments, two steps, a hand-set teacher (logit = mean over dims of x1^2), bonus 1, gamma 1/2, and a
    normaliser that starts empty, so that its variance is that of every return seen so far."""
    with_draws_x0_zero_and_t_half(monkeypatch)
    args = dataclasses.replace(fm_irl.Args(), label_dim=1, reward_bonus=1.0, gamma=0.5)
    nets = fm_irl.Networks(HandSetVelocity(), None, None, OBS_DIM, ACTION_DIM)
    x = jnp.array(
        [
            [[1.0, 1.0, 1.0, 1.0, 1.0], [2.0, 2.0, 2.0, 2.0, 2.0]],  # logits 1, 4
            [[3.0, 1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0]],  # logits 2, 0
        ]
    )
    start_masks = jnp.array([[0.0, 1.0], [1.0, 0.0]])  # env 0 starts an episode at step 0, env 1 at step 1
    normalizer = fm_irl.RewardNormalizer(fm_irl.RunningMeanStd(*jnp.zeros(3)), jnp.array([0.0, 2.0]))
    rewards, normalizer, info = fm_irl.relabel_rewards(
        {}, x[..., :OBS_DIM], x[..., OBS_DIM:], start_masks, normalizer, jax.random.PRNGKey(0), nets, args
    )
    # raw rewards r = logit + 1: [2, 5] then [3, 1]
    np.testing.assert_allclose(info["raw_reward"], (2 + 5 + 3 + 1) / 4, rtol=1e-6)
    # returns R: [0 + 2, 2 / 2 + 5] = [2, 6] (variance 4), then [2 / 2 + 3, 0 + 1] = [4, 1] (variance of 2, 6, 4, 1:
    # 3.6875), each reward divided by the standard deviation of its step
    np.testing.assert_allclose(rewards, [[1.0, 2.5], [3 / 1.9202864, 1 / 1.9202864]], rtol=1e-5)
    np.testing.assert_allclose(normalizer.returns, [4.0, 1.0], rtol=1e-6)  # float32 log D - log(1 - D)
    stats = [normalizer.stats.mean, normalizer.stats.var, normalizer.stats.count]
    np.testing.assert_allclose(stats, [3.25, 3.6875, 4.0], rtol=1e-6)


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


def test_return_normaliser_against_discounted_sums_and_pooled_moments():
    """Expected values from closed forms, not the update's recursions: the return of each environment is the
    discounted sum of its rewards since its episode started, and the running variance after step t is the population
    variance of every return seen so far pooled with the prior (mean 0, variance 1, weight 1e-4)."""
    rng = np.random.default_rng(1)
    raw = rng.normal(size=(6, 4)) * 5
    start_masks = np.ones((6, 4))
    start_masks[0] = 0  # the first observations start episodes
    start_masks[3, 1] = 0  # env 1 starts a new episode at step 3
    normalizer = fm_irl.RewardNormalizer(fm_irl.RunningMeanStd(*jnp.array([0.0, 1.0, 1e-4])), jnp.zeros(4))
    rewards, after = fm_irl.normalize_rewards(
        jnp.asarray(raw, jnp.float32), jnp.asarray(start_masks, jnp.float32), normalizer, 0.9
    )

    returns = np.zeros((6, 4))  # R_t = sum of 0.9^(t - k) r_k over the steps k of the episode so far
    for t in range(6):
        for e in range(4):
            first = max(k for k in range(t + 1) if start_masks[k, e] == 0)
            returns[t, e] = sum(0.9 ** (t - k) * raw[k, e] for k in range(first, t + 1))
    prior_weight = 1e-4
    for t in range(6):
        seen = returns[: t + 1].ravel()
        mean = seen.sum() / (prior_weight + seen.size)
        variance = (prior_weight * 1.0 + (seen**2).sum()) / (prior_weight + seen.size) - mean**2
        np.testing.assert_allclose(rewards[t], raw[t] / np.sqrt(variance + 1e-8), rtol=1e-4)  # divided, not centred
    np.testing.assert_allclose(after.returns, returns[-1], rtol=1e-5)
    np.testing.assert_allclose(after.stats.var, variance, rtol=1e-4)
    np.testing.assert_allclose(after.stats.count, 24 + 1e-4, rtol=1e-6)


# A tiny rollout with hand-computed GAE (gamma = lambda = 1/2): two environments with the same rewards [1, 2, 3],
# values [0.5, 1, 1.5] and bootstrap value 2; env 1's step 1 ends its episode at the time limit. Env 0:
# deltas 1 + 0.5 - 0.5 = 1, 2 + 0.75 - 1 = 1.75, 3 + 1 - 1.5 = 2.5 -> A = [1 + 0.25 * 2.375, 1.75 + 0.25 * 2.5, 2.5].
GAE_ENV0 = [1.59375, 2.375, 2.5]
# Env 1, the truncation taken as a termination: delta_1 = 2 - 1 = 1, nothing bootstraps through it.
GAE_ENV1_TERMINATED = [1.25, 1.0, 2.5]
# Env 1 with proper time limits: the truncated step's advantage is 0 (return V(s_1) = 1); step 0 still bootstraps
# from V(s_1): delta_0 = 1 + 0.5 * 1 - 0.5 = 1, not r - V = 0.5.
GAE_ENV1_TRUNCATED = [1.0, 0.0, 2.5]


@pytest.mark.parametrize("proper", [False, True])
def test_gae_with_and_without_proper_time_limits(proper):
    args = dataclasses.replace(fm_irl.Args(), gamma=0.5, gae_lambda=0.5, proper_time_limits=proper)
    rewards = jnp.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    values = jnp.array([[0.5, 0.5], [1.0, 1.0], [1.5, 1.5]])
    dones, time_limits = np.zeros((3, 2), np.float32), np.zeros((3, 2), np.float32)
    dones[1, 1] = time_limits[1, 1] = 1
    advantages, returns = fm_irl.compute_gae(rewards, values, jnp.array([2.0, 2.0]), 1 - dones, 1 - time_limits, args)
    expected = np.array([GAE_ENV0, GAE_ENV1_TRUNCATED if proper else GAE_ENV1_TERMINATED]).T
    np.testing.assert_allclose(advantages, expected, rtol=1e-6)
    np.testing.assert_allclose(returns, expected + values, rtol=1e-6)
    if proper:  # the truncated step's return is V(s_t) and its advantage 0; earlier steps bootstrap through it
        assert advantages[1, 1] == 0 and returns[1, 1] == values[1, 1]
        assert advantages[0, 1] != pytest.approx(rewards[0, 1] - values[0, 1])
    else:  # a truncation is a termination
        np.testing.assert_allclose(advantages[1, 1], rewards[1, 1] - values[1, 1], rtol=1e-6)


def constant_mean_student(state, mean):
    """The student with its hidden layers zeroed: mean(s) = `mean` for every state, log-std 0."""
    actor = jax.tree.map(jnp.zeros_like, state.student["actor"])
    actor["params"]["mean"]["bias"] = jnp.asarray(mean)
    return {"actor": actor, "critic": state.student["critic"]}


def test_ppo_loss_terms_against_hand_values():
    """Four samples whose ratios lie outside [0.8, 1.2] on either side, with advantages of either sign: the clipped
    objective takes the pessimistic (smaller) term, so the ratio counts up to 1 + epsilon only; the value loss takes
    the larger of the clipped and unclipped errors."""
    args, nets, _, _, state = small_setup(regularizer_coef=2.5)
    student = constant_mean_student(state, [0.5, -1.0])
    obs = jnp.asarray(np.random.default_rng(0).normal(size=(4, OBS_DIM)), jnp.float32)
    actions = jnp.array([[1.5, -1.0]] * 4)  # one std from the mean in one dim: log-prob -1/2 - log(2 pi)
    log_prob = -0.5 - np.log(2 * np.pi)
    value = nets.critic.apply(student["critic"], obs)
    batch = {
        "obs": obs,
        "actions": actions,
        "log_probs": log_prob + jnp.array([-0.5, -0.5, 0.5, 0.5]),  # ratios e^0.5, e^0.5, e^-0.5, e^-0.5
        "advantages": jnp.array([1.0, -1.0, 1.0, -1.0]),
        "values": value + jnp.array([-1.0, -1.0, 1.0, 1.0]),  # the new value moved by +1, +1, -1, -1 ...
        "returns": value + jnp.array([1.0, -1.0, -1.0, 1.0]),  # ... toward the return, away, toward, away
    }
    reg_states, reg_actions = jnp.zeros((2, OBS_DIM)), jnp.array([[1.5, -1.0], [0.5, 1.0]])
    loss, info = fm_irl.ppo_loss(student, batch, reg_states, reg_actions, nets, args)
    e = np.exp(0.5)
    policy_loss = -np.mean([1.2, -e, 1 / e, -0.8])  # min(r A, clip(r) A) per sample
    value_loss = 0.5 * np.mean([1.8**2, 1.0, 1.8**2, 1.0])  # clipped moves of 0.2 leave errors 1.8 toward the return
    entropy = 2 * (0.5 + 0.5 * np.log(2 * np.pi))
    regularizer = 2.5 * 0.5 * np.mean([1.0, 0.0, 0.0, 4.0])  # beta/2 * mean of (mean - a_G)^2
    np.testing.assert_allclose(info["policy_loss"], policy_loss, rtol=1e-5)
    np.testing.assert_allclose(info["value_loss"], value_loss, rtol=1e-5)
    np.testing.assert_allclose(info["entropy"], entropy, rtol=1e-6)
    np.testing.assert_allclose(info["regularizer_loss"], regularizer, rtol=1e-6)
    np.testing.assert_allclose(info["clipfrac"], 1.0)
    np.testing.assert_allclose(loss, policy_loss + 0.5 * value_loss - 0.001 * entropy + regularizer, rtol=1e-5)


@pytest.mark.parametrize("advantage", [1.0, -1.0])
def test_ppo_step_moves_the_log_probability_with_the_advantage_and_stops_at_the_clip(advantage):
    args, nets, _, _, state = small_setup(regularizer_coef=0.0, vf_coef=0.0, ent_coef=0.0)
    obs = jnp.asarray(np.random.default_rng(0).normal(size=(8, OBS_DIM)), jnp.float32)
    actions = jnp.asarray(np.random.default_rng(1).normal(size=(8, ACTION_DIM)), jnp.float32)

    def log_probs(student):
        return fm_irl.gaussian_log_prob(*nets.actor.apply(student["actor"], obs), actions)

    def batch(old_log_probs):
        zeros = jnp.zeros(8)
        advantages = jnp.full(8, advantage)
        return dict(
            obs=obs, actions=actions, log_probs=old_log_probs, values=zeros, returns=zeros, advantages=advantages
        )

    before = log_probs(state.student)
    grads = jax.grad(lambda s: fm_irl.ppo_loss(s, batch(before), None, None, nets, args)[0])(state.student)
    after = log_probs(jax.tree.map(lambda p, g: p - 1e-3 * g, state.student, grads))
    assert np.all(np.sign(np.asarray(after - before)) == advantage)  # each sample's log-probability, one SGD step
    # Once the ratio is past 1 + epsilon (A > 0) or below 1 - epsilon (A < 0), the sample gives no gradient.
    beyond_the_clip = before - 0.5 * advantage  # ratio e^{0.5 A}
    grads = jax.grad(lambda s: fm_irl.ppo_loss(s, batch(beyond_the_clip), None, None, nets, args)[0])(state.student)
    assert all(bool(jnp.all(g == 0)) for g in jax.tree.leaves(grads["actor"]))


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


# The fixture's random episodes fall long before Hopper's 1000-step limit: take them whatever their length.
HOPPER = ["--env-id", "hopper", "--num-demos", "4", "--no-full-length-demos", "--total-timesteps", "1024", *SMALL]


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
    # The rate decays over Hopper's official 25M steps (97,656 iterations of 256), not over this 4-iteration run.
    for iteration in range(4):
        expected_rate = 1e-4 * (1 - iteration / 97_656)
        assert logged[("charts/learning_rate", 256 * (iteration + 1))] == pytest.approx(expected_rate, rel=1e-6)
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


def test_ctrl_c_ends_with_one_line_and_status_130_and_the_suggested_resume_finishes(tmp_path, run_env):
    flags = [*HOPPER, "--checkpoint-every", "256"]  # four iterations of 256 steps; Ctrl-C in the third
    command = [sys.executable, "-c", PRESS_CTRL_C, "600", os.path.join(ROOT, "fm_irl.py"), *flags]
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


def test_a_missing_minari_dataset_says_how_to_make_it(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))  # an empty folder; the tests run offline (conftest)
    task = fm_irl.resolve_task("walker2d")
    with pytest.raises(SystemExit) as stop:
        fm_irl.load_demos(task, fm_irl.Args(env_id=task.env_id), 17, 6)
    folder = tmp_path / "mujoco" / "walker2d" / "expert-v0"
    assert str(stop.value).splitlines() == [
        f"error: Minari dataset mujoco/walker2d/expert-v0 ({folder}) is not on this machine (this machine is offline)",
        "  python benchmark/train_expert.py --env-id Walker2d-v5",
        "  python benchmark/make_dataset.py --dataset mujoco/walker2d/expert-v0",
    ]


def test_suite_builds_the_quick_profile_with_the_official_seeds_the_ablation_and_the_sweeps():
    from benchmark import suite

    quick = suite.build_fm_irl_commands(suite.Args(method="fm-irl", profile="quick"))
    commands = [suite.format_command(c) for c in quick]
    assert len(commands) == 22  # 2 tasks x 2 variants x seeds 1-4, then 3 sweeps x 2 seeds
    assert [c.split("--seed ")[1].split()[0] for c in commands[:4]] == ["1", "2", "3", "4"]
    assert sum("--exp-name fm_irl_no_regularizer --regularizer-coef 0" in c for c in commands) == 8
    assert sum("--exp-name fm_irl_25_demos --num-demos 25" in c and "--env-id hopper" in c for c in commands) == 2
    assert [c.split("--demo-noise ")[1].split()[0] for c in commands if "--demo-noise" in c] == ["1", "1", "2", "2"]
    assert all("--teacher-hidden-dim 128 --regularizer-samples 32" in c for c in commands)
    assert all(("--dataset-dir data" in c) == ("pointmaze" in c) for c in commands)
    hopper = suite.build_fm_irl_commands(suite.Args(method="fm-irl", profile="quick", tasks=["hopper"], seeds=[7]))
    assert [c[c.index("--exp-name") + 1] for c in hopper] == ["fm_irl", "fm_irl_no_regularizer", "fm_irl_25_demos"]
    assert all(c[c.index("--seed") + 1] == "7" for c in hopper)
    # a task spelt as its full id gets the profile's settings and sweeps all the same
    spelt = suite.build_fm_irl_commands(suite.Args(method="fm-irl", profile="quick", tasks=["Hopper-v5"], seeds=[7]))
    assert spelt == hopper
    paper = suite.build_fm_irl_commands(suite.Args(method="fm-irl", seeds=[3], tasks=["walker2d"]))
    assert [suite.format_command(c) for c in paper] == ["python fm_irl.py --env-id walker2d --seed 3 --exp-name fm_irl"]


def test_summary_table_and_curves_from_synthetic_runs(tmp_path):
    from tensorboardX import SummaryWriter

    from benchmark import summarize

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
    summarize.summarize_fm_irl(summarize.Args(runs_dir=str(tmp_path / "runs"), out_dir=str(out), fm_irl=True))
    readme = (out / "README.md").read_text()
    assert "| fm_irl | 0.5 (default) | 32k | 2 | 0.95 ± 0.05 | 1.00 | — (beyond) | 0.87 ± 0.03 at 5M |" in readme
    assert "| fm_irl_no_regularizer | 0.5 (default) | 32k | 2 | 0.45 ± 0.05 | 0.50 |" in readme
    assert (out / "curves" / "pointmaze-medium-singletask-task1-v0.png").exists()


def test_minari_demonstrations_are_the_first_full_length_episodes(monkeypatch, capsys):
    """The official trajectory saver keeps only episodes of the whole time limit (1000 steps for Hopper-v5)."""

    def episode(id_: int, length: int):
        observations = np.full((length + 1, 11), float(id_), np.float32)  # each episode's states hold its id
        return types.SimpleNamespace(id=id_, observations=observations, actions=np.zeros((length, 3), np.float32))

    episodes = [episode(0, 966), episode(1, 1000), episode(2, 40), episode(3, 1000)]
    monkeypatch.setattr(fm_irl, "read_minari", lambda *args: episodes)
    task = fm_irl.resolve_task("hopper")
    args = fm_irl.with_task_defaults(fm_irl.Args(env_id="hopper", num_demos=2), task)
    demos = fm_irl.load_demos(task, args, 11, 3)
    assert set(np.unique(demos["observations"])) == {1.0, 3.0} and len(demos["observations"]) == 2000
    assert "episodes [1, 3] of mujoco/hopper/expert-v0" in capsys.readouterr().out
    # Off: the first episodes, whatever their length; too few full-length ones: one line that says so.
    demos = fm_irl.load_demos(task, dataclasses.replace(args, full_length_demos=False), 11, 3)
    assert set(np.unique(demos["observations"])) == {0.0, 1.0} and len(demos["observations"]) == 1966
    with pytest.raises(SystemExit, match="holds 2 episodes of the whole 1000 steps .*, fewer than --num-demos 3"):
        fm_irl.load_demos(task, dataclasses.replace(args, num_demos=3), 11, 3)


def test_lr_env_steps_defaults_to_the_official_budget_and_must_cover_the_run():
    hopper = fm_irl.resolve_task("hopper")
    short = fm_irl.with_task_defaults(fm_irl.Args(env_id="hopper", total_timesteps=500_000), hopper)
    assert short.lr_env_steps == 25_000_000  # a quick run follows the official schedule and stops early
    long = fm_irl.with_task_defaults(fm_irl.Args(env_id="hopper", total_timesteps=30_000_000), hopper)
    assert long.lr_env_steps == 30_000_000
    with pytest.raises(SystemExit):
        fm_irl.check_args(fm_irl.Args(env_id="hopper", total_timesteps=500_000, lr_env_steps=400_000))
