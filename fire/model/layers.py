"""Weight projections with a hand-written backward pass.

Every weight in the model enters through :func:`project`: the trailing ``n_in`` axes of
``x`` contracted with the leading ``n_in`` axes of ``kernel``, as one 2-D matmul. Its
backward pass is written out (``dx = g k^T``, ``dk = x^T g``) because XLA's CPU backend
lowers autodiff's version of the weight gradient with a transposed copy of the
activation gradient, fused into the elementwise op that produced it (GELU's derivative,
say): a strided ``[tokens, d_ff]`` write that took a large share of a training step.
With the contraction over tokens stated directly, both gradients are plain matmuls; the
values are the same as autodiff's.
"""

import math
from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp


def _as_matrices(x, kernel, n_in):
    fan_in = math.prod(kernel.shape[:n_in])
    return x.reshape(-1, fan_in), kernel.reshape(fan_in, -1)


@partial(jax.custom_vjp, nondiff_argnums=(2,))
def project(x, kernel, n_in: int = 1):
    """``x[..., *in] . kernel[*in, *out] -> [..., *out]`` (``in`` has ``n_in`` axes)."""
    x_NxI, kernel_IxO = _as_matrices(x, kernel, n_in)
    return (x_NxI @ kernel_IxO).reshape(*x.shape[: x.ndim - n_in], *kernel.shape[n_in:])


def _project_fwd(x, kernel, n_in):
    return project(x, kernel, n_in), (x, kernel)


def _project_bwd(n_in, residuals, g):
    x, kernel = residuals
    x_NxI, kernel_IxO = _as_matrices(x, kernel, n_in)
    g_NxO = g.reshape(x_NxI.shape[0], kernel_IxO.shape[1])
    dx = jnp.einsum("no,io->ni", g_NxO, kernel_IxO).reshape(x.shape)
    dkernel = jnp.einsum("ni,no->io", x_NxI, g_NxO).reshape(kernel.shape)
    return dx, dkernel


project.defvjp(_project_fwd, _project_bwd)


def partitioned_normal(std, names):
    """A normal(std) initializer whose parameter carries the logical axis ``names``."""
    return nn.with_logical_partitioning(nn.initializers.normal(std), names)


class Projection(nn.Module):
    """A bias-free projection with a logically named kernel: float32 parameters, ``dtype``
    compute. ``shape`` is ``(*in, *out)`` with the ``n_in`` contracted axes first."""

    shape: tuple
    names: tuple
    std: float
    n_in: int = 1
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", partitioned_normal(self.std, self.names), self.shape, jnp.float32)
        return project(x.astype(self.dtype), kernel.astype(self.dtype), self.n_in)
