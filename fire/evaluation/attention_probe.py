"""Where attention goes: the attention mass by distance of a trained run at each evaluation
length, per layer, averaged over heads and queries.

A flat perplexity past the training length can come from using the longer context or from
ignoring it; the mass a model puts on keys farther away than the training length tells the
two apart. For each length the probe runs the model on a few inputs (a language-modelling
run: the first windows of the validation stream; a task run: test examples of that length),
with the dense path's weights sown into ``fire.model.attention.ATTENTION_PROBE``, and
reduces each layer's ``T x T`` weights (summed over batch and heads) to:

* ``mass_by_distance``: for distance ``d = i - j``, the weight on it averaged over every
  head and query (queries nearer the start than ``d`` count with 0), so it sums to 1 over
  ``d``; reported in the log-spaced bins of ``fire.evaluation.scoring.position_bins``;
* ``beyond_share``: over the queries at positions ``>= train_len`` (those that can look
  farther than training ever did), the mean weight on keys at distance ``>= train_len``;
* ``mean_distance``: the mean distance attended, over all queries.

Outputs: ``attention.json`` (a row per run, length and layer), ``attention.md`` (the beyond
share by length, a table per layer and their mean) and ``attention_mass.png``.
"""

import functools
import json
import os
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

from fire import data as fire_data
from fire.config import task_of
from fire.data import Protocol
from fire.evaluation import report
from fire.evaluation.length_sweep import check_writable, parse_lengths
from fire.evaluation.plots import line_style
from fire.evaluation.runs import EvalError, TrainedRun, load_runs
from fire.evaluation.scoring import position_bins
from fire.evaluation.task_scoring import evaluation_examples
from fire.model import Transformer
from fire.model.attention import ATTENTION_PROBE
from fire.tasks.batches import example_tokens
from fire.workdir import write_atomic


@functools.lru_cache(maxsize=8)
def _probe_program(cfg):
    """The dense forward of a model config with its attention weights sown, jitted once."""
    model = Transformer(cfg)
    return jax.jit(lambda p, x: model.apply({"params": p}, x, impl="dense", mutable=[ATTENTION_PROBE])[1])


def layer_weights(run: TrainedRun, inputs_BxT: np.ndarray) -> dict:
    """``{layer: (weights_TxT, rows_per_query)}``: each layer's attention weights summed over
    the batch and heads, and how many (batch x heads) rows each query's weights add up to.
    Layers whose encoding shares one module name their blocks (``blocks_0``, ...)."""
    sown = jax.device_get(_probe_program(run.model_cfg)(run.params(), jnp.asarray(inputs_BxT, jnp.int32)))
    sown = sown[ATTENTION_PROBE]
    out = {}

    def walk(node, path):
        if "weights_TxT" in node:
            out[path.split("/")[0]] = (np.asarray(node["weights_TxT"][0], np.float64),
                                       float(node["rows_per_query"][0]))  # fmt: skip
            return
        for key, child in node.items():
            walk(child, f"{path}/{key}" if path else key)

    walk(sown, "")
    return out


def reduce(weights_TxT: np.ndarray, rows_T: np.ndarray, train_len: int) -> dict:
    """One layer's weights as the probe reports them (see the module docstring); ``rows_T``:
    how many (input x head) rows each query position's weights sum over (inputs of a task
    differ in length, so later positions may have fewer)."""
    T = weights_TxT.shape[0]
    i, j = np.indices((T, T))
    causal = j <= i
    mass_T = np.bincount((i - j)[causal], weights=weights_TxT[causal], minlength=T) / rows_T.sum()
    edges = position_bins(T)
    beyond = None
    if T > train_len:
        far = causal & (i - j >= train_len)
        beyond = float(weights_TxT[far].sum() / rows_T[train_len:].sum())
    return dict(
        beyond_share=beyond,
        mean_distance=float((mass_T * np.arange(T)).sum()),
        mass_by_distance={"edges": edges.tolist(), "mass": np.add.reduceat(mass_T, edges[:-1]).tolist()},
    )


def probe_inputs(run: TrainedRun, length: int, n_sequences: int) -> tuple:
    """``(inputs [groups of BxT], tokens per input, what they are)``: the first validation
    windows of a language-modelling run, or a task run's test examples at ``length`` (grouped
    by their token count, which varies with the example)."""
    task = task_of(run.config)
    if task is None:
        windows = fire_data.eval_windows(run.config.data, run.tokenizer, length, Protocol("stream"))
        return [windows.inputs[:n_sequences]], length, f"the first {n_sequences} validation windows"
    vocab = task.vocabulary
    by_length = {}
    for e in evaluation_examples(task, length, n_sequences, 0):
        row = example_tokens(vocab, e)
        by_length.setdefault(len(row), []).append(row)
    groups = [np.stack(rows) for _, rows in sorted(by_length.items())]
    return groups, max(by_length), f"{n_sequences} test examples (evaluation seed 0; prompt, answer and EOS)"


