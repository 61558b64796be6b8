"""rldt.py: the SVGD field, the actor and critic targets, the host-side bookkeeping, and end-to-end runs.

The end-to-end runs are subprocesses that share a compilation cache and compile at a low XLA optimisation level, so
that the second and later runs of the file skip most of the compilation (tiny networks; compiling dominates).
"""

import dataclasses
import glob
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time

import flax
import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import rldt
from benchmark.summarize import read_events
from common_flow import euler_sample

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OBS_DIM, ACTION_DIM, HORIZON = 5, 2, 2
TINY = ["--actor-hidden-dims", "32", "32", "32", "--critic-hidden-dims", "32", "32", "--time-dim", "8"]
TINY += ["--n-particles", "4", "--critic-steps", "4", "--critic-rounds", "2", "--actor-steps", "2"]
TINY += ["--critic-warmup-iterations", "1", "--pretrain-steps", "100", "--pretrain-log-every", "50"]
TINY += ["--pretrain-batch-size", "32", "--num-envs", "2", "--eval-episodes", "2", "--eval-every", "1"]


def small_setup(**overrides):
    """Tiny networks, a critic, 3 states with 4 particles each, and the random draws of one actor step."""
    args = dataclasses.replace(
        rldt.Args(),
        horizon=HORIZON,
        actor_hidden_dims=(16, 16, 16),
        critic_hidden_dims=(16, 16),
        time_dim=8,
        actor_activation="relu",
        n_particles=4,
        discount=0.99,
        td_lambda=0.0,
        **overrides,
    )
    nets = rldt.make_networks(args, ACTION_DIM)
    actor = rldt.init_actor(jax.random.PRNGKey(0), nets, OBS_DIM)
    old_actor = rldt.init_actor(jax.random.PRNGKey(1), nets, OBS_DIM)
    critic = rldt.init_critic(jax.random.PRNGKey(2), nets, OBS_DIM, rldt.optax.adam(1e-3)).params
    states = jax.random.uniform(jax.random.PRNGKey(3), (3, OBS_DIM), minval=-1, maxval=1)
    draws = actor_draws(jax.random.PRNGKey(4), 3 * args.n_particles, args.flow_steps)
    targets_fn = jax.jit(lambda *a: actor_targets(*a, nets=nets, args=args))  # (actor, old, critic, states, draws)
    return args, nets, actor, old_actor, critic, states, draws, targets_fn


def actor_draws(key, num_rows: int, flow_steps: int) -> dict:
    """The random numbers of one actor step, as `rldt.actor_step` draws them: the chains' noise, the step k of each
    row, and the trust-region point's step and noise."""
    noise_key, step_key, teacher_step_key, teacher_noise_key = jax.random.split(key, 4)
    return {
        "noise": jax.random.normal(noise_key, (num_rows, HORIZON * ACTION_DIM)),
        "step": jax.random.randint(step_key, (num_rows,), 0, flow_steps),
        "teacher_step": jax.random.randint(teacher_step_key, (num_rows,), 0, flow_steps),
        "teacher_noise": jax.random.normal(teacher_noise_key, (num_rows, HORIZON * ACTION_DIM)),
    }


def actor_targets(params, old_params, critic_params, states, draws, nets, args) -> dict:
    """The chain point x_k and t_k, the endpoint a and the field phi at E[a | x_k] of each row, from the policy's
    documented pieces (`rldt.transport_field` for phi)."""
    obs = jnp.repeat(states, args.n_particles, axis=0)
    actions, chain = rldt.sample_actions(nets, params, obs, draws["noise"], args.flow_steps)
    t = (draws["step"] / args.flow_steps)[:, None]
    x = chain[draws["step"], jnp.arange(obs.shape[0])]
    expected = rldt.expected_target(nets, params, obs, x, t)
    field, _ = rldt.transport_field(nets, critic_params, obs, expected, actions, args)
    return dict(x=x, t=t, actions=actions, field=field)


@pytest.fixture(scope="module")
def setup():
    return small_setup()


def with_leaves(template, leaves: dict):
    """`template`'s tree with every leaf zero except `leaves`, keyed by path: {("Dense_0", "kernel"): array}."""
    flat = flax.traverse_util.flatten_dict(template["params"])
    assert set(leaves) <= set(flat), set(leaves) - set(flat)
    flat = {k: jnp.broadcast_to(jnp.asarray(leaves.get(k, 0.0), jnp.float32), v.shape) for k, v in flat.items()}
    return {"params": flax.traverse_util.unflatten_dict(flat)}


def nearly_linear_critic(nets, obs_dim: int, grads, offsets=(0.0, 0.0)):
    """Critics with one SiLU unit, Q_i(s, a) = silu(g_i . a + 20) + c_i = g_i . a + 20 + c_i within 2e-6 where
    |g_i . a| <= 4, so that grad_a Q_i = g_i within 1e-6 there. `grads` (2, D), one row per ensemble member."""
    grads = jnp.asarray(grads, jnp.float32)
    template = jax.eval_shape(lambda: rldt.init_critic(jax.random.PRNGKey(0), nets, obs_dim, optax.adam(1.0)))
    kernel = jnp.concatenate([jnp.zeros((2, obs_dim)), grads], axis=1)[..., None]
    leaves = {("Dense_0", "kernel"): kernel, ("Dense_0", "bias"): 20.0, ("Dense_1", "kernel"): 1.0}
    leaves[("Dense_1", "bias")] = jnp.asarray(offsets, jnp.float32)[:, None]
    return with_leaves(template.params, leaves)


def scale_critic(critic_params, factor: float):
    """The critics' output layer (the last Dense) times `factor`: Q and grad_a Q scale by it, exactly."""
    flat = flax.traverse_util.flatten_dict(critic_params)
    last = max((k[-2] for k in flat), key=lambda name: int(name.split("_")[-1]))
    return flax.traverse_util.unflatten_dict({k: v * factor if k[-2] == last else v for k, v in flat.items()})


