"""Forward-pass benchmark: time and peak memory by sequence length, for each model size,
attention path (dense / blockwise) and position encoding.

Commands (from the repository root):

    python -m benchmarks.forward --quick        # ~1 minute smoke test (tiny, 2 encodings)
    python -m benchmarks.forward                # full default sweep (~70 min on one core)
    nohup taskset -c 1 python -m benchmarks.forward --output forward.md > forward.log 2>&1 &
    python -m benchmarks.forward --sizes tiny --encodings fire,rope --impls blockwise \\
        --lengths 2048,32768 --repeats 5 --block_size 1024

Models are ``ModelConfig.from_size(size, vocab_size=259, train_len=512, pe=NAME)``, float32,
run as ``model.apply(params, tokens_BxT, impl=...)``. Default lengths are 512, 2048 and 8192,
plus 32768 for ``tiny``; dense cells whose ``BxHxTxT`` float32 logits alone would exceed
``--mem_limit_gib`` are not run. Every measurement runs in a fresh subprocess (``--_cell``,
internal) so that peak-memory figures never mix; subprocesses inherit the CPU affinity, so
``taskset`` bounds the whole sweep. ``--output PATH`` also writes the markdown to PATH and
every measurement to PATH with a ``.json`` suffix.

Before the sweep, the script checks that FIRE's bias closure is evaluated once per layer
per forward (once per forward for ``fire_s``), never once per example, and exits 1 if not.
"""

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import time

from fire.utils import GiB, MiB, ceil_div, format_bytes, peak_rss_bytes, reset_peak_rss

VOCAB = 259
TRAIN_LEN = 512
DEFAULT_LENGTHS = {"tiny": (512, 2048, 8192, 32768)}  # other sizes: 512, 2048, 8192
_RESULT_TAG = "FORWARD_BENCH_RESULT "  # marks the worker's JSON line on its stdout
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

QUICK = dict(
    sizes="tiny",
    encodings="fire,learned",
    impls="dense,blockwise",
    lengths="256,1024",
    repeats=2,
    budget_s=5.0,
    block_size=256,
)
DEFAULTS = dict(
    sizes="tiny,small", encodings="all", impls="dense,blockwise", lengths=None, repeats=3, budget_s=60.0, block_size=512
)


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--sizes", help=f"comma list of model sizes (default {DEFAULTS['sizes']})")
    p.add_argument("--encodings", help="comma list of fire.encodings.NAMES, or 'all' (default)")
    p.add_argument("--impls", help="comma list of attention paths (default dense,blockwise)")
    p.add_argument(
        "--lengths",
        help="comma list of sequence lengths for every size and path (default 512,2048,8192, plus 32768 for tiny)",
    )
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--repeats", type=int, help="timed runs per cell after one warm-up (default 3)")
    p.add_argument(
        "--budget_s",
        type=float,
        help="fewer timed runs when they would exceed this many seconds (default 60; min 1 run)",
    )
    p.add_argument("--block_size", type=int, help="blockwise attention tile (default 512)")
    p.add_argument(
        "--mem_limit_gib",
        type=float,
        default=8.0,
        help="do not run a cell whose memory estimate exceeds this: for dense the "
        "BxHxTxT f32 logits before compiling, then for every cell XLA's plan",
    )
    p.add_argument("--cell_timeout", type=float, default=3600.0, help="seconds per subprocess")
    p.add_argument("--output", help="also write the markdown here and the JSON next to it (.json)")
    p.add_argument("--quick", action="store_true", help="~1 minute smoke version: " + json.dumps(QUICK))
    p.add_argument("--_cell", help=argparse.SUPPRESS)  # internal: one measurement, as JSON
    args = p.parse_args(argv)
    # --quick changes the defaults only; explicit flags still win.
    for key, value in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def fmt_bytes(n):
    return format_bytes(n, missing="")


# ----------------------------------------------------------------------------- worker side


def _rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _reset_peak_rss():
    """Makes ru_maxrss start again from the current RSS, so that the compile's peak does not
    count as the run's. Returns whether the kernel honoured it."""
    return reset_peak_rss() and peak_rss_bytes() <= _rss_bytes() + 16 * MiB


