"""fino.py: noise-injected path and loss (hand values), the TD target and the Q term's direction (hand values), gradient
isolation, Gaussian-mixture EM and entropy bound, beta update, candidate selection (hand values), determinism, an
offline + online run end to end. Parity with the official code: test_fino_golden.py."""

import dataclasses
import functools
import glob
import json
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_fino_golden import replayed
from test_fql import logged_scalars, run_in_process

import fino
from common_flow import flow_path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OBS_DIM, ACTION_DIM, BATCH = 6, 5, 16
SMALL = ["--actor-hidden-dims", "32", "32", "--value-hidden-dims", "32", "32", "--batch-size", "16"]


@functools.cache
def small_setup(**overrides):
    small = dict(actor_hidden_dims=(32, 32), value_hidden_dims=(32, 32), batch_size=BATCH, flow_steps=4)
    task = dict(alpha=10.0, discount=0.99, q_agg="mean", num_candidates=3)
    args = dataclasses.replace(fino.Args(), **{**small, **task, **overrides})
    nets, tx = fino.make_networks(args, ACTION_DIM)
    state = jax.jit(lambda key: fino.init_train_state(key, nets, tx, OBS_DIM, ACTION_DIM))(jax.random.PRNGKey(0))
    keys = jax.random.split(jax.random.PRNGKey(1), 3)
    batch = {
        "observations": jax.random.normal(keys[0], (BATCH, OBS_DIM)),
        "actions": jax.random.uniform(keys[1], (BATCH, ACTION_DIM), minval=-1, maxval=1),
        "rewards": -jnp.ones(BATCH),
        "masks": jnp.ones(BATCH),
        "next_observations": jax.random.normal(keys[2], (BATCH, OBS_DIM)),
    }
    return args, nets, tx, state, batch


def injected_std(t, eta, schedule):
    """sigma_t of the noisy path, read off with x0 = x1 = 0 and n = 1."""
    zeros = jnp.zeros_like(t)
    return fino.noisy_flow_path(zeros, zeros, t, jnp.ones_like(t), eta, schedule)[0]


@functools.cache
def loss_term_gradients(term: str) -> dict:
    """Gradient of one logged loss term with respect to every parameter group."""
    args, nets, _, state, batch = small_setup()

    def term_value(params):
        return fino.fino_loss(params, state.target_critic, batch, jax.random.PRNGKey(2), nets, args)[1][term]

    return jax.grad(term_value)(state.params)


def all_zero(tree) -> bool:
    return all(bool(jnp.all(leaf == 0)) for leaf in jax.tree.leaves(tree))


