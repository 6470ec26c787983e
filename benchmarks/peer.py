"""Peer comparison: this project's training step against x-transformers' (PyTorch, CPU) on
the same decoder shape, batch, length and encoding, interleaved in one run.

Setup of the peer, once, from the repository root (the ``peer`` extra of pyproject.toml in a
virtualenv of its own; PyTorch is never a requirement of the project):

    python3 -m venv .venv-peer && .venv-peer/bin/pip install torch==2.13.0 x-transformers==2.31.10

Then:

    python -m benchmarks.peer                  # --peer_python=.venv-peer/bin/python by default

Each round times ``--steps`` of this project's step (``benchmarks.train.TimedStep``:
forward, backward, AdamW, float32, dense attention) and then one run of the peer's side
(``benchmarks.peer_torch``: its own warm-up, then the median of its timed steps), for each
shape of ``benchmarks.peer_protocol.SHAPES`` and each encoding; the ratio is taken per round
and its median printed. Both models: pre-norm decoder, GELU feed-forward of 4 x d_model,
64-dimensional heads, untied embeddings, vocabulary 259 (the project's byte vocabulary; the
peer is given the same), float32. Differences left: the peer's LayerNorm against RMSNorm
here, and its optimizer's defaults (AdamW, no clipping).
"""

import argparse
import statistics

from benchmarks.peer_protocol import PEER_ENCODINGS, PEER_PYTHON, SHAPES, VOCAB, require_peer, run_side
from benchmarks.train import TimedStep, peer_shape


def peer_tokens_per_s(python, d_model, layers, heads, length, batch, pe, steps) -> float:
    """The peer's training tokens/s at this shape, from one run of ``benchmarks.peer_torch``."""
    shape = [f"--d_model={d_model}", f"--layers={layers}", f"--heads={heads}", f"--length={length}"]
    flags = [*shape, f"--batch={batch}", f"--pe={pe}", f"--vocab={VOCAB}", f"--steps={steps}"]
    return run_side(python, "benchmarks.peer_torch", *flags)["tokens_per_s"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--peer_python", default=PEER_PYTHON)
    p.add_argument(
        "--d_models", default="512,256", help="the shapes of benchmarks.peer_protocol.SHAPES to run, by d_model"
    )
    p.add_argument("--encodings", default="nope,alibi,rope")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=10, help="timed steps per round, each side")
    args = p.parse_args(argv)
    encodings = args.encodings.split(",")
    unknown = [pe for pe in encodings if pe not in PEER_ENCODINGS]
    if unknown:
        p.error(f"the peer has no encoding {', '.join(unknown)}; choose from {', '.join(PEER_ENCODINGS)}.")
    shapes = [s for s in SHAPES if str(s[0]) in args.d_models.split(",")]
    if not shapes:
        p.error(
            f"--d_models={args.d_models} names none of benchmarks.peer_protocol.SHAPES (d_model {[s[0] for s in SHAPES]})."
        )
    require_peer(args.peer_python)

    print(
        f"Training step, float32, both sides on this machine's CPU; {args.rounds} interleaved rounds of "
        f"{args.steps} steps each.\n"
    )
    print(
        "| d_model | layers | heads | length | batch | encoding | this project tokens/s | x-transformers tokens/s | ratio |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for d_model, layers, heads, length, batch in shapes:
        model = peer_shape(d_model, layers, heads)
        for pe in encodings:
            ours = TimedStep(pe, "small", length, batch, "float32", model=model)
            ours_tps, peer_tps = [], []
            for _ in range(args.rounds):
                seconds = statistics.median(ours() for _ in range(args.steps))
                ours_tps.append(batch * length / seconds)
                peer_tps.append(
                    peer_tokens_per_s(args.peer_python, d_model, layers, heads, length, batch, pe, args.steps)
                )
            ratio = statistics.median(a / b for a, b in zip(ours_tps, peer_tps))
            print(f"| {d_model} | {layers} | {heads} | {length} | {batch} | {pe} | {statistics.median(ours_tps):,.0f} "
                  f"| {statistics.median(peer_tps):,.0f} | {ratio:.2f}x |", flush=True)  # fmt: skip
            del ours


if __name__ == "__main__":
    main()
