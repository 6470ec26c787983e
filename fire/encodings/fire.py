"""FIRE: Functional Interpolation for Relative Positions (Li et al., ICLR 2024).

    b(i, j) = f_theta( psi(i - j) / psi(max(L, i)) ),    psi(t) = log(c t + 1)

``f_theta`` is an MLP ``1 -> width (-> width)* -> H`` with ReLU; ``c > 0`` and the
threshold ``L = |m| L0`` are learned (``L0`` defaults to the training length). ``eps`` is added to the log of the normaliser, as in
the paper's listing. Each piece is an ablation flag:

* ``interpolate``: divide by the (thresholded) query position, so a longer input maps onto
  a finer grid of the same interval [0, 1] instead of onto unseen distances;
* ``log_transform``: ``psi`` is the log above, else the identity (more resolution for
  nearby tokens with the log);
* ``threshold``: normalise by ``psi(max(L, i))`` rather than ``psi(i)``, so short
  sequences are not squashed onto a coarse grid.

``f_theta`` with the paper's one hidden layer is evaluated exactly as the piecewise-linear
function it is (:func:`piecewise_linear`): per element, one count of the knots below the
input and one table read instead of ``mlp_width * (num_heads + 2)`` multiply-adds; deeper
MLPs run as the MLP.

``FIRE`` has its own parameters in every layer; ``FIRE-S`` (``shared=True``) is one module
for all layers, whose bias the model computes once per forward.

``normalizer_cap`` (0: off) is beyond the paper: it caps the normaliser's reference,
``psi(min(max(L, i), cap))`` (``psi(min(i, cap))`` with ``threshold=False``), so rows at or
past the cap depend on the distance alone, as rows up to ``L`` do, and inputs of distances
past the cap exceed 1. It adds no parameters, so it can be set at training time or only at evaluation on
weights trained without it. Why: an independent check found the same trained FIRE weights,
evaluated with the cap at the training length, stay flat to 16x the training length, where
plain FIRE degrades.
"""

import functools
from typing import Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from fire.encodings.base import BiasFn, DistanceBias, PositionEncoding, heads_first, relative_distance
from fire.errors import ConfigError