def reference_actor_loss(params, constants_from, old_params, critic_params, states, state_weights, draws, nets, args):
    """L_svgd + L_cons + L_kl of the `normal` field written out from docs/rldt.md, apart from rldt.actor_loss: the chain,
    the expected targets, the field and the trust-region point come from `constants_from` (stopped parameters give the
    official loss; `params` itself differentiates through everything). Returns (loss, (L_svgd, L_cons, L_kl))."""
    num_particles, steps = args.n_particles, args.flow_steps
    obs = jnp.repeat(states, num_particles, axis=0)
    actions, chain = rldt.sample_actions(nets, constants_from, obs, draws["noise"], steps)
    t = (draws["step"] / steps)[:, None]
    x = chain[draws["step"], jnp.arange(obs.shape[0])]
    queries = rldt.expected_target(nets, constants_from, obs, x, t)
    grad_q = jax.grad(lambda a: rldt.q_values(nets, critic_params, obs, a).mean(axis=0).sum())(actions)
    fields = []
    for state in range(states.shape[0]):
        rows = slice(state * num_particles, (state + 1) * num_particles)
        temperature = args.svgd_temp * jnp.linalg.norm(grad_q[rows], axis=-1).mean()
        fields.append(rldt.svgd_field(queries[rows], actions[rows], grad_q[rows], temperature)[0])
    phi = jnp.concatenate(fields)
    row_weights = jnp.repeat(state_weights, num_particles) / (num_particles * jnp.sum(state_weights))
    v = nets.actor.apply(params, obs, x, t)
    remaining = steps * (1 - t[:, 0])
    svgd = -jnp.sum(row_weights * jnp.sum(v * phi, axis=-1) / remaining)
    landing_error = jnp.sum((x + (1 - t) * v - actions) ** 2, axis=-1)
    consistency = args.consistency_coef * jnp.sum(row_weights * landing_error / remaining**2)
    t_old = (draws["teacher_step"] / steps)[:, None]
    x_old = (1 - t_old) * draws["teacher_noise"] + t_old * actions
    v_gap = nets.actor.apply(params, obs, x_old, t_old) - nets.actor.apply(old_params, obs, x_old, t_old)
    kl = args.kl_coef * jnp.sum(row_weights * jnp.sum(v_gap**2, axis=-1))
    return svgd + consistency + kl, (svgd, consistency, kl)


# The SVGD field
def test_svgd_field_on_a_hand_computed_two_particle_example():
    # Particles at 0 and 2 with critic gradients +1 and -1; queries at 1 and 3; temperature 0.5.
    particles, grad_q = jnp.array([[0.0], [2.0]]), jnp.array([[1.0], [-1.0]])
    phi, _ = rldt.svgd_field(jnp.array([[1.0], [3.0]]), particles, grad_q, 0.5)
    # Query 1: both squared distances are 1, h = 1 / (2 log 3), both kernel values 1/3: attraction and repulsion cancel.
    # Query 3: squared distances 9 and 1, lower median 1, same h: kernel values 3^-9 and 1/3.
    attraction = 3.0**-9 * 1 + (1 / 3) * -1
    repulsion = (3 * (3.0**-9 + 1 / 3) - (0 * 3.0**-9 + 2 * (1 / 3))) * 2 * math.log(3)
    np.testing.assert_allclose(phi[:, 0], [0.0, (attraction + 0.5 * repulsion) / 2], atol=1e-7)


def test_with_zero_critic_gradient_the_field_only_pushes_queries_away_from_the_particles(setup):
    particles = jnp.array([[0.0, 0.0], [2.0, 0.0], [1.0, 1.0]])
    queries = jnp.array([[3.0, 0.0], [-1.0, 0.0], [1.0, -2.0]])
    phi, _ = rldt.svgd_field(queries, particles, jnp.zeros_like(particles), 1.0)
    assert phi[0, 0] > 0 and phi[1, 0] < 0 and phi[2, 1] < 0  # away from the particles' side
    # It is the repulsion term alone: sum_j (q - a_j) k_j / h / P.
    sq = np.sum((np.array(queries)[:, None] - np.array(particles)[None]) ** 2, -1)
    h = np.sort(sq, -1)[:, 1] / (2 * math.log(4))
    k = np.exp(-sq / (2 * h[:, None]))
    expected = ((np.array(queries) * k.sum(1, keepdims=True)) - k @ np.array(particles)) / h[:, None] / 3
    np.testing.assert_allclose(phi, expected, rtol=1e-5)
    # Inside the actor step the temperature is svgd_temp * mean_j |grad Q(s, a_j)| of each state: a flat critic gives
    # no field at all, so L_svgd = -mean <v, phi> / (K (1 - t)) is exactly 0 ...
    args, nets, actor, old_actor, critic, states, draws, _ = setup
    args = dataclasses.replace(args, svgd_temp=5.0)

    def svgd_loss(args):
        def loss(critic):
            return rldt.actor_loss(actor, old_actor, critic, states, jnp.ones(3), draws, nets, args)[1]["svgd_loss"]

        return jax.jit(loss)

    with_temperature, without_repulsion = svgd_loss(args), svgd_loss(dataclasses.replace(args, svgd_temp=0.0))
    assert float(with_temperature(jax.tree.map(jnp.zeros_like, critic))) == 0.0
    # ... and a critic scaled by 10 scales the whole field by 10, repulsion included (the temperature follows |grad Q|),
    # where the repulsion is a sizeable part of the field: a fixed temperature would not scale with the critic.
    loss, repulsion = float(with_temperature(critic)), float(with_temperature(critic) - without_repulsion(critic))
    assert abs(repulsion) > 0.3 * abs(loss)
    assert float(with_temperature(scale_critic(critic, 10.0))) == pytest.approx(10 * loss, rel=1e-5)


def test_with_temperature_zero_the_field_is_the_kernel_weighted_gradient():
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    queries, particles, grad_q = (jax.random.normal(k, (3, 2)) for k in keys)
    phi, _ = rldt.svgd_field(queries, particles, grad_q, 0.0)
    sq = np.sum((np.array(queries)[:, None] - np.array(particles)[None]) ** 2, -1)
    h = np.sort(sq, -1)[:, 1] / (2 * math.log(4))  # the median of 3 distances
    k = np.exp(-sq / (2 * h[:, None]))
    np.testing.assert_allclose(phi, k @ np.array(grad_q) / 3, rtol=1e-5)


def test_bandwidth_is_the_lower_median_heuristic_per_query():
    # Squared distances 1, 4, 9, 16: torch.median (the official code) takes 4, not the mean 6.5 of the middle two.
    particles = jnp.array([[1.0], [2.0], [3.0], [4.0]])
    grad_q = jnp.array([[1.0], [10.0], [100.0], [1000.0]])
    phi, _ = rldt.svgd_field(jnp.array([[0.0]]), particles, grad_q, 0.0)

    def field(median):
        h = median / (2 * math.log(5))
        return sum(math.exp(-d / (2 * h)) * g for d, g in zip([1, 4, 9, 16], [1, 10, 100, 1000], strict=True)) / 4

    assert float(phi[0, 0]) == pytest.approx(field(4.0), rel=1e-5)
    assert float(phi[0, 0]) != pytest.approx(field(6.5), rel=1e-2)
    # A zero median (all particles on the query) is clamped to 1e-8 instead of dividing by zero.
    phi, _ = rldt.svgd_field(jnp.zeros((1, 1)), jnp.zeros((4, 1)), grad_q, 1.0)
    np.testing.assert_allclose(phi, [[1111 / 4]])


