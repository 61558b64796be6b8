"""fql.py against the official FQL code: tests/golden/fql.npz holds the official agent's inputs, weights, random draws
and outputs for one update on small fixed inputs (docs/fql.md says how it was made); fql.py, given the same weights and
the same draws, must give the same TD targets, loss terms, gradients and updated parameters within float32 rounding."""

import contextlib
import dataclasses
import functools
import os

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fql
from common_flow import euler_sample

with np.load(os.path.join(os.path.dirname(__file__), "golden", "fql.npz")) as fixture:
    GOLDEN = dict(fixture)
CONFIGS = ("mean", "min", "mean_normalized", "min_normalized")  # q_agg, with normalize_q_loss off and on
BATCH = {k.removeprefix("batch/"): jnp.asarray(v) for k, v in GOLDEN.items() if k.startswith("batch/")}
OBS_DIM, ACTION_DIM = BATCH["observations"].shape[1], BATCH["actions"].shape[1]
DRAWS = [GOLDEN[f"draws/{i}"] for i in range(len(GOLDEN["draws/roles"]))]  # in the order the official loss drew them
# Tolerances. The official outputs were computed by XLA on CPU in float32; ours take the same operations in the same
# order, but XLA may fuse and reassociate differently (another version or machine): each value is a chain of a few
# hundred float32 operations, so differences of many ulps (float32 eps = 1.2e-7) are rounding. Measured with the
# fixture's jax: <= 7.8e-7 (targets, losses, gradients), <= 6e-8 (parameters). The smallest planted bug of
# tests/mutants.py, the target critic averaged from the updated critic, moves it by 1.5e-5.
VALUES = dict(rtol=2e-5, atol=2e-6)  # losses, targets, actions, gradients
PARAMS = dict(rtol=0, atol=1e-6)  # parameters after one Adam step (|change| = lr = 3e-4 per entry, 1.5e-5 target)


@contextlib.contextmanager
def official_draws(draws):
    """Within the block, jax.random.normal and jax.random.uniform return the official draws in call order instead of
    drawing (each checked for kind and shape); all of them must be used."""
    remaining = [(str(role).split(":")[0], value) for role, value in zip(GOLDEN["draws/roles"], draws, strict=False)]
    originals = {name: getattr(jax.random, name) for name in ("normal", "uniform")}

    def replay(kind):
        def draw(key, shape=(), *args, **kwargs):
            assert remaining, f"fql.py draws more random numbers than the official code (an extra {kind} draw)"
            recorded_kind, value = remaining.pop(0)
            assert (recorded_kind, value.shape) == (kind, tuple(shape)), "fql.py draws in another order or shape"
            return jnp.asarray(value)

        return draw

    try:
        for name in originals:
            setattr(jax.random, name, replay(name))
        yield
        assert not remaining, f"fql.py used {len(draws) - len(remaining)} of the official code's {len(draws)} draws"
    finally:
        for name, original in originals.items():
            setattr(jax.random, name, original)


def official_tree(template, prefix: str, net: str):
    """`template` (one network's parameters in fql.py) filled with the fixture's arrays `<prefix>/<net>/<layer>/<name>`.
    The official and fql.py trees differ only above the layers (Dense_i, LayerNorm_i), whose names they share."""
    flat = flax.traverse_util.flatten_dict(template)
    filled = {}
    for path, leaf in flat.items():
        array = GOLDEN[f"{prefix}/{net}/{path[-2]}/{path[-1]}"]
        assert array.shape == leaf.shape, (net, path)
        filled[path] = jnp.asarray(array)
    assert len(filled) == sum(k.startswith(f"{prefix}/{net}/") for k in GOLDEN), f"{net}: a layer is not used"
    return flax.traverse_util.unflatten_dict(filled)


def official_args(config: str) -> fql.Args:
    hidden = tuple(int(h) for h in GOLDEN["meta/hidden_dims"])
    return dataclasses.replace(
        fql.Args(),
        actor_hidden_dims=hidden,
        value_hidden_dims=hidden,
        batch_size=BATCH["actions"].shape[0],
        learning_rate=float(GOLDEN["meta/learning_rate"]),
        alpha=float(GOLDEN["meta/alpha"]),
        tau=float(GOLDEN["meta/tau"]),
        flow_steps=int(GOLDEN["meta/flow_steps"]),
        discount=float(GOLDEN[f"{config}/discount"]),
        q_agg=str(GOLDEN[f"{config}/q_agg"]),
        normalize_q_loss=bool(GOLDEN[f"{config}/normalize_q_loss"]),
    )


