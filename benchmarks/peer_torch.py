"""The peer's side of the peer comparison: x-transformers' decoder (PyTorch, CPU) built to
this project's model shape, and its training step timed.

Run with the peer's Python (set up as ``benchmarks.peer_protocol.SETUP`` says), from the
repository root:

    .venv-peer/bin/python -m benchmarks.peer_torch --d_model=512 --layers=6 --heads=8 --length=512 --batch=8 --pe=alibi

prints one JSON line: the median ms per step (forward, backward, AdamW) over ``--steps``
timed steps after ``--warmup`` untimed ones, tokens/s and the parameter count.
``benchmarks.peer`` and ``benchmarks.peer_gap`` run it beside this project's step. The model
(``build_model``): x-transformers' ``TransformerWrapper`` around a ``Decoder``, the same
architecture family as this project's: pre-norm, GELU feed-forward of 4 x d_model, heads of
``d_model / heads`` dimensions, untied embeddings, float32; it differs in its LayerNorm
(RMSNorm here) and its optimizer's defaults (AdamW, no clipping).
"""

import argparse
import json

import torch
from x_transformers import Decoder, TransformerWrapper

from benchmarks.peer_protocol import PEER_ENCODINGS, VOCAB, median_seconds


def build_model(d_model: int, layers: int, heads: int, length: int, pe: str = "nope", vocab: int = VOCAB):
    """x-transformers' decoder-only LM at this project's shape, initialised from seed 0.

    Raises ``ValueError`` for an encoding the peer does not have (``PEER_ENCODINGS``) or a
    ``d_model`` that ``heads`` does not divide."""
    if pe not in PEER_ENCODINGS:
        raise ValueError(f"The peer has no encoding {pe!r}; choose one of {', '.join(PEER_ENCODINGS)}.")
    if d_model % heads:
        raise ValueError(f"d_model {d_model} is not a multiple of heads {heads}.")
    torch.manual_seed(0)
    decoder = Decoder(
        dim=d_model, depth=layers, heads=heads, attn_dim_head=d_model // heads, ff_mult=4, **PEER_ENCODINGS[pe]
    )
    return TransformerWrapper(
        num_tokens=vocab, max_seq_len=length, use_abs_pos_emb=pe == "learned", attn_layers=decoder
    )


class TrainingStep:
    """A model's training step on a fixed random batch ``[batch, length + 1]`` of token ids
    (seed 0), in its parts: ``loss()`` (the forward, with autograd recording, as inside a
    step), ``forward_backward()``, and the call itself (with the AdamW update)."""

    def __init__(self, model, batch: int, length: int):
        self.model, self.vocab = model, model.num_tokens
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)
        self.tokens_Bx1T = torch.randint(0, self.vocab, (batch, length + 1), generator=torch.Generator().manual_seed(0))

    def loss(self):
        logits_BxTxV = self.model(self.tokens_Bx1T[:, :-1])
        targets = self.tokens_Bx1T[:, 1:].reshape(-1)
        return torch.nn.functional.cross_entropy(logits_BxTxV.reshape(-1, self.vocab), targets)

    def forward_backward(self):
        self.optimizer.zero_grad()
        self.loss().backward()

    def __call__(self):
        self.forward_backward()
        self.optimizer.step()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name, default in dict(d_model=256, layers=4, heads=4, length=256, batch=8, vocab=VOCAB, steps=20).items():
        p.add_argument(f"--{name}", type=int, default=default)
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--pe", default="nope", choices=sorted(PEER_ENCODINGS))
    args = p.parse_args(argv)
    if args.d_model % args.heads:
        p.error(f"--d_model={args.d_model} is not a multiple of --heads={args.heads}.")
    model = build_model(args.d_model, args.layers, args.heads, args.length, args.pe, args.vocab)
    step = TrainingStep(model, args.batch, args.length)
    seconds = median_seconds(step, args.steps, args.warmup)
    shape = {k: getattr(args, k) for k in ("pe", "d_model", "layers", "heads", "length", "batch")}
    print(
        json.dumps(
            dict(
                peer="x-transformers",
                torch=torch.__version__,
                threads=torch.get_num_threads(),
                **shape,
                params=sum(p.numel() for p in model.parameters()),
                ms_per_step=round(seconds * 1e3, 1),
                tokens_per_s=round(args.batch * args.length / seconds),
            )
        )
    )


if __name__ == "__main__":
    main()