def measure(cell):
    """One (size, pe, impl, T) measurement; runs in its own process."""
    import jax
    import jax.numpy as jnp

    from fire import xla
    from fire.encodings import LengthError
    from fire.model import ModelConfig, Transformer

    cfg = ModelConfig.from_size(
        cell["size"], vocab_size=VOCAB, train_len=TRAIN_LEN, pe=cell["pe"], block_size=cell["block_size"]
    )
    model = Transformer(cfg)
    B, T = cell["batch"], cell["T"]
    # Parameter shapes do not depend on T (learned's table is train_len long): init short.
    params = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, min(T, 16)), jnp.int32))
    tokens_BxT = jax.random.randint(jax.random.PRNGKey(1), (B, T), 0, VOCAB, jnp.int32)

    start = time.perf_counter()
    try:
        compiled = xla.jit(functools.partial(model.apply, impl=cell["impl"])).lower(params, tokens_BxT).compile()
    except LengthError:
        return {"status": "n/a", "note": f"n/a (table {cfg.build_encoding().table_len})"}
    result = {"status": "ok", "compile_s": time.perf_counter() - start}
    mem = compiled.memory_analysis()
    result["xla"] = {k: getattr(mem, f"{k}_size_in_bytes") for k in ("temp", "argument", "output", "alias")}
    result["xla_bytes"] = sum(result["xla"][k] for k in ("temp", "argument", "output"))
    if result["xla_bytes"] > cell["mem_limit_gib"] * GiB:
        return {**result, "status": "skipped", "note": f"skipped (XLA est. {fmt_bytes(result['xla_bytes'])})"}

    # Baseline: interpreter, JAX runtime, executable, params and tokens all resident.
    jax.block_until_ready((params, tokens_BxT))
    result["peak_reset"] = _reset_peak_rss()
    baseline = _rss_bytes()

    start = time.perf_counter()
    jax.block_until_ready(compiled(params, tokens_BxT))  # warm-up: first-touch page faults
    result["warmup_s"] = time.perf_counter() - start
    # A tiny forward at 32K takes tens of seconds on a CPU: fit the timed runs in the budget.
    n_runs = max(1, min(cell["repeats"], int(cell["budget_s"] / result["warmup_s"])))
    times, cpu_start = [], time.process_time()
    for _ in range(n_runs):
        start = time.perf_counter()
        jax.block_until_ready(compiled(params, tokens_BxT))  # no reference kept: one output alive
        times.append(time.perf_counter() - start)
    result["cpu_per_wall"] = (time.process_time() - cpu_start) / sum(times)
    peak = peak_rss_bytes()
    result.update(
        times_s=times,
        forward_s=statistics.median(times),
        tokens_per_s=B * T / statistics.median(times),
        baseline_rss=baseline,
        peak_rss=peak,
        peak_minus_baseline=peak - baseline,
    )
    return result


# ----------------------------------------------------------------------------- parent side


