"""The task sweep's tables and figures: ``results.csv``, ``results.json``, ``results.md``,
``accuracy_curve.png`` and, for a task with a needle depth evaluated at several depths,
``depth_heatmap.png``.

Rows are made by ``fire.evaluation.task_sweep``: the run and its training range, the task,
its options and length unit, the test length, the protocol (examples, evaluation seed,
decoding) and the scores with their counts. A cell that does not exist (a length the model
cannot decode) has ``exact_match`` None and a note. Files are replaced atomically.
"""

import csv
import io
import json
import os

import numpy as np
from matplotlib.figure import Figure

from fire.evaluation.plots import _legend, line_style
from fire.evaluation.report import _grid, _per_run, _range, finite, read_results, save_figure
from fire.utils import format_count
from fire.workdir import write_atomic

COLUMNS = (
    "run", "label", "pe", "task", "length_unit", "train_min_len", "train_max_len", "eval_len", "n_examples",
    "exact_match", "exact", "token_accuracy", "correct_tokens", "n_answer_tokens", "decoding", "eval_seed",
    "positions", "task_options", "time_s", "step", "train_examples", "model", "n_params", "train_len", "run_path",
    "code", "machine", "note",
)  # fmt: skip

# The scores a table shows: row field -> (section title, how a value reads)
METRICS = {
    "exact_match": ("Exact match (the whole answer and EOS)", "{:.1%}"),
    "token_accuracy": ("Per-token accuracy (answer tokens and EOS, position by position)", "{:.1%}"),
}


def write_results(output_dir: str, rows: list):
    """The three tables; paths (``run_path``) relative to the working directory."""
    rows = [{**r, "run_path": os.path.relpath(r["run_path"])} if r.get("run_path") else r for r in rows]
    write_atomic(os.path.join(output_dir, "results.csv"), to_csv(rows))
    json_rows = ",\n".join(json.dumps(finite(r)) for r in rows)
    write_atomic(os.path.join(output_dir, "results.json"), f"[\n{json_rows}\n]\n")
    write_atomic(os.path.join(output_dir, "results.md"), to_markdown(rows))


def to_csv(rows: list) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else json.dumps(v) if isinstance(v, dict) else v
                         for k, v in finite(row).items()})  # fmt: skip
    return out.getvalue()


def setup_line(rows: list) -> str:
    """What a reader needs next to the numbers: model, task, training range, examples seen,
    the test protocol."""
    runs = {}
    for r in rows:
        runs.setdefault(r["label"], r)
    first = rows[0]
    options = ", ".join(f"{k}={v}" for k, v in first["task_options"].items()) or "none"
    trained = lambda r: f"{r['train_min_len']}-{r['train_max_len']}"
    return (
        f"Task {first['task']} (options {options}; lengths in {first['length_unit']}); model "
        f"{_per_run(runs, 'model')} ({_range(r['n_params'] for r in runs.values())} parameters); trained on "
        f"lengths {_per_run({k: {'t': trained(r)} for k, r in runs.items()}, 't')} for "
        f"{_per_run(runs, 'train_examples', format_count)} examples (checkpoint step {_per_run(runs, 'step')}); "
        f"tested on {_range(r['n_examples'] for r in rows)} examples per length (evaluation seed "
        f"{first['eval_seed']}, the same for every run), {first['decoding']} decoding, positions {first['positions']}."
    )


def _metric_table(rows: list, field: str, fmt: str) -> list:
    """``field`` of each row; the best of each column in bold; lengths inside a run's
    training range marked ``*`` when every run shares it."""
    winners = {}
    for L in {r["eval_len"] for r in rows}:
        scored = [r[field] for r in rows if r["eval_len"] == L and r[field] is not None]
        winners[L] = max(scored) if len(scored) > 1 else None

    def cell(r):
        if r[field] is None:
            return "n/a"
        text = fmt.format(r[field])
        return f"**{text}**" if r[field] == winners[r["eval_len"]] else text

    lines = _grid(rows, cell)
    ranges = {(r["train_min_len"], r["train_max_len"]) for r in rows}
    if len(ranges) == 1:
        low, high = ranges.pop()
        lengths = sorted({r["eval_len"] for r in rows})
        lines[0] = "| run | " + " | ".join(f"{L}*" if low <= L <= high else str(L) for L in lengths) + " |"
    return lines


