"""``jax.jit`` with the XLA options this framework compiles with.

On CPU, XLA hands dots, elementwise ops and reductions to YNNPACK by default. Its dots are
the fastest available, but its reductions are not: summing a position bias's gradient
over the batch (``[B, H, T, T] -> [H, T, T]``) ran far slower than XLA's own loop and
dominated FIRE's backward pass. Only individual dots go to YNNPACK here. ``XLA_FLAGS``
that set the option win.
"""

import os

import jax

_YNN_OPTION = "xla_cpu_experimental_ynn_fusion_type"


def compiler_options() -> dict:
    if jax.default_backend() != "cpu" or _YNN_OPTION in os.environ.get("XLA_FLAGS", ""):
        return {}
    return {_YNN_OPTION: "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}


def jit(fun, **kwargs):
    """``jax.jit(fun, **kwargs)`` compiled with :func:`compiler_options`."""
    return jax.jit(fun, compiler_options=compiler_options() or None, **kwargs)
