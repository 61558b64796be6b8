"""What RLDT's transport field does to the actor, measured at a fine-tuning checkpoint of rldt.py.

    python rldt.py ... --iterations 25 --checkpoint-every 24      # a fine-tuning run that leaves a checkpoint
    python benchmark/rldt_field.py --run-dir runs/<that run> --out field.json

From the checkpoint (policy, trust-region reference, critic, replay), the script takes the actor steps of one
iteration as rldt.py does (the SVGD field, the critic fixed) and, every --measure-every steps, evaluates on the same
states and the same random draws the parameter gradient of the actor loss under four settings:

    normal: the SVGD field (rldt.py's default)        delta: grad_a Q at the expected targets (--svgd-type delta)
    none:   no field (consistency + trust region)     none, kl_coef 0: the consistency term alone

so that the field's part of the gradient is g(normal) - g(none) (and likewise for delta), the trust region's is
g(none) - g(none, kl 0). Reported per measured step and averaged: the cosine and the norm ratio of the delta and
normal field gradients; the norm of each term's gradient over the total's (terms can partly cancel: these need not sum
to 1); in action space, the cosine and norm ratio of delta's grad_a Q(s, E[a | x_k]) against the SVGD field phi; and
the field's repulsion/attraction ratio. The actor steps use fresh draws; each measurement uses its own, shared by the
four settings.
"""

import dataclasses
import json
import os
import sys
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tyro
from jax.flatten_util import ravel_pytree

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import rldt  # noqa: E402


@dataclass
class Args:
    """Gradients of RLDT's actor loss under its field, the delta ablation and no field, from a checkpoint."""

    run_dir: str
    """a fine-tuning run folder of rldt.py holding checkpoint.msgpack and args.json (--checkpoint-every N)"""
    actor_steps: int | None = None
    """actor steps to take from the checkpoint; None: one iteration's (the run's --actor-steps)"""
    measure_every: int = 8
    """measure at step 0 and every this many actor steps"""
    seed: int = 0
    """seed of the batches and draws"""
    out: str | None = None
    """a JSON file for every measurement; None: print only"""


# Every flag's rule, checked before anything slow: (flags, test, what is accepted), as in the other benchmark tools.
FLAG_RULES = [
    (
        "actor_steps",
        lambda v: v is None or v >= 0,
        "must not be negative; give 0 (measure at the checkpoint only) or more",
    ),
    ("measure_every", lambda v: v >= 1, "must be positive; give an integer >= 1"),
    ("seed", lambda v: 0 <= v < 2**32, "must be in [0, 2^32); give a non-negative integer"),
    (
        "out",
        lambda v: v is None or os.path.isdir(os.path.dirname(os.path.abspath(v))),
        "its folder does not exist; give a path in an existing folder",
    ),
    ("run_dir", os.path.isdir, "not a folder; give a run folder of rldt.py (runs/<run>)"),
]


def fail(flag: str, value, why: str):
    """A bad flag value: one line on stderr, exit status 2."""
    print(f"error: --{flag.replace('_', '-')} {value}: {why}", file=sys.stderr)
    sys.exit(2)


def check_args(args: Args) -> None:
    for flag, ok, why in FLAG_RULES:
        if not ok(value := getattr(args, flag)):
            fail(flag, value, why)


def cosine(a, b) -> float:
    return float(jnp.vdot(a, b) / jnp.maximum(jnp.linalg.norm(a) * jnp.linalg.norm(b), 1e-30))


def ratio(a, b) -> float:
    return float(jnp.linalg.norm(a) / jnp.maximum(jnp.linalg.norm(b), 1e-30))


SETTINGS = {  # name -> the changes to the run's Args
    "normal": dict(svgd_type="normal"),
    "delta": dict(svgd_type="delta"),
    "no_field": dict(svgd_type="none"),
    "consistency": dict(svgd_type="none", kl_coef=0.0),
}


def gradient_fns(nets, args: rldt.Args) -> dict:
    """Per setting, a compiled function of (actor, old actor, critic, states, weights, draws) -> the flat gradient."""

    def flat_gradient(changed, *inputs):
        gradient = jax.grad(rldt.actor_loss, has_aux=True)(*inputs, nets=nets, args=changed)[0]
        return ravel_pytree(gradient)[0]

    settings = {name: dataclasses.replace(args, **changes) for name, changes in SETTINGS.items()}
    return {name: jax.jit(partial(flat_gradient, changed)) for name, changed in settings.items()}


