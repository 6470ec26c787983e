"""How an encoding's additive bias is computed for attention, decided in one place.

:func:`position_bias` turns an encoding's ``bias_fn`` (and, for ordinary positions
``0..T-1``, its distance tables, ``DistanceBias``) into a :class:`PositionBias`, the form an
attention path consumes:

* the dense path gets the bias over the causal triangle in row tiles (:func:`causal_row_tiles`),
  computed right away, once per forward (per layer for per-layer encodings);
* the blockwise path gets a function of one query block x key block tile, called inside
  its loop, so memory stays linear in the length;
* a decode step gets its few query rows against every cache slot.

Each row tile (dense) or tile (blockwise) reads a distance table along its diagonals
(:func:`toeplitz`) when one holds on all of its query rows (T5, ALiBi, KERPLE, Sandwich on
every row; FIRE on the rows up to its threshold and at or past its normaliser's cap), and
evaluates ``bias_fn`` at every (query, key) pair otherwise. Tables are computed once per
forward over the distances ``0..T-1``.
"""

import dataclasses
import functools
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp

from fire.encodings.base import BiasFn, DistanceBias
from fire.model.config import IMPLEMENTATIONS
from fire.utils import ceil_div

# Position biases are computed in tiles of query rows (each tile's intermediates stay in
# cache). On the dense path, on the causal triangle: at least BIAS_TILE_ROWS rows per tile
# and at most CAUSAL_BIAS_MAX_TILES tiles (compile time grows with them).
BIAS_TILE_ROWS = 64
CAUSAL_BIAS_MAX_TILES = 16


@dataclasses.dataclass(frozen=True)
class PositionBias:
    """An encoding's additive bias in the form an attention path consumes (``B`` may be 1):

    * ``causal_tiles``: the dense path, the bias over the causal triangle in the row tiles
      of :func:`causal_row_tiles` (tile ``(start, stop)``: ``BxHx(stop - start)xstop``);
    * ``dense``: a decode step, its query rows against every cache slot, ``BxHxTxS``;
    * ``tile(qi, ki, qpos_BxQ, kpos_BxK) -> BxHxQxK``: the blockwise path, for query block
      ``qi`` and key block ``ki`` of ``block`` positions each.
    """

    causal_tiles: Optional[tuple] = None
    dense: Optional[jnp.ndarray] = None
    tile: Optional[Callable] = None
    block: Optional[int] = None


def position_bias(
    bias_fn: Optional[BiasFn],
    positions_BxT,
    impl: str,
    cache_positions_1xS=None,
    tables: Sequence[DistanceBias] = (),
    block_size: int = 512,
) -> Optional[PositionBias]:
    """How a bias is computed, decided here and nowhere else.

    The model calls this once per forward for an encoding shared by all layers and once
    per layer otherwise. On the dense path the bias is computed right away over the causal
    triangle, in the row tiles the attention consumes (position batch 1 unless positions
    differ per example): query rows in tiles of :func:`causal_bias_tile` rows, each against
    the keys up to its last row only, a little over half the work of the full grid, with each
    tile's intermediates (FIRE's hidden layer) in cache (BENCHMARKS.md has the measured
    effect). On the blockwise path (tiles of ``block_size``) it is computed per tile inside
    the loop. ``tables``: the encoding's :meth:`distance_bias`, passed only when
    ``positions_BxT`` is ``0..T-1`` (``1xT``), else ``()``; a row tile or tile whose query
    rows all lie where one holds reads it (the first that does) instead of evaluating
    ``bias_fn`` pairwise. A decode step (``cache_positions_1xS``: its cache's slots) takes the dense path
    for whatever ``impl``: its few query rows against every slot, ``BxHxTxS``, whose slots
    past the query attention masks.

    Raises:
      ValueError: an unknown ``impl``.
    """
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f"Unknown attention implementation {impl!r}; valid: {', '.join(IMPLEMENTATIONS)}.")
    if bias_fn is None:
        return None
    if cache_positions_1xS is not None:
        return PositionBias(dense=materialize(bias_fn(positions_BxT, cache_positions_1xS)))
    T = positions_BxT.shape[1]
    if impl == "blockwise":
        block = min(block_size, T)
        padded = [padded_distance_table(table, ceil_div(T, block) * block, block - 1) for table in tables]

        def tile(qi, ki, qpos_BxQ, kpos_BxK):
            from_table = lambda k: diagonal_tile(padded[k], (qi - ki) * block, block, block)
            pairwise = lambda: bias_fn(qpos_BxQ, kpos_BxK)
            # The last block's padded rows (past T - 1) are dropped: they need no table.
            last_row = jnp.minimum((qi + 1) * block, T) - 1
            return table_or_pairwise(tables, qi * block, last_row, from_table, pairwise)

        return PositionBias(tile=tile, block=block)

    padded = [padded_distance_table(table, T, T - 1) for table in tables]

    def rows(start, stop):  # one row tile of the causal triangle
        from_table = lambda k: diagonal_tile(padded[k], start, stop - start, stop, pad=T - 1)
        pairwise = lambda: bias_fn(positions_BxT[:, start:stop], positions_BxT[:, :stop])
        return table_or_pairwise(tables, start, stop - 1, from_table, pairwise)

    tiles = tuple(rows(start, stop) for start, stop in causal_row_tiles(T, causal_bias_tile(T)))
    return PositionBias(causal_tiles=materialize(tiles))


