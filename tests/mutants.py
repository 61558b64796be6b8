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
FQL = [
]

# ---- FINO -----------------------------------------------------------------------------------------------------------
FINO = [
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