class FIRE(PositionEncoding):
    additive = True
    plot_bias = True

    positive_options = ("mlp_width", "init_c")

    mlp_width: int = 32  # hidden width of f_theta
    mlp_depth: int = 1  # hidden layers; the paper's listing has one
    init_c: float = 0.1  # initial c of psi(t) = log(c t + 1)
    # L0 = 0 starts the threshold at the training length (the listing fixes 512, the same for
    # runs at 512), so short-length runs are not normalised by an L they never saw.
    L0: float = 0.0  # the threshold's scale, L = |m| L0; 0: the training length (the listing: 512)
    learn_L: bool = True  # learn the threshold's multiplier m (else L = L0)
    log_transform: bool = True  # psi is the log transform (else the identity)
    threshold: bool = True  # normalise by psi(max(L, i)) (else psi(i))
    interpolate: bool = True  # divide by the normaliser (progressive interpolation)
    eps: float = 1e-6  # added to the normaliser, as in the listing
    shared: bool = False  # one module for all layers (FIRE-S)
    normalizer_cap: float = 0.0  # cap on the normaliser's reference position; 0: off (see the module docstring)

    @classmethod
    def check(cls, options, train_len, max_position, head_dim):
        if options.get("normalizer_cap") and not options.get("interpolate", True):
            raise ConfigError("FIRE normalizer_cap caps the interpolation's normaliser: set interpolate=True or cap 0.")

    def setup(self):
        self.c = self.param("c", nn.initializers.constant(self.init_c), ())
        if self.learn_L:
            self.L_multiplier = self.param("L_multiplier", nn.initializers.ones, ())
        # PyTorch nn.Linear's default init, as in the paper's listing.
        widths = [1] + [self.mlp_width] * self.mlp_depth + [self.num_heads]
        self.layers = [
            (
                self.param(f"kernel_{k}", _torch_linear_init(fan_in), (fan_in, fan_out)),
                self.param(f"bias_{k}", _torch_linear_init(fan_in), (fan_out,)),
            )
            for k, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:]))
        ]

    @property
    def L0_resolved(self) -> float:
        return float(self.L0 or self.train_len)

    def threshold_L(self):
        """``L = |m| L0``: a JAX scalar where ``m`` is learned, else the Python float ``L0``, so
        that which rows a distance table holds on is known while tracing (no switch per tile)."""
        if not self.learn_L:
            return self.L0_resolved
        return jnp.abs(self.L_multiplier * self.L0_resolved)

    def summary(self):
        return {"c": jnp.abs(self.c), "L": self.threshold_L()}

    def psi(self, t, c):
        return jnp.log1p(c * t) if self.log_transform else t

    def inputs_fn(self):
        """A pure function ``(q_pos_BxQ, k_pos_BxK) -> x_BxQxK``: the MLP's input."""
        c = jnp.abs(self.c)
        L = self.threshold_L()

        def inputs(q_pos, k_pos):
            x = self.psi(relative_distance(q_pos, k_pos), c)
            if not self.interpolate:
                return x
            i = q_pos.astype(jnp.float32)
            reference = jnp.maximum(i, L) if self.threshold else i
            if self.normalizer_cap:
                reference = jnp.minimum(reference, self.normalizer_cap)
            normaliser = self.psi(reference, c) + self.eps
            return x / normaliser[:, :, None]

        return inputs

    def bias_fn(self, seq_len) -> Optional[BiasFn]:
        inputs = self.inputs_fn()
        f = f_theta(self.layers)  # parameters read here, outside any transform

        def bias(q_pos, k_pos):
            return heads_first(f(inputs(q_pos, k_pos)))

        return bias

    def distance_bias(self, seq_len) -> Tuple[DistanceBias, ...]:
        """Where the normaliser is one constant the bias depends on ``i - j`` alone, with one
        table per constant: on every row without interpolation; with the threshold, on rows
        ``i <= L`` (normaliser ``psi(L)``, or ``psi(cap)`` with a cap at or below ``L``, which
        then holds on every row); with a cap, on rows ``i >= cap`` (``psi(cap)``). Without
        threshold or cap the normaliser changes with every row: none."""
        c, L, cap = jnp.abs(self.c), self.threshold_L(), self.normalizer_cap
        f = f_theta(self.layers)

        def table_at(reference):  # the table of the rows whose normaliser is psi(reference)
            def table(N):
                x = self.psi(jnp.arange(N, dtype=jnp.float32), c)
                if reference is not None:
                    x = x / (self.psi(reference, c) + self.eps)
                return f(x).T

            return table

        if not self.interpolate:
            return (DistanceBias(table_at(None)),)
        tables = []
        if self.threshold and cap:
            # Rows up to L take psi(min(L, cap)); with the cap at or below L, every row does.
            if isinstance(L, float):
                below_cap = DistanceBias(table_at(min(L, cap)), up_to_row=None if L >= cap else L)
            else:
                below_cap = DistanceBias(table_at(jnp.minimum(L, cap)), up_to_row=jnp.where(L >= cap, jnp.inf, L))
            tables.append(below_cap)
        elif self.threshold:
            tables.append(DistanceBias(table_at(L), up_to_row=L))
        if cap:
            tables.append(DistanceBias(table_at(cap), from_row=cap))
        return tuple(tables)


def f_theta(layers):
    """``x_... -> ...xH``: :func:`piecewise_linear` for one hidden layer, else :func:`mlp`."""
    return piecewise_linear(layers) if len(layers) == 2 else functools.partial(mlp, layers)


def mlp(layers, x):
    """``f_theta`` with ReLU between layers: ``x_...`` -> ``..xH``. The reference."""
    (kernel_1xW, bias_W), *rest = layers
    h = x[..., None] * kernel_1xW[0] + bias_W  # the 1-input layer as a broadcast, not a K=1 matmul
    for kernel, bias in rest:
        h = jax.nn.relu(h) @ kernel + bias
    return h


