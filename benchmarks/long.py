"""Long-input benchmark: the blockwise forward of every encoding at one long length, timed
round-robin in one process, each as a multiple of NoPE's time in the same round.

Command (from the repository root):

    python -m benchmarks.long                           # tiny at 32,768 tokens (~5 min)
    python -m benchmarks.long --size=small --length=8192 --encodings=nope,fire,alibi

Models are ``ModelConfig.from_size(size, vocab_size=259, train_len=512, pe=NAME)``, float32,
batch 1, ``model.apply(params, tokens, impl="blockwise")``: FIRE's rows past its threshold
(512) take the pairwise path, the rows below it and the distance-only biases their tables.
Round-robin timing (one forward of each encoding per round) makes drift in the machine's
speed hit every encoding alike; ``benchmarks.forward`` measures memory, one process per
cell. CPU / wall is the process's CPU time over wall time (2.0: both of two cores busy).
"""

import argparse
import functools
import statistics
import time

import jax
import jax.numpy as jnp

from fire import xla
from fire.encodings import NAMES
from fire.model import ModelConfig, Transformer


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="tiny")
    p.add_argument("--length", type=int, default=32768)
    p.add_argument("--encodings", default="nope,rope,t5,alibi,kerple_log,sandwich,fire,fire_s")
    p.add_argument("--block_size", type=int, default=512)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args(argv)
    encodings = args.encodings.split(",")
    unknown = [pe for pe in encodings if pe not in NAMES]
    if unknown:
        raise SystemExit(f"Unknown encoding(s) {', '.join(unknown)}; valid: {', '.join(NAMES)}.")
    if "nope" not in encodings:
        encodings = ["nope", *encodings]

    tokens_1xT = jax.random.randint(jax.random.key(1), (1, args.length), 0, 259)
    forwards = {}
    for pe in encodings:
        cfg = ModelConfig.from_size(args.size, vocab_size=259, train_len=512, pe=pe, block_size=args.block_size)
        model = Transformer(cfg)
        params = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 16), jnp.int32))
        forward = xla.jit(functools.partial(model.apply, impl="blockwise"))
        jax.block_until_ready(forward(params, tokens_1xT))  # compiles
        forwards[pe] = (forward, params)

    seconds = {pe: [] for pe in encodings}
    cpu = {pe: [] for pe in encodings}
    for _ in range(args.rounds):
        for pe, (forward, params) in forwards.items():
            wall0, cpu0 = time.perf_counter(), time.process_time()
            jax.block_until_ready(forward(params, tokens_1xT))
            seconds[pe].append(time.perf_counter() - wall0)
            cpu[pe].append(time.process_time() - cpu0)

    print(f"Blockwise forward, {args.size}, {args.length:,} tokens, batch 1, float32, tile {args.block_size}, "
          f"{args.rounds} rounds round-robin; {jax.devices()[0].platform}, jax {jax.__version__}.\n")  # fmt: skip
    print("| encoding | s (median) | x nope (median of rounds) | CPU / wall |")
    print("|---|---|---|---|")
    for pe in encodings:
        ratio = statistics.median(t / n for t, n in zip(seconds[pe], seconds["nope"]))
        busy = sum(cpu[pe]) / sum(seconds[pe])
        print(f"| {pe} | {statistics.median(seconds[pe]):.2f} | {ratio:.2f}x | {busy:.2f} |", flush=True)


if __name__ == "__main__":
    main()