def measure(gradients: dict, inputs: tuple, nets, args: rldt.Args) -> dict:
    """The gradient of the actor loss under each setting on the same inputs (states and draws), and the fields."""
    g = {name: fn(*inputs) for name, fn in gradients.items()}
    field_normal, field_delta = g["normal"] - g["no_field"], g["delta"] - g["no_field"]
    trust_region = g["no_field"] - g["consistency"]

    # In action space: phi at the expected targets E[a | x_k], and delta's grad_a Q there, as actor_loss draws them.
    actor_params, _, critic_params, states, _, draws = inputs
    observations = jnp.repeat(states, args.n_particles, axis=0)
    actions, chain = rldt.sample_actions(nets, actor_params, observations, draws["noise"], args.flow_steps)
    t = (draws["step"] / args.flow_steps)[:, None]
    x = chain[draws["step"], jnp.arange(observations.shape[0])]
    expected = rldt.expected_target(nets, actor_params, observations, x, t)
    phi, info = rldt.transport_field(nets, critic_params, observations, expected, actions, args)
    grad_q = rldt.critic_action_gradient(nets, critic_params, observations, expected)
    phi_norms, grad_q_norms = jnp.linalg.norm(phi, axis=-1), jnp.linalg.norm(grad_q, axis=-1)
    row_cosines = jnp.sum(phi * grad_q, axis=-1) / jnp.maximum(phi_norms * grad_q_norms, 1e-30)
    return {
        "gradient cosine, delta vs normal field": cosine(field_delta, field_normal),
        "gradient norm ratio, delta / normal field": ratio(field_delta, field_normal),
        "|field gradient| / |total|": ratio(field_normal, g["normal"]),
        "|consistency gradient| / |total|": ratio(g["consistency"], g["normal"]),
        "|trust-region gradient| / |total|": ratio(trust_region, g["normal"]),
        "action cosine, grad Q(E[a|x_k]) vs phi (mean over rows)": float(row_cosines.mean()),
        "action norm ratio, |grad Q(E[a|x_k])| / |phi| (means)": float(grad_q_norms.mean() / phi_norms.mean()),
        "repulsion / attraction (SVGD field)": float(info["repulsion_ratio"]),
    }


def main(bench: Args) -> list[dict]:
    check_args(bench)
    saved = rldt.read_args_json(os.path.join(bench.run_dir, "args.json"))
    checkpoint = rldt.read_checkpoint(dataclasses.replace(saved, resume=bench.run_dir), rldt.CHECKPOINT_KEYS)
    if checkpoint["phase"] != "finetune":
        fail("run_dir", bench.run_dir, "its checkpoint is from pretraining; give a run checkpointed while fine-tuning")
    task = rldt.resolve_task(saved.env_id, saved.dataset_id)
    args = dataclasses.replace(rldt.apply_domain_defaults(saved, task), svgd_type="normal")
    sparse = rldt.DOMAINS[task.domain]["sparse"]
    probe = rldt.make_env(task, args.horizon, normalizer=None)
    obs_dim, action_dim = probe.observation_space.shape[0], probe.action_space.shape[1]
    nets = rldt.make_networks(args, action_dim)
    tx_actor, _ = rldt.actor_optimizer(args)
    critic = rldt.init_critic(jax.random.PRNGKey(0), nets, obs_dim, optax.adam(args.critic_lr))
    template = rldt.finetune_start(rldt.init_actor(jax.random.PRNGKey(0), nets, obs_dim), critic, tx_actor)
    run = rldt.restore(template, checkpoint["state"], os.path.join(bench.run_dir, "checkpoint.msgpack"))
    buffer = {k: np.asarray(v) for k, v in checkpoint["buffer"].items()}
    if len(buffer["rewards"]) == 0:
        fail("run_dir", bench.run_dir, "its checkpoint holds no replay yet; give one written after an iteration")
    print(f"{task.env_id}: checkpoint at iteration {run['iteration']}, {len(buffer['rewards'])} replay segments")

    actor_state, old_params, critic_params = run["actor"], run["old_actor"], run["critic"].params
    actor_fn = jax.jit(lambda state, *rest: rldt.actor_step(state, *rest, nets=nets, tx=tx_actor, args=args))
    gradients = gradient_fns(nets, args)
    rng, key = np.random.default_rng(bench.seed), jax.random.PRNGKey(bench.seed)
    num_segments = min(len(buffer["rewards"]), args.num_envs)
    num_steps = args.actor_steps if bench.actor_steps is None else bench.actor_steps
    results = []
    for step in range(num_steps + 1):
        segments = rldt.take(buffer, rng.choice(len(buffer["rewards"]), num_segments, replace=False))
        states, weights = rldt.actor_batch(segments, step, rng, args, sparse)
        step_key = jax.random.fold_in(key, step)
        if step % bench.measure_every == 0 or step == num_steps:
            rows, dim = states.shape[0] * args.n_particles, nets.actor.output_dim
            keys = jax.random.split(jax.random.fold_in(step_key, 1), 4)
            draws = {
                "noise": jax.random.normal(keys[0], (rows, dim)),
                "step": jax.random.randint(keys[1], (rows,), 0, args.flow_steps),
                "teacher_step": jax.random.randint(keys[2], (rows,), 0, args.flow_steps),
                "teacher_noise": jax.random.normal(keys[3], (rows, dim)),
            }
            result = {"actor_step": step}
            inputs = (actor_state.params, old_params, critic_params, states, weights, draws)
            result |= measure(gradients, inputs, nets, args)
            results.append(result)
            print(" | ".join(f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}" for k, v in result.items()))
        if step < num_steps:
            actor_state, _ = actor_fn(actor_state, old_params, critic_params, states, weights, step_key)
    means = {k: float(np.mean([r[k] for r in results])) for k in results[0] if k != "actor_step"}
    print("mean over the measured steps:")
    for k, v in means.items():
        print(f"  {k}: {v:.4g}")
    if bench.out:
        summary = {"run_dir": bench.run_dir, "iteration": int(run["iteration"]), "steps": results, "mean": means}
        with open(bench.out, "w") as f:
            json.dump(summary, f, indent=2)
    return results


if __name__ == "__main__":
    main(tyro.cli(Args))