# Flow pieces of the policy
def test_expected_target_at_the_last_step_is_the_euler_endpoint(setup):
    args, nets, actor, *_ = setup
    obs = jax.random.normal(jax.random.PRNGKey(5), (7, OBS_DIM))
    x0 = jax.random.normal(jax.random.PRNGKey(6), (7, HORIZON * ACTION_DIM))

    @jax.jit
    def flow(actor):
        final, chain = rldt.sample_actions(nets, actor, obs, x0, 8)
        expected = rldt.expected_target(nets, actor, obs, chain[7], jnp.full((7, 1), 7 / 8))
        unclipped = euler_sample(lambda x, t: nets.actor.apply(actor, obs, x, t), x0, 8, clip=False)
        return final, chain, expected, unclipped

    final, chain, expected, unclipped = flow(actor)
    assert chain.shape == (9, 7, HORIZON * ACTION_DIM)
    np.testing.assert_array_equal(chain[0], x0)
    np.testing.assert_array_equal(chain[-1], final)
    np.testing.assert_allclose(expected, final, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(final, unclipped, rtol=1e-6, atol=1e-6)  # euler_chain ends where euler_sample does


def test_actor_loss_gradient_flows_only_through_the_two_velocity_calls(setup):
    args, nets, actor, old_actor, critic, states, draws, _ = setup
    # Weights under which each term's gradient counts (a random network lands almost exactly where its chain ends, so
    # L_cons needs a large coefficient), a repulsion that counts, and a masked-out state (sparse rewards).
    args = dataclasses.replace(args, svgd_temp=5.0, consistency_coef=500.0)
    critic = scale_critic(critic, 1000.0)
    weights = jnp.array([1.0, 0.0, 1.0])

    @jax.jit
    def gradients(actor, old_actor, critic):
        full = jax.grad(rldt.actor_loss, argnums=(0, 1, 2), has_aux=True)
        grads, info = full(actor, old_actor, critic, states, weights, draws, nets, args)
        frozen = jax.lax.stop_gradient(actor)

        def reference(p, constants_from):
            return reference_actor_loss(p, constants_from, old_actor, critic, states, weights, draws, nets, args)

        local, parts = jax.grad(lambda p: reference(p, frozen), has_aux=True)(actor)
        term_norms = [optax.tree.norm(jax.grad(lambda p, i=i: reference(p, frozen)[1][i])(actor)) for i in range(3)]
        through = jax.grad(lambda p: reference(p, p)[0])(actor)
        return grads, info, local, parts, term_norms, through

    grads, info, local, parts, term_norms, through = gradients(actor, old_actor, critic)
    actor_grads, old_grads, critic_grads = grads
    assert all(bool(jnp.all(g == 0)) for g in jax.tree.leaves((old_grads, critic_grads)))
    # The loss and its gradient are those of the docs' three terms through v(x_k, t_k) and v(x', t') alone, with the
    # chain, the field and the previous policy as constants (a sign, a scale or a weight off would show) ...
    for name, value in zip(("svgd_loss", "consistency_loss", "kl_loss"), parts, strict=True):
        assert float(info[name]) == pytest.approx(float(value), rel=1e-5), name
    assert min(term_norms) > 0.2 * max(term_norms)  # each term's gradient counts
    for ours, reference in zip(jax.tree.leaves(actor_grads), jax.tree.leaves(local), strict=True):
        assert float(jnp.linalg.norm(ours - reference)) <= 1e-5 * float(jnp.linalg.norm(reference)) + 1e-12
    # ... whereas differentiating through the chain and the field as well would change it.
    assert any(
        not np.allclose(a, b) for a, b in zip(jax.tree.leaves(actor_grads), jax.tree.leaves(through), strict=True)
    )


def test_one_actor_step_moves_the_policy_along_the_field():
    # A critic whose gradient is g everywhere, no repulsion and only L_svgd: the field is a positive multiple of g at
    # every query, so one gradient step must raise g . a for the expected targets and the generated actions alike.
    args, _, actor, old_actor, _, states, draws, _ = small_setup()
    args = dataclasses.replace(args, critic_hidden_dims=(1,), svgd_temp=0.0, consistency_coef=0.0, kl_coef=0.0)
    nets = rldt.make_networks(args, ACTION_DIM)
    g = jnp.array([0.5, -1.0, 0.25, 0.75])
    critic = nearly_linear_critic(nets, OBS_DIM, jnp.stack([g, g]))
    obs = jnp.repeat(states, args.n_particles, axis=0)
    t = (draws["step"] / args.flow_steps)[:, None]

    @jax.jit
    def step_and_moves(actor):
        grads, info = jax.grad(rldt.actor_loss, has_aux=True)(
            actor, old_actor, critic, states, jnp.ones(3), draws, nets, args
        )
        stepped = jax.tree.map(lambda p, d: p - 1e-2 * d, actor, grads)
        actions, chain = rldt.sample_actions(nets, actor, obs, draws["noise"], args.flow_steps)
        x = chain[draws["step"], jnp.arange(obs.shape[0])]
        new_actions = rldt.sample_actions(nets, stepped, obs, draws["noise"], args.flow_steps)[0]
        expected_move = rldt.expected_target(nets, stepped, obs, x, t) - rldt.expected_target(nets, actor, obs, x, t)
        return info, (new_actions - actions) @ g, expected_move @ g

    info, action_moves, expected_moves = step_and_moves(actor)
    assert float(info["grad_q_norm"]) == pytest.approx(float(jnp.linalg.norm(g)), rel=1e-5)
    assert float(jnp.mean(expected_moves)) > 0 and float(jnp.mean(action_moves)) > 0
    assert float(jnp.mean(action_moves > 0)) >= 0.75  # nearly every generated action, not only on average


def test_actor_losses_by_hand_on_a_one_dimensional_linear_flow():
    # D = 1, K = 2, one state with P = 2 particles. The velocity network is made linear, v(x) = -x (one ReLU unit kept
    # in its linear range: v = -(x + 10) + 10), the previous policy's v_old(x) = -x / 2, and both critics
    # Q(s, a) = 3 silu(a + 20) ~ 3 a + 60, so grad_a Q = 3 everywhere.
    args = dataclasses.replace(
        rldt.Args(),
        horizon=1,
        flow_steps=2,
        n_particles=2,
        actor_hidden_dims=(1, 1, 1),
        critic_hidden_dims=(1,),
        time_dim=4,
        actor_activation="relu",
        consistency_coef=0.5,
        kl_coef=0.2,
    )
    nets = rldt.make_networks(args, 1)
    template = jax.eval_shape(lambda: rldt.init_actor(jax.random.PRNGKey(0), nets, 1))
    x_row = np.zeros((1 + 4 + 1, 1), np.float32)  # the first layer's inputs: [x, time embedding (4), s]
    x_row[0] = 1.0

    def linear_velocity(slope):
        leaves = {("Dense_2", "kernel"): x_row, ("Dense_2", "bias"): 10.0}
        return with_leaves(template, leaves | {("Dense_5", "kernel"): slope, ("Dense_5", "bias"): -10.0 * slope})

    critic = nearly_linear_critic(nets, 1, [[3.0], [3.0]])
    draws = {  # chains from x0 = 2 and -4; rows at steps k = 0 and 1; trust-region points at t' = 1/2 and 0
        "noise": jnp.array([[2.0], [-4.0]]),
        "step": jnp.array([0, 1]),
        "teacher_step": jnp.array([1, 0]),
        "teacher_noise": jnp.array([[1.0], [2.0]]),
    }

    def losses(svgd_type, svgd_temp=0.0):
        run_args = dataclasses.replace(args, svgd_type=svgd_type, svgd_temp=svgd_temp)
        loss = rldt.actor_loss(
            linear_velocity(-1.0), linear_velocity(-0.5), critic, jnp.zeros((1, 1)), jnp.ones(1), draws, nets, run_args
        )
        return {k: float(v) for k, v in loss[1].items()}

    # Chains: 2 -> 1 -> 1/2 and -4 -> -2 -> -1, so a = (1/2, -1); the rows' points x = (2, -2) at t = (0, 1/2), where
    # v = (-2, 2) and E[a | x] = x + (1 - t) v = (0, -1).
    # L_cons = c mean |E[a | x] - a|^2 / (K (1 - t))^2 = 0.5 * ((1/2)^2 / 2^2 + 0) / 2 = 1/64.
    # L_kl: x' = (1 - t') z + t' a = (1/2 + 1/4, 2); v - v_old = -x' / 2; 0.2 * ((3/8)^2 + 1) / 2 = 0.1140625.
    # delta: phi = grad Q(E[a | x]) = 3, so L_svgd = -mean(v phi / (K (1 - t))) = -(-6 / 2 + 6 / 1) / 2 = -3/2.
    delta = losses("delta")
    assert delta["consistency_loss"] == pytest.approx(1 / 64, rel=1e-5)
    assert delta["kl_loss"] == pytest.approx(0.1140625, rel=1e-5)
    assert delta["svgd_loss"] == pytest.approx(-1.5, rel=1e-5)
    assert delta["actor_loss"] == pytest.approx(-1.5 + 1 / 64 + 0.1140625, rel=1e-5)
    assert delta["grad_q_norm"] == pytest.approx(3.0, rel=1e-5)
    # normal, queries E[a | x] = (0, -1), particles a = (1/2, -1), g_j = 3, temperature alpha = svgd_temp * mean |g| = 3 s.
    # Query 0: distances^2 (1/4, 1), lower median 1/4, h = (1/4) / (2 log 3): kernel (1/3, 1/81);
    #   phi_0 = [3 (1/3 + 1/81) + alpha ((0 - 1/2) / 3 + (0 + 1) / 81) / h] / 2 = [28/27 - alpha (100/81) log 3] / 2.
    # Query 1 sits on particle 1: the median 0 is clamped to 1e-8, kernel (0, 1), phi_1 = 3 / 2, no repulsion.
    # L_svgd = -(-2 phi_0 / 2 + 2 phi_1 / 1) / 2 = (phi_0 - 3) / 2.
    for svgd_temp in (0.0, 0.1):
        alpha = svgd_temp * 3.0
        phi_0 = (28 / 27 - alpha * 100 / 81 * math.log(3)) / 2
        normal = losses("normal", svgd_temp)
        assert normal["svgd_loss"] == pytest.approx((phi_0 - 3) / 2, rel=1e-5), svgd_temp
        assert normal["consistency_loss"] == pytest.approx(1 / 64, rel=1e-5)
        assert normal["action_sample_distance"] == pytest.approx(0.75, rel=1e-5)  # |1/2 + 1| over 4 pairs, 2 of them 0
        assert normal["phi_norm"] == pytest.approx((abs(phi_0) + 3 / 2) / 2, rel=1e-5)
        # Repulsion against attraction, for the state: |alpha (100/81) log 3 / 2| / |(28/27 / 2, 3/2)|.
        ratio = alpha * 100 / 81 * math.log(3) / 2 / math.hypot(28 / 27 / 2, 3 / 2)
        assert normal["repulsion_ratio"] == pytest.approx(ratio, rel=1e-5, abs=1e-7)
    assert delta["phi_norm"] == pytest.approx(3.0, rel=1e-5)
    # none: no field, so no alignment loss; the consistency and trust-region losses are those of the other types.
    none = losses("none")
    assert none["svgd_loss"] == 0 and none["phi_norm"] == 0
    assert none["actor_loss"] == pytest.approx(1 / 64 + 0.1140625, rel=1e-5)


def test_delta_ablation_uses_the_critic_gradient_at_the_expected_target():
    args, nets, actor, old_actor, critic, states, draws, targets_fn = small_setup(svgd_type="delta")
    targets = targets_fn(actor, old_actor, critic, states, draws)
    obs = jnp.repeat(states, args.n_particles, axis=0)

    @jax.jit
    def gradient_at_expected_target(x, t):
        return rldt.critic_action_gradient(nets, critic, obs, rldt.expected_target(nets, actor, obs, x, t))

    np.testing.assert_allclose(
        targets["field"], gradient_at_expected_target(targets["x"], targets["t"]), rtol=1e-5, atol=1e-9
    )


def test_pretraining_does_not_depend_on_how_the_steps_are_chunked(setup):
    args, nets, actor, *_ = setup
    args = dataclasses.replace(args, pretrain_batch_size=8, pretrain_lr=1e-3, pretrain_min_lr=1e-4)
    rng = np.random.default_rng(0)
    data = {
        "observations": rng.uniform(-1, 1, (40, OBS_DIM)).astype(np.float32),
        "actions": rng.uniform(-1, 1, (40, ACTION_DIM)).astype(np.float32),
        "starts": np.arange(39, dtype=np.int32),
    }
    data = jax.device_put(data)
    tx, _, ema_start = rldt.pretrain_optimizer(args, 20, rldt.DOMAINS["gym"])
    chunk = jax.jit(
        lambda state, first, num_steps: rldt.pretrain_chunk(
            state, data, first, key, num_steps, ema_start, nets, tx, args
        ),
        static_argnames="num_steps",
    )
    key = jax.random.PRNGKey(7)
    state = rldt.PretrainState(actor, actor, jax.jit(tx.init)(actor))
    whole, losses = chunk(state, 0, num_steps=20)
    half, first = chunk(state, 0, num_steps=10)
    half, second = chunk(half, 10, num_steps=10)
    np.testing.assert_allclose(np.concatenate([first, second]), losses, rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), whole.ema_params, half.ema_params)


