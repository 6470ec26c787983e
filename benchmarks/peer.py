"""Peer comparison: this project's training step against x-transformers' (PyTorch, CPU) on
the same decoder shape, batch, length and encoding, interleaved in one run.

Setup of the peer, once (PyTorch is an optional benchmark dependency, never a requirement;
``../shared/bench/peer_xtransformers.py`` says the same):

    python3 -m venv .venv-peer
    .venv-peer/bin/pip install torch==2.13.0
    printf 'torch==2.13.0+cpu\\n' > .venv-peer/torch-pin.txt
    .venv-peer/bin/pip install -c .venv-peer/torch-pin.txt x-transformers

Then, from the repository root:

    python -m benchmarks.peer --peer_python=.venv-peer/bin/python \\
        --peer_script=../shared/bench/peer_xtransformers.py

Each round times ``--steps`` of this project's step (``benchmarks.train.TimedStep``:
forward, backward, AdamW, float32, dense attention) and then one run of the peer script
(its own warm-up, then the median of its timed steps), for each shape and encoding; the
ratio is taken per round and its median printed. Both models: pre-norm decoder, GELU
feed-forward of 4 x d_model, 64-dimensional heads, untied embeddings, vocabulary 259 (the
project's byte vocabulary; the peer is given the same), float32. Differences left: the
peer's LayerNorm against RMSNorm here, and its optimizer's defaults (AdamW, no clipping).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

from benchmarks.train import TimedStep, peer_shape

SHAPES = ((512, 6, 8, 512, 8), (256, 4, 4, 256, 8))  # d_model, layers, heads, length, batch
VOCAB = 259


def require_peer(*paths):
    """Exit with one line if a path of the peer's setup (its Python, its script) is missing."""
    for path in paths:
        if not os.path.exists(path):
            sys.exit(f"{path} not found: set up the peer as benchmarks.peer's docstring says.")


def peer_tokens_per_s(python, script, d_model, layers, heads, length, batch, pe, steps) -> float:
    cmd = [python, script, f"--dim={d_model}", f"--depth={layers}", f"--heads={heads}", f"--seq={length}"]
    cmd += [f"--batch={batch}", f"--pe={pe}", f"--vocab={VOCAB}", f"--steps={steps}"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["tokens_per_s"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--peer_python", default=".venv-peer/bin/python")
    p.add_argument("--peer_script", default="../shared/bench/peer_xtransformers.py")
    p.add_argument("--encodings", default="nope,alibi,rope")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=10, help="timed steps per round, each side")
    args = p.parse_args(argv)
    require_peer(args.peer_python, args.peer_script)

    print(
        f"Training step, float32, both sides on this machine's CPU; {args.rounds} interleaved rounds of "
        f"{args.steps} steps each.\n"
    )
    print(
        "| d_model | layers | heads | length | batch | encoding | this project tokens/s | x-transformers tokens/s | ratio |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for d_model, layers, heads, length, batch in SHAPES:
        model = peer_shape(d_model, layers, heads)
        for pe in args.encodings.split(","):
            ours = TimedStep(pe, "small", length, batch, "float32", model=model)
            ours_tps, peer_tps = [], []
            for _ in range(args.rounds):
                seconds = statistics.median(ours() for _ in range(args.steps))
                ours_tps.append(batch * length / seconds)
                peer_tps.append(
                    peer_tokens_per_s(
                        args.peer_python, args.peer_script, d_model, layers, heads, length, batch, pe, args.steps
                    )  # fmt: skip
                )
            ratio = statistics.median(a / b for a, b in zip(ours_tps, peer_tps))
            print(f"| {d_model} | {layers} | {heads} | {length} | {batch} | {pe} | {statistics.median(ours_tps):,.0f} "
                  f"| {statistics.median(peer_tps):,.0f} | {ratio:.2f}x |", flush=True)  # fmt: skip
            del ours


if __name__ == "__main__":
    main()
