"""Flow-matching pieces shared by fql.py, fino.py, rldt.py and fm_irl.py.

Conventions (those of the official FQL code): x0 is Gaussian noise, x1 is a data action, time runs from 0 (noise)
to 1 (action) along the straight path x_t = (1 - t) x0 + t x1, whose velocity is the constant x1 - x0. Networks are
MLPs with GELU (tanh approximation), optional LayerNorm after each activation, Xavier-uniform kernels, zero biases.
"""

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

# Xavier/Glorot-uniform, used for every Dense layer including the last one.
default_init = nn.initializers.variance_scaling(1.0, "fan_avg", "uniform")


class MLP(nn.Module):
    """Dense -> GELU -> (LayerNorm) for each hidden layer, then a linear output layer."""

    hidden_dims: Sequence[int]
    output_dim: int
    layer_norm: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for size in self.hidden_dims:
            x = nn.gelu(nn.Dense(size, kernel_init=default_init)(x))
            if self.layer_norm:
                x = nn.LayerNorm()(x)
        return nn.Dense(self.output_dim, kernel_init=default_init)(x)


class CriticEnsemble(nn.Module):
    """`num_critics` independently initialised Q(s, a) MLPs evaluated on the same input; returns shape (num_critics, B)."""

    hidden_dims: Sequence[int]
    num_critics: int = 2
    layer_norm: bool = True

    @nn.compact
    def __call__(self, observations: jax.Array, actions: jax.Array) -> jax.Array:
        ensemble = nn.vmap(
            MLP,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=None,
            out_axes=0,
            axis_size=self.num_critics,
        )
        q = ensemble(self.hidden_dims, 1, self.layer_norm)(jnp.concatenate([observations, actions], axis=-1))
        return q.squeeze(-1)


class VectorField(nn.Module):
    """MLP on [s, x, t] (a flow's velocity field) or, with t=None, on [s, z] (a one-step noise-to-action policy).

    The time enters as a raw scalar feature, with no sinusoidal embedding, as in the official FQL code.
    """

    hidden_dims: Sequence[int]
    action_dim: int
    layer_norm: bool = False

    @nn.compact
    def __call__(self, observations: jax.Array, x: jax.Array, t: jax.Array | None = None) -> jax.Array:
        inputs = [observations, x] if t is None else [observations, x, t]
        return MLP(self.hidden_dims, self.action_dim, self.layer_norm)(jnp.concatenate(inputs, axis=-1))


def flow_path(x0: jax.Array, x1: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Point x_t on the straight noise-to-action path and its target velocity x1 - x0. `t` has shape (B, 1)."""
    return (1.0 - t) * x0 + t * x1, x1 - x0


def flow_matching_loss(
    velocity_fn: Callable[[jax.Array, jax.Array], jax.Array], x1: jax.Array, key: jax.Array
) -> jax.Array:
    """Conditional flow-matching loss E_{x0, t} ||v(x_t, t) - (x1 - x0)||^2, averaged over batch AND action dims.

    `velocity_fn(x_t, t)` closes over the observations and the parameters being trained.
    """
    noise_key, time_key = jax.random.split(key)
    x0 = jax.random.normal(noise_key, x1.shape)
    t = jax.random.uniform(time_key, (*x1.shape[:-1], 1))
    x_t, target_velocity = flow_path(x0, x1, t)
    return jnp.mean((velocity_fn(x_t, t) - target_velocity) ** 2)


def euler_sample(
    velocity_fn: Callable[[jax.Array, jax.Array], jax.Array], x0: jax.Array, flow_steps: int, clip: bool = True
) -> jax.Array:
    """Integrate dx/dt = v(x, t) from t=0 to 1 with `flow_steps` Euler steps at t = i / flow_steps.

    Returns the final point, clipped to the action box [-1, 1] unless `clip=False`.
    """

    def step(i, x):
        t = jnp.full((*x.shape[:-1], 1), i / flow_steps, dtype=x.dtype)
        return x + velocity_fn(x, t) / flow_steps

    x1 = jax.lax.fori_loop(0, flow_steps, step, x0)
    return jnp.clip(x1, -1.0, 1.0) if clip else x1


def polyak_update(target_params, online_params, tau: float):
    """target <- tau * online + (1 - tau) * target, leaf by leaf."""
    return jax.tree.map(lambda target, online: tau * online + (1.0 - tau) * target, target_params, online_params)


# Added with rldt.py, which needs the intermediate points x_k of the Euler chain (fm_irl.py's scanned sampler can take
# the endpoint of the same function).
def euler_chain(
    velocity_fn: Callable[[jax.Array, jax.Array], jax.Array], x0: jax.Array, flow_steps: int
) -> tuple[jax.Array, jax.Array]:
    """The unclipped Euler integration of `euler_sample`, keeping every point: returns (x_K, chain) where
    chain[k] = x_k for k = 0..K (shape (K + 1, *x0.shape)); x_k is where the velocity was evaluated at t = k / K."""

    def step(x, i):
        t = jnp.full((*x.shape[:-1], 1), i / flow_steps, dtype=x.dtype)
        x = x + velocity_fn(x, t) / flow_steps
        return x, x

    x1, points = jax.lax.scan(step, x0, jnp.arange(flow_steps))
    return x1, jnp.concatenate([x0[None], points])