# The critic target
def test_td_lambda_targets_on_a_hand_made_trajectory():
    rewards = jnp.array([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0]])
    # Row 0: the episode terminates after step 1 and is truncated after step 3 (both count as done);
    # row 1: the segment ends mid-episode, so its last step bootstraps from V(s_4).
    dones = jnp.array([[0.0, 1.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    values = jnp.array([[10.0, 20.0, 30.0, 40.0, 50.0]] * 2)
    one_step = rldt.td_lambda_targets(rewards, dones, values, 0.5, 0.0)
    np.testing.assert_allclose(one_step, [[11.0, 2.0, 23.0, 4.0], [11.0, 17.0, 23.0, 29.0]])
    mixed = rldt.td_lambda_targets(rewards, dones, values, 0.5, 0.5)
    # G_3 = 4; G_2 = 3 + 0.5 (0.5 * 40 + 0.5 * 4) = 14; G_1 = 2; G_0 = 1 + 0.5 (0.5 * 20 + 0.5 * 2) = 6.5
    # row 1: G_3 = 4 + 0.5 * 50 = 29; G_2 = 3 + 0.5 (20 + 14.5) = 20.25; G_1 = 2 + 0.5 (15 + 10.125); G_0 likewise
    np.testing.assert_allclose(mixed, [[6.5, 2.0, 14.0, 4.0], [9.640625, 14.5625, 20.25, 29.0]])
    # lambda = 0.3 weighs V(s_{t+1}) by 0.7 and G_{t+1} by 0.3 (lambda = 0.5 cannot tell the two apart):
    # row 0: G_2 = 3 + 0.5 (0.7 * 40 + 0.3 * 4) = 17.6; G_0 = 1 + 0.5 (0.7 * 20 + 0.3 * 2) = 8.3
    # row 1: G_3 = 29; G_2 = 3 + 0.5 (28 + 8.7) = 21.35; G_1 = 2 + 0.5 (21 + 6.405) = 15.7025;
    #        G_0 = 1 + 0.5 (14 + 4.71075) = 10.355375
    weighted = rldt.td_lambda_targets(rewards, dones, values, 0.5, 0.3)
    np.testing.assert_allclose(weighted, [[8.3, 2.0, 17.6, 4.0], [10.355375, 15.7025, 21.35, 29.0]], rtol=1e-6)


def test_critic_targets_take_the_min_over_target_critics_then_the_mean_over_bootstrap_actions_then_clip():
    args = dataclasses.replace(rldt.Args(), horizon=1, critic_hidden_dims=(1,), discount=0.9, td_lambda=0.3)
    nets = rldt.make_networks(args, 1)
    # Target critics Q_1 = a and Q_2 = -a (up to 1e-6), so min_i Q_i(s, a) = -|a|.
    target = nearly_linear_critic(nets, 1, [[1.0], [-1.0]], offsets=(-20.0, -20.0))
    batch = {
        "states": jnp.zeros((2, 3, 1)),  # 2 segments of 2 steps, and the state after the last step
        "rewards": jnp.array([[1.0, 2.0], [0.5, -1.0]]),
        "dones": jnp.array([[0.0, 0.0], [1.0, 0.0]]),
    }
    # Two bootstrap actions for each of the 6 states (segment-major, as the states are flattened).
    bootstrap = jnp.array([[1.0, 2.0, -0.5, 0.2, -4.0, 1.0], [-3.0, 0.5, 0.25, 0.2, 2.0, -1.0]])[..., None]
    # mean_m min_i: segment 0: (-2, -1.25, -0.375); segment 1: (-0.2, -3, -1); clipped to [-1.5, -0.5]:
    # V = (-1.5, -1.25, -0.5) and (-0.5, -1.5, -1).
    # Segment 0: G_1 = 2 + 0.9 (-0.5) = 1.55; G_0 = 1 + 0.9 (0.7 (-1.25) + 0.3 * 1.55) = 0.631.
    # Segment 1: G_1 = -1 + 0.9 (-1) = -1.9; G_0 = 0.5 (done).
    targets = rldt.critic_targets(nets, target, batch, bootstrap, args, clip=(-1.5, -0.5))
    np.testing.assert_allclose(targets, [[0.631, 1.55], [0.5, -1.9]], rtol=1e-5, atol=1e-5)


class CountingEnv(gym.Env):
    """obs = reward = the step count of the episode; truncated after 6 steps."""

    observation_space = gym.spaces.Box(-10, 10, (1,), np.float64)
    action_space = gym.spaces.Box(-1, 1, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        self.t = 0
        return np.zeros(1), {}

    def step(self, action):
        self.t += 1
        return np.array([float(self.t)]), float(self.t), False, self.t >= 6, {}


def test_chunks_stop_at_the_end_of_the_episode_sum_rewards_and_count_truncation_as_done():
    identity = {"obs_min": -np.ones(1), "obs_max": np.ones(1), "action_min": -np.ones(1), "action_max": np.ones(1)}
    envs = gym.vector.SyncVectorEnv(
        [lambda: rldt.ActionChunk(gym.wrappers.RecordEpisodeStatistics(CountingEnv()), 4, identity)],
        autoreset_mode=gym.vector.AutoresetMode.DISABLED,
    )
    obs = envs.reset(seed=0)[0]

    class Progress:
        def update(self, n):
            pass

    policy = lambda params, obs, key: np.zeros((1, 4))  # noqa: E731
    segments, _, finished = rldt.collect(envs, obs, policy, None, jax.random.PRNGKey(0), 3, Progress())
    np.testing.assert_allclose(segments["rewards"], [[1 + 2 + 3 + 4, 5 + 6, 1 + 2 + 3 + 4]])
    np.testing.assert_array_equal(segments["dones"], [[0, 1, 0]])  # the truncation after 2 of 4 actions is done
    np.testing.assert_allclose(segments["states"][0, :, 0], [0, 4, 0, 4], atol=1e-5)  # reset after the truncation
    assert finished == [(21.0, 6)]


# Host-side bookkeeping
def test_ema_reward_scaler():
    ema = rldt.update_reward_ema(-1.0, np.zeros(5))  # all-zero batches are skipped
    assert ema == -1.0 and rldt.reward_scale_from(ema) == 1.0
    ema = rldt.update_reward_ema(ema, np.array([1.0, -3.0]))  # the first non-zero batch seeds it: mean |r| = 2
    assert ema == 2.0
    ema = rldt.update_reward_ema(ema, np.array([4.0, 4.0]))
    assert ema == pytest.approx(0.99 * 2 + 0.01 * 4)
    assert rldt.reward_scale_from(ema) == pytest.approx(1 / 2.02)


def test_sparse_reward_postprocessing_and_success_mask():
    rewards = np.array([[0, 0, 2, 4, 4], [0, 4, 0, 0, 0], [4, 4, 4, 4, 0]], np.float32)
    dones = np.array([[0, 0, 0, 0, 1], [0, 0, 0, 0, 1], [0, 1, 0, 0, 1]], np.float32)
    processed = rldt.postprocess_sparse_rewards(rewards, dones)  # differences, divided by the largest reward (4)
    np.testing.assert_allclose(processed, [[0, 0, 0.5, 0.5, 0], [0, 1, -1, 0, 0], [1, 0, 1, 0, -1]])
    mask, done = rldt.success_mask(processed, dones)
    np.testing.assert_array_equal(mask, [[1, 1, 1, 1, 0], [1, 1, 1, 1, 1], [1, 0, 1, 0, 1]])
    np.testing.assert_array_equal(done, [[0, 0, 0, 1, 1], [0, 1, 0, 0, 1], [1, 1, 1, 1, 1]])


def test_sparse_rollouts_become_one_segment_per_episode():
    # 2 environments x 2 episodes of 3 chunks; the state after each episode's last chunk is the next one's first.
    states = np.arange(2 * 7, dtype=np.float32).reshape(2, 7, 1)
    rewards = np.array([[0, 4, 4, 0, 0, 2], [0, 0, 0, 4, 0, 0]], np.float32)
    dones = np.array([[0, 0, 1, 0, 0, 1]] * 2, np.float32)
    rollout = {"states": states, "actions": states[:, :-1], "rewards": rewards, "dones": dones}
    episodes = rldt.episodes_of(rollout, 3)
    np.testing.assert_array_equal(
        episodes["states"][:, :, 0], [[0, 1, 2, 3], [7, 8, 9, 10], [3, 4, 5, 6], [10, 11, 12, 13]]
    )
    np.testing.assert_array_equal(episodes["actions"][:, :, 0], [[0, 1, 2], [7, 8, 9], [3, 4, 5], [10, 11, 12]])
    # Post-processed per pass: the first pass's largest reward is 4, the second's 4 as well.
    np.testing.assert_allclose(episodes["rewards"], [[0, 1, 0], [0, 0, 0], [0, 0, 0.5], [1, -1, 0]])


def segments(num: int, first_id: int, solved=()) -> dict:
    ids = np.arange(first_id, first_id + num, dtype=np.float32)
    rewards = np.zeros((num, 3), np.float32)
    rewards[list(solved), 1] = 1.0
    return {"states": ids[:, None, None] * np.ones((1, 4, 2), np.float32), "rewards": rewards}


def test_critic_batches_mix_fresh_and_old_segments_as_the_official_agents():
    args = rldt.Args()
    rng = np.random.default_rng(0)
    fresh = segments(10, 0)
    empty = {k: v[:0] for k, v in fresh.items()}
    first = rldt.mix_segments(rng, fresh, empty, args, sparse=False)
    assert sorted(first["states"][:, 0, 0]) == list(range(10))  # only fresh ones, each once
    dense = rldt.mix_segments(rng, fresh, segments(30, 100), args, sparse=False)
    ids = dense["states"][:, 0, 0]
    assert len(ids) == 10 and (ids < 100).sum() == 3 and len(set(ids)) == 10  # max(10/40, 0.33) of 10 are fresh
    sparse = rldt.mix_segments(rng, fresh, segments(20, 100, solved=range(4)), args, sparse=True)
    ids, solved = sparse["states"][:, 0, 0], sparse["rewards"].sum(1) != 0
    assert (ids < 100).sum() == 3 and solved.sum() == 3 and ((ids >= 100) & ~solved).sum() == 3  # 3 + half of 7 each
    capped = rldt.append_segments(segments(5, 100), fresh, 8)
    assert list(capped["states"][:, 0, 0]) == list(range(2, 10))  # the newest 8


def test_aliases_and_per_domain_defaults():
    task = rldt.resolve_task("hopper", None)
    assert task == rldt.Task("Hopper-v5", "mujoco/hopper/medium-v0", "gym", 0, 0.0)
    assert rldt.resolve_task("Ant-v5", "mujoco/ant/medium-v0").domain == "gym"
    cube = rldt.resolve_task("cube-single-task3", None)
    assert (cube.env_id, cube.dataset_id, cube.domain) == (
        "cube-single-singletask-task3-v0",
        "cube-single-singletask-task3-demos-v0",
        "robomimic",
    )
    args = rldt.apply_domain_defaults(rldt.Args(env_id="scene", discount=0.9), rldt.resolve_task("scene", None))
    assert (args.discount, args.td_lambda, args.num_envs, args.steps_per_iteration) == (0.9, 0.5, 64, 2 * 188)
    assert args.actor_hidden_dims == (768, 768, 768) and args.reward_scale == 1.0


# End-to-end runs
@pytest.fixture(scope="module")
def run_env(tmp_path_factory, minari_root):
    cache = tmp_path_factory.mktemp("jax_cache")
    return dict(
        os.environ,
        PYTHONPATH=ROOT,
        JAX_PLATFORMS="cpu",
        MINARI_DATASETS_PATH=minari_root,
        JAX_COMPILATION_CACHE_DIR=str(cache),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
        XLA_FLAGS="--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true",
    )


def run_rldt(cwd, env, *flags, check=True):
    start = time.time()
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "rldt.py"), *flags], cwd=cwd, env=env, capture_output=True, text=True
    )
    print(f"{time.time() - start:.1f} s: rldt.py {' '.join(flags)}")
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def scalars(run_dir) -> dict:
    """{tag: {step: value}} from a run's event files."""
    values = {}
    for path in sorted(glob.glob(os.path.join(run_dir, "events.out.tfevents.*"))):
        for event in read_events(path):
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    values.setdefault(value.tag, {})[event.step] = value.simple_value
    return values


def test_minari_pretraining_fine_tuning_save_load_and_an_ablation_from_the_pretrained_policy(tmp_path, run_env):
    result = run_rldt(tmp_path, run_env, *TINY, "--steps-per-iteration", "8", "--iterations", "2", "--save-model")
    assert "Hopper-v5: final return" in result.stdout
    (run_dir,) = glob.glob(str(tmp_path / "runs" / "Hopper-v5__rldt__0__*"))
    saved = json.load(open(os.path.join(run_dir, "args.json")))
    assert saved["discount"] == 0.99 and saved["td_lambda"] == 0.0 and saved["reward_scale"] == -1.0
    logged = scalars(run_dir)
    assert len(logged["eval/episodic_return"]) == 3  # before fine-tuning and after each iteration
    assert {"losses/pretrain_loss", "losses/critic_loss", "losses/svgd_loss", "charts/grad_q_norm"} <= set(logged)
    loaded = run_rldt(tmp_path, run_env, "--load-model", os.path.join(run_dir, "rldt.flax"), "--eval-episodes", "2")
    assert "Hopper-v5: return" in loaded.stdout
    ablation = ["--pretrained", os.path.join(run_dir, "pretrained.flax"), "--svgd-type", "delta", "--async-envs"]
    result = run_rldt(tmp_path, run_env, *TINY, "--steps-per-iteration", "8", "--iterations", "1", *ablation)
    assert "final return" in result.stdout and "pretrain" not in result.stdout.split("run folder")[1]


def write_demos(path: str, episodes: int = 3, steps: int = 20):
    """A tiny demonstration file in make_dataset.py's layout (random actions stand in for the oracle's)."""
    import ogbench  # noqa: F401

    env = gym.make("cube-single-singletask-task2-v0")
    rng = np.random.default_rng(0)
    observations, actions, terminals = [], [], []
    for episode in range(episodes):
        obs, _ = env.reset(seed=episode)
        for t in range(steps):
            action = rng.uniform(-1, 1, env.action_space.shape).astype(np.float32)
            observations.append(obs)
            actions.append(action)
            terminals.append(t == steps - 1)
            obs = env.step(action)[0]
    np.savez(path, observations=np.array(observations, np.float32), actions=np.array(actions), terminals=terminals)


def test_ogbench_demonstrations_end_to_end_and_an_exact_resume(tmp_path, run_env):
    demos = tmp_path / "demos"
    demos.mkdir()
    write_demos(str(demos / "cube-single-singletask-task2-demos-v0.npz"))
    flags = [*TINY, "--env-id", "cube-single", "--dataset-dir", str(demos), "--steps-per-iteration", "50"]
    flags += ["--num-envs", "4"]  # 4 episodes per iteration: both critics get segments in every batch
    flags += ["--iterations", "2", "--eval-every", "2", "--checkpoint-every", "1", "--save-model"]
    result = run_rldt(tmp_path, run_env, *flags)
    assert "cube-single-singletask-task2-v0: final return" in result.stdout and "success" in result.stdout
    (run_dir,) = glob.glob(str(tmp_path / "runs" / "cube-single-singletask-task2-v0__rldt__0__*"))
    saved = json.load(open(os.path.join(run_dir, "args.json")))
    assert saved["discount"] == 0.999 and saved["td_lambda"] == 0.5 and saved["actor_activation"] == "mish"
    assert json.load(open(os.path.join(run_dir, "checkpoint.json")))["phase"] == "finetune"
    loaded = run_rldt(tmp_path, run_env, "--load-model", os.path.join(run_dir, "rldt.flax"), "--eval-episodes", "2")
    assert "success" in loaded.stdout

    # The checkpoint left behind is the one after iteration 1: resuming a copy redoes iteration 2 exactly.
    full = scalars(run_dir)
    copy = str(tmp_path / "copy")
    shutil.copytree(run_dir, copy)
    resumed = run_rldt(tmp_path, run_env, "--resume", copy)
    assert "resuming" in resumed.stdout
    again = scalars(copy)
    last_step = max(full["losses/critic_loss"])
    for tag in ("losses/critic_loss", "losses/actor_loss", "losses/kl_loss", "eval/episodic_return", "eval/success"):
        assert again[tag] == full[tag], tag
    assert len(again["losses/critic_loss"]) == 2 and last_step in again["losses/critic_loss"]

    # benchmark/rldt_field.py on that checkpoint: between iterations the trust region's reference is the policy itself,
    # so its gradient is 0 at step 0 and not once the actor has moved; the four gradients are finite.
    out = str(tmp_path / "field.json")
    field = [sys.executable, "benchmark/rldt_field.py", "--run-dir", run_dir, "--actor-steps", "2", "--out", out]
    result = subprocess.run([*field, "--measure-every", "1"], cwd=ROOT, env=run_env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    steps = json.load(open(out))["steps"]
    assert [s["actor_step"] for s in steps] == [0, 1, 2]
    assert steps[0]["|trust-region gradient| / |total|"] == 0 < steps[2]["|trust-region gradient| / |total|"]
    assert all(-1 <= s["gradient cosine, delta vs normal field"] <= 1 for s in steps)
    assert all(s["|consistency gradient| / |total|"] > 0 and np.isfinite(list(s.values())).all() for s in steps)
    missing = [*field[:3], str(tmp_path / "nowhere")]
    missing = subprocess.run(missing, cwd=ROOT, env=run_env, capture_output=True, text=True)
    assert missing.returncode == 2 and missing.stderr.startswith("error: --run-dir")


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_parameters(tmp_path, run_env):
    result = run_rldt(tmp_path, run_env, *TINY, "--iterations", "0", "--pretrain-lr", "1e30", check=False)
    assert result.returncode == 1 and "error: the loss became NaN or infinite at step" in result.stderr
    assert "(pretraining)" in result.stderr and "Traceback" not in result.stderr
    (model,) = glob.glob(str(tmp_path / "runs" / "*" / "pretrained.flax"))
    assert os.path.getsize(model) > 0 and not glob.glob(str(tmp_path / "runs" / "*" / "*.tmp"))


def test_ctrl_c_ends_with_one_line_and_the_run_resumes_to_the_end(tmp_path, run_env):
    flags = [*TINY, "--steps-per-iteration", "8", "--iterations", "3", "--checkpoint-every", "1"]
    command = [sys.executable, os.path.join(ROOT, "rldt.py"), *flags]
    process = subprocess.Popen(
        command, cwd=tmp_path, env=run_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 600
    while not glob.glob(str(tmp_path / "runs" / "*" / "checkpoint.json")) and time.time() < deadline:
        assert process.poll() is None, process.communicate()
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130 and "Traceback" not in stderr, stderr
    (line,) = [line for line in stderr.splitlines() if line.startswith("interrupted:")]
    (run_dir,) = glob.glob(str(tmp_path / "runs" / "*"))
    assert line.endswith(f"continue the run with: python rldt.py --resume {os.path.relpath(run_dir, tmp_path)}"), line
    assert not glob.glob(os.path.join(run_dir, "*.tmp"))
    resumed = run_rldt(tmp_path, run_env, "--resume", os.path.relpath(run_dir, tmp_path))
    assert "Hopper-v5: final return" in resumed.stdout
    assert len(scalars(run_dir)["eval/episodic_return"]) == 4  # before fine-tuning and after each iteration


def test_a_missing_minari_dataset_says_how_to_make_it(monkeypatch, tmp_path):
    monkeypatch.setattr(rldt, "download", lambda fetch, host: "this machine is offline")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    task = rldt.resolve_task("walker2d", None)
    with pytest.raises(SystemExit) as stop:
        rldt.load_episodes(task, rldt.Args(), 17, 6)
    folder = tmp_path / "mujoco" / "walker2d" / "medium-v0"
    assert str(stop.value).splitlines() == [
        f"error: Minari dataset mujoco/walker2d/medium-v0 ({folder}) is not on this machine (this machine is offline)",
        "  make it here with: python benchmark/train_expert.py --env-id Walker2d-v5",
        "  then: python benchmark/make_dataset.py --dataset mujoco/walker2d/medium-v0",
    ]


def test_suite_and_summary_of_rldt_runs(tmp_path):
    from tensorboardX import SummaryWriter

    from benchmark import suite, summarize

    pretrain, finetune = suite.rldt_commands(suite.Args(method="rldt", profile="quick"), {"hopper": "p.flax"})
    assert [argv[2] for argv in pretrain] == ["hopper", "cube-single"] and len(finetune) == 12 + 6
    assert finetune[0][:8] == ["rldt.py", "--env-id", "hopper", "--seed", "0", "--pretrained", "p.flax", "--exp-name"]
    names = [argv[argv.index("--exp-name") + 1] for argv in finetune]
    assert set(names) == {"rldt", "rldt-delta", "rldt-temp0", "rldt-warmup2", "rldt-none", "rldt-delta-scaled"}
    assert {argv[2] for argv, name in zip(finetune, names, strict=True) if name == "rldt-none"} == {"hopper"}
    (warmup2, _) = [argv for argv, name in zip(finetune, names, strict=True) if name == "rldt-warmup2"]
    assert warmup2.count("--critic-warmup-iterations") == 1  # the sweep's value replaces the profile's 20
    assert warmup2[warmup2.index("--critic-warmup-iterations") + 1] == "2" and "--eval-every" in warmup2
    scaled = suite.rldt_commands(suite.Args(method="rldt", profile="quick", tasks=["hopper"], seeds=[7]), {})[1][-1]
    assert scaled[scaled.index("--seed") + 1] == "7" and scaled[-6:] == [
        *("--svgd-type", "delta", "--consistency-coef", "2.45", "--kl-coef", "0.98")
    ]
    assert len(suite.rldt_commands(suite.Args(method="rldt", profile="quick", tasks=["cube-single"]), {})[1]) == 6
    spelt = suite.Args(method="rldt", profile="quick", tasks=["cube-single-singletask-task2-v0"])  # its full id
    cube = suite.Args(method="rldt", profile="quick", tasks=["cube-single"])
    assert suite.rldt_commands(spelt, {}) == suite.rldt_commands(cube, {})

    def write(method, seed, env_id, tag, values):
        run_dir = tmp_path / "runs" / f"{env_id}__{method}__{seed}__{seed}"
        writer = SummaryWriter(str(run_dir))
        args = dict(
            env_id=env_id, exp_name=method, seed=seed, iterations=2, num_envs=2, steps_per_iteration=5, horizon=4
        )
        args["critic_warmup_iterations"] = 1  # the evaluations at steps 0 and 40 are of the pretrained policy
        (run_dir / "args.json").write_text(json.dumps(args))
        for step, value in zip((0, 40, 80), values, strict=True):
            writer.add_scalar(tag, value, step)
        writer.close()

    write("rldt", 0, "Hopper-v5", "eval/episodic_return", [100.0, 150.0, 300.0])
    write("rldt", 1, "Hopper-v5", "eval/episodic_return", [100.0, 250.0, 200.0])
    write("rldt-delta", 0, "cube-single-singletask-task2-v0", "eval/success", [0.25, 0.5, 0.75])
    out = tmp_path / "results"
    summarize.summarize_rldt(summarize.Args(runs_dir=str(tmp_path / "runs"), out_dir=str(out), rldt=True))
    table = (out / "rldt.md").read_text()
    assert (
        "| `Hopper-v5` | rldt | return | 2 | 2 x 40 | 100.0 ± 0.0 | 150.0 ± 25.0 | 250.0 ± 50.0 | 225.0 ± 0.0 | "
        "275.0 ± 25.0 |" in table
    )
    assert (
        "| `cube-single-singletask-task2-v0` | rldt-delta | success (%) | 1 | 2 x 40 | 25.0 ± 0.0 | 37.5 ± 0.0 | "
        "75.0 ± 0.0 | 62.5 ± 0.0 |" in table
    )
    assert (out / "curves" / "rldt-Hopper-v5.png").exists() and "rldt-delta" in (out / "README.md").read_text()
