"""Mutation testing: plant realistic bugs in the methods' losses one at a time and check that the tests catch each.

Each mutant replaces one exact piece of text (it must occur exactly once) in a copy of the project, then runs the
tests named for it; the mutant is *killed* when they fail. A mutant whose text is no longer found is reported as
stale: update it with the code it guards. Run from the repository root (not collected by pytest):

    python tests/mutants.py                 # every mutant
    python tests/mutants.py --only fql rldt # the mutants of some methods
    python tests/mutants.py --list          # the list, without running anything

It prints one line per mutant and the kill rate; the exit status is 1 when a mutant survives or is stale.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import NamedTuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Mutant(NamedTuple):
    name: str  # <method>-<what the bug does>
    path: str  # file to mutate, relative to the repository root
    old: str  # exact text, found exactly once
    new: str  # what replaces it
    tests: str  # pytest arguments that should catch it (files and -k expressions)


# fmt: off
# ---- FQL ------------------------------------------------------------------------------------------------------------
FQL_VALUES = "tests/test_fql_golden.py"  # the official code's values: any changed number fails it
FQL_GRADIENTS = "tests/test_fql.py::test_actor_loss_gives_no_gradient_to_the_critic_and_critic_loss_none_to_the_policies"
FQL_GRADIENTS += " tests/test_fql.py::test_distillation_and_q_terms_give_exactly_zero_gradient_to_the_bc_flow"
FQL = [
    Mutant("fql-q-term-sign-flipped", "fql.py",
           "q_loss = -q_actor.mean()", "q_loss = q_actor.mean()",
           "tests/test_fql.py::test_one_actor_step_raises_a_linear_critic " + FQL_VALUES),
    Mutant("fql-target-without-discount", "fql.py",
           'batch["rewards"] + args.discount * batch["masks"] * next_q', 'batch["rewards"] + batch["masks"] * next_q',
           "tests/test_fql.py::test_td_target_by_hand_for_mean_and_min_with_masks " + FQL_VALUES),
    Mutant("fql-target-without-mask", "fql.py",
           'args.discount * batch["masks"] * next_q', "args.discount * next_q",
           "tests/test_fql.py::test_td_target_by_hand_for_mean_and_min_with_masks " + FQL_VALUES),
    Mutant("fql-target-max-for-min", "fql.py",
           'next_q.min(axis=0) if args.q_agg == "min"', 'next_q.max(axis=0) if args.q_agg == "min"',
           "tests/test_fql.py::test_td_target_by_hand_for_mean_and_min_with_masks " + FQL_VALUES),
    Mutant("fql-target-mean-for-min", "fql.py",
           'next_q = next_q.min(axis=0) if args.q_agg == "min" else next_q.mean(axis=0)',
           "next_q = next_q.mean(axis=0)",
           "tests/test_fql.py::test_td_target_by_hand_for_mean_and_min_with_masks " + FQL_VALUES),
    Mutant("fql-target-not-stopped", "fql.py",
           'return jax.lax.stop_gradient(batch["rewards"] + args.discount * batch["masks"] * next_q)',
           'return batch["rewards"] + args.discount * batch["masks"] * next_q',
           FQL_GRADIENTS + " " + FQL_VALUES),
    Mutant("fql-critic-loss-summed-over-critics", "fql.py",
           "critic_loss = jnp.mean((q - target_q) ** 2)", "critic_loss = jnp.mean(jnp.sum((q - target_q) ** 2, 0))",
           "tests/test_fql.py::test_loss_terms_by_hand_with_linear_critics " + FQL_VALUES),
    Mutant("fql-distill-target-not-stopped", "fql.py",
           'bc_flow_params = jax.lax.stop_gradient(params["bc_flow"])', 'bc_flow_params = params["bc_flow"]',
           FQL_GRADIENTS + " " + FQL_VALUES),
    Mutant("fql-distill-student-other-noise", "fql.py",
           'actor_actions = nets.onestep.apply(params["onestep"], obs, noise)',
           'actor_actions = nets.onestep.apply(params["onestep"], obs, jax.random.normal(mse_key, actions.shape))',
           FQL_VALUES),
    Mutant("fql-alpha-dropped", "fql.py",
           "args.alpha * distill_loss + q_loss", "distill_loss + q_loss",
           "tests/test_fql.py::test_loss_terms_by_hand_with_linear_critics " + FQL_VALUES),
    Mutant("fql-alpha-on-the-q-term", "fql.py",
           "args.alpha * distill_loss + q_loss", "distill_loss + q_loss / args.alpha",
           "tests/test_fql.py::test_loss_terms_by_hand_with_linear_critics " + FQL_VALUES),
    Mutant("fql-q-term-unclipped-action", "fql.py",
           'obs, jnp.clip(actor_actions, -1, 1))', "obs, actor_actions)",
           FQL_VALUES),
    Mutant("fql-q-term-min-over-critics", "fql.py",
           "q_actor = q_actor.mean(axis=0)", "q_actor = q_actor.min(axis=0)",
           "tests/test_fql.py::test_one_actor_step_raises_a_linear_critic " + FQL_VALUES),
    Mutant("fql-q-term-trains-the-critic", "fql.py",
           'nets.critic.apply(jax.lax.stop_gradient(params["critic"]), obs,', 'nets.critic.apply(params["critic"], obs,',
           FQL_GRADIENTS + " " + FQL_VALUES),
    Mutant("fql-q-normalizer-not-stopped", "fql.py",
           "q_loss / jax.lax.stop_gradient(jnp.abs(q_actor).mean())", "q_loss / jnp.abs(q_actor).mean()",
           FQL_VALUES),
    Mutant("fql-polyak-swapped", "fql.py",
           'polyak_update(state.target_critic, state.params["critic"], args.tau)',
           'polyak_update(state.params["critic"], state.target_critic, args.tau)',
           "tests/test_fql.py::test_target_critic_starts_equal_and_follows_the_pre_update_critic " + FQL_VALUES),
    Mutant("fql-polyak-from-the-updated-critic", "fql.py",
           'polyak_update(state.target_critic, state.params["critic"], args.tau)',
           'polyak_update(state.target_critic, params["critic"], args.tau)',
           "tests/test_fql.py::test_target_critic_starts_equal_and_follows_the_pre_update_critic " + FQL_VALUES),
]

# ---- FINO -----------------------------------------------------------------------------------------------------------
FINO = [
    Mutant("fino-q-term-sign", "fino.py",
           "q_loss = -q_actor.mean()",
           "q_loss = q_actor.mean()",
           "tests/test_fino.py::test_one_update_with_a_linear_critic_raises_the_q_of_the_one_step_policy "
           "tests/test_fino_golden.py::test_every_loss_term_and_gradient_matches_the_official_code"),
    Mutant("fino-actor-loss-subtracts-q-term", "fino.py",
           "actor_loss = bc_flow_loss + args.alpha * distill_loss + q_loss",
           "actor_loss = bc_flow_loss + args.alpha * distill_loss - q_loss",
           "tests/test_fino.py::test_distillation_and_q_terms_give_exactly_zero_gradient_to_the_noisy_bc_flow "
           "tests/test_fino.py::test_one_update_with_a_linear_critic_raises_the_q_of_the_one_step_policy"),
    Mutant("fino-q-term-min-over-critics", "fino.py",
           "q_actor = q_actor.mean(axis=0)",
           "q_actor = q_actor.min(axis=0)",
           "tests/test_fino_golden.py::test_every_loss_term_and_gradient_matches_the_official_code"),
    Mutant("fino-q-normaliser-multiplies", "fino.py",
           "q_loss = q_loss / jax.lax.stop_gradient(jnp.abs(q_actor).mean())",
           "q_loss = q_loss * jax.lax.stop_gradient(jnp.abs(q_actor).mean())",
           "tests/test_fino_golden.py::test_every_loss_term_and_gradient_matches_the_official_code"),
    Mutant("fino-noise-removed-in-loss", "fino.py",
           "x_noisy, target = noisy_flow_path(x0, x1, t, jax.random.normal(noise_key, x1.shape), eta, schedule)",
           "x_noisy, target = noisy_flow_path(x0, x1, t, 0.0 * jax.random.normal(noise_key, x1.shape), eta, schedule)",
           "tests/test_fino.py::test_noisy_flow_matching_loss_regresses_the_velocity_at_the_noisy_point_by_hand "
           "tests/test_fino.py::test_noisy_fm_loss_is_zero_for_the_exact_field_without_noise_and_positive_with_it"),
    Mutant("fino-noise-removed-from-path", "fino.py",
           "return x_t + sigma * noise, velocity",
           "return x_t, velocity",
           "tests/test_fino.py::test_noisy_path_and_its_target_by_hand "
           "tests/test_fino.py::test_injected_noise_widens_the_marginal_path_theorem_2"),
    Mutant("fino-code-schedule-rate-halved", "fino.py",
           "sigma = eta * jnp.exp(10.0 * (t - 1.0))",
           "sigma = eta * jnp.exp(5.0 * (t - 1.0))",
           "tests/test_fino.py::test_noisy_path_and_its_target_by_hand "
           "tests/test_fino.py::test_injected_noise_widens_the_marginal_path_theorem_2"),
    Mutant("fino-code-schedule-eta-as-variance", "fino.py",
           "sigma = eta * jnp.exp(10.0 * (t - 1.0))",
           "sigma = jnp.sqrt(eta) * jnp.exp(10.0 * (t - 1.0))",
           "tests/test_fino.py::test_noisy_path_and_its_target_by_hand "
           "tests/test_fino.py::test_injected_noise_widens_the_marginal_path_theorem_2"),
    Mutant("fino-paper-schedule-variance-as-std", "fino.py",
           "sigma = jnp.sqrt(jnp.maximum(eta * t * (2.0 - (2.0 - eta) * t), 0.0))",
           "sigma = jnp.maximum(eta * t * (2.0 - (2.0 - eta) * t), 0.0)",
           "tests/test_fino.py::test_noisy_path_and_its_target_by_hand "
           "tests/test_fino.py::test_injected_noise_widens_the_marginal_path_theorem_2"),
    Mutant("fino-paper-target-without-1-minus-eta", "fino.py",
           "velocity = x1 - (1.0 - eta) * x0",
           "velocity = x1 - x0",
           "tests/test_fino.py::test_noisy_path_and_its_target_by_hand"),
    Mutant("fino-discount-dropped", "fino.py",
           'batch["rewards"] + args.discount * batch["masks"] * next_q',
           'batch["rewards"] + batch["masks"] * next_q',
           "tests/test_fino.py::test_critic_target_by_hand_with_discount_masks_and_both_aggregations"),
    Mutant("fino-mask-dropped", "fino.py",
           'batch["rewards"] + args.discount * batch["masks"] * next_q',
           'batch["rewards"] + args.discount * next_q',
           "tests/test_fino.py::test_critic_target_by_hand_with_discount_masks_and_both_aggregations"),
    Mutant("fino-target-min-becomes-max", "fino.py",
           'next_q = next_q.min(axis=0) if args.q_agg == "min"',
           'next_q = next_q.max(axis=0) if args.q_agg == "min"',
           "tests/test_fino.py::test_critic_target_by_hand_with_discount_masks_and_both_aggregations"),
    Mutant("fino-target-critic-after-update", "fino.py",
           'target_critic = polyak_update(state.target_critic, state.params["critic"], args.tau)',
           'target_critic = polyak_update(state.target_critic, params["critic"], args.tau)',
           "tests/test_fino_golden.py::test_one_update_gives_the_official_parameters_and_target_critic"),
    Mutant("fino-distillation-teacher-trained", "fino.py",
           'bc_flow_params = jax.lax.stop_gradient(params["bc_flow"])',
           'bc_flow_params = params["bc_flow"]',
           "tests/test_fino.py::test_distillation_and_q_terms_give_exactly_zero_gradient_to_the_noisy_bc_flow"),
    Mutant("fino-candidate-min-becomes-max", "fino.py",
           'return candidates, q.min(axis=0) if args.q_agg == "min"',
           'return candidates, q.max(axis=0) if args.q_agg == "min"',
           "tests/test_fino.py::test_candidate_logits_spread_and_argmax_by_hand"),
    Mutant("fino-softmax-sign", "fino.py",
           "beta * q / scale",
           "-beta * q / scale",
           "tests/test_fino.py::test_candidate_logits_spread_and_argmax_by_hand"),
    Mutant("fino-softmax-without-beta", "fino.py",
           "beta * q / scale",
           "q / scale",
           "tests/test_fino.py::test_candidate_logits_spread_and_argmax_by_hand"),
    Mutant("fino-softmax-normalised-by-max", "fino.py",
           "scale = jnp.maximum(jnp.abs(q).mean(axis=0), 1e-8)",
           "scale = jnp.maximum(jnp.abs(q).max(axis=0), 1e-8)",
           "tests/test_fino.py::test_candidate_logits_spread_and_argmax_by_hand"),
    Mutant("fino-beta-update-sign", "fino.py",
           "return max(0.0, beta + step_size * (entropy - target_entropy))",
           "return max(0.0, beta - step_size * (entropy - target_entropy))",
           "tests/test_fino.py::test_beta_rises_when_the_behaviour_is_too_random_and_falls_when_too_concentrated"),
    Mutant("fino-entropy-bound-weight-term-sign", "fino.py",
           "return -jnp.sum(weights * jnp.log(weights + 1e-8))",
           "return jnp.sum(weights * jnp.log(weights + 1e-8))",
           "tests/test_fino_golden.py::test_temperature_update_and_entropy_bound_match_the_official_estimate"),
]

# ---- RLDT -----------------------------------------------------------------------------------------------------------
# The quickest tests that catch them; tests/test_rldt_golden.py (the official code's values) catches every one as well.
RLDT_HAND = "tests/test_rldt.py::test_actor_losses_by_hand_on_a_one_dimensional_linear_flow"
RLDT_TD = "tests/test_rldt.py::test_td_lambda_targets_on_a_hand_made_trajectory"
RLDT_CRITIC_TARGETS = "tests/test_rldt.py::test_critic_targets_take_the_min_over_target_critics_then_the_mean_over_bootstrap_actions_then_clip"
RLDT = [
    Mutant("rldt-alignment-loss-sign", "rldt.py", "= -weighted_mean(", "= weighted_mean(", RLDT_HAND),
    Mutant("rldt-bootstrap-max-over-target-critics", "rldt.py", ".min(axis=0))(bootstrap)", ".max(axis=0))(bootstrap)",
           RLDT_CRITIC_TARGETS),
    Mutant("rldt-temperature-without-grad-norm", "rldt.py", "args.svgd_temp * jnp.clip(grad_norm.mean(axis=1), 0.0, 1e5)",
           "args.svgd_temp + 0 * grad_norm.mean(axis=1)", RLDT_HAND),
    Mutant("rldt-td-target-without-discount", "rldt.py", "reward + discount * (1 - done) *", "reward + (1 - done) *", RLDT_TD),
    Mutant("rldt-td-lambda-swapped", "rldt.py", "(1 - lam) * next_value + lam * next_return",
           "lam * next_value + (1 - lam) * next_return", RLDT_TD),
    Mutant("rldt-bandwidth-log-p", "rldt.py", "2 * math.log(num + 1)", "2 * math.log(num)",
           "tests/test_rldt.py::test_bandwidth_is_the_lower_median_heuristic_per_query"),
    Mutant("rldt-bootstrap-without-clip", "rldt.py", "jnp.clip(values.mean(axis=0).reshape(states.shape[:2]), *clip)",
           "values.mean(axis=0).reshape(states.shape[:2])", RLDT_CRITIC_TARGETS),
    Mutant("rldt-consistency-scale-not-squared", "rldt.py", "landing_error / scale**2", "landing_error / scale", RLDT_HAND),
    Mutant("rldt-normal-field-particles-at-expected-targets", "rldt.py",
           'particles = expected if args.svgd_type == "delta" else actions', "particles = expected", RLDT_HAND),
    Mutant("rldt-repulsion-sign", "rldt.py", "(queries * kernel.sum(axis=-1, keepdims=True) - kernel @ particles)",
           "(kernel @ particles - queries * kernel.sum(axis=-1, keepdims=True))",
           "tests/test_rldt.py::test_svgd_field_on_a_hand_computed_two_particle_example"),
    Mutant("rldt-field-gradient-of-min-critic", "rldt.py", "observations, a).mean(axis=0)", "observations, a).min(axis=0)",
           "tests/test_rldt_golden.py::test_actor_losses_and_gradients_match_the_official_update"),
    Mutant("rldt-td-bootstrap-from-second-last-state", "rldt.py", "values[:, -1], (rewards.T", "values[:, -2], (rewards.T",
           RLDT_TD),
    Mutant("rldt-trust-region-path-reversed", "rldt.py", 't_old) * draws["teacher_noise"] + t_old * actions',
           't_old) * actions + t_old * draws["teacher_noise"]', RLDT_HAND),
    Mutant("rldt-expected-target-ignores-remaining-time", "rldt.py", "(1 - t_k) * nets.actor.apply", "nets.actor.apply",
           "tests/test_rldt.py::test_expected_target_at_the_last_step_is_the_euler_endpoint"),
]

# ---- FM-IRL ---------------------------------------------------------------------------------------------------------
FM_IRL = [
    Mutant("fm_irl-ppo-clip-takes-the-max", "fm_irl.py",
           "-jnp.mean(jnp.minimum(ratio * batch[\"advantages\"], clipped_ratio * batch[\"advantages\"]))",
           "-jnp.mean(jnp.maximum(ratio * batch[\"advantages\"], clipped_ratio * batch[\"advantages\"]))",
           "tests/test_fm_irl.py::test_ppo_loss_terms_against_hand_values"),
    Mutant("fm_irl-reward-bonus-removed", "fm_irl.py",
           "raw_rewards = airl_reward(logits) + args.reward_bonus", "raw_rewards = airl_reward(logits)",
           "tests/test_fm_irl.py::test_relabel_rewards_are_the_airl_reward_plus_the_bonus_normalised"),
    Mutant("fm_irl-discriminator-sign-flipped", "fm_irl.py",
           "return agent_label_loss - expert_label_loss", "return expert_label_loss - agent_label_loss",
           "tests/test_fm_irl.py::test_discriminator_and_reward_from_hand_set_losses"),
    Mutant("fm_irl-airl-reward-becomes-gail-log-d", "fm_irl.py",
           "return jnp.log(d + 1e-20) - jnp.log(jnp.maximum(1 - d, 1e-20))", "return jnp.log(d + 1e-20)",
           "tests/test_fm_irl.py::test_discriminator_and_reward_from_hand_set_losses"),
    Mutant("fm_irl-teacher-loss-labels-swapped", "fm_irl.py",
           "jnp.mean(jax.nn.softplus(-expert_logits))  # -log D\n    agent_loss = jnp.mean(jax.nn.softplus(agent_logits))",
           "jnp.mean(jax.nn.softplus(expert_logits))  # -log D\n    agent_loss = jnp.mean(jax.nn.softplus(-agent_logits))",
           "tests/test_fm_irl.py::test_teacher_loss_from_hand_set_losses"),
    Mutant("fm_irl-fm-bc-term-dropped", "fm_irl.py",
           "loss = expert_loss + agent_loss + args.disc_bc_coef * bc_loss", "loss = expert_loss + agent_loss",
           "tests/test_fm_irl.py::test_teacher_loss_from_hand_set_losses"),
    Mutant("fm_irl-fm-loss-summed-over-dims", "fm_irl.py",
           "return jnp.mean((teacher.apply(params, x_t, labels, t) - target_velocity) ** 2, axis=-1)",
           "return jnp.sum((teacher.apply(params, x_t, labels, t) - target_velocity) ** 2, axis=-1)",
           "tests/test_fm_irl.py::test_discriminator_and_reward_from_hand_set_losses"),
    Mutant("fm_irl-teacher-residual-dropped", "fm_irl.py",
           "h = h + nn.silu(layer_norm(name=f\"hidden_norm_{i}\")",
           "h = nn.silu(layer_norm(name=f\"hidden_norm_{i}\")",
           "tests/test_fm_irl_golden.py::test_teacher_velocity_field"),
    Mutant("fm_irl-samples-from-the-agent-label", "fm_irl.py",
           "labels = jnp.ones((num_samples, args.label_dim))", "labels = jnp.zeros((num_samples, args.label_dim))",
           "tests/test_fm_irl_golden.py::test_teacher_samples_of_the_euler_sampler"),
    Mutant("fm_irl-gae-lambda-dropped", "fm_irl.py",
           "gae = delta + args.gamma * args.gae_lambda * mask * gae", "gae = delta + args.gamma * mask * gae",
           "tests/test_fm_irl.py::test_gae_with_and_without_proper_time_limits"),
    Mutant("fm_irl-gae-mask-dropped-from-the-trace", "fm_irl.py",
           "gae = delta + args.gamma * args.gae_lambda * mask * gae", "gae = delta + args.gamma * args.gae_lambda * gae",
           "tests/test_fm_irl.py::test_gae_with_and_without_proper_time_limits"),
    Mutant("fm_irl-gae-mask-dropped-from-the-bootstrap", "fm_irl.py",
           "delta = reward + args.gamma * next_value * mask - value", "delta = reward + args.gamma * next_value - value",
           "tests/test_fm_irl.py::test_gae_with_and_without_proper_time_limits"),
    Mutant("fm_irl-proper-time-limits-ignored", "fm_irl.py",
           "gae = gae * time_limit_mask if args.proper_time_limits else gae", "gae = gae",
           "tests/test_fm_irl.py::test_gae_with_and_without_proper_time_limits"),
    Mutant("fm_irl-advantages-normalised-with-the-biased-std", "fm_irl.py",
           "advantages.std(ddof=1) + 1e-5", "advantages.std() + 1e-5",
           "tests/test_fm_irl_golden.py::test_ppo_update_losses_from_the_rollout"),
    Mutant("fm_irl-value-clipping-removed", "fm_irl.py",
           "0.5 * jnp.mean(jnp.maximum((value - batch[\"returns\"]) ** 2, (value_clipped - batch[\"returns\"]) ** 2))",
           "0.5 * jnp.mean((value - batch[\"returns\"]) ** 2)",
           "tests/test_fm_irl.py::test_ppo_loss_terms_against_hand_values"),
    Mutant("fm_irl-regularizer-coefficient-dropped", "fm_irl.py",
           "return args.regularizer_coef * 0.5 * jnp.mean(", "return 0.5 * jnp.mean(",
           "tests/test_fm_irl.py::test_ppo_loss_terms_against_hand_values"),
    Mutant("fm_irl-regularizer-subtracted", "fm_irl.py",
           "- args.ent_coef * entropy + reg_loss", "- args.ent_coef * entropy - reg_loss",
           "tests/test_fm_irl.py::test_ppo_loss_terms_against_hand_values"),
    Mutant("fm_irl-entropy-bonus-sign-flipped", "fm_irl.py",
           "- args.ent_coef * entropy + reg_loss", "+ args.ent_coef * entropy + reg_loss",
           "tests/test_fm_irl.py::test_ppo_loss_terms_against_hand_values"),
    Mutant("fm_irl-return-normaliser-without-discount", "fm_irl.py",
           "returns = normalizer.returns * mask * gamma + reward", "returns = normalizer.returns * mask + reward",
           "tests/test_fm_irl.py::test_return_normaliser_against_discounted_sums_and_pooled_moments"),
    Mutant("fm_irl-return-normaliser-centres-the-reward", "fm_irl.py",
           "reward / jnp.sqrt(stats.var + 1e-8)", "(reward - stats.mean) / jnp.sqrt(stats.var + 1e-8)",
           "tests/test_fm_irl.py::test_return_normaliser_against_discounted_sums_and_pooled_moments"),
    Mutant("fm_irl-running-variance-without-the-mean-shift", "fm_irl.py",
           "m2 = stats.var * stats.count + batch_var * n + delta**2 * stats.count * n / total",
           "m2 = stats.var * stats.count + batch_var * n",
           "tests/test_fm_irl.py::test_running_stats_merge_like_one_pass_over_all_data"),
]
# fmt: on

MUTANTS = {"fql": FQL, "fino": FINO, "rldt": RLDT, "fm_irl": FM_IRL}


def project_copy(destination: str) -> None:
    """The files git tracks (and untracked, unignored ones), as they are in the working tree."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    for relative in filter(None, listed):
        source = os.path.join(ROOT, relative)
        if os.path.isfile(source):
            os.makedirs(os.path.dirname(os.path.join(destination, relative)), exist_ok=True)
            shutil.copy2(source, os.path.join(destination, relative))


