"""Randomized positions for training (Ruoss et al. 2023, "Randomized Positional Encodings
Boost Length Generalization of Transformers"; used with FIRE by Zhou et al. 2024).

With ``train_positions.randomize`` each training window's position ids are a sorted sample
without replacement of ``train_len`` integers from ``[0, max_position)`` instead of
``0..train_len-1``: the model meets the large ids and distances of long inputs while
training on short ones. Sorted, so causal masking by index stays masking by position.
Evaluation and validation keep ``0..T-1``.

The ids of row ``r`` of the global batch at step ``s`` are a pure function of
``(data_seed, s, r)`` (the key ``fold_in(fold_in(key(data_seed), s), r)``), drawn inside the
jitted step: a resumed run draws the same ids, and any process count or mesh draws the same
ids for the same row.
"""

import jax
import jax.numpy as jnp

from fire.errors import ConfigError

DEFAULT_SPAN = 16  # max_position 0: this many times train_len


def max_position(config) -> int:
    """The exclusive upper bound of the run's training position ids: ``train_len``, or the
    randomized ``max_position`` (0: ``16 x train_len``).

    Raises:
      ConfigError: a randomized ``max_position`` below ``train_len`` (or negative).
    """
    options = config.train_positions
    if not options.randomize:
        return config.train_len
    bound = options.max_position or DEFAULT_SPAN * config.train_len
    if bound < config.train_len:
        raise ConfigError(
            f"train_positions.max_position {options.max_position} is below train_len {config.train_len}: "
            f"a window needs {config.train_len} distinct ids. Set --config.train_positions.max_position to at "
            f"least {config.train_len}, or 0 for {DEFAULT_SPAN} x train_len."
        )
    return bound


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
