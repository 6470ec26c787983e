"""Where a training step's time goes: the compiled step traced with ``jax.profiler``, each
executed XLA op (thunk) put in a category by what it computes, and each category's time
per step next to the matmul peak measured in the same run.

Commands (from the repository root):

    python -m benchmarks.profile                        # small, nope, length 512, batch 8
    python -m benchmarks.profile --size=tiny --encoding=fire --top=15
    python -m benchmarks.profile --d_model=256 --layers=4 --heads=4 --train_len=256  # a peer shape

(``scripts/profile_peer.py`` profiles x-transformers' step in the same categories.)

Categories, from each op's HLO name and the JAX source path it came from (``op_name``):
``matmul`` (dots, YNNPACK dot fusions), ``layout`` (transposes and copies), then by model
module: ``attention`` (softmax, mask and bias around the logits), ``norm``, ``mlp
activation``, ``embedding and logits``; ``loss`` (the log-softmax over the vocabulary,
forward and backward), ``optimizer`` (AdamW, clipping, the step's summaries), ``other`` (ops
with no source path). The
times are the sum of the ops' own durations in the trace, per step; XLA runs independent ops
on both cores at once, so the sum can exceed the wall time, which is reported beside it.
"""

import argparse
import collections
import glob
import gzip
import json
import os
import re
import statistics
import tempfile

import jax

from benchmarks.train import TimedStep, matmul_gflops, peer_shape
from fire.model import train_flops_per_token

_MATMUL = re.compile(r"^(ynn_fusion|dot|convolution|custom-call)")
_LAYOUT = re.compile(r"^(copy|transpose)|transpose_copy")
_MODEL_PARTS = (("/attention/", "attention"), ("norm", "norm"), ("/mlp/", "mlp activation"))


def op_names(hlo_text: str) -> dict:
    """``{instruction name: op_name}`` from optimized HLO text, for every top-level
    instruction (a fusion takes the ``op_name`` of its root, the instruction that names it)."""
    names, fusion_roots, computations = {}, {}, {}
    current = None
    for line in hlo_text.splitlines():
        header = re.match(r"^(?:ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$", line)
        if header and not line.startswith(" "):
            current = header.group(1)
            continue
        m = re.match(r"^\s+(ROOT\s+)?%?([\w.\-]+)\s*=", line)
        if not m:
            continue
        op = re.search(r'op_name="([^"]*)"', line)
        called = re.search(r"calls=%?([\w.\-]+)", line)
        names[m.group(2)] = op.group(1) if op else ""
        if called:
            fusion_roots[m.group(2)] = called.group(1)
        if m.group(1):
            computations[current] = op.group(1) if op else ""
    for name, computation in fusion_roots.items():
        if not names.get(name):
            names[name] = computations.get(computation, "")
    return names


def categorize(op: str, op_name: str) -> str:
    """An op's category from its HLO name (``op``) and its JAX source path (``op_name``):
    inside the model (``Transformer``) by module, the loss (differentiated, outside the
    model), and the optimizer (everything after the gradients: AdamW, clipping, summaries)."""
    if _MATMUL.search(op):
        return "matmul"
    if _LAYOUT.search(op):
        return "layout"
    if "Transformer" in op_name:
        return next((category for part, category in _MODEL_PARTS if part in op_name), "embedding and logits")
    if "jvp(" in op_name or "transpose(" in op_name:
        return "loss"
    return "optimizer" if op_name else "other"


def trace_steps(step: TimedStep, steps: int):
    """``(per-op total seconds, wall seconds per step)`` over ``steps`` traced steps."""
    with tempfile.TemporaryDirectory() as folder:
        walls = []
        with jax.profiler.trace(folder, create_perfetto_trace=True):
            for _ in range(steps):
                walls.append(step())
        (path,) = glob.glob(os.path.join(folder, "**", "perfetto_trace.json.gz"), recursive=True)
        with gzip.open(path) as f:
            trace = json.load(f)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    seconds = collections.Counter()
    for e in events:
        name = e.get("name", "")
        # Thunks carry the HLO instruction's name; the executor's own spans and Python's do not.
        if e.get("ph") == "X" and not name.startswith(("$", "Thunk", "Slinky", "PjRt")) and "::" not in name:
            seconds[name] += e.get("dur", 0) / 1e6
    return seconds, statistics.median(walls)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="small")
    p.add_argument("--encoding", default="nope")
    p.add_argument("--train_len", type=int, default=512)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=3, help="traced steps (after two untimed ones)")
    p.add_argument("--top", type=int, default=10, help="the slowest ops to list")
    p.add_argument("--d_model", type=int, help="with --layers and --heads: this shape instead of --size's, "
                   "d_ff 4 x d_model and no vocabulary padding, as benchmarks.peer builds it")  # fmt: skip
    p.add_argument("--layers", type=int)
    p.add_argument("--heads", type=int)
    args = p.parse_args(argv)
    shape = (args.d_model, args.layers, args.heads)
    if any(shape) and not all(shape):
        p.error("--d_model, --layers and --heads go together.")
    model = peer_shape(*shape) if all(shape) else None

    shape_name = f"d_model {args.d_model}, {args.layers} layers, {args.heads} heads" if model else args.size
    peak = matmul_gflops(args.size, args.train_len, args.batch, "float32", model=model)
    step = TimedStep(args.encoding, args.size, args.train_len, args.batch, "float32", model=model)
    step()
    compiled = step.run.train_step.lower(step.state, step.tokens).compile()
    names = op_names(compiled.as_text())
    seconds, wall = trace_steps(step, args.steps)
    per_step = {op: s / args.steps for op, s in seconds.items() if op in names}
    total = sum(per_step.values())
    by_category = collections.Counter()
    for op, s in per_step.items():
        by_category[categorize(op, names[op])] += s

    flops = train_flops_per_token(step.run.model_cfg, args.train_len) * args.batch * args.train_len
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    print(
        f"Training step profile: {shape_name}, {args.encoding}, length {args.train_len}, batch {args.batch}, "
        f"float32; wall {wall * 1e3:.0f} ms/step (median of {args.steps} traced); ops' own time "
        f"{total * 1e3:.0f} ms/step; measured matmul peak {peak:.0f} GFLOP/s. The step does "
        f"{flops / 1e9:.1f} GFLOP of model FLOPs ({flops / wall / 1e9 / peak:.0%} of the peak at this wall "
        f"time) and XLA counts {cost.get('flops', 0) / 1e9:.1f} GFLOP, "
        f"{cost.get('bytes accessed', 0) / 2**30:.2f} GiB accessed.\n"
    )
    print("| category | ms/step | share of ops' time |")
    print("|---|---|---|")
    for category, s in by_category.most_common():
        print(f"| {category} | {s * 1e3:.1f} | {s / total:.0%} |")
    matmul_s = by_category["matmul"]
    if matmul_s:
        print(f"\nInside the matmul ops: {flops / matmul_s / 1e9:.0f} GFLOP/s of model FLOPs "
              f"({flops / matmul_s / 1e9 / peak:.0%} of the measured peak).")  # fmt: skip
    print(f"\nThe {args.top} slowest ops:\n")
    print("| op | category | ms/step | source |")
    print("|---|---|---|---|")
    for op, s in sorted(per_step.items(), key=lambda kv: -kv[1])[: args.top]:
        print(f"| {op} | {categorize(op, names[op])} | {s * 1e3:.1f} | {names[op][-90:]} |")


if __name__ == "__main__":
    main()
