"""The contract between position encodings and the model.

An encoding contributes to the model through up to three hooks, and attention never
asks which encoding it is talking to:

* ``embed(positions_BxT, seq_len)``: a vector added to the token embeddings (absolute
  encodings). Called once per forward, at the model level.
* ``rotary(seq_len)``: a :class:`Rotation`, two pure functions ``rotate(x_BxTxHxD,
  positions_BxT)``, one for the queries and one for the keys (RoPE and its interpolations
  use the same for both; xPos-style encodings scale them differently).
* ``bias_fn(seq_len)``: a pure function ``bias(q_pos_BxQ, k_pos_BxK) -> BxHxQxK`` added
  to the scaled logits ``q.k / sqrt(d_head)`` before the causal mask (additive encodings).
  An additive encoding whose bias depends on the distance ``i - j`` alone (on every row,
  or on a range of rows) also describes it by :meth:`PositionEncoding.distance_bias`,
  tables over distances: for ordinary positions ``0..T-1`` attention then computes ``T``
  values per head and reads them along the diagonals on the rows where a table holds,
  instead of evaluating the bias at every (query, key) pair.

Hooks return pure closures over the encoding's parameters, read once outside any JAX
transform, so attention can evaluate a bias on any grid of positions: once per forward,
per layer or per tile (``fire.model.position_bias.position_bias`` decides which, and
nothing else does). Position ids are explicit and may have a batch dimension of 1 (shared by all
examples: the bias is then computed once, never per example) or B (per-example positions,
e.g. randomized). ``seq_len`` is the length of the window being modelled; it sets the
interpolation scale of ``rope_pi`` and ``yarn`` and the table check of ``learned``.

Everything else about an encoding lives in its class too: its options (the module's
dataclass fields, with defaults; a default that depends on the run, such as FIRE's ``L0``
or ``learned``'s table size, is written as 0 and resolved from ``train_len`` by the
module), its checks against a run (:meth:`PositionEncoding.check`) and its capabilities
(``shared``, ``additive``, ``plot_bias``, :meth:`PositionEncoding.max_length`). Adding an
encoding is one module plus one ``register`` line in ``fire/encodings/__init__.py``, and its
``pe=`` name in the README's encodings table and ``configs/lm.py``'s docstring (a test
checks both).

A content-dependent encoding (CoPE, Golovneva et al. 2024, whose positions are cumulative
sums of gates computed from ``q.k``) does not fit these hooks: its bias needs the queries
and keys, not only position ids. It would need a fourth hook, ``content_bias(seq_len)``
returning ``bias(q_BxQxHxD, k_BxKxHxD, q_pos, k_pos) -> BxHxQxK``, called by attention after
the projections; on the blockwise path its cumulative gate sums run across key tiles, so
the hook would also have to carry a running state through the key loop.
"""

import functools
from typing import Callable, ClassVar, Mapping, NamedTuple, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from fire.errors import UserError
from fire.utils import field_comments

Array = jnp.ndarray
BiasFn = Callable[[Array, Array], Array]
RotateFn = Callable[[Array, Array], Array]


class LengthError(UserError, ValueError):
    """A window is longer than an encoding can represent."""


class Rotation(NamedTuple):
    """How an encoding rotates queries and keys: ``rotate(x_BxTxHxD, positions_BxT)``."""

    query: RotateFn
    key: RotateFn

    @classmethod
    def same(cls, rotate: RotateFn) -> "Rotation":
        return cls(rotate, rotate)


class DistanceBias(NamedTuple):
    """A bias that depends on the distance alone on a range of query rows:
    ``bias[h, i, j] = table(N)[h, i - j]`` for ``from_row <= i <= up_to_row``.

    ``table(N)`` returns the ``HxN`` bias at distances ``0..N-1`` (float32). The bounds are
    query positions, scalars that may be traced (e.g. FIRE's learned threshold); None leaves
    that side open (from row 0; every row on). Rows outside take the encoding's ``bias_fn``.
    """

    table: Callable[[int], Array]
    from_row: Optional[Array] = None
    up_to_row: Optional[Array] = None

    def holds(self, first_row, last_row):
        """Whether the table holds on every query row ``first_row..last_row``: a Python bool
        where that is known from Python numbers (or open bounds) alone, else a boolean JAX
        scalar (traced, or computed from arrays)."""
        conditions = []
        if self.from_row is not None:
            conditions.append(first_row >= self.from_row)
        if self.up_to_row is not None:
            conditions.append(last_row <= self.up_to_row)
        arrays = [c for c in conditions if isinstance(c, jax.Array)]
        if not all(bool(c) for c in conditions if not isinstance(c, jax.Array)):
            return False
        return functools.reduce(jnp.logical_and, arrays) if arrays else True


