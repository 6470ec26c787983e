"""Where the peer's (x-transformers, PyTorch, CPU) training step spends its time: the step of
``benchmarks.peer_torch`` run under ``torch.profiler``, each PyTorch op's own time put in the
categories of ``benchmarks.profile``, per step.

Run it with the peer's Python (set up as ``benchmarks.peer`` says), from the repository root:

    .venv-peer/bin/python -m benchmarks.profile_peer --d_model=256 --layers=4 --heads=4 --length=256 --steps=10

and the same shape on this project's side:

    python -m benchmarks.profile --d_model=256 --layers=4 --heads=4 --train_len=256

PyTorch runs one op at a time, each on its intra-op threads, so the ops' own times add up
to the wall time (less Python's); the warm-up steps are profiled too and the per-step
figure divides by every step run.
"""

import argparse
import collections
import re

from torch.profiler import ProfilerActivity, profile

from benchmarks.peer_protocol import PEER_ENCODINGS
from benchmarks.peer_torch import TrainingStep, build_model

CATEGORIES = (  # first match wins, on the aten op's name
    ("attention (softmax, mask)", r"scaled_dot_product|flash_attention|softmax|masked_fill"),
    ("matmul", r"^aten::(mm|addmm|bmm|matmul|linear|baddbmm)$"),
    (
        "layout (transposes, copies)",
        r"^aten::(copy_|clone|contiguous|transpose|permute|view|reshape|_unsafe_view|t|as_strided|empty_strided|expand|cat|stack)$",
    ),
    ("norm", r"layer_norm|rms_norm"),
    ("mlp activation", r"gelu"),
    ("loss", r"cross_entropy|log_softmax|nll_loss"),
    ("optimizer (AdamW)", r"_foreach_|adam|addcdiv|lerp|zero_"),
)


def categorize(aten_op: str) -> str:
    """An aten op's category (``CATEGORIES``, first match), or ``other``."""
    return next((name for name, pattern in CATEGORIES if re.search(pattern, aten_op)), "other")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name, default in dict(d_model=256, layers=4, heads=4, length=256, batch=8, steps=10, warmup=3).items():
        p.add_argument(f"--{name}", type=int, default=default)
    p.add_argument("--pe", default="nope", choices=sorted(PEER_ENCODINGS))
    args = p.parse_args(argv)
    if args.d_model % args.heads:
        p.error(f"--d_model={args.d_model} is not a multiple of --heads={args.heads}.")
    step = TrainingStep(
        build_model(args.d_model, args.layers, args.heads, args.length, args.pe), args.batch, args.length
    )
    steps = args.warmup + args.steps  # the warm-up steps are profiled too
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    by_category = collections.Counter()
    for event in prof.key_averages():
        if event.key.startswith("aten::"):  # autograd's and the optimizer's wrappers: their time is in the aten ops
            by_category[categorize(event.key)] += event.self_cpu_time_total / 1e3 / steps  # ms per step
    total = sum(by_category.values())
    shape = (
        f"d_model {args.d_model}, {args.layers} layers, {args.heads} heads, length {args.length}, batch {args.batch}"
    )
    print(f"\nPeer step profile: {shape}, {args.pe}; aten ops' own time {total:.0f} ms/step over {steps} steps.\n")
    print("| category | ms/step | share of ops' time |")
    print("|---|---|---|")
    for category, ms in by_category.most_common():
        print(f"| {category} | {ms:.1f} | {ms / total:.0%} |")
    print("\nThe slowest aten ops:\n")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