def assert_trees_close(tree, expected, rtol=1e-5):
    for leaf, want in zip(jax.tree.leaves(tree), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(leaf, want, rtol=rtol, atol=rtol * float(jnp.abs(want).max()))


class LinearCritic:
    """A stand-in for the critic ensemble: Q_k(s, a) = w_k . a with params {"w": (K, d)}, so that Q is known by hand."""

    def apply(self, params, observations, actions):
        return jnp.einsum("kd,...d->k...", params["w"], actions)


class NoiseAsAction:
    """A stand-in for the one-step policy: mu(s, z) = z, so that a candidate is its (clipped) noise."""

    action_dim = 1

    def apply(self, params, observations, noise):
        return noise


def test_distillation_and_q_terms_give_exactly_zero_gradient_to_the_noisy_bc_flow():
    for term in ("distill_loss", "q_loss"):
        assert all_zero(loss_term_gradients(term)["bc_flow"]), term
    bc_grads = loss_term_gradients("bc_flow_loss")
    assert not all_zero(bc_grads["bc_flow"]) and all_zero(bc_grads["onestep"]) and all_zero(bc_grads["critic"])
    # ... while the one-step policy learns from both, in the right direction: the Q term's gradient is minus that of
    # the logged Q of its actions (a descent step raises Q), and the actor loss adds alpha x the distillation gradient.
    q_grads, distill_grads = loss_term_gradients("q")["onestep"], loss_term_gradients("distill_loss")["onestep"]
    assert not all_zero(q_grads) and not all_zero(distill_grads)
    assert_trees_close(loss_term_gradients("q_loss")["onestep"], jax.tree.map(jnp.negative, q_grads))
    alpha = small_setup()[0].alpha
    expected = jax.tree.map(lambda d, q: alpha * d - q, distill_grads, q_grads)
    assert_trees_close(loss_term_gradients("actor_loss")["onestep"], expected)


def test_critic_target_by_hand_with_discount_masks_and_both_aggregations():
    """y = r + gamma m agg_k Qbar_k(s', clip(mu(s', z))), on 4 transitions with hand values: a stand-in one-step policy
    mu(s, z) = 2 s (the second next action, 1.6, is clipped to 1), target critics Qbar_1 = a + s', Qbar_2 = -a + s'
    (so the mean is s' and the min is s' - |a|), gamma 0.5, masks 1, 1, 0, 1."""

    class TwiceTheState:
        action_dim = 1

        def apply(self, params, observations, noise):
            return 2.0 * observations + 0.0 * noise

    class CriticPlusState(LinearCritic):
        def apply(self, params, observations, actions):
            return super().apply(params, observations, actions) + observations[..., 0]

    nets = fino.Networks(critic=CriticPlusState(), bc_flow=None, onestep=TwiceTheState())
    batch = {
        "observations": jnp.full((4, 1), 9.0),  # not used by the target
        "actions": jnp.zeros((4, 1)),
        "rewards": jnp.array([1.0, -1.0, 0.5, 0.0]),
        "masks": jnp.array([1.0, 1.0, 0.0, 1.0]),
        "next_observations": jnp.array([[0.2], [0.8], [-0.3], [0.1]]),  # next actions 0.4, 1.0, -0.6, 0.2
    }
    target_critic = {"w": jnp.array([[1.0], [-1.0]])}  # Qbar = (0.6, 1.8, -0.9, 0.3) and (-0.2, -0.2, 0.3, -0.1)
    expected = {"mean": [1.1, -0.6, 0.5, 0.05], "min": [0.9, -1.1, 0.5, -0.05]}
    for q_agg, want in expected.items():
        args = dataclasses.replace(fino.Args(), discount=0.5, q_agg=q_agg)
        target = fino.critic_target(None, target_critic, batch, jax.random.PRNGKey(0), nets, args)
        np.testing.assert_allclose(target, want, rtol=1e-6, atol=1e-7, err_msg=q_agg)


def test_one_update_with_a_linear_critic_raises_the_q_of_the_one_step_policy():
    """With Q_k(s, a) = w . a and alpha = 0, the one-step policy learns from the Q term alone: Adam's first step moves
    its output bias by lr x sign(w) (each action towards higher Q, nothing where w is 0), and raises the mean Q of its
    clipped actions at fresh states and noises."""
    args, nets, tx, real_state, batch = small_setup()
    args = dataclasses.replace(args, alpha=0.0)
    nets = nets._replace(critic=LinearCritic())
    w = jnp.array([1.0, -2.0, 0.5, 0.0, 3.0])
    params = {**real_state.params, "critic": {"w": jnp.stack([w, w])}}
    state = fino.TrainState(params, {"w": jnp.stack([w, w])}, tx.init(params))
    new_state, _ = jax.jit(lambda s, b, k: fino.update(s, b, k, nets, tx, args))(state, batch, jax.random.PRNGKey(3))

    def output_bias(onestep_params):  # the only leaf of shape (d,): the hidden layers are 32 wide
        (bias,) = [leaf for leaf in jax.tree.leaves(onestep_params) if leaf.shape == (ACTION_DIM,)]
        return bias

    moved = output_bias(new_state.params["onestep"]) - output_bias(params["onestep"])
    np.testing.assert_allclose(moved, args.learning_rate * np.array([1, -1, 1, 0, 1]), rtol=1e-4, atol=1e-10)

    keys = jax.random.split(jax.random.PRNGKey(4), 2)
    obs, noise = jax.random.normal(keys[0], (1000, OBS_DIM)), jax.random.normal(keys[1], (1000, ACTION_DIM))

    def mean_q(onestep_params):
        return float((jnp.clip(nets.onestep.apply(onestep_params, obs, noise), -1, 1) @ w).mean())

    assert mean_q(new_state.params["onestep"]) > mean_q(params["onestep"]) + 1e-3


def test_actor_loss_gives_no_gradient_to_the_critic_and_critic_loss_none_to_the_policies():
    assert all_zero(loss_term_gradients("actor_loss")["critic"])
    critic_grads = loss_term_gradients("critic_loss")
    assert all_zero(critic_grads["onestep"]) and all_zero(critic_grads["bc_flow"])
    assert not all_zero(critic_grads["critic"])


def test_noise_schedules_and_the_paper_path_variance():
    t = jnp.linspace(0.0, 1.0, 11)[:, None]
    code = injected_std(t, 0.1, "code")
    np.testing.assert_allclose(code[-1], 0.1, rtol=1e-6)  # eta at t = 1, negligible early: eta e^{-10} at t = 0
    assert float(code[0, 0]) < 1e-5 and bool(jnp.all(jnp.diff(code[:, 0]) > 0))
    # Paper: (1 - t)^2 + sigma_t^2 = (1 - (1 - eta) t)^2, the straight path with sigma_min = eta.
    paper = injected_std(t, 0.1, "paper")
    np.testing.assert_allclose((1 - t) ** 2 + paper**2, (1 - 0.9 * t) ** 2, atol=1e-6)
    # eta = 0 is FQL's path and target, for both schedules.
    x0, x1, n = jax.random.normal(jax.random.PRNGKey(0), (3, 11, 2))
    for schedule in ("code", "paper"):
        for a, b in zip(fino.noisy_flow_path(x0, x1, t, n, 0.0, schedule), flow_path(x0, x1, t), strict=True):
            np.testing.assert_allclose(a, b, atol=1e-6)
    _, target = fino.noisy_flow_path(x0, x1, t, n, 0.1, "paper")
    np.testing.assert_allclose(target, x1 - 0.9 * x0, atol=1e-6)


def test_noisy_path_and_its_target_by_hand():
    """x0 = (0.5, -1), x1 = (0.2, 0.4), t = 0.9, n = (1, -2), eta = 0.1: x_t = (0.23, 0.26), plus sigma_t n with
    sigma_t = 0.1 e^{-1} = 0.0367879 (code) or sqrt(0.09 x 0.29) = 0.161555 (paper); targets x1 - x0 = (-0.3, 1.4) and
    x1 - 0.9 x0 = (-0.25, 1.3)."""
    x0, x1, n, t = jnp.array([[0.5, -1.0]]), jnp.array([[0.2, 0.4]]), jnp.array([[1.0, -2.0]]), jnp.array([[0.9]])
    expected = {
        "code": ([[0.2667879, 0.1864241]], [[-0.3, 1.4]]),
        "paper": ([[0.3915549, -0.0631099]], [[-0.25, 1.3]]),
    }
    for schedule, (want_x, want_target) in expected.items():
        x_noisy, target = fino.noisy_flow_path(x0, x1, t, n, 0.1, schedule)
        np.testing.assert_allclose(x_noisy, want_x, atol=1e-6, err_msg=schedule)
        np.testing.assert_allclose(target, want_target, atol=1e-6, err_msg=schedule)


def test_noisy_flow_matching_loss_regresses_the_velocity_at_the_noisy_point_by_hand():
    """With its draws given (x0, t, n, in the official code's order) and v(x, t) = x + t, the loss is the mean over
    rows and dims of (x_t + sigma_t n + t - target)^2. Rows: x0 = (0.5, -1), (0, 1); x1 = (0.2, 0.4), (-0.5, 0);
    t = 0.9, 0.95; n = (1, -2), (2, 1); eta = 0.1. By hand: 1.9244937 (code), 2.0730333 (paper), 1.7632813 (eta 0,
    FQL's flow matching)."""
    x0, x1 = np.array([[0.5, -1.0], [0.0, 1.0]]), jnp.array([[0.2, 0.4], [-0.5, 0.0]])
    t, n = np.array([[0.9], [0.95]]), np.array([[1.0, -2.0], [2.0, 1.0]])
    for schedule, eta, want in (("code", 0.1, 1.9244937), ("paper", 0.1, 2.0730333), ("code", 0.0, 1.7632813)):
        with replayed([("normal", x0), ("uniform", t), ("normal", n)]):
            loss = fino.noisy_flow_matching_loss(lambda x, time: x + time, x1, jax.random.PRNGKey(0), eta, schedule)
        np.testing.assert_allclose(loss, want, rtol=1e-6, err_msg=(schedule, eta))


def test_noisy_fm_loss_is_zero_for_the_exact_field_without_noise_and_positive_with_it():
    """v(x, t) = (x1 - x) / (1 - t) is the exact velocity of the straight path to each row's x1: it gives x1 - x0 at
    every x_t, so FQL's loss (eta = 0) vanishes, up to rounding. Noise moves the input off the path (code schedule) or
    changes the target (paper schedule), and the loss becomes positive."""
    x1 = jax.random.uniform(jax.random.PRNGKey(0), (256, ACTION_DIM), minval=-1, maxval=1)

    def exact_field(x, t):
        return (x1 - x) / (1.0 - t)

    for schedule in ("code", "paper"):
        losses = [
            float(fino.noisy_flow_matching_loss(exact_field, x1, jax.random.PRNGKey(1), eta, schedule))
            for eta in (0.0, 0.1)
        ]
        assert losses[0] < 1e-8 and losses[1] > 1e-4, (schedule, losses)


def test_injected_noise_widens_the_marginal_path_theorem_2():
    """Var(X_t^FINO) >= Var(X_t^FM) at every t, on a 2-D toy with three data points, and the widening is sigma_t^2 of
    the spec (written out here: eta^2 e^{20 (t - 1)} for the code, eta t (2 - (2 - eta) t) for the paper). Each noise
    n is paired with -n on the same (x0, x1), so the sample covariance of x_t and n is exactly 0 and the noisy variance
    is the plain one + sigma_t^2 mean(n^2) up to rounding: no Monte Carlo slack hides a missing or mis-scaled noise
    (the code schedule's sigma_t^2 is 1.8e-4 at t = 0.8 and 1.35e-3 at t = 0.9)."""
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    points = jnp.array([[-0.8, 0.5], [0.6, 0.6], [0.1, -0.9]])
    x1 = points[jax.random.randint(keys[0], (50_000,), 0, 3)]
    x0, n = jax.random.normal(keys[1], x1.shape), jax.random.normal(keys[2], x1.shape)
    x0, x1, n = jnp.concatenate([x0, x0]), jnp.concatenate([x1, x1]), jnp.concatenate([n, -n])
    times = np.array([0.0, 0.1, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 1.0])
    t = jnp.asarray(times, jnp.float32)[:, None, None]  # every t at once: (9, samples, 2)
    plain_var = np.asarray(flow_path(x0, x1, t)[0], np.float64).var(axis=1)
    mean_n_squared = (np.asarray(n, np.float64) ** 2).mean(axis=0)
    eta = 0.1
    spec_variance = {"code": eta**2 * np.exp(20 * (times - 1)), "paper": eta * times * (2 - (2 - eta) * times)}
    for schedule, sigma_squared in spec_variance.items():
        noisy_var = np.asarray(fino.noisy_flow_path(x0, x1, t, n, eta, schedule)[0], np.float64).var(axis=1)
        assert (noisy_var >= plain_var - 1e-9).all(), schedule  # rounding only
        expected = sigma_squared[:, None] * mean_n_squared
        np.testing.assert_allclose(noisy_var - plain_var, expected, rtol=2e-3, atol=2e-7, err_msg=schedule)
    middle = slice(1, 8)  # paper schedule, t in [0.1, 0.95]: sigma_t >= 0.13, a clear widening
    assert (noisy_var[middle] > plain_var[middle] + 0.01).all()


# One compiled fit for both EM tests: (2 datasets, 2000 samples, 3 dims).
def _fit_and_bound(x, key):
    weights, means, covs = fino.fit_gmm(x, key, 3)
    return weights, means, covs, fino.gmm_entropy_bound(weights, covs)


fit_and_bound = jax.jit(jax.vmap(_fit_and_bound))


def test_em_recovers_a_known_three_component_mixture_and_its_entropy_bound():
    rng = np.random.default_rng(0)
    weights = np.array([0.5, 0.3, 0.2])
    means = np.array([[-3.0, 0.0, 1.0], [2.0, 2.0, 0.0], [2.0, -3.0, -1.0]])
    factors = rng.standard_normal((3, 3, 3)) * 0.4
    covs = factors @ factors.transpose(0, 2, 1) + 0.2 * np.eye(3)
    samples = []
    for seed in (1, 2):
        labels = np.random.default_rng(seed).choice(3, 2000, p=weights)
        samples.append(
            means[labels] + np.einsum("nij,nj->ni", np.linalg.cholesky(covs)[labels], rng.standard_normal((2000, 3)))
        )
    fitted_w, fitted_mu, fitted_cov, bound = jax.device_get(
        fit_and_bound(jnp.asarray(np.stack(samples), jnp.float32), jax.random.split(jax.random.PRNGKey(0), 2))
    )

    component_entropy = 0.5 * 3 * (1 + np.log(2 * np.pi)) + 0.5 * np.linalg.slogdet(covs)[1]
    true_bound = -np.sum(weights * np.log(weights)) + np.sum(weights * component_entropy)
    np.testing.assert_allclose(fino.gmm_entropy_bound(jnp.asarray(weights), jnp.asarray(covs)), true_bound, rtol=1e-5)
    for i in range(2):
        order = [int(np.argmin(((fitted_mu[i] - mu) ** 2).sum(-1))) for mu in means]  # match components
        assert sorted(order) == [0, 1, 2]
        np.testing.assert_allclose(fitted_w[i][order], weights, atol=0.03)
        np.testing.assert_allclose(fitted_mu[i][order], means, atol=0.1)
        np.testing.assert_allclose(fitted_cov[i][order], covs, rtol=0.15, atol=0.05)
        np.testing.assert_allclose(bound[i], true_bound, atol=0.08)


def test_beta_rises_when_the_behaviour_is_too_random_and_falls_when_too_concentrated():
    assert fino.update_beta(10.0, entropy=-3.0, target_entropy=-5.0, step_size=0.1) == pytest.approx(10.2)
    assert fino.update_beta(10.0, entropy=-7.0, target_entropy=-5.0, step_size=0.1) == pytest.approx(9.8)
    assert fino.update_beta(0.05, entropy=-30.0, target_entropy=-5.0, step_size=0.1) == 0.0  # floored at 0
    # Through the estimator, target -3: uniform actions on [-1, 1]^3 (entropy 3 log 2 = 2.08) and a near-deterministic
    # Gaussian policy (std 0.02: entropy -7.5). The mixture bound lies above each, by less than the weights' log 3.
    rng = np.random.default_rng(0)
    actions = np.stack([rng.uniform(-1, 1, (2000, 3)), 0.3 + 0.02 * rng.standard_normal((2000, 3))])
    bound = fit_and_bound(jnp.asarray(actions, jnp.float32), jax.random.split(jax.random.PRNGKey(1), 2))[-1]
    true_entropy = np.array([3 * np.log(2), 3 * np.log(0.02) + 1.5 * (1 + np.log(2 * np.pi))])
    assert (true_entropy - 0.05 < bound).all() and (bound < true_entropy + np.log(3)).all()
    assert (
        fino.update_beta(10.0, float(bound[0]), -3.0, 0.1) > 10.0 > fino.update_beta(10.0, float(bound[1]), -3.0, 0.1)
    )


def test_evaluation_takes_the_argmax_and_training_samples_the_softmax():
    args, nets, _, state, _ = small_setup(q_agg="min")
    obs = jnp.repeat(jax.random.normal(jax.random.PRNGKey(2), (4, OBS_DIM)), 500, axis=0)  # 2000 states
    key = jax.random.PRNGKey(3)

    @jax.jit
    def candidates_and_critics():
        candidates, q = fino.candidate_actions(nets, state.params, obs, jax.random.split(key)[0], args)
        return (
            candidates,
            q,
            nets.critic.apply(state.params["critic"], jnp.broadcast_to(obs, (3, *obs.shape)), candidates),
        )

    candidates, q, critics = jax.device_get(candidates_and_critics())
    assert candidates.shape == (3, 2000, ACTION_DIM) and q.shape == (3, 2000)
    np.testing.assert_allclose(q, critics.min(axis=0), rtol=1e-6)  # scored with the task's q_agg

    select = jax.jit(
        lambda beta, greedy: fino.select_actions(nets, state.params, obs, key, beta, args, greedy), static_argnums=1
    )
    chosen = lambda actions: np.abs(candidates - np.asarray(actions)[None]).sum(-1).argmin(axis=0)  # noqa: E731
    greedy, _ = select(10.0, True)  # the spread: test_candidate_logits_spread_and_argmax_by_hand
    np.testing.assert_array_equal(chosen(greedy), q.argmax(axis=0))
    np.testing.assert_array_equal(select(1e7, False)[0], greedy)  # beta -> infinity: the softmax becomes the argmax
    counts = np.bincount(chosen(select(0.0, False)[0]), minlength=3) / 2000
    np.testing.assert_allclose(counts, 1 / 3, atol=0.05)  # beta = 0: uniform over the candidates


def test_candidate_logits_spread_and_argmax_by_hand():
    """Three candidates at two states, a_i = clip(z_i) (a stand-in one-step policy) with z = (-0.5, 0.1, 0.3) and
    (0.2, 1.7, -0.4), critics Q_1 = 10 a and Q_2 = 5 a. With q_agg=min, Q = (-5, 0.5, 1.5) and (1, 5, -4) (1.7 is
    clipped to 1): mean |Q| = 7/3 and 10/3, logits at beta 2 = 2 Q / mean|Q| = (-30/7, 3/7, 9/7) and (0.6, 3, -2.4),
    spreads (max - min) / mean|Q| = 19.5/7 and 2.7, greedy actions 0.3 and 1. With q_agg=mean, Q = 7.5 a:
    (-3.75, 0.75, 2.25) and (1.5, 7.5, -3): logits (-10/3, 2/3, 2) and (0.75, 3.75, -1.5)."""
    nets = fino.Networks(critic=LinearCritic(), bc_flow=None, onestep=NoiseAsAction())
    params = {"critic": {"w": jnp.array([[10.0], [5.0]])}, "onestep": None}
    noise = np.array([[-0.5, 0.2], [0.1, 1.7], [0.3, -0.4]])[..., None]  # (candidate, state, 1)
    observations = jnp.zeros((2, 3))
    expected = {
        "min": ([[-30 / 7, 0.6], [3 / 7, 3.0], [9 / 7, -2.4]], [19.5 / 7, 2.7]),
        "mean": ([[-10 / 3, 0.75], [2 / 3, 3.75], [2.0, -1.5]], [6 / 2.25, 10.5 / 4]),
    }
    for q_agg, (want_logits, want_spread) in expected.items():
        args = dataclasses.replace(fino.Args(), num_candidates=3, q_agg=q_agg)
        logits = []
        with replayed([("normal", noise)], [np.array([0, 5], np.uint32)], logits):
            sampled, spread = fino.select_actions(nets, params, observations, jax.random.PRNGKey(0), 2.0, args, False)
        np.testing.assert_allclose(logits[0], want_logits, rtol=1e-6, err_msg=q_agg)
        np.testing.assert_allclose(spread, want_spread, rtol=1e-6, err_msg=q_agg)
        assert all(float(sampled[s, 0]) in np.clip(noise[:, s, 0], -1, 1).astype(np.float32) for s in range(2))
        with replayed([("normal", noise)]):
            greedy, _ = fino.select_actions(nets, params, observations, jax.random.PRNGKey(0), 2.0, args, True)
        np.testing.assert_allclose(greedy, [[0.3], [1.0]], rtol=1e-6, err_msg=q_agg)


def test_train_chunk_is_deterministic_given_the_seed():
    args, nets, tx, state, batch = small_setup()
    data = jax.tree.map(lambda x: jnp.concatenate([x] * 4), batch)
    chunk = jax.jit(lambda key: fino.train_chunk(state, data, 4 * BATCH, key, 0, 5, nets, tx, args)[1])
    infos_a, infos_b, infos_c = chunk(jax.random.PRNGKey(7)), chunk(jax.random.PRNGKey(7)), chunk(jax.random.PRNGKey(8))
    for k in infos_a:
        np.testing.assert_array_equal(infos_a[k], infos_b[k])
    assert np.isfinite(infos_a["total_loss"]).all() and infos_a["total_loss"].shape == (5,)
    assert not np.array_equal(infos_a["bc_flow_loss"], infos_c["bc_flow_loss"])


def test_env_id_aliases_and_fino_task_values():
    name, env_id, _ = fino.resolve_env_id("antmaze")
    assert env_id == "antmaze-large-navigate-singletask-task1-v0" and fino.TASKS[name][2:] == (10.0, 0.99, "min")
    assert fino.TASKS[fino.resolve_env_id("humanoidmaze")[0]][2:] == (100.0, 0.995, "mean")
    with pytest.raises(ValueError, match="unknown environment"):
        fino.resolve_env_id("cube-triple")


def test_missing_dataset_names_the_command_that_makes_it(tmp_path):
    env_id = "antmaze-large-navigate-singletask-task1-v0"
    with pytest.raises(SystemExit) as missing:
        fino.load_data(env_id, "antmaze-large-navigate-v0", str(tmp_path), "post")
    message = str(missing.value)
    assert "antmaze-large-navigate-v0.npz" in message
    assert f"python benchmark/make_dataset.py --dataset antmaze-large-navigate-v0 --out-dir {tmp_path}" in message


def test_run_interrupted_online_resumes_with_its_buffer_parameters_and_beta(tmp_path, cube_single_dir):
    """20 offline + 230 online steps; beta is updated at online steps 110 and 220, a checkpoint is written at the end of
    the first episode (online step 200). Interrupted after it and resumed, the run logs exactly the uninterrupted
    run's numbers (beta included) and saves the same model; the buffer (410 rows) wraps around."""
    flags = ["--env-id", "cube-single", "--dataset-dir", cube_single_dir, "--offline-steps", "20", "--online-steps"]
    flags += ["230", "--steps-per-call", "1", "--log-every", "5", "--eval-every", "250", "--eval-episodes", "2"]
    flags += ["--num-eval-envs", "2", "--buffer-size", "410", "--checkpoint-every", "20", "--entropy-every", "110"]
    flags += ["--entropy-states", "8", "--entropy-samples", "25", "--save-model", *SMALL]
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    output = run_in_process("fino.py", flags, tmp_path / "a")
    assert "3 candidates, target entropy -5.0" in output and "final success" in output
    betas = [float(b) for b in re.findall(r"entropy -?[\d.]+ \(target -5.0\), beta -> ([\d.]+)", output)]
    assert len(betas) == 2  # online steps 110 and 220
    (run_a,) = glob.glob(str(tmp_path / "a" / "runs" / "cube-single-play-singletask-task2-v0__fino__0__*"))
    saved = json.load(open(os.path.join(run_a, "args.json")))
    assert saved["alpha"] == 300.0 and saved["num_candidates"] == 3 and saved["target_entropy"] == -5.0

    run_in_process("fino.py", flags, tmp_path / "b", interrupt_at=230)
    (run_b,) = glob.glob(str(tmp_path / "b" / "runs" / "*"))
    resumed = run_in_process("fino.py", ["--resume", os.path.relpath(run_b, tmp_path / "b")], tmp_path / "b")
    assert "resuming from the checkpoint at step 220" in resumed
    scalars = logged_scalars(run_a)
    for tag in ("charts/beta", "charts/entropy", "charts/candidate_q_spread", "losses/bc_flow_loss", "eval/success"):
        assert any(key[0] == tag for key in scalars), tag
    assert ("charts/beta", 240) in scalars and logged_scalars(run_b) == scalars
    with open(os.path.join(run_a, "fino.flax"), "rb") as a, open(os.path.join(run_b, "fino.flax"), "rb") as b:
        assert a.read() == b.read()

    saved_args, _, params, beta = fino.load_model(os.path.join(run_a, "fino.flax"), 28, 5)
    assert beta == pytest.approx(betas[-1], abs=1e-3) and saved_args.noise_schedule == "code"
    assert set(params) == {"critic", "bc_flow", "onestep"}