def bias_call_check(sizes, batch=4, T=200):
    """Counts evaluations of FIRE's bias closure while tracing one forward with batch 4.

    The dense path must evaluate it once per layer (``fire``) or once per forward
    (``fire_s``), one call per causal row tile, with position ids of batch 1 so that the
    bias is never per example. The blockwise path traces it once per layer inside its scan
    (run per tile, on the tiles of rows past the threshold), one call per tile, also batch 1.
    Tracing only (``jax.eval_shape``): nothing is computed.
    """
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    from fire.encodings.fire import FIRE
    from fire.model import ModelConfig, Transformer, position_bias

    rows = []
    for size in sizes:
        for pe in ("fire", "fire_s"):
            for impl in ("dense", "blockwise"):
                cfg = ModelConfig.from_size(size, vocab_size=VOCAB, train_len=TRAIN_LEN, pe=pe, block_size=T // 2)
                model = Transformer(cfg)
                tokens_BxT = jax.ShapeDtypeStruct((batch, T), jnp.int32)
                params = jax.eval_shape(model.init, jax.random.PRNGKey(0), tokens_BxT)
                q_pos_shapes = []

                def count_calls(next_fun, args, kwargs, context):
                    bias = next_fun(*args, **kwargs)
                    if context.method_name != "bias_fn" or not isinstance(context.module, FIRE) or bias is None:
                        return bias

                    def counted(q_pos, k_pos):
                        q_pos_shapes.append(tuple(q_pos.shape))
                        return bias(q_pos, k_pos)

                    return counted

                with nn.intercept_methods(count_calls):
                    jax.eval_shape(functools.partial(model.apply, impl=impl), params, tokens_BxT)
                if impl == "dense":
                    row_tiles = ceil_div(T, position_bias.causal_bias_tile(T))
                else:
                    row_tiles = 1
                expected = row_tiles * (1 if (pe == "fire_s" and impl == "dense") else cfg.num_layers)
                ok = len(q_pos_shapes) == expected and all(s[0] == 1 for s in q_pos_shapes)
                rows.append(
                    dict(
                        size=size,
                        pe=pe,
                        impl=impl,
                        batch=batch,
                        layers=cfg.num_layers,
                        calls=len(q_pos_shapes),
                        expected=expected,
                        q_pos_shapes=sorted(set(q_pos_shapes)),
                        ok=ok,
                    )
                )
    return rows


def plan(args):
    from fire.encodings import NAMES
    from fire.model import SIZES, ModelConfig

    sizes = args.sizes.split(",")
    pes = list(NAMES) if args.encodings == "all" else args.encodings.split(",")
    impls = args.impls.split(",")
    for given, valid, what in (
        (sizes, SIZES, "size"),
        (pes, NAMES, "encoding"),
        (impls, ("dense", "blockwise"), "impl"),
    ):
        bad = [x for x in given if x not in valid]
        if bad:
            raise SystemExit(f"Unknown {what}(s) {', '.join(bad)}; valid: {', '.join(valid)}.")
    cells = []
    for size in sizes:
        lengths = (
            [int(x) for x in args.lengths.split(",")] if args.lengths else DEFAULT_LENGTHS.get(size, (512, 2048, 8192))
        )
        num_heads = SIZES[size][2]
        for pe in pes:
            enc = ModelConfig.from_size(size, vocab_size=VOCAB, train_len=TRAIN_LEN, pe=pe).build_encoding()
            table_len = getattr(enc, "table_len", float("inf"))
            for impl in impls:
                for T in lengths:
                    cell = dict(
                        size=size,
                        pe=pe,
                        impl=impl,
                        T=T,
                        batch=args.batch,
                        block_size=args.block_size,
                        repeats=args.repeats,
                        budget_s=args.budget_s,
                        mem_limit_gib=args.mem_limit_gib,
                    )
                    # The dense path holds at least the f32 logits BxHxTxT: skip without compiling
                    # (but call learned's cells past its table n/a, as its runs would).
                    logits_bytes = args.batch * num_heads * T * T * 4
                    if impl == "dense" and logits_bytes > args.mem_limit_gib * GiB:
                        cell["result"] = (
                            {"status": "n/a", "note": f"n/a (table {table_len})"}
                            if T > table_len
                            else {"status": "skipped", "note": f"skipped (est. {fmt_bytes(logits_bytes)})"}
                        )
                    cells.append(cell)
    return cells


def run_cell(cell, timeout):
    """Runs :func:`measure` in a fresh interpreter and returns its result."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [_REPO_ROOT, env.get("PYTHONPATH")]))
    cmd = [sys.executable, "-m", "benchmarks.forward", "--_cell", json.dumps(cell)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"status": "failed", "note": f"failed (timeout {timeout:.0f} s)"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(_RESULT_TAG):
            return json.loads(line[len(_RESULT_TAG) :])
    tail = proc.stderr.strip().splitlines()[-15:]
    print("\n".join(tail), file=sys.stderr)  # e.g. a traceback, or nothing if OOM-killed
    return {"status": "failed", "note": f"failed (rc={proc.returncode})", "stderr_tail": tail}


def render(cells, bias_rows, args):
    import jax

    out = [
        "| size | pe | impl | T | compile | forward (median of n) | x nope | CPU / wall | tokens/s "
        "| XLA temp+arg+out | peak RSS − baseline | peak RSS |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    nope = {
        (c["size"], c["impl"], c["T"]): c["result"]["forward_s"]
        for c in cells
        if c["pe"] == "nope" and c["result"]["status"] == "ok"
    }
    for c in cells:
        r = c["result"]
        key = f"| {c['size']} | {c['pe']} | {c['impl']} | {c['T']} |"
        if r["status"] == "ok":
            mark = "" if r["peak_reset"] else " ‡"
            base = nope.get((c["size"], c["impl"], c["T"]))
            ratio = f"{r['forward_s'] / base:.2f}x" if base else ""
            out.append(
                f"{key} {r['compile_s']:.1f} s | {r['forward_s']:.3f} s (n={len(r['times_s'])}) | {ratio} "
                f"| {r.get('cpu_per_wall', float('nan')):.2f} | {r['tokens_per_s']:,.0f} | {fmt_bytes(r['xla_bytes'])} "
                f"| {fmt_bytes(r['peak_minus_baseline'])}{mark} | {fmt_bytes(r['peak_rss'])} |"
            )
        else:
            compile_s = f"{r['compile_s']:.1f} s" if "compile_s" in r else ""
            out.append(f"{key} {compile_s} | {r['note']} | | | | {fmt_bytes(r.get('xla_bytes'))} | | |")
    out += [
        "",
        f"Batch {args.batch}, float32, vocab {VOCAB}, train_len {TRAIN_LEN}, blockwise tile {args.block_size}; "
        f"{jax.default_backend()} (jax {jax.__version__}), {len(os.sched_getaffinity(0))} core(s) available to the process.",
        "- compile: tracing + XLA compilation of `jax.jit(apply).lower(params, tokens).compile()`, once; "
        "not included in forward.",
        "- forward: median wall time of n runs of the compiled executable (each ended by "
        "`block_until_ready`) after one untimed warm-up run; n < --repeats when the runs would exceed "
        "--budget_s. tokens/s = B·T / forward. x nope: forward over nope's at the same size, path and "
        "length, in this run. CPU / wall: process CPU time over wall time during the timed runs (2.0: "
        "both of two cores busy throughout).",
        "- XLA temp+arg+out: `compiled.memory_analysis()`, the buffer sizes XLA *planned* at compile time "
        "(temp: the scratch arena for intermediates, which holds the BxHxTxT logits on the dense path; "
        "argument: params + tokens; output: the BxTxV f32 logits). Not measured; excludes the runtime, the "
        "executable and any scratch the CPU kernels allocate outside XLA's buffer assignment.",
        "- peak RSS − baseline: measured, in a fresh subprocess per cell: ru_maxrss after the runs minus the "
        "RSS just before the warm-up run (compiled, with params and tokens resident), after malloc_trim and "
        "a reset of the kernel's RSS high-water mark (/proc/self/clear_refs) so the compile's own peak does "
        "not count (‡: the reset failed, the figure may include it). Host memory the forward touched: "
        "intermediates + outputs; it can under-count memory reused from earlier frees and includes "
        "allocator slack. peak RSS: the process's absolute ru_maxrss (interpreter, JAX, executable, "
        "params and the run). On an accelerator neither RSS figure measures device memory.",
        "- n/a (table N): `learned` raises LengthError beyond its table. skipped (est.): dense not run "
        "because its f32 logits B·H·T²·4 alone exceed --mem_limit_gib; skipped (XLA est.): XLA's plan "
        "exceeds it.",
    ]
    target = [
        c["result"]
        for c in cells
        if (c["size"], c["impl"], c["T"]) == ("tiny", "blockwise", 32768) and c["result"]["status"] == "ok"
    ]
    if target and args.batch == 1:
        worst = max(r["peak_rss"] for r in target)
        out.append(
            f"\nTarget: tiny blockwise T=32768 batch 1 peaks under 4 GiB: max absolute peak RSS over "
            f"{len(target)} encoding(s) = {fmt_bytes(worst)} -> {'OK' if worst < 4 * GiB else 'MISSED'}"
        )
    out += [
        "",
        "Bias calls per forward (FIRE's bias closure, counted while tracing one forward with batch "
        f"{bias_rows[0]['batch'] if bias_rows else '?'} and T=200; dense must be once per layer for fire, "
        "once for fire_s, one call per causal row tile; blockwise traces it once per layer, for the "
        "tiles of rows past FIRE's threshold, and runs it per tile):",
        "",
        "| size | pe | impl | layers | calls | expected | q_pos shapes | ok |",
        "|---|---|---|---:|---:|---:|---|---|",
    ]
    for b in bias_rows:
        shapes = ", ".join(str(list(s)) for s in b["q_pos_shapes"])
        out.append(
            f"| {b['size']} | {b['pe']} | {b['impl']} | {b['layers']} | {b['calls']} | {b['expected']} "
            f"| {shapes} | {'yes' if b['ok'] else 'NO'} |"
        )
    return "\n".join(out)


def main(argv=None):
    args = parse_args(argv)
    if args._cell:
        print(_RESULT_TAG + json.dumps(measure(json.loads(args._cell))), flush=True)
        return 0

    cells = plan(args)
    bias_rows = bias_call_check(args.sizes.split(","))
    for i, cell in enumerate(cells, 1):
        if "result" not in cell:
            cell["result"] = run_cell(cell, args.cell_timeout)
        r = cell["result"]
        summary = (
            f"{r['forward_s']:.3f} s, peak RSS - baseline {fmt_bytes(r['peak_minus_baseline'])}"
            if r["status"] == "ok"
            else r["note"]
        )
        print(
            f"[{i}/{len(cells)}] {cell['size']} {cell['pe']} {cell['impl']} T={cell['T']}: {summary}",
            file=sys.stderr,
            flush=True,
        )

    table = render(cells, bias_rows, args)
    print(table)
    if args.output:
        with open(args.output, "w") as f:
            f.write(table + "\n")
        with open(os.path.splitext(args.output)[0] + ".json", "w") as f:
            json.dump(
                {
                    "args": {k: v for k, v in vars(args).items() if k != "_cell"},
                    "cells": cells,
                    "bias_calls": bias_rows,
                },
                f,
                indent=1,
                default=str,
            )
    return 0 if all(b["ok"] for b in bias_rows) else 1


if __name__ == "__main__":
    sys.exit(main())
