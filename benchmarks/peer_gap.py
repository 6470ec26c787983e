"""Where the training step's time differs from the peer's (x-transformers, PyTorch, CPU) on
the same shape: the step in parts, and the step's matmuls alone.

From the repository root, with the peer set up as ``benchmarks.peer`` says:

    python -m benchmarks.peer_gap                # --peer_python=.venv-peer/bin/python by default

Each side runs in a process of its own (``--side=jax`` with this Python, ``--side=torch``
with the peer's: this module imports neither framework at the top), alternately,
``--rounds`` times per shape; every time is the median of ``--steps`` calls after three
warm-up calls. Two tables:

* **The step in parts**: the loss alone (forward), its value and gradient (forward and
  backward), and the whole training step (with AdamW), on the models of
  ``benchmarks.peer`` (the peer's built by ``benchmarks.peer_torch.build_model``); nope,
  float32, a fixed random batch. On the PyTorch side the forward runs with autograd
  recording, as it does inside a step.
* **The matmuls alone**, in four kinds: ``forward`` (the projections: ``q``, ``k``, ``v``,
  ``out``, the MLP's two, the logits; ``[tokens, in] x [in, out]``), ``input gradient``
  (``g [tokens, out] x kernel^T``), ``weight gradient`` (``x^T [in, tokens] x g [tokens,
  out]``: the contraction runs over the leading axis of both) and ``attention`` (``Q K^T``,
  ``P V`` and their four gradients over the full ``T x T`` grid, batched over batch x
  heads; the project's row tiles do less, here both sides do the same work). XLA runs each
  kind as one jitted program with this project's compiler options (``fire.xla``) and may
  overlap independent dots, as in the step; PyTorch runs them one after another (``bmm``).
  A fifth row times one layer's ``Q K^T`` alone, and a column times XLA's side again pinned
  to one core (``--cores=1``): what each kind gains from the second core.
"""

import argparse
import json
import os
import statistics
import sys

from benchmarks.peer_protocol import PEER_PYTHON, SHAPES, VOCAB, median_seconds, require_peer, run_side

KINDS = ("forward", "input gradient", "weight gradient", "attention", "one attention dot")
PARTS = ("forward", "forward and backward", "step")
MODULE = "benchmarks.peer_gap"  # each side runs as python -m MODULE


def step_matmuls(d_model: int, layers: int, heads: int, length: int, batch: int) -> dict:
    """``{kind: [(batch, M, K, N, transpose_a, transpose_b), ...]}``: the matmuls of one
    training step, ``C[M, N] = op(A) op(B)`` with ``A`` stored ``[K, M]`` when transposed and
    ``B`` stored ``[N, K]`` when transposed."""
    tokens, head_dim, groups, T = batch * length, d_model // heads, batch * heads, length
    projections = [(d_model, d_model)] * 4 + [(d_model, 4 * d_model), (4 * d_model, d_model)]
    projections = projections * layers + [(d_model, VOCAB)]
    return {
        "forward": [(1, tokens, i, o, False, False) for i, o in projections],
        "input gradient": [(1, tokens, o, i, False, True) for i, o in projections],
        "weight gradient": [(1, i, tokens, o, True, False) for i, o in projections],
        # S = Q K^T, O = P V; dP = dO V^T, dV = P^T dO, dQ = dS K, dK = dS^T Q.
        "attention": [
            (groups, T, head_dim, T, False, True),
            (groups, T, T, head_dim, False, False),
            (groups, T, head_dim, T, False, True),
            (groups, T, T, head_dim, True, False),
            (groups, T, T, head_dim, False, False),
            (groups, T, T, head_dim, True, False),
        ]
        * layers,
        "one attention dot": [(groups, T, head_dim, T, False, True)],  # one layer's Q K^T
    }


def _operand_shapes(b, m, k, n, transpose_a, transpose_b):
    return ((b, k, m) if transpose_a else (b, m, k)), ((b, n, k) if transpose_b else (b, k, n))


def jax_side(shape, steps: int, with_parts: bool = True) -> dict:
    """``{"parts": {part: seconds}, "matmuls": {kind: seconds}}`` for this project (``parts``
    empty without ``with_parts``)."""
    import jax
    import jax.numpy as jnp

    from benchmarks.train import TimedStep, peer_shape
    from fire import xla
    from fire.model.losses import token_nll

    matmuls = {}
    equations = {(False, False): "bmk,bkn->bmn", (False, True): "bmk,bnk->bmn", (True, False): "bkm,bkn->bmn"}
    for kind, mms in step_matmuls(*shape).items():
        operands = [tuple(jnp.ones(s, jnp.float32) for s in _operand_shapes(*mm)) for mm in mms]
        program = xla.jit(lambda ops, mms=mms: [jnp.einsum(equations[mm[4:]], a, b) for mm, (a, b) in zip(mms, ops)])
        matmuls[kind] = median_seconds(lambda: jax.block_until_ready(program(operands)), steps)
    if not with_parts:
        return {"parts": {}, "matmuls": matmuls}

    d_model, layers, heads, length, batch = shape
    step = TimedStep("nope", "small", length, batch, "float32", model=peer_shape(d_model, layers, heads))
    inputs, targets = step.tokens["inputs"], step.tokens["targets"]

    def loss(params):
        return token_nll(step.run.model.apply({"params": params}, inputs), targets).mean()

    forward, forward_backward = xla.jit(loss), xla.jit(jax.value_and_grad(loss))
    parts = {
        "forward": median_seconds(lambda: jax.block_until_ready(forward(step.state["params"])), steps),
        "forward and backward": median_seconds(
            lambda: jax.block_until_ready(forward_backward(step.state["params"])), steps
        ),
        "step": median_seconds(step, steps),
    }
    return {"parts": parts, "matmuls": matmuls}


