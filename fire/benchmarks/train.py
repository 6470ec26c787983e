"""Training-step benchmark: tokens/s and MFU per model size and encoding, and each
encoding's step time relative to ``nope``; plus the data pipeline's tokens/s next to the
training tokens/s it has to feed.

Commands (from the repository root):

    python -m fire.benchmarks.train                   # tiny and small at 512, every encoding
    python -m fire.benchmarks.train --sizes=small --encodings=nope,fire,fire_s --batch=8
    python -m fire.benchmarks.train --quick           # ~1 minute: tiny, three encodings

The step is the real one (``fire.trainer.build``: forward, backward, AdamW update, with
the encoding summaries), jitted with donation, on random tokens; the first call compiles
and is not timed. MFU counts PaLM's model FLOPs (``fire.model.train_flops_per_token``)
against ``--peak_gflops`` (default 450: this 2-core CPU's practical fp32 matmul peak).
"""

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from configs import lm
from fire.encodings import NAMES
from fire.model import train_flops_per_token
from fire.trainer import build


def step_seconds(pe, size, train_len, batch, dtype, repeats):
    config = lm.get_config(f"pe={pe},size={size},train_len={train_len}")
    config.batch_size, config.model.dtype, config.mesh.data = batch, dtype, 1
    run = build(config)
    state = run.init_fn(jax.random.key(0))
    rng = np.random.default_rng(0)
    tokens = {k: jnp.asarray(rng.integers(0, 256, (batch, train_len)), jnp.int32) for k in ("inputs", "targets")}
    t0 = time.perf_counter()
    state, metrics = run.train_step(state, tokens)
    jax.block_until_ready(metrics)
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        state, metrics = run.train_step(state, tokens)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - t0)
    flops = train_flops_per_token(run.model_cfg, train_len) * batch * train_len
    return statistics.median(times), compile_s, flops


def pipeline_tokens_per_s(train_len, batch, seconds=3.0):
    import fire.data

    cfg = fire.data.default_config()
    tokenizer = fire.data.get_tokenizer(cfg)
    fire.data.prepare(cfg, tokenizer)
    it = fire.data.train_iterator(cfg, tokenizer, train_len, batch, seed=0)
    for _ in range(20):
        next(it)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        next(it)
        n += 1
    return n * batch * train_len / (time.perf_counter() - start)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="tiny,small")
    p.add_argument("--encodings", default="all")
    p.add_argument("--train_len", type=int, default=512)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--peak_gflops", type=float, default=450.0)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.encodings, args.repeats = "tiny", "nope,fire,fire_s", 2
    encodings = NAMES if args.encodings == "all" else args.encodings.split(",")
    if "nope" not in encodings:
        encodings = ["nope", *encodings]

    print(f"train step, train_len {args.train_len}, batch {args.batch}, {args.dtype}, "
          f"{jax.device_count()} {jax.devices()[0].platform} device(s), peak {args.peak_gflops:.0f} GFLOP/s\n")
    print("| size | encoding | ms/step | tokens/s | GFLOP/s | MFU | vs nope | compile s |")
    print("|---|---|---|---|---|---|---|---|")
    tokens_per_s = {}
    for size in args.sizes.split(","):
        nope_s = None
        for pe in encodings:
            seconds, compile_s, flops = step_seconds(pe, size, args.train_len, args.batch, args.dtype, args.repeats)
            nope_s = seconds if pe == "nope" else nope_s
            tokens_per_s[size, pe] = args.batch * args.train_len / seconds
            gflops = flops / seconds / 1e9
            print(f"| {size} | {pe} | {seconds * 1e3:.0f} | {tokens_per_s[size, pe]:,.0f} | {gflops:.1f} | "
                  f"{100 * gflops / args.peak_gflops:.1f}% | {seconds / nope_s:.2f}x | {compile_s:.1f} |", flush=True)
    fastest = max(tokens_per_s.values())
    pipeline = pipeline_tokens_per_s(args.train_len, args.batch)
    print(f"\ndata pipeline (shakespeare, bytes, train_len {args.train_len}, batch {args.batch}): "
          f"{pipeline:,.0f} tokens/s = {pipeline / fastest:.0f}x the fastest training step above "
          f"({fastest:,.0f} tokens/s)")


if __name__ == "__main__":
    main()