def table_or_pairwise(tables: Sequence[DistanceBias], first_row, last_row, from_table, pairwise):
    """``from_table(k)`` for the first of ``tables`` that holds on every query row
    ``first_row..last_row`` (indices, may be traced), else ``pairwise()``; the one place
    that choice is made. Known without tracing, it is a Python branch; else one
    ``jax.lax.switch`` whose branches save nothing for the backward pass but their inputs
    (they are recomputed there): under ``grad`` a switch returns the residuals of every
    branch, those not taken filled with zeros, and a pairwise bias's are several ``HxQxK``
    arrays, written on every step that takes a table."""
    branches, conditions = [], []
    for k, table in enumerate(tables):
        holds = table.holds(first_row, last_row)
        if holds is False:
            continue
        branches.append(functools.partial(from_table, k))
        if holds is True:
            break
        conditions.append(holds)
    else:
        branches.append(pairwise)
    if len(branches) == 1:
        return branches[0]()
    first_that_holds = jnp.argmax(jnp.stack(conditions + [True]))  # the last branch has no condition
    return jax.lax.switch(first_that_holds, [jax.checkpoint(branch) for branch in branches])


def materialize(bias):
    """Computes a position bias once, as its own array.

    Without the barrier XLA may fuse the bias's producer (a FIRE MLP, Sandwich's cosine
    sum) into every consumer, recomputing it for each example and each use; the bias
    depends on positions only, so it is computed once and broadcast over the batch.
    """
    return jax.lax.optimization_barrier(bias)


def causal_bias_tile(T: int) -> int:
    """Query rows per row tile of the dense path's bias at length ``T``: ``BIAS_TILE_ROWS``,
    more for long inputs (at most ``CAUSAL_BIAS_MAX_TILES`` tiles)."""
    return max(BIAS_TILE_ROWS, ceil_div(T, CAUSAL_BIAS_MAX_TILES))


def causal_row_tiles(T: int, tile: int):
    """The ``(start, stop)`` query rows of each row tile of a causal ``T x T`` grid; tile
    ``(start, stop)`` meets keys ``0..stop-1`` (the form
    ``fire.model.attention.causal_attention_in_row_tiles`` consumes)."""
    return [(start, min(start + tile, T)) for start in range(0, T, tile)]


def toeplitz(window_HxW, Q: int, K: int):
    """``out[h, a, b] = window[h, a - b + K - 1]``: the ``HxQxK`` array whose diagonals are
    the ``W = Q + K - 1`` values of ``window`` (the first column bottom-up, then the first
    row). Row ``a`` is one contiguous slice of the reversed window, so the forward is a
    gather of whole rows and its transpose a scatter-add of whole rows (measured on a CPU
    at ``4x512x512``: about as fast as adding a broadcast bias, and 4x faster than the skew
    trick of tiling and re-cutting rows, whose index arithmetic is per element).

    Raises:
      ValueError: ``window_HxW`` does not have ``Q + K - 1`` values per head.
    """
    H, W = window_HxW.shape
    if W != Q + K - 1:
        raise ValueError(f"a {Q}x{K} Toeplitz array needs {Q + K - 1} diagonal values, got {W}.")
    reversed_HxW = window_HxW[:, ::-1]  # out[h, a, b] = reversed[h, Q - 1 - a + b]
    # One gather per head: a batched one would write QxHxK and need a transposed copy.
    rows = lambda reversed_W: jax.vmap(lambda a: jax.lax.dynamic_slice_in_dim(reversed_W, Q - 1 - a, K))(jnp.arange(Q))
    return jnp.stack([rows(reversed_W) for reversed_W in reversed_HxW])


def padded_distance_table(bias: DistanceBias, num_distances: int, pad: int):
    """``bias.table(num_distances)`` with ``pad`` copies of distance 0's column in front:
    ``HxN``, column ``pad + d`` for distance ``d``, and distances ``-pad..-1`` (keys after the
    query, which attention masks) valued as distance 0, as ``relative_distance`` clamps."""
    table_HxD = bias.table(num_distances)
    return jnp.concatenate([jnp.repeat(table_HxD[:, :1], pad, axis=1), table_HxD], axis=1)


def diagonal_tile(padded_HxN, offset, Q: int, K: int, pad: Optional[int] = None):
    """The ``1xHxQxK`` tile of a distance bias whose row ``a``, column ``b`` is at distance
    ``offset + a - b`` (``offset``: first row's index minus first column's, may be traced),
    from :func:`padded_distance_table` with ``pad`` (default ``K - 1``) columns in front."""
    pad = K - 1 if pad is None else pad
    window = jax.lax.dynamic_slice_in_dim(padded_HxN, pad + offset - (K - 1), Q + K - 1, axis=1)
    return toeplitz(window, Q, K)[None]
