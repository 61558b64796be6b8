"""rldt.py against values computed once by the official PyTorch code (fixture tests/golden/rldt.npz; docs/rldt.md,
"Golden values", says how it was made).

The fixture holds the official weights in our networks' layout, the inputs, the official code's random draws (the
chains' noise, each row's step k, the trust-region point's step and noise, the bootstrap actions' noise), and what the
official functions returned: chains, expected targets, critic gradients, SVGD fields, the three actor losses and their
gradients (`normal` and `delta` fields), bootstrap actions, clipped bootstrap values, TD(lambda) targets, the critic loss
and its gradient. The draws are replayed into our functions, so every number is comparable within float32 rounding.
"""

import dataclasses
import os

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rldt

GOLDEN = np.load(os.path.join(os.path.dirname(__file__), "golden", "rldt.npz"))
OBS_DIM, HORIZON, ACTION_DIM, FLOW_STEPS, PARTICLES, NUM_STATES, TIME_DIM, WIDTH, CRITIC_WIDTH, BOOTSTRAP = (
    int(v) for v in GOLDEN["config"]
)
SVGD_TEMP, CONSISTENCY, KL, DISCOUNT, LAMBDA = (float(v) for v in GOLDEN["coefficients"])
# float32 rounding: values agree to a few ulps of their scale; gradients (sums over rows of products of activations)
# to a small fraction of each tensor's norm.
RTOL, ATOL, GRAD_RTOL = 2e-5, 1e-6, 2e-5


def golden_tree(prefix: str) -> dict:
    """Parameters stored as '<prefix>/Dense_i/kernel' -> {'params': {'Dense_i': {'kernel': ...}}}."""
    start = len(prefix) + 1
    flat = {tuple(k[start:].split("/")): jnp.asarray(GOLDEN[k]) for k in GOLDEN.files if k.startswith(prefix + "/")}
    return {"params": flax.traverse_util.unflatten_dict(flat)}


def make_args(svgd_type: str = "normal") -> rldt.Args:
    return dataclasses.replace(
        rldt.Args(),
        horizon=HORIZON,
        flow_steps=FLOW_STEPS,
        n_particles=PARTICLES,
        svgd_type=svgd_type,
        svgd_temp=SVGD_TEMP,
        consistency_coef=CONSISTENCY,
        kl_coef=KL,
        actor_hidden_dims=(WIDTH,) * 3,
        critic_hidden_dims=(CRITIC_WIDTH,) * 2,
        time_dim=TIME_DIM,
        actor_activation="mish",
        q_bootstrap=BOOTSTRAP,
        discount=DISCOUNT,
        td_lambda=LAMBDA,
    )


NETS = rldt.make_networks(make_args(), ACTION_DIM)
ACTOR, OLD_ACTOR = golden_tree("actor"), golden_tree("old_actor")
CRITIC, TARGET_CRITIC = golden_tree("critic"), golden_tree("target_critic")
STATES = jnp.asarray(GOLDEN["states"])
ROWS = jnp.repeat(STATES, PARTICLES, axis=0)  # the official repeat_interleave: each state's P particles together
DRAWS = {k: jnp.asarray(GOLDEN[f"draws/{k}"]) for k in ("noise", "step", "teacher_step", "teacher_noise")}


def assert_close(ours, official, rtol=RTOL, atol=ATOL):
    np.testing.assert_allclose(np.asarray(ours), official, rtol=rtol, atol=atol * max(1.0, np.abs(official).max()))


def assert_gradients_close(ours: dict, prefix: str):
    """Each tensor within GRAD_RTOL of the official one's norm (float32 sums over rows do not round identically)."""
    for path, official in flax.traverse_util.flatten_dict(golden_tree(prefix)["params"]).items():
        mine = np.asarray(flax.traverse_util.flatten_dict(ours["params"])[path])
        error = np.linalg.norm(mine - official) / np.linalg.norm(official)
        assert error < GRAD_RTOL, f"{prefix} {'/'.join(path)}: relative error {error:.2e}"


def test_the_fixture_matches_our_networks_and_is_not_degenerate():
    key, shapes = jax.random.PRNGKey(0), lambda tree: jax.tree.map(jnp.shape, tree)
    actor = jax.eval_shape(lambda: rldt.init_actor(key, NETS, OBS_DIM))
    critic = jax.eval_shape(lambda: rldt.init_critic(key, NETS, OBS_DIM, rldt.optax.adam(1e-3)).params)
    assert shapes(actor) == shapes(ACTOR) == shapes(OLD_ACTOR)
    assert shapes(critic) == shapes(CRITIC) == shapes(TARGET_CRITIC)
    # A non-flat critic (so the adaptive temperature matters), a real repulsion, clip bounds that bind on both sides.
    assert np.all(GOLDEN["normal/temperature"] > 0.1 * SVGD_TEMP)
    values, (low, high) = GOLDEN["td/values"], GOLDEN["td/clip"]
    assert np.sum(values == low) >= 3 and np.sum(values == high) >= 3
    assert 0 < LAMBDA < 0.5 and DISCOUNT < 1 and 0 < GOLDEN["td/dones"].mean() < 1


