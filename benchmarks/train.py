"""Training-step benchmark: tokens/s and MFU per model size and encoding, and each
encoding's step time relative to ``nope``; plus the data pipeline's tokens/s next to the
training tokens/s it has to feed.

Commands (from the repository root):

    python -m benchmarks.train                   # tiny and small at 512, every encoding (~12 min)
    python -m benchmarks.train --sizes=small --encodings=nope,fire,fire_s --batch=8
    python -m benchmarks.train --quick           # ~1 minute: tiny, three encodings

The step is the real one (``fire.training.build``: forward, backward, AdamW update, with
the encoding summaries), jitted with donation, on random tokens; the first call compiles
and is not timed. MFU counts PaLM's model FLOPs (``fire.model.train_flops_per_token``)
against ``--peak_gflops`` (default 450, the figure quoted for a 2-core CPU's fp32
matmul peak), and also against the matmul peak measured at the start of the run: the
best of XLA's own matmuls at the model's shapes (tokens x d_model x d_ff), which is what
the step could reach if it were nothing but matmuls on this machine now.
"""

import argparse
import statistics
import time
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from fire import xla
from fire.config import from_axes
from fire.encodings import NAMES
from fire.model import SIZES, train_flops_per_token
from fire.training import build


class TimedStep:
    """One encoding's compiled training step, its state and a fixed random batch."""

    def __init__(self, pe, size, train_len, batch, dtype, model: Optional[dict] = None):
        """``model``: overrides of the size's ``config.model`` entries (e.g. ``num_layers``)."""
        config = from_axes(f"pe={pe},size={size},train_len={train_len}")
        config.batch_size, config.model.dtype, config.mesh.data = batch, dtype, 1
        config.model.update(model or {})
        self.run = build(config)
        self.state = self.run.init_fn(jax.random.key(0))
        rng = np.random.default_rng(0)
        self.tokens = {
            k: jnp.asarray(rng.integers(0, 256, (batch, train_len)), jnp.int32) for k in ("inputs", "targets")
        }
        self.compile_s = self()  # the first call compiles
        self.flops = train_flops_per_token(self.run.model_cfg, train_len) * batch * train_len

    def __call__(self) -> float:
        t0 = time.perf_counter()
        self.state, metrics = self.run.train_step(self.state, self.tokens)
        jax.block_until_ready(metrics)
        return time.perf_counter() - t0


def peer_shape(d_model: int, layers: int, heads: int) -> dict:
    """``TimedStep``'s ``model`` overrides for the peer's decoder shape (``benchmarks.peer``):
    ``d_ff = 4 x d_model`` and the vocabulary unpadded, as x-transformers builds it."""
    return dict(num_layers=layers, d_model=d_model, num_heads=heads, d_ff=4 * d_model, vocab_multiple=0)


def time_steps(encodings, size, train_len, batch, dtype, repeats):
    """``{pe: (Step, [seconds per round])}``, timed round-robin (one step of each encoding
    per round) so that drift in the machine's speed hits every encoding alike; the order
    reverses every round, as a fixed order gave one encoding (yarn, after rope_pi) 1.05-1.14x
    rope where a two-way A/B gives 1.01x."""
    steps = {pe: TimedStep(pe, size, train_len, batch, dtype) for pe in encodings}
    times = {pe: [] for pe in encodings}
    for r in range(repeats):
        for pe in encodings if r % 2 == 0 else encodings[::-1]:
            times[pe].append(steps[pe]())
    return {pe: (steps[pe], times[pe]) for pe in encodings}


def matmul_gflops(size, train_len, batch, dtype, repeats=10, model: Optional[dict] = None):
    """The best GFLOP/s of a jitted ``[tokens, d_model] x [d_model, d_ff]`` matmul and of
    its transposed-shape sibling, in ``dtype`` with float32 accumulation; ``d_model`` and
    ``d_ff`` from ``model`` (``TimedStep``'s overrides) where it sets them."""
    _, d_model, _, d_ff = SIZES[size]
    d_model, d_ff = (model or {}).get("d_model", d_model), (model or {}).get("d_ff", d_ff)
    best = 0.0
    for m, k, n in ((batch * train_len, d_model, d_ff), (batch * train_len, d_ff, d_model)):
        a, b = jnp.ones((m, k), dtype), jnp.ones((k, n), dtype)
        matmul = xla.jit(lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.float32))
        jax.block_until_ready(matmul(a, b))
        for _ in range(repeats):
            t0 = time.perf_counter()
            jax.block_until_ready(matmul(a, b))
            best = max(best, 2 * m * k * n / (time.perf_counter() - t0) / 1e9)
    return best


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
    p.add_argument("--repeats", type=int, default=5, help="timed rounds (one step of each encoding per round)")
    p.add_argument("--peak_gflops", type=float, default=450.0)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--skip_pipeline", action="store_true", help="do not time the data pipeline")
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.encodings, args.repeats = "tiny", "nope,fire,fire_s", 2
    encodings = NAMES if args.encodings == "all" else args.encodings.split(",")
    if "nope" not in encodings:
        encodings = ["nope", *encodings]

    dtype = jnp.dtype(args.dtype)
    sizes = args.sizes.split(",")
    measured = {size: matmul_gflops(size, args.train_len, args.batch, dtype) for size in sizes}
    print(
        f"train step, train_len {args.train_len}, batch {args.batch}, {args.dtype}, "
        f"{jax.device_count()} {jax.devices()[0].platform} device(s); MFU against {args.peak_gflops:.0f} GFLOP/s; "
        "measured matmul peak: " + ", ".join(f"{s} {g:.0f} GFLOP/s" for s, g in measured.items()) + "\n"
    )
    print("| size | encoding | ms/step | tokens/s | GFLOP/s | MFU | of measured peak | vs nope | compile s |")
    print("|---|---|---|---|---|---|---|---|---|")
    tokens_per_s = {}
    for size in sizes:
        timed = time_steps(encodings, size, args.train_len, args.batch, args.dtype, args.repeats)
        nope_times = timed["nope"][1]
        for pe, (step, times) in timed.items():
            seconds = statistics.median(times)
            # The median of per-round ratios: each ratio compares steps taken seconds apart.
            ratio = statistics.median(t / t_nope for t, t_nope in zip(times, nope_times))
            tokens_per_s[size, pe] = args.batch * args.train_len / seconds
            gflops = step.flops / seconds / 1e9
            print(
                f"| {size} | {pe} | {seconds * 1e3:.0f} | {tokens_per_s[size, pe]:,.0f} | {gflops:.1f} | "
                f"{100 * gflops / args.peak_gflops:.1f}% | {100 * gflops / measured[size]:.0f}% | "
                f"{ratio:.2f}x | {step.compile_s:.1f} |",
                flush=True,
            )
        del timed
    if args.skip_pipeline:
        return
    fastest = max(tokens_per_s.values())
    pipeline = pipeline_tokens_per_s(args.train_len, args.batch)
    print(
        f"\ndata pipeline (shakespeare, bytes, train_len {args.train_len}, batch {args.batch}): "
        f"{pipeline:,.0f} tokens/s = {pipeline / fastest:.0f}x the fastest training step above "
        f"({fastest:,.0f} tokens/s)"
    )


if __name__ == "__main__":
    main()