def official_state(config: str):
    """fql.py's networks and a train state holding the official weights (a target critic unlike the critic)."""
    args = official_args(config)
    nets, tx = fql.make_networks(args, ACTION_DIM)
    template = fql.init_train_state(jax.random.PRNGKey(0), nets, tx, OBS_DIM, ACTION_DIM)
    params = {net: official_tree(template.params[net], "weights", net) for net in template.params}
    target_critic = official_tree(template.target_critic, "weights", "target_critic")
    return args, nets, tx, template._replace(params=params, target_critic=target_critic, opt_state=tx.init(params))


@functools.cache
def ours(config: str) -> dict:
    """fql.py's TD target, logged loss terms, gradients and one update on the official weights and draws, in one
    compiled call (each part replays the draws it takes while it is traced)."""
    args, nets, tx, state = official_state(config)
    key = jax.random.PRNGKey(0)  # unused: every draw is replayed

    def compute():
        with official_draws(DRAWS[:1]):  # the TD target draws only z' of the next action
            target = fql.critic_target(state.params["onestep"], state.target_critic, BATCH, key, nets, args)
        with official_draws(DRAWS):
            grads, info = jax.grad(fql.fql_loss, has_aux=True)(
                state.params, state.target_critic, BATCH, key, nets, args
            )
        with official_draws(DRAWS):
            new_state, _ = fql.update(state, BATCH, key, nets, tx, args)
        return dict(
            target=target, info=info, grads=grads, after=dict(new_state.params, target_critic=new_state.target_critic)
        )

    return jax.device_get(jax.jit(compute)())


def named(tree, net: str, layer: str, name: str) -> np.ndarray:
    """One parameter of one network, found by its layer and name (the names both codes share)."""
    (value,) = [v for k, v in flax.traverse_util.flatten_dict(tree[net]).items() if k[-2:] == (layer, name)]
    return value


def test_the_official_weights_give_the_official_actions():
    args, nets, _, state = official_state("mean")
    obs, noise = BATCH["observations"], jnp.asarray(DRAWS[3])  # the distillation noise z
    onestep = nets.onestep.apply(state.params["onestep"], obs, noise)
    np.testing.assert_allclose(onestep, GOLDEN["actions/onestep_unclipped"], **VALUES)
    assert 0 < np.mean(np.abs(onestep) > 1) < 0.5  # some one-step actions leave the box, so the clips are exercised
    euler = euler_sample(lambda x, t: nets.bc_flow.apply(state.params["bc_flow"], obs, x, t), noise, args.flow_steps)
    np.testing.assert_allclose(euler, GOLDEN["actions/euler"], **VALUES)
    with official_draws(DRAWS[:1]):
        next_actions = fql.sample_actions(
            nets, state.params["onestep"], BATCH["next_observations"], jax.random.PRNGKey(0)
        )
    np.testing.assert_allclose(next_actions, GOLDEN["actions/next_actions"], **VALUES)


@pytest.mark.parametrize("config", CONFIGS)
def test_td_target_matches_the_official_code(config):
    assert set(np.unique(GOLDEN["batch/masks"])) == {0.0, 1.0} and len(np.unique(GOLDEN["batch/rewards"])) == 3
    np.testing.assert_allclose(ours(config)["target"], GOLDEN[f"{config}/critic_target"], **VALUES)


@pytest.mark.parametrize("config", CONFIGS)
def test_every_loss_term_matches_the_official_code(config):
    info = ours(config)["info"]
    official = {k.rsplit("/", 1)[1]: v for k, v in GOLDEN.items() if k.startswith(f"{config}/loss/")}
    assert set(info) == set(official)  # the same metrics, under the same names
    for term, value in official.items():
        np.testing.assert_allclose(info[term], value, **VALUES, err_msg=term)


@pytest.mark.parametrize("config", CONFIGS)
def test_gradients_of_named_parameters_match_the_official_code(config):
    grads = ours(config)["grads"]
    prefix = f"{config}/grad/"
    keys = [k for k in GOLDEN if k.startswith(prefix)]
    assert {k.split("/")[2] for k in keys} == {"critic", "bc_flow", "onestep"}
    for k in keys:
        net, layer, name = k.removeprefix(prefix).split("/")
        np.testing.assert_allclose(named(grads, net, layer, name), GOLDEN[k], **VALUES, err_msg=k)


@pytest.mark.parametrize("config", CONFIGS)
def test_one_update_gives_the_official_parameters_and_target_critic(config):
    after = ours(config)["after"]
    prefix = f"{config}/after/"
    keys = [k for k in GOLDEN if k.startswith(prefix)]
    assert {k.split("/")[2] for k in keys} == {"critic", "bc_flow", "onestep", "target_critic"}
    if config == "mean":  # every parameter of every network
        assert len(keys) == sum(len(jax.tree.leaves(tree)) for tree in after.values())
    for k in keys:
        net, layer, name = k.removeprefix(prefix).split("/")
        np.testing.assert_allclose(named(after, net, layer, name), GOLDEN[k], **PARAMS, err_msg=k)
