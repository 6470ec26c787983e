"""KERPLE (Chi et al., 2022): learned conditionally positive definite kernels.

Parameters are kept in range with smooth maps (softplus for ``r > 0``, a scaled sigmoid
for the power's ``0 < r2 < 2``) rather than the official code's clamping, so gradients
never vanish at a bound. Initial values follow the official code: ``r1 ~ U(0, 2)``,
``r2 ~ U(0, 1)``.
"""

import jax
import jax.numpy as jnp

from fire.encodings.base import PositionEncoding, relative_distance

_MIN_INIT = 1e-3  # keeps inverse maps finite when U(0, x) draws ~0


def inverse_softplus(y):
    return y + jnp.log(-jnp.expm1(-y))


def uniform_via(inverse, high):
    """Initializer drawing ``U(0, high)`` in the constrained space, stored as ``inverse(u)``."""

    def init(key, shape, dtype=jnp.float32):
        u = jax.random.uniform(key, shape, dtype, _MIN_INIT, high)
        return inverse(u)

    return init


class _Kerple(PositionEncoding):
    shared = False  # one kernel per layer, as in the official code
    additive = True
    distance_only = True

    def setup(self):
        self.raw_r1 = self.param("raw_r1", uniform_via(inverse_softplus, 2.0), (self.num_heads,))
        self.raw_r2 = self.param("raw_r2", uniform_via(self.inverse_r2, 1.0), (self.num_heads,))

    def params_r1_r2(self):
        """The constrained per-head parameters (r1, r2)."""
        return jax.nn.softplus(self.raw_r1), self.r2(self.raw_r2)

    def summary(self):
        r1, r2 = self.params_r1_r2()
        return {"r1": r1, "r2": r2}

    def bias_fn(self, seq_len):
        r1_H, r2_H = self.params_r1_r2()

        def bias(q_pos, k_pos):
            d_Bx1xQxK = relative_distance(q_pos, k_pos)[:, None]
            return self.kernel(d_Bx1xQxK, r1_H[None, :, None, None], r2_H[None, :, None, None])

        return bias


class KerpleLog(_Kerple):
    """``b[h, i, j] = -r1_h log(1 + r2_h (i - j))``, r1, r2 > 0."""

    inverse_r2 = staticmethod(inverse_softplus)
    r2 = staticmethod(jax.nn.softplus)

    @staticmethod
    def kernel(d, r1, r2):
        return -r1 * jnp.log1p(r2 * d)


def _power_r2(raw):
    return 2.0 * jax.nn.sigmoid(raw)


def _inverse_power_r2(r2):
    return jnp.log(r2 / (2.0 - r2))


class KerplePower(_Kerple):
    """``b[h, i, j] = -r1_h (i - j)^(r2_h)``, r1 > 0, 0 < r2 < 2."""

    inverse_r2 = staticmethod(_inverse_power_r2)
    r2 = staticmethod(_power_r2)

    @staticmethod
    def kernel(d, r1, r2):
        # d^r2 through exp(r2 log d) on d >= 1 only: at d = 0 the gradient in r2 would be
        # 0 * log(0) = NaN.
        powered = jnp.exp(r2 * jnp.log(jnp.maximum(d, 1.0)))
        return -r1 * jnp.where(d > 0, powered, 0.0)
