"""The length sweep's figures.

* ``length_curve.png``: log-perplexity against evaluation length (log axis), one line per
  run, each run's training length marked.
* ``position_curve.png``: mean loss against position in the window, one point per bin of
  the row's ``position_loss`` (``fire.evaluation.scoring.position_bins``: log-spaced), at
  each run's longest evaluated length: where extrapolation breaks shows as the curve
  turning up past the training length.
* ``fire_bias.png``: FIRE's learned bias against distance for a few query positions (inside,
  at and past the training length): a row of panels per run, a panel per head, the query
  positions as colours and the layers as dash patterns.

Figures are built with matplotlib's object API (no pyplot, no global backend state).
"""

import os

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import ScalarFormatter

from fire.evaluation import report


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
    report.save_figure(fig, os.path.join(output_dir, name))
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


def position_curve(rows: list) -> Figure:
    """Every bin of each run's ``position_loss`` at its longest length, at the bin's geometric
    centre (the axis is logarithmic); an empty bin is a gap. The first bins hold one position
    each, so they are as noisy as the windows are few."""
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    for i, (label, run_rows) in enumerate(_by_run(rows).items()):
        row = max(run_rows, key=lambda r: r["eval_len"])
        curve = row.get("position_loss")
        if not curve:
            continue
        edges = np.asarray(curve["edges"], float)
        loss = np.array([np.nan if v is None else v for v in curve["loss"]], float)
        centres = np.sqrt(np.maximum(edges[:-1], 0.5) * edges[1:])
        (line,) = ax.plot(centres, loss, marker=".", label=f"{label} (window {row['eval_len']})", **line_style(i))
        ax.axvline(row["train_len"], color=line.get_color(), linestyle=":", alpha=0.6)
    ax.set_xscale("log", base=2)
    longest = max((r["eval_len"] for r in rows), default=1)
    octaves = range(0, int(np.log2(longest)) + 1, 1 + int(np.log2(longest)) // 12)  # at most 12 ticks
    ax.set_xticks([2**k for k in octaves], [str(2**k) for k in octaves])  # position 0 sits left of 1
    ax.minorticks_off()
    ax.set_xlabel("position in the window (tokens)")
    ax.set_ylabel("mean loss (nats per token)")
    ax.set_title("Loss by position; dotted line: training length")
    ax.grid(alpha=0.3)
    _legend(ax)
    return fig


def _layer_dashes(k: int):
    """The ``k``-th layer's line style: solid, then ever longer dashes (never plain dotted)."""
    return "-" if k == 0 else (0, (1.5 * k + 1.0, 1.5))


def _layer_name(layer: str) -> str:
    return f"layer {layer.removeprefix('blocks_')}" if layer.startswith("blocks_") else layer


def fire_bias(biases: dict) -> Figure:
    """``biases``: ``{label: {'train_len', 'queries', 'curves': {layer: [Q, H, W]},
    'thresholds': {layer: L}}}``. A row per run, titled with its label, and a panel per head;
    in a panel each query position is a colour and each layer a dash pattern. A layer's
    learned threshold L is a gray line in its dash pattern: query rows at or below it depend
    on the distance alone."""
    heads = max(curve.shape[1] for b in biases.values() for curve in b["curves"].values())
    fig = Figure(figsize=(2.6 * heads + 1.8, 2.4 * len(biases) + 0.6), layout="constrained")
    for run, (label, b) in zip(np.atleast_1d(fig.subfigures(len(biases), 1)), biases.items()):
        axes = run.subplots(1, heads, squeeze=False)[0]
        thresholds = b.get("thresholds", {})
        for h, ax in enumerate(axes):
            for k, (layer, curve_QxHxW) in enumerate(b["curves"].items()):
                if h >= curve_QxHxW.shape[1]:
                    continue
                for j, bias_W in enumerate(curve_QxHxW[:, h]):
                    ax.plot(np.arange(len(bias_W)), bias_W, color=f"C{j}", linestyle=_layer_dashes(k), linewidth=1)
                if layer in thresholds:
                    ax.axvline(thresholds[layer], color="gray", linestyle=_layer_dashes(k), linewidth=1)
            ax.set_xscale("symlog", linthresh=1)
            ax.set_xlim(0, max(curve.shape[2] for curve in b["curves"].values()) - 1)  # distances are >= 0
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.tick_params(labelsize="x-small")
            ax.grid(alpha=0.3)
            ax.set_title(f"head {h}", fontsize="small")
            ax.set_xlabel("distance i - j", fontsize="small")
        axes[0].set_ylabel("bias", fontsize="small")
        run.suptitle(label, fontsize="medium", x=0.0, horizontalalignment="left")
        handles = [Line2D([], [], color=f"C{j}", label=f"i = {q}") for j, q in enumerate(b["queries"])]
        if len(b["curves"]) > 1:
            handles += [Line2D([], [], color="black", linestyle=_layer_dashes(k), linewidth=1, label=_layer_name(layer))
                        for k, layer in enumerate(b["curves"])]  # fmt: skip
        handles += [Line2D([], [], color="gray", linestyle=_layer_dashes(k), linewidth=1,
                           label=f"L = {thresholds[layer]:.0f}" + (f" ({_layer_name(layer)})" if len(thresholds) > 1 else ""))
                    for k, layer in enumerate(b["curves"]) if layer in thresholds]  # fmt: skip
        run.legend(handles=handles, loc="outside right upper", fontsize="x-small", title=f"trained at {b['train_len']}",
                   title_fontsize="x-small")  # fmt: skip
    fig.suptitle("FIRE's learned bias by distance, for query positions i; up to a layer's learned threshold L (gray) "
                 "it depends on distance only", fontsize="medium", wrap=True)  # fmt: skip
    return fig
