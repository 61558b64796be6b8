"""fm_irl.py against numbers of the official code (vanzll/FM_IRL), stored in tests/golden/fm_irl.npz.

The fixture holds small fixed weights (a 3x64 teacher, a 2x32 student, Hopper's shapes), the inputs, the official
random draws and the official outputs; docs/fm_irl.md says how it was made. The weights are loaded into our networks,
and where our functions draw their own noise the official draws are replayed in their place: the flow-matching noise
x0 and times tau of each branch (`sampled_flow_matching_losses`) and the Euler sampler's start points
(`jax.random.normal` inside `teacher_samples`). Tolerances are float32 rounding: the two codes sum in different orders
(and ours takes the BCE as softplus of the logit, the official code as the log of a float32 D).
"""

import dataclasses
import os
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fm_irl

GOLDEN = dict(np.load(os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden", "fm_irl.npz")))
S, A, LABEL_DIM, TEACHER_WIDTH, TEACHER_DEPTH, STUDENT_WIDTH, NUM_SAMPLES, FLOW_STEPS = GOLDEN["meta/sizes"].tolist()
ARGS = dataclasses.replace(
    fm_irl.Args(),
    label_dim=LABEL_DIM,
    teacher_hidden_dim=TEACHER_WIDTH,
    teacher_depth=TEACHER_DEPTH,
    hidden_dim=STUDENT_WIDTH,
    teacher_lr=1e-4,
    reward_bonus=20.0,  # Hopper's reward: log D - log(1 - D) + 20
    regularizer_samples=NUM_SAMPLES,
    regularizer_flow_steps=FLOW_STEPS,
    proper_time_limits=False,
    num_epochs=1,
    num_minibatches=1,
)
NETS, STUDENT_TX, TEACHER_TX = fm_irl.make_networks(ARGS, S, A)
KEY = jax.random.PRNGKey(0)  # our functions split it, but the draws it would give are replaced by the official ones
# Tolerances: float32 rounding. The measured differences use at most a tenth of them (docs/fm_irl.md).
RTOL, ATOL = 1e-5, 1e-5  # values of order 1 to 1000
GRAD_RTOL = 1e-5  # gradients: norm of the difference / norm of the official gradient, per tensor
# The time MLP's last kernel gets its gradient through a LayerNorm over 2 nearly saturated features: a small
# difference of large terms (norm 5e-4 against 0.2-3 elsewhere), where rounding weighs 100 times more.
TIME_OUT_GRAD_RTOL = 2e-3


def params(prefix: str) -> dict:
    """The fixture's arrays under `prefix/` as a nested dict, e.g. {"input": {"kernel": ...}, ...}."""
    tree = {}
    for name, value in GOLDEN.items():
        if name.startswith(prefix + "/"):
            *path, leaf = name[len(prefix) + 1 :].split("/")
            node = tree
            for part in path:
                node = node.setdefault(part, {})
            node[leaf] = jnp.asarray(value)
    return tree


TEACHER = {"params": params("params/teacher")}
STUDENT = {"actor": {"params": params("params/actor")}, "critic": {"params": params("params/critic")}}


def close(actual, expected, rtol=RTOL, atol=ATOL):
    np.testing.assert_allclose(np.asarray(actual), expected, rtol=rtol, atol=atol)


def close_gradient(actual, expected, rtol=GRAD_RTOL):
    actual = np.asarray(actual)
    assert actual.shape == expected.shape
    assert np.linalg.norm(actual - expected) <= rtol * np.linalg.norm(expected)


class OfficialDraws:
    """Stands in for `fm_irl.sampled_flow_matching_losses`: each call takes the next official (x0, tau) draw, in the
    official call order (expert label then agent label for each discriminator call, the FM-BC term last)."""

    def __init__(self, draws):
        self.draws = list(draws)  # (label, x0, tau)

    def __call__(self, teacher, params, x1, label, key, args):
        expected_label, x0, t = self.draws.pop(0)
        assert label == expected_label and x1.shape == x0.shape, "the calls no longer follow the official order"
        return fm_irl.flow_matching_losses(teacher, params, x1, label, jnp.asarray(x0), jnp.asarray(t), args.label_dim)


class OfficialDrawsByRow:
    """Like `OfficialDraws`, for calls made under `vmap` (the relabelling): each row of x1 gets the official draw of
    that (s, a) row and label, found by matching the row."""

    def __init__(self, rows, draws):
        self.rows, self.draws = jnp.asarray(rows), {k: tuple(map(jnp.asarray, v)) for k, v in draws.items()}

    def __call__(self, teacher, params, x1, label, key, args):
        row = jnp.argmin(jnp.sum((x1[:, None, :] - self.rows[None]) ** 2, axis=-1), axis=1)
        x0, t = self.draws[label]
        return fm_irl.flow_matching_losses(teacher, params, x1, label, x0[row], t[row], args.label_dim)


def replay_normal(monkeypatch, x0):
    """`jax.random.normal` returns the official start points of the Euler sampler for draws of their shape."""
    original = jax.random.normal

    def normal(key, shape=(), dtype=jnp.float32):
        if tuple(shape) == x0.shape:
            return jnp.asarray(x0, dtype)
        return original(key, shape, dtype)

    monkeypatch.setattr(jax.random, "normal", normal)


def teacher_loss_draws():
    """The five official (label, x0, tau) draws of one teacher step: D(expert) with labels 1 and 0, D(agent) with
    labels 1 and 0, and the FM-BC term on the expert pairs."""
    return [tuple(GOLDEN[f"teacher_loss/draw{i}/{what}"] for what in ("label", "x0", "t")) for i in range(5)]


def test_official_weights_fill_every_parameter_of_our_networks():
    state = jax.eval_shape(partial(fm_irl.init_train_state, KEY, NETS, STUDENT_TX, TEACHER_TX, ARGS))
    for ours, official in ((state.teacher, TEACHER), (state.student, STUDENT)):
        assert jax.tree.map(np.shape, ours) == jax.tree.map(np.shape, official)  # same names, same shapes


def test_teacher_velocity_field():
    x, t = jnp.asarray(GOLDEN["velocity/x"]), jnp.asarray(GOLDEN["velocity/tau"])
    for label in (1, 0):
        labels = jnp.full((len(x), LABEL_DIM), float(label))
        close(NETS.teacher.apply(TEACHER, x, labels, t), GOLDEN[f"velocity/label{label}"])


def test_per_sample_flow_matching_losses():
    expert_x, agent_x = GOLDEN["teacher_loss/expert_x"], GOLDEN["teacher_loss/agent_x"]
    inputs = [expert_x, expert_x, agent_x, agent_x, expert_x]
    for i, (x1, (label, x0, t)) in enumerate(zip(inputs, teacher_loss_draws(), strict=True)):
        losses = fm_irl.flow_matching_losses(NETS.teacher, TEACHER, x1, float(label), x0, t, LABEL_DIM)
        close(losses, GOLDEN[f"teacher_loss/draw{i}/fm_loss"])


def test_discriminator_on_expert_and_agent_pairs(monkeypatch):
    monkeypatch.setattr(fm_irl, "sampled_flow_matching_losses", OfficialDraws(teacher_loss_draws()[:4]))
    for which in ("expert", "agent"):
        logits = fm_irl.discriminator_logits(NETS.teacher, TEACHER, GOLDEN[f"teacher_loss/{which}_x"], KEY, ARGS)
        close(jax.nn.sigmoid(logits), GOLDEN[f"teacher_loss/{which}_d"])


def test_teacher_loss_its_terms_and_gradients(monkeypatch):
    monkeypatch.setattr(fm_irl, "sampled_flow_matching_losses", OfficialDraws(teacher_loss_draws()))
    expert_x, agent_x = GOLDEN["teacher_loss/expert_x"], GOLDEN["teacher_loss/agent_x"]
    grads, info = jax.grad(fm_irl.teacher_loss, has_aux=True)(TEACHER, expert_x, agent_x, KEY, NETS, ARGS)
    official = {"teacher_loss": "discrim_loss", "expert_loss": "expert_loss", "agent_loss": "agent_loss"}
    official |= {k: k for k in ("disc_bc_loss", "expert_disc_val", "agent_disc_val", "agent_reward")}
    for ours, theirs in official.items():
        close(info[ours], GOLDEN[f"teacher_loss/{theirs}"], atol=0)
    for name in [k for k in GOLDEN if k.startswith("teacher_loss/grad/")]:
        layer, leaf = name.split("/")[-2:]
        rtol = TIME_OUT_GRAD_RTOL if layer == "time_out" else GRAD_RTOL
        close_gradient(grads["params"][layer][leaf], GOLDEN[name], rtol)


def reward_draws_by_row():
    """The relabelled rollout's (s, a) rows and, per label, the official (x0, tau) of each row."""
    rows = GOLDEN["reward/x"].reshape(-1, S + A)
    x0 = {label: GOLDEN[f"reward/draw/label{label}/x0"].reshape(rows.shape) for label in (1, 0)}
    return rows, {float(label): (x0[label], GOLDEN[f"reward/draw/label{label}/t"].reshape(-1)) for label in (1, 0)}


def official_reward_normalizer():
    mean, var, count = GOLDEN["reward/initial_stats"]
    stats = fm_irl.RunningMeanStd(jnp.float32(mean), jnp.float32(var), jnp.float32(count))
    return fm_irl.RewardNormalizer(stats, jnp.asarray(GOLDEN["reward/initial_returns"]))


def test_reward_with_bonus_and_its_normalisation_step_by_step(monkeypatch):
    x = GOLDEN["reward/x"]
    draw = lambda label, what, step: GOLDEN[f"reward/draw/label{label}/{what}"][step]  # noqa: E731
    draws = [(label, draw(label, "x0", step), draw(label, "t", step)) for step in range(len(x)) for label in (1, 0)]
    monkeypatch.setattr(fm_irl, "sampled_flow_matching_losses", OfficialDraws(draws))
    logits = jnp.stack([fm_irl.discriminator_logits(NETS.teacher, TEACHER, x_t, KEY, ARGS) for x_t in x])
    raw = fm_irl.airl_reward(logits) + ARGS.reward_bonus
    close(raw, GOLDEN["reward/raw"])
    rewards, normalizer = fm_irl.normalize_rewards(
        raw, jnp.asarray(GOLDEN["reward/start_masks"]), official_reward_normalizer(), ARGS.gamma
    )
    close(rewards, GOLDEN["reward/normalized"])
    close(normalizer.returns, GOLDEN["reward/final_returns"])
    close([normalizer.stats.mean, normalizer.stats.var, normalizer.stats.count], GOLDEN["reward/final_stats"])


def test_relabel_rewards_of_a_rollout(monkeypatch):
    monkeypatch.setattr(fm_irl, "sampled_flow_matching_losses", OfficialDrawsByRow(*reward_draws_by_row()))
    x = GOLDEN["reward/x"]
    rewards, normalizer, info = fm_irl.relabel_rewards(
        TEACHER, x[..., :S], x[..., S:], GOLDEN["reward/start_masks"], official_reward_normalizer(),
        KEY, NETS, ARGS,
    )  # fmt: skip
    close(rewards, GOLDEN["reward/normalized"])
    close(info["raw_reward"], GOLDEN["reward/raw"].mean())
    close([normalizer.stats.mean, normalizer.stats.var, normalizer.stats.count], GOLDEN["reward/final_stats"])


@pytest.mark.parametrize("prefix", ["regularizer/", "ppo/reg_"])  # the regulariser alone; inside the PPO update
def test_teacher_samples_of_the_euler_sampler(monkeypatch, prefix):
    replay_normal(monkeypatch, GOLDEN[prefix + "x0"])
    sample = jax.jit(partial(fm_irl.teacher_samples, num_samples=NUM_SAMPLES, nets=NETS, args=ARGS))
    states, actions = sample(TEACHER, KEY)
    close(states, GOLDEN[prefix + "states"])
    close(actions, GOLDEN[prefix + "actions"])


def test_regularizer_loss_and_its_gradient():
    states, actions = GOLDEN["regularizer/states"], GOLDEN["regularizer/actions"]
    loss, grads = jax.value_and_grad(fm_irl.regularizer_loss)(STUDENT["actor"], states, actions, NETS, ARGS)
    close(loss, GOLDEN["regularizer/loss"], atol=0)
    for name in ("hidden_0/kernel", "mean/kernel", "mean/bias"):
        layer, leaf = name.split("/")
        close_gradient(grads["params"][layer][leaf], GOLDEN[f"regularizer/grad/{name}"])
    assert not np.any(grads["params"]["log_std"])


@pytest.mark.parametrize("proper_time_limits", [False, True])
def test_gae_returns_with_terminations_and_time_limits(proper_time_limits):
    args = dataclasses.replace(ARGS, proper_time_limits=proper_time_limits)
    values = jnp.asarray(GOLDEN["gae/values"])
    advantages, returns = fm_irl.compute_gae(
        jnp.asarray(GOLDEN["gae/rewards"]), values, jnp.asarray(GOLDEN["gae/next_value"]),
        1 - jnp.asarray(GOLDEN["gae/dones"]), 1 - jnp.asarray(GOLDEN["gae/time_limits"]), args,
    )  # fmt: skip
    close(returns, GOLDEN[f"gae/proper{int(proper_time_limits)}/returns"])
    close(advantages, GOLDEN[f"gae/proper{int(proper_time_limits)}/returns"] - GOLDEN["gae/values"])


def ppo_batch():
    names = ("obs", "actions", "log_probs", "values", "advantages", "returns")
    return {name: jnp.asarray(GOLDEN[f"ppo/batch/{name}"]) for name in names}


def test_ppo_loss_its_terms_and_gradients():
    batch = ppo_batch()
    mean, log_std = NETS.actor.apply(STUDENT["actor"], batch["obs"])
    close(fm_irl.gaussian_log_prob(mean, log_std, batch["actions"]), GOLDEN["ppo/log_prob"])
    close(NETS.critic.apply(STUDENT["critic"], batch["obs"]), GOLDEN["ppo/value"])
    reg_states, reg_actions = GOLDEN["ppo/reg_states"], GOLDEN["ppo/reg_actions"]
    grads, info = jax.grad(fm_irl.ppo_loss, has_aux=True)(STUDENT, batch, reg_states, reg_actions, NETS, ARGS)
    official = {"policy_loss": "policy_loss", "value_loss": "value_loss", "entropy": "entropy"}
    official |= {"regularizer_loss": "regularizer_loss", "ppo_loss": "loss"}
    for ours, theirs in official.items():
        close(info[ours], GOLDEN[f"ppo/{theirs}"])
    for name in [k for k in GOLDEN if k.startswith("ppo/grad/")]:
        network, *path = name.split("/")[2:]
        node = grads[network]["params"]
        for part in path:
            node = node[part]
        close_gradient(node, GOLDEN[name])


def test_ppo_update_losses_from_the_rollout(monkeypatch):
    """GAE, the advantage normalisation and the first minibatch's losses inside `ppo_update` (one epoch, one
    minibatch of the whole rollout, so the official shuffle does not matter)."""
    replay_normal(monkeypatch, GOLDEN["ppo/reg_x0"])
    obs = GOLDEN["ppo/rollout/obs"]
    actions, log_probs = GOLDEN["ppo/rollout/actions"], GOLDEN["ppo/rollout/log_probs"]
    dones, time_limits = GOLDEN["gae/dones"], GOLDEN["gae/time_limits"]
    start_masks = np.zeros_like(dones)  # not read by the update
    rollout = fm_irl.Rollout(
        obs[:-1], actions, log_probs, GOLDEN["gae/values"], dones, time_limits, start_masks, obs[-1]
    )
    state = fm_irl.TrainState(STUDENT, STUDENT_TX.init(STUDENT), TEACHER, None)
    _, info = fm_irl.ppo_update(
        state, jax.device_put(rollout), jnp.asarray(GOLDEN["gae/rewards"]), 1e-4, KEY, NETS, STUDENT_TX, ARGS
    )
    close(NETS.critic.apply(STUDENT["critic"], obs[-1]), GOLDEN["gae/next_value"])  # the bootstrap value
    for name in ("policy_loss", "value_loss", "entropy", "regularizer_loss"):
        close(info[name], GOLDEN[f"ppo/{name}"])


def test_running_stats_of_the_observation_filter():
    batches = GOLDEN["running_stats/batches"]
    stats = fm_irl.RunningMeanStd(np.zeros(S, np.float32), np.ones(S, np.float32), 1e-4)
    for batch in batches:
        stats = fm_irl.update_running_stats(stats, batch)
    close(stats.mean, GOLDEN["running_stats/mean"])
    close(stats.var, GOLDEN["running_stats/var"])
    close(stats.count, GOLDEN["running_stats/count"])
