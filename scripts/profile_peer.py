"""Where the peer's (x-transformers, PyTorch, CPU) training step spends its time: the peer
script of ``benchmarks.peer`` run under ``torch.profiler``, each PyTorch op's own time
put in the categories of ``benchmarks.profile``, per step.

Run it with the peer's Python (PyTorch is never a dependency of this project), from the
repository root, with the peer script's own arguments after its path:

    .venv-peer/bin/python scripts/profile_peer.py ../shared/bench/peer_xtransformers.py \\
        --dim 256 --depth 4 --heads 4 --seq 256 --batch 8 --pe nope --vocab 259 --steps 10

and the same shape on this project's side:

    python -m benchmarks.profile --d_model=256 --layers=4 --heads=4 --train_len=256

PyTorch runs one op at a time, each on its intra-op threads, so the ops' own times add up
to the wall time (less Python's); the warm-up steps are profiled too and the per-step
figure divides by every step run.
"""

import argparse
import collections
import re
import runpy
import sys

from torch.profiler import ProfilerActivity, profile

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


def main():
    script, *args = sys.argv[1:]
    counts = argparse.ArgumentParser(add_help=False)  # the peer script's own defaults
    counts.add_argument("--steps", type=int, default=20)
    counts.add_argument("--warmup", type=int, default=3)
    known, _ = counts.parse_known_args(args)
    steps = known.steps + known.warmup  # the warm-up steps are profiled too
    sys.argv = [script, *args]
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        runpy.run_path(script, run_name="__main__")
    by_category = collections.Counter()
    for event in prof.key_averages():
        if not event.key.startswith("aten::"):
            continue  # autograd's and the optimizer's wrappers: their time is in the aten ops they call
        category = next((name for name, pattern in CATEGORIES if re.search(pattern, event.key)), "other")
        by_category[category] += event.self_cpu_time_total / 1e3 / steps  # ms per step
    total = sum(by_category.values())
    print(f"\nPeer step profile: {' '.join(args)}; aten ops' own time {total:.0f} ms/step over {steps} steps.\n")
    print("| category | ms/step | share of ops' time |")
    print("|---|---|---|")
    for category, ms in by_category.most_common():
        print(f"| {category} | {ms:.1f} | {ms / total:.0%} |")
    print("\nThe slowest aten ops:\n")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
