"""Exact checks of the shared flow-matching math, and a 2-D multimodal toy that a trained flow must reproduce."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from common_flow import CriticEnsemble, VectorField, euler_sample, flow_matching_loss, flow_path, polyak_update


def test_flow_path_interpolates_noise_to_action_with_constant_velocity():
    x0, x1 = jnp.array([[2.0, -1.0]]), jnp.array([[0.5, 0.5]])
    x_t, target = flow_path(x0, x1, jnp.array([[0.25]]))
    np.testing.assert_allclose(x_t, [[0.75 * 2.0 + 0.25 * 0.5, 0.75 * -1.0 + 0.25 * 0.5]])
    np.testing.assert_allclose(target, [[-1.5, 1.5]])
    np.testing.assert_allclose(flow_path(x0, x1, jnp.zeros((1, 1)))[0], x0)
    np.testing.assert_allclose(flow_path(x0, x1, jnp.ones((1, 1)))[0], x1)


def test_flow_matching_loss_is_zero_for_the_exact_field_and_elementwise_mean_otherwise():
    # For a point mass at c, the conditional field (c - x) / (1 - t) equals x1 - x0 at every x_t: zero loss.
    c = jnp.array([[0.3, -0.7, 0.1]]).repeat(64, axis=0)
    exact = flow_matching_loss(lambda x, t: (c - x) / (1.0 - t), c, jax.random.PRNGKey(0))
    assert float(exact) < 1e-8
    # A zero field: the loss is the mean over batch AND dims of (x1 - x0)^2, i.e. about mean(c^2) + 1.
    zero = flow_matching_loss(lambda x, t: jnp.zeros_like(x), c.repeat(200, axis=0), jax.random.PRNGKey(1))
    np.testing.assert_allclose(float(zero), float(jnp.mean(c**2)) + 1.0, rtol=0.02)


def test_euler_sample_integrates_known_fields_exactly():
    x0 = jnp.array([[0.1, -0.2]])
    # Constant field: one unit of displacement whatever the number of steps.
    np.testing.assert_allclose(euler_sample(lambda x, t: jnp.full_like(x, 0.5), x0, 10), x0 + 0.5, atol=1e-6)
    # v = t: the left Riemann sum at t = 0, 1/K, ..., (K-1)/K gives (K-1)/(2K), not 1/2.
    for k in (1, 4, 10):
        out = euler_sample(lambda x, t: jnp.broadcast_to(t, x.shape), x0, k, clip=False)
        np.testing.assert_allclose(out, x0 + (k - 1) / (2 * k), atol=1e-6)
    # v = -x: K explicit steps multiply by (1 - 1/K)^K; the result is clipped only when asked.
    big = jnp.array([[3.0, -3.0]])
    np.testing.assert_allclose(euler_sample(lambda x, t: -x, big, 10, clip=False), big * 0.9**10, rtol=1e-6)
    np.testing.assert_allclose(euler_sample(lambda x, t: jnp.zeros_like(x), big, 10), [[1.0, -1.0]])


def test_euler_sample_jit_matches_eager():
    field = lambda x, t: jnp.sin(3 * x) + t  # noqa: E731
    x0 = jax.random.normal(jax.random.PRNGKey(0), (5, 3))
    np.testing.assert_allclose(jax.jit(lambda x: euler_sample(field, x, 7))(x0), euler_sample(field, x0, 7), atol=1e-6)


def test_networks_shapes_init_and_independent_critics():
    critic = CriticEnsemble((16, 16), num_critics=2, layer_norm=True)
    obs, act = jnp.ones((3, 4)), jnp.ones((3, 2))
    params = critic.init(jax.random.PRNGKey(0), obs, act)
    assert critic.apply(params, obs, act).shape == (2, 3)
    kernels = jax.tree_util.tree_leaves_with_path(params)
    for path, leaf in kernels:
        name = jax.tree_util.keystr(path)
        assert leaf.shape[0] == 2, name  # one slice per critic
        if "Dense" in name and "bias" in name:
            np.testing.assert_array_equal(leaf, 0.0)
    first_kernel = params["params"]["VmapMLP_0"]["Dense_0"]["kernel"]
    assert not np.allclose(first_kernel[0], first_kernel[1])  # initialised independently
    assert "LayerNorm_0" in params["params"]["VmapMLP_0"]
    field = VectorField((16,), action_dim=2)
    field_params = field.init(jax.random.PRNGKey(0), obs, act, jnp.zeros((3, 1)))
    assert field.apply(field_params, obs, act, jnp.zeros((3, 1))).shape == (3, 2)
    assert field_params["params"]["MLP_0"]["Dense_0"]["kernel"].shape == (4 + 2 + 1, 16)  # [s, x, t]
    assert "LayerNorm_0" not in field_params["params"]["MLP_0"]


def test_polyak_update_rule():
    target, online = {"w": jnp.array([1.0, 2.0])}, {"w": jnp.array([3.0, -2.0])}
    np.testing.assert_allclose(polyak_update(target, online, 0.25)["w"], [1.5, 1.0])


def test_flow_trained_on_2d_mixture_reproduces_its_four_modes():
    modes = jnp.array([[0.6, 0.6], [-0.6, 0.6], [0.6, -0.6], [-0.6, -0.6]])
    field = VectorField((128, 128), action_dim=2)
    obs = jnp.zeros((256, 1))  # unconditional: a constant observation
    params = field.init(jax.random.PRNGKey(0), obs, jnp.zeros((256, 2)), jnp.zeros((256, 1)))
    tx = optax.adam(3e-3)

    @jax.jit
    def train(params, key):
        def step(carry, key):
            params, opt_state = carry
            mode_key, jitter_key, loss_key = jax.random.split(key, 3)
            x1 = modes[jax.random.randint(mode_key, (256,), 0, 4)] + 0.03 * jax.random.normal(jitter_key, (256, 2))
            loss, grads = jax.value_and_grad(
                lambda p: flow_matching_loss(lambda x, t: field.apply(p, obs, x, t), x1, loss_key)
            )(params)
            updates, opt_state = tx.update(grads, opt_state)
            return (optax.apply_updates(params, updates), opt_state), loss

        (params, _), losses = jax.lax.scan(step, (params, tx.init(params)), jax.random.split(key, 1500))
        return params, losses

    params, losses = train(params, jax.random.PRNGKey(1))
    assert losses[-100:].mean() < losses[:100].mean()
    big_obs = jnp.zeros((2000, 1))
    samples = euler_sample(
        lambda x, t: field.apply(params, big_obs, x, t), jax.random.normal(jax.random.PRNGKey(2), (2000, 2)), 10
    )
    distances = jnp.linalg.norm(samples[:, None, :] - modes[None], axis=-1)
    nearest = np.asarray(distances.argmin(axis=1))
    # Samples land on the modes, not between them (a Gaussian with the mixture's variance puts 13% there).
    assert float((distances.min(axis=1) < 0.25).mean()) > 0.75
    shares = np.bincount(nearest, minlength=4) / len(nearest)
    assert shares.min() > 0.15, shares  # and every mode is covered