class PositionEncoding(nn.Module):
    """Base class: contributes nothing (which is exactly NoPE).

    Attributes set by the model for every encoding:
      num_heads, head_dim, d_model: attention geometry.
      train_len: the training length (interpolating encodings scale from it, and
        run-dependent defaults written as 0 resolve to it).

    Capabilities (class attributes):
      shared: one instance for the whole model (built at the model level and used by
        every layer) instead of one per layer. An encoding may also take it as an option
        (FIRE's ``shared``); :func:`fire.encodings.is_shared` reads either.
      additive: ``bias_fn`` returns a bias.
      plot_bias: the learned bias is the point of the encoding: the length sweep plots it
        against distance.
      distance_only: ``bias_fn`` depends on ``i - j`` alone (clamped at 0), so the base
        class's :meth:`distance_bias` derives the table from it.
    """

    num_heads: int
    head_dim: int
    d_model: int
    train_len: int

    shared: ClassVar[bool] = True
    additive: ClassVar[bool] = False
    plot_bias: ClassVar[bool] = False
    distance_only: ClassVar[bool] = False
    # Numeric options must be finite and >= 0 (0 often means "from the run"); these also > 0.
    positive_options: ClassVar[tuple] = ()

    @classmethod
    def option_help(cls) -> dict:
        """``{option: meaning}`` from the comments on the class's own option fields (and its
        bases'): the comment next to a field is its documentation."""
        return dict(field_comments(cls, PositionEncoding))

    @classmethod
    def check(cls, options: Mapping, train_len: int, max_position: int, head_dim: int) -> None:
        """Raises :class:`fire.errors.ConfigError` if ``options`` cannot serve a run trained
        at ``train_len`` with position ids in ``[0, max_position)`` (``train_len`` normally; more
        with randomized positions, ``fire.training.positions``) and heads ``head_dim`` wide.
        Called whenever the encoding is built, and by a run's checks before anything is
        written."""

    @classmethod
    def max_length(cls, options: Mapping, train_len: int) -> Optional[int]:
        """The longest window the encoding can model; None: no limit."""
        return None

    @classmethod
    def check_length(cls, options: Mapping, train_len: int, seq_len: int) -> None:
        """Raises :class:`LengthError` if a window of ``seq_len`` is past :meth:`max_length`."""
        longest = cls.max_length(options, train_len)
        if longest is not None and seq_len > longest:
            raise LengthError(
                f"{cls.__name__} models windows of at most {longest} tokens, not {seq_len}; "
                f"evaluate it at lengths <= {longest}."
            )

    @classmethod
    def check_positions(cls, options: Mapping, train_len: int, positions_BxT) -> None:
        """Raises :class:`LengthError` if concrete position ids (not traced: under ``jit`` the
        run's :meth:`check` bounds them) are ids the encoding cannot model. No limit here."""

    def embed(self, positions_BxT: Array, seq_len: int) -> Optional[Array]:
        return None

    def rotary(self, seq_len: int) -> Optional[Rotation]:
        return None

    def bias_fn(self, seq_len: int) -> Optional[BiasFn]:
        return None

    def distance_bias(self, seq_len: int) -> Tuple[DistanceBias, ...]:
        """The bias as tables over distances on the rows where it depends on ``i - j`` alone:
        one :class:`DistanceBias` per range of rows (disjoint, or equal where they overlap);
        empty where it never does. By default, for ``distance_only`` encodings, one table on
        every row: ``bias_fn`` evaluated on one column, queries at ``0..N-1``, the key at 0."""
        bias = self.bias_fn(seq_len) if self.distance_only else None
        if bias is None:
            return ()

        def table(N):
            return bias(jnp.arange(N, dtype=jnp.int32)[None], jnp.zeros((1, 1), jnp.int32))[0, :, :, 0]

        return (DistanceBias(table),)

    def summary(self) -> dict:
        """Learned parameters worth logging over training, as ``{name: scalar or [H]}``."""
        return {}


def relative_distance(q_pos_BxQ: Array, k_pos_BxK: Array) -> Array:
    """``i - j`` as float32 ``BxQxK``, clamped at 0.

    Keys after the query are masked by attention anyway; clamping keeps every encoding's
    formula finite there (``log`` and fractional powers of negative numbers would give NaN,
    and a NaN times a zero mask is still NaN in the gradient).
    """
    d = q_pos_BxQ[:, :, None].astype(jnp.float32) - k_pos_BxK[:, None, :].astype(jnp.float32)
    return jnp.maximum(d, 0.0)


def heads_first(x_BxQxKxH: Array) -> Array:
    return jnp.transpose(x_BxQxKxH, (0, 3, 1, 2))
