"""The length sweep's figures.

* ``length_curve.png``: log-perplexity against evaluation length (log axis), one line per
  run, each run's training length marked.
* ``position_curve.png``: mean loss against position in the window (log-spaced bins), at
  each run's longest evaluated length: where extrapolation breaks shows as the curve
  turning up past the training length.
* ``fire_bias.png``: FIRE's learned bias against distance for a few query positions, one
  panel per layer and head (a query inside, at and past the training length).

Figures are built with matplotlib's object API (no pyplot, no global backend state).
"""

import os

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import ScalarFormatter


def write_plots(output_dir: str, rows: list, biases: dict) -> list:
    """Writes the figures that have data; returns their file names."""
    written = []
    scored = [r for r in rows if r.get("loss") is not None]
    if scored:
        _save(length_curve(rows), output_dir, "length_curve.png", written)
        _save(position_curve(scored), output_dir, "position_curve.png", written)
    if biases:
        _save(fire_bias(biases), output_dir, "fire_bias.png", written)
    return written


def _save(fig, output_dir, name, written):
    fig.savefig(os.path.join(output_dir, name), dpi=120, bbox_inches="tight")
    written.append(name)


def _by_run(rows):
    runs = {}
    for r in rows:
        runs.setdefault(r["label"], []).append(r)
    return runs


# Line styles after the first ten lines; never plain dotted, which marks training lengths.
_LINE_STYLES = ("-", "--", "-.", (0, (5, 1, 1, 1, 1, 1)))


def line_style(i: int) -> dict:
    """Colour and line style of the ``i``-th line of a plot: matplotlib's ten colours, then
    the same colours dashed, dash-dotted and dash-dot-dotted, so that 40 lines stay distinct."""
    return {"color": f"C{i % 10}", "linestyle": _LINE_STYLES[(i // 10) % len(_LINE_STYLES)]}


def _legend(ax):
    """Inside the axes for a few lines; beside them for a sweep's many runs."""
    if len(ax.get_legend_handles_labels()[1]) > 12:
        ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.02, 1.0))
    else:
        ax.legend(fontsize="small")


def length_curve(rows: list) -> Figure:
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    for i, (label, run_rows) in enumerate(_by_run(rows).items()):
        run_rows = sorted(run_rows, key=lambda r: r["eval_len"])
        x = [r["eval_len"] for r in run_rows]
        y = [np.nan if r["loss"] is None else r["loss"] for r in run_rows]  # n/a: a gap
        (line,) = ax.plot(x, y, marker="o", label=label, **line_style(i))
        train_len = run_rows[0]["train_len"]
        ax.axvline(train_len, color=line.get_color(), linestyle=":", alpha=0.6)
        at_train = [r["loss"] for r in run_rows if r["eval_len"] == train_len and r["loss"] is not None]
        if at_train:
            ax.plot([train_len], at_train, marker="*", markersize=14, color=line.get_color())
    ax.set_xscale("log", base=2)
    lengths = sorted({r["eval_len"] for r in rows})
    ax.set_xticks(lengths, [str(L) for L in lengths])
    ax.minorticks_off()
    ax.set_xlabel("evaluation length (tokens)")
    ax.set_ylabel("log-perplexity (nats per token)")
    ax.set_title(f"Length generalization ({rows[0]['protocol']}); star and dotted line: training length")
    ax.grid(alpha=0.3)
    _legend(ax)
    return fig


def merge_bins(curve: dict, min_tokens: int):
    """Joins neighbouring position bins until each holds ``min_tokens`` scored tokens: the
    first positions of few long windows are otherwise mostly noise."""
    edges, merged, nll, tokens = [0], [], 0.0, 0
    for end, n, loss in zip(curve["edges"][1:], curve["tokens"], curve["loss"]):
        nll, tokens = nll + (loss or 0.0) * n, tokens + n
        if tokens >= min_tokens or end == curve["edges"][-1]:
            edges.append(end)
            merged.append(nll / tokens if tokens else np.nan)
            nll, tokens = 0.0, 0
    return np.asarray(edges, float), np.asarray(merged)


def position_curve(rows: list, min_tokens: int = 1024) -> Figure:
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    for i, (label, run_rows) in enumerate(_by_run(rows).items()):
        row = max(run_rows, key=lambda r: r["eval_len"])
        curve = row.get("position_loss")
        if not curve:
            continue
        edges, loss = merge_bins(curve, min_tokens)
        centres = np.sqrt(np.maximum(edges[:-1], 0.5) * edges[1:])  # geometric, for the log axis
        (line,) = ax.plot(centres, loss, marker=".", label=f"{label} (window {row['eval_len']})", **line_style(i))
        ax.axvline(row["train_len"], color=line.get_color(), linestyle=":", alpha=0.6)
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.set_xlabel("position in the window (tokens)")
    ax.set_ylabel("mean loss (nats per token)")
    ax.set_title("Loss by position; dotted line: training length")
    ax.grid(alpha=0.3)
    _legend(ax)
    return fig


def fire_bias(biases: dict) -> Figure:
    """``biases``: ``{label: {'train_len', 'queries', 'curves': {layer: [Q, H, W]},
    'thresholds': {layer: L}}}``. The learned threshold L is a dashed line: query rows at or
    below it depend on the distance alone."""
    panels = [
        (label, layer, b["queries"], b.get("thresholds", {}).get(layer), curve)
        for label, b in biases.items()
        for layer, curve in b["curves"].items()
    ]
    heads = max(p[4].shape[1] for p in panels)
    fig = Figure(figsize=(3 * heads, 2.4 * len(panels)))
    axes = np.atleast_2d(fig.subplots(len(panels), heads, squeeze=False, sharex=True))
    for row, (label, layer, queries, threshold, curve) in enumerate(panels):
        for h in range(heads):
            ax = axes[row, h]
            for q, bias_W in zip(queries, curve[:, h]):
                ax.plot(np.arange(len(bias_W)), bias_W, label=f"i = {q}")
            if threshold is not None:
                ax.axvline(threshold, color="gray", linestyle="--", linewidth=1, label=f"L = {threshold:.0f}")
            ax.set_xscale("symlog", linthresh=1)
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.grid(alpha=0.3)
            named = "" if threshold is None else f" (L = {threshold:.0f})"
            ax.set_title(f"{label} {layer} head {h}{named}", fontsize="small")
            if h == 0:
                ax.set_ylabel("bias")
            if row == len(panels) - 1:
                ax.set_xlabel("distance i - j")
    axes[0, 0].legend(fontsize="x-small", title="query position", title_fontsize="x-small")
    fig.suptitle("FIRE's learned bias by distance; for query positions up to the learned threshold L (dashed) "
                 "it depends on distance only")  # fmt: skip
    fig.tight_layout()
    return fig
