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

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
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
    """Everything the actor loss regresses toward, from the policy's documented pieces: the chain point x_k and t_k,
    the endpoint a, the field phi at E[a | x_k], and v_old at x' = (1 - t') z' + t' a."""
    obs = jnp.repeat(states, args.n_particles, axis=0)
    actions, chain = rldt.sample_actions(nets, params, obs, draws["noise"], args.flow_steps)
    t = (draws["step"] / args.flow_steps)[:, None]
    x = chain[draws["step"], jnp.arange(obs.shape[0])]
    expected = rldt.expected_target(nets, params, obs, x, t)
    field, _ = rldt.transport_field(nets, critic_params, obs, expected, actions, args)
    t_old = (draws["teacher_step"] / args.flow_steps)[:, None]
    x_old = (1 - t_old) * draws["teacher_noise"] + t_old * actions
    v_old = nets.actor.apply(old_params, obs, x_old, t_old)
    return dict(observations=obs, x=x, t=t, actions=actions, field=field, x_old=x_old, t_old=t_old, v_old=v_old)


def actor_loss_from_targets(params, targets: dict, weights, nets, args):
    """docs/rldt.md's L_svgd + L_cons + L_kl with everything but v(x_k, t_k) and v(x', t') given."""
    x, t, obs = targets["x"], targets["t"], targets["observations"]
    mean = lambda values: jnp.sum(weights * values) / jnp.sum(weights)  # noqa: E731
    scale = args.flow_steps * (1 - t[:, 0])
    v = nets.actor.apply(params, obs, x, t)
    svgd_loss = -mean(jnp.sum(v * targets["field"], axis=-1) / scale)
    consistency_loss = args.consistency_coef * mean(jnp.sum((x + (1 - t) * v - targets["actions"]) ** 2, -1) / scale**2)
    v_trust = nets.actor.apply(params, obs, targets["x_old"], targets["t_old"])
    kl_loss = args.kl_coef * mean(jnp.sum((v_trust - targets["v_old"]) ** 2, axis=-1))
    return svgd_loss + consistency_loss + kl_loss, None


@pytest.fixture(scope="module")
def setup():
    return small_setup()


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
    # Inside the actor step the temperature is svgd_temp * mean |grad Q|: a flat critic gives no field at all.
    args, nets, actor, old_actor, critic, states, draws, targets_fn = setup
    flat = jax.tree.map(jnp.zeros_like, critic)
    np.testing.assert_array_equal(targets_fn(actor, old_actor, flat, states, draws)["field"], 0.0)


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
    args, nets, actor, old_actor, critic, states, draws, targets_fn = setup
    rows = jnp.ones(3 * args.n_particles)

    @jax.jit
    def gradients(actor, old_actor, critic, constants):
        full = jax.grad(rldt.actor_loss, argnums=(0, 1, 2), has_aux=True)
        full = full(actor, old_actor, critic, states, jnp.ones(3), draws, nets, args)[0]
        local = jax.grad(lambda p: actor_loss_from_targets(p, constants, rows, nets, args)[0])(actor)

        def through_everything(p):
            return actor_loss_from_targets(
                p, actor_targets(p, old_actor, critic, states, draws, nets, args), rows, nets, args
            )[0]

        return full, local, jax.grad(through_everything)(actor)

    (actor_grads, old_grads, critic_grads), local, through = gradients(
        actor, old_actor, critic, jax.tree.map(np.asarray, targets_fn(actor, old_actor, critic, states, draws))
    )
    assert all(bool(jnp.all(g == 0)) for g in jax.tree.leaves((old_grads, critic_grads)))
    # The same gradient as the loss of v(x_k, t_k) and v(x', t') with everything else as plain constants ...
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8), actor_grads, local)
    # ... whereas differentiating through the chain and the field as well would change it.
    assert any(
        not np.allclose(a, b) for a, b in zip(jax.tree.leaves(actor_grads), jax.tree.leaves(through), strict=True)
    )


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
    assert [argv[2] for argv in pretrain] == ["hopper", "cube-single"] and len(finetune) == 12
    assert finetune[0][:8] == ["rldt.py", "--env-id", "hopper", "--seed", "0", "--pretrained", "p.flax", "--exp-name"]
    assert {argv[argv.index("--exp-name") + 1] for argv in finetune} == {"rldt", "rldt-delta", "rldt-temp0"}

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