def piecewise_linear(layers):
    """The one-hidden-layer ``f_theta`` as the piecewise-linear function it is, exactly.

    ``f(x) = c2 + sum_w W2[w] relu(a_w x + b_w)``: unit ``w`` is active where ``a_w x + b_w > 0``,
    i.e. for ``a_w > 0`` past its knot ``k_w = -b_w / a_w`` and for ``a_w < 0`` before it, so on
    each piece between knots ``f`` is ``slope * x + intercept`` with the sums of ``a_w W2[w]``
    and ``b_w W2[w]`` over the active units. The knots are sorted once; per element, the
    number of knots below ``x`` indexes a table of those sums. A rising unit counts as active
    where ``k_w < x`` and a falling one where ``x < k_w``, so at a knot neither is, as JAX's
    ``relu'(0) = 0`` has it, and gradients match :func:`mlp`'s everywhere: a falling knot is
    sorted as the float just below it, ``k_w <= x`` being ``prevfloat(k_w) < x``. Units with
    ``a_w = 0`` are the same on every piece (active where ``b_w > 0``).

    Gradients reach every parameter through the table (a gather's transpose: sums over the
    elements of each piece) and ``x`` through the slope. Per element: ``W`` comparisons and
    one read of ``2 H`` values, against ``W (H + 2)`` multiply-adds for the MLP.

    Args:
      layers: ``[(kernel_1xW, bias_W), (kernel_WxH, bias_H)]``.
    Returns:
      ``f(x_...) -> ...xH``, equal to ``mlp(layers, x)`` up to float32 rounding.
    """
    (kernel_1xW, b_W), (W2_WxH, c2_H) = layers
    a_W = kernel_1xW[0]
    H = W2_WxH.shape[1]
    rising_W, falling_W, flat_W = a_W > 0, a_W < 0, a_W == 0
    # Knots only decide which piece an input is on: no gradient flows through them.
    knots_W = jax.lax.stop_gradient(-b_W / jnp.where(flat_W, 1.0, a_W))
    # The float just below a falling knot; below 0 that is a denormal, which CPUs flush to -0:
    # take the smallest normal instead (no float32 input lies strictly between the two).
    below_W = jnp.where(knots_W == 0, -jnp.finfo(jnp.float32).tiny, jnp.nextafter(knots_W, -jnp.inf))
    keys_W = jnp.where(rising_W, knots_W, jnp.where(falling_W, below_W, jnp.inf))
    order_W = jnp.argsort(keys_W)
    terms_Wx2H = jnp.concatenate([a_W[:, None] * W2_WxH, b_W[:, None] * W2_WxH], axis=1)
    zero_1x2H = jnp.zeros_like(terms_Wx2H[:1])
    # Piece m (m keys below x): the rising units among the first m sorted keys, the falling
    # units among the others, and the flat units and the output bias on every piece.
    rising_Wx2H = (terms_Wx2H * rising_W[:, None])[order_W]
    falling_Wx2H = (terms_Wx2H * falling_W[:, None])[order_W]
    constant_2H = jnp.concatenate([(a_W * flat_W * (b_W > 0)) @ W2_WxH, (jax.nn.relu(b_W) * flat_W) @ W2_WxH + c2_H])
    pieces_Px2H = (
        jnp.concatenate([zero_1x2H, jnp.cumsum(rising_Wx2H, axis=0)])
        + jnp.concatenate([jnp.cumsum(falling_Wx2H[::-1], axis=0)[::-1], zero_1x2H])
        + constant_2H
    )
    sorted_keys_W = keys_W[order_W]

    def f(x):
        piece_x2H = pieces_Px2H[jnp.sum(x[..., None] > sorted_keys_W, axis=-1)]
        return piece_x2H[..., :H] * x[..., None] + piece_x2H[..., H:]

    return f


def _torch_linear_init(fan_in):
    bound = 1.0 / fan_in**0.5
    return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)