def run_mutant(mutant: Mutant, workdir: str) -> str:
    """'killed', 'SURVIVED' or 'STALE' for one mutant, tried in a fresh copy of the project."""
    with open(os.path.join(ROOT, mutant.path)) as f:
        original = f.read()
    if original.count(mutant.old) != 1:
        return f"STALE (found {original.count(mutant.old)} times)"
    with open(os.path.join(workdir, mutant.path), "w") as f:
        f.write(original.replace(mutant.old, mutant.new))
    try:
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *mutant.tests.split()],
            cwd=workdir,
            capture_output=True,
            text=True,
        )
    finally:
        with open(os.path.join(workdir, mutant.path), "w") as f:
            f.write(original)
    if result.returncode == 1:
        return "killed"
    if result.returncode == 0:
        return "SURVIVED"
    return f"error (pytest exit {result.returncode}; fix the mutant or its tests)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="+", choices=sorted(MUTANTS), help="the methods whose mutants to run")
    parser.add_argument("--list", action="store_true", help="print the mutants and exit")
    options = parser.parse_args()
    selected = [m for method in (options.only or MUTANTS) for m in MUTANTS[method]]
    if options.list:
        for m in selected:
            print(f"{m.name:48s} {m.path:12s} {m.tests}")
        return
    outcomes = {}
    with tempfile.TemporaryDirectory(prefix="mutants-") as workdir:
        project_copy(workdir)
        for mutant in selected:
            start = time.time()
            outcomes[mutant.name] = run_mutant(mutant, workdir)
            print(f"{outcomes[mutant.name]:10s} {mutant.name:48s} {time.time() - start:6.1f} s", flush=True)
    killed = sum(o == "killed" for o in outcomes.values())
    print(f"{killed} of {len(outcomes)} mutants killed")
    sys.exit(0 if killed == len(outcomes) else 1)


if __name__ == "__main__":
    main()