def torch_side(shape, steps: int) -> dict:
    """As :func:`jax_side`, for the peer's model (``benchmarks.peer_torch.build_model``)."""
    import torch

    from benchmarks.peer_torch import TrainingStep, build_model

    d_model, layers, heads, length, batch = shape
    step = TrainingStep(build_model(d_model, layers, heads, length, "nope"), batch, length)
    parts = dict(zip(PARTS, (median_seconds(call, steps) for call in (step.loss, step.forward_backward, step))))
    matmuls = {}
    with torch.no_grad():
        for kind, mms in step_matmuls(*shape).items():
            operands = [tuple(torch.ones(s) for s in _operand_shapes(*mm)) for mm in mms]

            def run(mms=mms, operands=operands):
                for (_, _, _, _, transpose_a, transpose_b), (a, b) in zip(mms, operands):
                    torch.bmm(a.transpose(1, 2) if transpose_a else a, b.transpose(1, 2) if transpose_b else b)

            matmuls[kind] = median_seconds(run, steps)
    return {"parts": parts, "matmuls": matmuls}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--peer_python", default=PEER_PYTHON)
    p.add_argument(
        "--d_models", default="256,512", help="the shapes of benchmarks.peer_protocol.SHAPES to run, by d_model"
    )
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--side", choices=("jax", "torch"), help="time one side in this process; print one JSON line")
    p.add_argument("--shape", help="with --side: d_model,layers,heads,length,batch")
    p.add_argument(
        "--cores",
        type=int,
        help="with --side: pin the process to this many cores before the framework starts "
        "(on this project's side, the matmuls only)",
    )
    args = p.parse_args(argv)
    if args.side:
        if args.cores:
            os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[: args.cores]))
        shape = tuple(int(x) for x in args.shape.split(","))
        sides = {
            "jax": lambda: jax_side(shape, args.steps, with_parts=not args.cores),
            "torch": lambda: torch_side(shape, args.steps),
        }
        print(json.dumps(sides[args.side]()))
        return

    require_peer(args.peer_python)
    shapes = [s for s in SHAPES if str(s[0]) in args.d_models.split(",")]
    if not shapes:
        p.error(
            f"--d_models={args.d_models} names none of benchmarks.peer_protocol.SHAPES (d_model {[s[0] for s in SHAPES]})."
        )
    results = []
    for shape in shapes:
        runs = {"jax": [], "torch": [], "jax, one core": []}
        for _ in range(args.rounds):
            for name, python, side, cores in (
                ("jax", sys.executable, "jax", []),
                ("torch", args.peer_python, "torch", []),
                ("jax, one core", sys.executable, "jax", ["--cores=1"]),
            ):
                flags = [f"--side={side}", f"--shape={','.join(map(str, shape))}", *cores, f"--steps={args.steps}"]
                runs[name].append(run_side(python, MODULE, *flags))
        results.append((shape, runs))

    def ratio(runs, table, key):  # per round, PyTorch's time / this project's: above 1, this project is faster
        return statistics.median(t[table][key] / j[table][key] for j, t in zip(runs["jax"], runs["torch"]))

    def median(runs, side, table, key):
        return statistics.median(r[table][key] for r in runs[side])

    print(
        f"Float32, this machine's CPU, each side in its own process, {args.rounds} alternating rounds, median of "
        f"{args.steps} calls; ratio = PyTorch's time / this project's (above 1: this project faster).\n"
    )
    print(
        "The step in parts (nope). This project's step also clips the gradient's norm and computes its metrics; "
        "its forward is the loss alone, PyTorch's records autograd as inside a step.\n"
    )
    print("| d_model | layers | heads | length | batch | part | this project ms | x-transformers ms | ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    for shape, runs in results:
        for part in PARTS:
            print(f"| {' | '.join(map(str, shape))} | {part} | {median(runs, 'jax', 'parts', part) * 1e3:.0f} "
                  f"| {median(runs, 'torch', 'parts', part) * 1e3:.0f} | {ratio(runs, 'parts', part):.2f}x |")  # fmt: skip
    print("\nThe step's matmuls alone (XLA: one jit per kind; PyTorch: bmm), GFLOP/s:\n")
    print("| d_model | layers | heads | length | batch | kind | GFLOP | XLA | XLA on one core | PyTorch | ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for shape, runs in results:
        matmuls = step_matmuls(*shape)
        for kind in KINDS:
            gflop = sum(2 * b * m * k * n for b, m, k, n, _, _ in matmuls[kind]) / 1e9
            print(f"| {' | '.join(map(str, shape))} | {kind} | {gflop:.1f} "
                  f"| {gflop / median(runs, 'jax', 'matmuls', kind):.0f} "
                  f"| {gflop / median(runs, 'jax, one core', 'matmuls', kind):.0f} "
                  f"| {gflop / median(runs, 'torch', 'matmuls', kind):.0f} | {ratio(runs, 'matmuls', kind):.2f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
