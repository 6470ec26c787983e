"""Position-bias benchmark: one encoding's ``HxTxT`` causal bias alone, forward and
backward, by the way it is computed.

Command (from the repository root):

    python -m benchmarks.bias                    # 2048 x 2048, 8 heads (~1 minute)
    python -m benchmarks.bias --length=4096 --heads=4 --train_len=512

Paths, all over the causal triangle of positions ``0..T-1`` on the dense path
(``fire.model.position_bias.position_bias``):
  - ``pairwise (MLP)``: FIRE's reference, ``f_theta`` run as the MLP at every (query, key) pair;
  - ``pairwise``: the encoding's ``bias_fn`` at every pair (FIRE: the exact piecewise-linear
    ``f_theta``);
  - ``table``: the encoding's distance table read along the diagonals (rows up to FIRE's
    threshold ``L``; past it, pairwise).
The loss is the sum of the bias times a fixed random cotangent, so the backward reaches every
parameter. Times are medians of ``--repeats`` runs after a warm-up; speed-ups are against
the first path of the same encoding, measured in the same run.
"""

import argparse
import contextlib
import functools
import statistics
import time
from unittest import mock

import jax
import jax.numpy as jnp

from fire import xla
from fire.encodings import build_encoding
from fire.encodings import fire as fire_module
from fire.model.position_bias import causal_bias_tile, causal_row_tiles, position_bias


def timed(fn, params, repeats):
    jax.block_until_ready(fn(params))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(params))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--encodings", default="fire,t5,kerple_log,sandwich,alibi")
    p.add_argument("--length", type=int, default=2048)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--train_len", type=int, default=2048, help="FIRE's threshold L starts here")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    T, H = args.length, args.heads
    positions_1xT = jnp.arange(T, dtype=jnp.int32)[None]
    cotangent_HxTxT = jnp.tril(jax.random.normal(jax.random.key(0), (H, T, T)))

    print(f"Bias alone, {H} heads, T = {T}, training length {args.train_len}, float32, forward and backward.\n")
    print("| encoding | path | ms | speed-up |")
    print("|---|---|---|---|")
    for pe in args.encodings.split(","):
        enc = build_encoding(pe, {}, num_heads=H, head_dim=64, d_model=64 * H, train_len=args.train_len)
        params = enc.init(jax.random.key(0), method=lambda m: m.bias_fn(T) and None).get("params", {})

        def loss(params, table: bool):
            def bias_tiles(m):
                tables = m.distance_bias(T) if table else ()
                return position_bias(m.bias_fn(T), positions_1xT, "dense", None, tables).causal_tiles

            tiles = enc.apply({"params": params}, method=bias_tiles)
            rows = causal_row_tiles(T, causal_bias_tile(T))
            return sum(
                jnp.sum(tile[0] * cotangent_HxTxT[:, start:stop, :stop]) for tile, (start, stop) in zip(tiles, rows)
            )

        paths = [("pairwise", False), ("table", True)]
        if pe in ("fire", "fire_s"):
            paths.insert(0, ("pairwise (MLP)", False))
        first = None
        for name, table in paths:
            step = xla.jit(jax.grad(loss) if params else loss, static_argnums=1)
            # The reference: f_theta as the MLP (traced, hence patched, at the first call).
            mlp_f_theta = lambda layers: functools.partial(fire_module.mlp, layers)
            with mock.patch.object(fire_module, "f_theta", mlp_f_theta) if "MLP" in name else contextlib.nullcontext():
                seconds = timed(lambda p: step(p, table), params, args.repeats)
            first = first or seconds
            print(f"| {pe} | {name} | {seconds * 1e3:.1f} | {first / seconds:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