def test_chains_expected_targets_and_critic_gradients_match_the_official_code():
    @jax.jit
    def pieces(actor, critic):
        actions, chain = rldt.sample_actions(NETS, actor, ROWS, DRAWS["noise"], FLOW_STEPS)
        x = chain[DRAWS["step"], jnp.arange(len(ROWS))]
        t = (DRAWS["step"] / FLOW_STEPS)[:, None]
        expected = rldt.expected_target(NETS, actor, ROWS, x, t)

        def grad_q(a):  # the official compute_gradq: the mean over the two online critics of each one's gradient
            return jax.grad(lambda a: rldt.q_values(NETS, critic, ROWS, a).mean(axis=0).sum())(a)

        return actions, x, expected, grad_q(actions), grad_q(expected)

    actions, x, expected, grad_at_actions, grad_at_expected = pieces(ACTOR, CRITIC)
    assert_close(actions, GOLDEN["normal/actions"])
    assert_close(x, GOLDEN["normal/chain_point"])
    assert_close(expected, GOLDEN["normal/expected"])
    assert_close(grad_at_actions, GOLDEN["normal/grad_q"])
    assert_close(grad_at_expected, GOLDEN["delta/grad_q"])


def test_svgd_field_matches_the_official_field_on_its_inputs():
    per_state = lambda a: jnp.asarray(a).reshape(NUM_STATES, PARTICLES, -1)  # noqa: E731
    phi, _ = jax.vmap(rldt.svgd_field)(
        per_state(GOLDEN["normal/expected"]),
        per_state(GOLDEN["normal/actions"]),
        per_state(GOLDEN["normal/grad_q"]),
        jnp.asarray(GOLDEN["normal/temperature"]),
    )
    assert_close(phi.reshape(-1, HORIZON * ACTION_DIM), GOLDEN["normal/field"])
    # The official adaptive temperature is svgd_temp * mean_j |grad_a Q(s, a_j)| for each state.
    norms = np.linalg.norm(GOLDEN["normal/grad_q"].reshape(NUM_STATES, PARTICLES, -1), axis=-1)
    np.testing.assert_allclose(GOLDEN["normal/temperature"], SVGD_TEMP * norms.mean(axis=1), rtol=1e-6)


@pytest.mark.parametrize("svgd_type", ["normal", "delta"])
def test_actor_losses_and_gradients_match_the_official_update(svgd_type):
    args = make_args(svgd_type)

    @jax.jit
    def loss_and_grads(actor, old_actor, critic):
        grad_fn = jax.grad(rldt.actor_loss, has_aux=True)
        return grad_fn(actor, old_actor, critic, STATES, jnp.ones(NUM_STATES), DRAWS, NETS, args)

    grads, info = loss_and_grads(ACTOR, OLD_ACTOR, CRITIC)
    for ours, official in (
        ("svgd_loss", "svgd_loss"),
        ("consistency_loss", "consistency_loss"),
        ("kl_loss", "kl_loss"),
        ("actor_loss", "actor_loss"),
        ("grad_q_norm", "grad_q_norm"),
        ("action_sample_distance", "action_sample_distance"),
        ("kernel_gradient", "kernel_gradient"),
    ):
        assert float(info[ours]) == pytest.approx(float(GOLDEN[f"{svgd_type}/{official}"]), rel=RTOL, abs=1e-7), ours
    assert_gradients_close(grads, f"{svgd_type}/actor_grad")


def test_bootstrap_actions_td_lambda_targets_critic_loss_and_gradient_match_the_official_update():
    args = make_args()
    batch = {k: jnp.asarray(GOLDEN[f"td/{k}"]) for k in ("states", "actions", "rewards", "dones")}
    batch["loss_mask"] = jnp.ones_like(batch["rewards"])
    flat_states = batch["states"].reshape(-1, OBS_DIM)
    clip = tuple(float(v) for v in GOLDEN["td/clip"])

    @jax.jit
    def critic_update(actor, target_critic, critic):
        bootstrap = rldt.bootstrap_actions(NETS, actor, flat_states, jnp.asarray(GOLDEN["td/bootstrap_noise"]), args)
        targets = rldt.critic_targets(NETS, target_critic, batch, bootstrap, args, clip)
        (loss, _), grads = jax.value_and_grad(rldt.critic_loss, has_aux=True)(critic, targets, batch, NETS)
        return bootstrap, targets, loss, grads

    bootstrap, targets, loss, grads = critic_update(ACTOR, TARGET_CRITIC, CRITIC)
    assert_close(bootstrap, GOLDEN["td/bootstrap_actions"])
    assert_close(targets, GOLDEN["td/targets"])
    # The recursion alone, on the official clipped bootstrap values.
    recursion = rldt.td_lambda_targets(batch["rewards"], batch["dones"], GOLDEN["td/values"], DISCOUNT, LAMBDA)
    assert_close(recursion, GOLDEN["td/targets"])
    assert float(loss) == pytest.approx(float(GOLDEN["td/critic_loss"]), rel=RTOL)
    assert_gradients_close(grads, "td/critic_grad")