def probe(patterns, lengths, output_dir: str, n_sequences: int = 8, log: Callable = print) -> list:
    """Probes every run at every length (default: each run's training length times 1, 4 and
    16; a task run's in its unit, its longest training length times 1, 2 and 4) and writes
    ``output_dir``. Returns the rows.

    Raises:
      EvalError: bad input, before any compute (runs, lengths, the output folder).
    """
    runs = load_runs(patterns)
    lengths = parse_lengths(lengths) if lengths else None
    if n_sequences < 1:
        raise EvalError(f"--n_sequences must be at least 1, got {n_sequences}.")
    check_writable(output_dir)
    rows = []
    for run in runs:
        task = task_of(run.config)
        for L in lengths or _default_lengths(run):
            if task is not None:
                task.check_length(L)
            groups, n_tokens, what = probe_inputs(run, L, n_sequences)
            summed = {}
            for inputs in groups:  # a task's groups differ in length: pad each layer's weights to the longest
                for layer, (w, rows_per_query) in layer_weights(run, inputs).items():
                    T = w.shape[0]
                    total, rows_T = summed.setdefault(layer, (np.zeros((n_tokens, n_tokens)), np.zeros(n_tokens)))
                    total[:T, :T] += w
                    rows_T[:T] += rows_per_query
            for layer, (w, count) in sorted(summed.items()):
                row = dict(label=run.label, run=run.workdir, run_path=run.path, pe=run.config.pe, layer=layer,
                           eval_len=L, n_tokens=n_tokens, train_len=run.config.train_len, inputs=what,
                           task=task.name if task else None, **reduce(w, count, run.config.train_len))  # fmt: skip
                rows.append(row)
            share = [r["beyond_share"] for r in rows[-len(summed) :]]
            shown = "n/a" if share[0] is None else ", ".join(f"{s:.3f}" for s in share)
            log(
                f"{run.label} | length {L} ({n_tokens} tokens) | mass beyond {run.config.train_len} tokens by layer: {shown}"
            )
        run.release()
    write(output_dir, rows)
    log(f"Wrote attention.json, attention.md, attention_mass.png to {output_dir}")
    return rows


def _default_lengths(run: TrainedRun) -> list:
    if task_of(run.config) is None:
        return [run.config.train_len * k for k in (1, 4, 16)]
    return [run.config.task.max_len * k for k in (1, 2, 4)]


def write(output_dir: str, rows: list) -> None:
    json_rows = ",\n".join(json.dumps(report.finite({**r, "run_path": os.path.relpath(r["run_path"])})) for r in rows)
    write_atomic(os.path.join(output_dir, "attention.json"), f"[\n{json_rows}\n]\n")
    write_atomic(os.path.join(output_dir, "attention.md"), to_markdown(rows))
    report.save_figure(mass_figure(rows), os.path.join(output_dir, "attention_mass.png"))


def to_markdown(rows: list) -> str:
    """The beyond share by run (rows) and length (columns): a table per layer, then the mean."""
    lines = ["# Attention mass beyond the training length", "",
             "Cells: over the queries at positions >= the training length (in tokens), the mean attention weight on "
             "keys farther away than it, averaged over heads; n/a at lengths within training. Inputs: "
             f"{rows[0]['inputs']}.", ""]  # fmt: skip
    layers = list(dict.fromkeys(r["layer"] for r in rows))
    for layer in [*layers, "mean over layers"]:
        if layer == "mean over layers":
            cells = {}
            for r in rows:
                cells.setdefault((r["label"], r["eval_len"]), []).append(r["beyond_share"])
            table = [dict(label=k[0], eval_len=k[1], value=None if None in v else float(np.mean(v)))
                     for k, v in cells.items()]  # fmt: skip
        else:
            table = [dict(label=r["label"], eval_len=r["eval_len"], value=r["beyond_share"]) for r in rows
                     if r["layer"] == layer]  # fmt: skip
        lines += [f"## {layer}", "", *report._grid(table, lambda c: "n/a" if c["value"] is None else f"{c['value']:.3f}"),
                  ""]  # fmt: skip
    return "\n".join(lines)


def mass_figure(rows: list) -> Figure:
    """Attention mass against distance at each run's longest length: a panel per run, a line
    per layer; the training length dotted."""
    labels = list(dict.fromkeys(r["label"] for r in rows))
    fig = Figure(figsize=(6.5, 3.6 * len(labels)))
    axes = np.atleast_1d(fig.subplots(len(labels), 1, squeeze=False)[:, 0])
    for ax, label in zip(axes, labels):
        mine = [r for r in rows if r["label"] == label]
        longest = max(r["eval_len"] for r in mine)
        for i, r in enumerate(r for r in mine if r["eval_len"] == longest):
            edges = np.asarray(r["mass_by_distance"]["edges"], float)
            mass = np.asarray(r["mass_by_distance"]["mass"]) / np.diff(edges)  # per unit distance
            centres = np.sqrt(np.maximum(edges[:-1], 0.5) * edges[1:])
            ax.plot(centres, np.where(mass > 0, mass, np.nan), marker=".", label=r["layer"], **line_style(i))
        ax.axvline(mine[0]["train_len"], color="gray", linestyle=":")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("distance i - j (tokens)")
        ax.set_ylabel("attention weight per query")
        ax.set_title(f"{label} at length {longest}; dotted: training length (tokens)", fontsize="small")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    return fig
