"""Randomized positions for training (Ruoss et al. 2023, "Randomized Positional Encodings
Boost Length Generalization of Transformers"; used with FIRE by Zhou et al. 2024).

With ``train_positions.randomize`` each training window's position ids are a sorted sample
without replacement of ``train_len`` integers from ``[0, max_position)`` instead of
``0..train_len-1``: the model meets the large ids and distances of long inputs while
training on short ones. Sorted, so causal masking by index stays masking by position. The
bound is ``fire.config.max_position``. Validation keeps ``0..T-1``; evaluation may randomize
too (``--positions=randomized``, ``fire.evaluation.scoring.randomized_positions``).

The ids of row ``r`` of the global batch at step ``s`` are a pure function of
``(data_seed, s, r)`` (the key ``fold_in(fold_in(key(data_seed), s), r)``), drawn inside the
jitted step: a resumed run draws the same ids, and any process count or mesh draws the same
ids for the same row.
"""

import jax
import jax.numpy as jnp


def random_positions(seed: int, step, rows_R, seq_len: int, max_position: int):
    """Position ids of rows ``rows_R`` (indices into the global batch) at ``step``.

    Returns int32 ``RxT`` (``T = seq_len``): each row sorted, strictly increasing, in
    ``[0, max_position)``. ``step`` may be traced.
    """
    step_key = jax.random.fold_in(jax.random.key(seed), step)

    def row(r):
        ids_T = jax.random.choice(jax.random.fold_in(step_key, r), max_position, (seq_len,), replace=False)
        return jnp.sort(ids_T).astype(jnp.int32)

    return jax.vmap(row)(jnp.asarray(rows_R, jnp.int32))
