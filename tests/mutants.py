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
FQL_VALUES = "tests/test_fql_golden.py"  # the official code's values: catches any change of a number (about 20 s)
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
]

# ---- RLDT -----------------------------------------------------------------------------------------------------------
RLDT = [
]

# ---- FM-IRL ---------------------------------------------------------------------------------------------------------
FM_IRL = [
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