def to_markdown(rows: list) -> str:
    """A section per protocol (ordinary or randomized positions, another test set), each with
    a table per metric."""
    if not rows:
        return "No results.\n"
    protocols = list(dict.fromkeys(_protocol(r) for r in rows))
    sections = []
    for protocol in protocols:
        group = [r for r in rows if _protocol(r) == protocol]
        title = f"# Task: {group[0]['task']} by test length" + (f" ({protocol})" if len(protocols) > 1 else "")
        lines = [title, "", setup_line(group), ""]
        for field, (name, fmt) in METRICS.items():
            lines += [f"## {name}, {group[0]['decoding']}", "", "Rows are runs (`encoding@training range`, then "
                      "options that differ from the encoding's defaults); columns are test lengths, `*` inside the "
                      "training range; the best of each column is bold.", "", *_metric_table(group, field, fmt), ""]  # fmt: skip
        notes = list(dict.fromkeys(r["note"] for r in group if r.get("note")))
        if notes:
            lines += [f"- {note}" for note in notes] + [""]
        sections.append("\n".join(lines))
    return "\n".join(sections)


def _protocol(row: dict) -> str:
    """What sets a row's test apart besides run and length, in words."""
    return f"{row['protocol']}, {row['n_examples']} examples, evaluation seed {row['eval_seed']}"


def write_plots(output_dir: str, rows: list) -> list:
    """Writes the figures that have data; returns their file names."""
    written = []
    if any(r["exact_match"] is not None for r in rows):
        save_figure(accuracy_curve(rows), os.path.join(output_dir, "accuracy_curve.png"))
        written.append("accuracy_curve.png")
    heatmap = depth_heatmap(rows)
    if heatmap is not None:
        save_figure(heatmap, os.path.join(output_dir, "depth_heatmap.png"))
        written.append("depth_heatmap.png")
    return written


def accuracy_curve(rows: list, field: str = "exact_match") -> Figure:
    """``field`` against test length, a line per run; the training range shaded (in the run's
    colour where runs differ)."""
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    ranges = {(r["train_min_len"], r["train_max_len"]) for r in rows}
    several = len({_protocol(r) for r in rows}) > 1
    lines = {}
    for r in rows:  # a line per run and protocol
        lines.setdefault((r["label"], _protocol(r)), []).append(r)
    for i, ((label, protocol), run_rows) in enumerate(lines.items()):
        run_rows = sorted(run_rows, key=lambda r: r["eval_len"])
        y = [np.nan if r[field] is None else 100 * r[field] for r in run_rows]
        name = f"{label} ({run_rows[0]['protocol']})" if several else label
        (line,) = ax.plot([r["eval_len"] for r in run_rows], y, marker="o", label=name, **line_style(i))
        if len(ranges) > 1:
            ax.axvspan(run_rows[0]["train_min_len"], run_rows[0]["train_max_len"], color=line.get_color(), alpha=0.08)
    if len(ranges) == 1:
        low, high = ranges.pop()
        ax.axvspan(low, high, color="gray", alpha=0.15, label="training range")
    ax.set_ylim(-3, 103)
    ax.set_xlabel(f"test length ({rows[0]['length_unit']})")
    ax.set_ylabel(f"{METRICS[field][0].split(' (')[0].lower()} (%)")
    ax.set_title(f"{rows[0]['task']}: {rows[0]['n_examples']} test examples per length; shaded: trained lengths")
    ax.grid(alpha=0.3)
    _legend(ax)
    return fig


def depth_heatmap(rows: list):
    """Exact match by test length (columns) and needle depth (rows), a panel per run, for rows
    whose ``task_options`` hold a fixed ``depth``; None unless some run has two depths."""
    by_run = {}
    for r in rows:
        depth = r["task_options"].get("depth", -1)
        if depth is not None and depth >= 0 and r["exact_match"] is not None:
            base = r["label"].split(" [")[0]
            by_run.setdefault(base, {})[(depth, r["eval_len"])] = r["exact_match"]
    by_run = {k: v for k, v in by_run.items() if len({d for d, _ in v}) > 1}
    if not by_run:
        return None
    fig = Figure(figsize=(4.5 * len(by_run), 3.8))
    axes = np.atleast_1d(fig.subplots(1, len(by_run), squeeze=False)[0])
    for ax, (label, cells) in zip(axes, by_run.items()):
        depths, lengths = sorted({d for d, _ in cells}), sorted({L for _, L in cells})
        grid = np.array([[cells.get((d, L), np.nan) for L in lengths] for d in depths]) * 100
        image = ax.imshow(grid, vmin=0, vmax=100, cmap="viridis", aspect="auto", origin="lower")
        ax.set_xticks(range(len(lengths)), [str(L) for L in lengths])
        ax.set_yticks(range(len(depths)), [f"{d:g}" for d in depths])
        ax.set_xlabel(f"test length ({rows[0]['length_unit']})")
        ax.set_ylabel("needle depth (0: start)")
        ax.set_title(label, fontsize="small")
    fig.colorbar(image, ax=list(axes), label="exact match (%)")
    return fig


__all__ = ["METRICS", "read_results", "to_markdown", "write_plots", "write_results"]
