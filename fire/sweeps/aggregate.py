"""A sweep's results over seeds: mean, standard deviation and n per (row, size, training
length, evaluation length), as tables in the paper's layout and a figure with seed bands.

Files in the sweep's output folder:
  ``results.md``    one table per (model size, training length): rows down, evaluation lengths
                    across, ``mean ± std (n)`` of the metric (:class:`Metric`: the
                    log-perplexity of a language-modelling sweep, the exact match of a task
                    sweep), the setup above each;
  ``results.csv``   every seed's row (``stat = seed``), then the aggregates (``stat = mean``,
                    whose metrics are means over ``n`` seeds, with ``loss_std`` or
                    ``exact_match_std``);
  ``results.json``  ``{"runs": [...], "aggregates": [...]}``, the same;
  ``length_curve.png``  the metric against evaluation length, one line per row with a
                    band of one standard deviation, the training length (range) marked.
The standard deviation is the sample one (``ddof = 1``); with one seed it is absent.
"""

import csv
import dataclasses
import io
import json
import os
from typing import Callable

import numpy as np
from matplotlib.figure import Figure

from fire.evaluation import report, task_report
from fire.evaluation.plots import line_style
from fire.utils import format_duration


@dataclasses.dataclass(frozen=True)
class Metric:
    """What a sweep's table reports: the rows' ``field`` (mean ± std over seeds, the best in
    bold), the other ``means`` averaged alongside, and how it reads."""

    field: str
    best: Callable  # min or max over a column's means
    title: str  # what the cells are, for the table's header
    axis: str  # the figure's y label
    fmt: Callable  # a value -> its text
    means: tuple = ()
    counts: tuple = ()  # fields copied from the seed's row (how much was scored)

    def cell(self, a: dict) -> str:
        if a[self.field] is None:
            return "n/a"
        std = a[f"{self.field}_std"]
        return f"{self.fmt(a[self.field])}{'' if std is None else ' ± ' + self.fmt(std)} ({a['n']})"


LOG_PERPLEXITY = Metric("loss", min, "the log-perplexity in nats per token", "log-perplexity (nats per token)",
                        lambda v: f"{v:.3f}", means=("ppl", "bits_per_byte"), counts=("n_tokens",))  # fmt: skip
EXACT_MATCH = Metric("exact_match", max, "the exact match in % of the test examples",
                     "exact match (%)", lambda v: f"{100 * v:.1f}", means=("token_accuracy",),
                     counts=("n_examples", "task", "length_unit", "train_min_len", "train_max_len"))  # fmt: skip


def metric_of(rows: list) -> Metric:
    """A task sweep's rows are scored by exact match, a language-modelling sweep's by loss."""
    return EXACT_MATCH if rows and "exact_match" in rows[0] else LOG_PERPLEXITY


# A seed's row has its run and seed; an aggregate's metric fields are means over its ``n``
# seeds, with the main one's standard deviation (``loss_std``, ``exact_match_std``).
COLUMNS = ("stat", "row", "size", "train_len", "eval_len", "seed", "n", "loss", "loss_std", "ppl", "bits_per_byte",
           "n_tokens", "protocol", "run", "code", "machine")  # fmt: skip
TASK_COLUMNS = ("stat", "row", "size", "task", "train_min_len", "train_max_len", "train_len", "eval_len", "length_unit",
                "seed", "n", "exact_match", "exact_match_std", "token_accuracy", "n_examples", "protocol", "run", "code",
                "machine")  # fmt: skip


def seed_rows(rows: list, row_of: dict) -> list:
    """The evaluation's rows as the sweep sees them: one per (run, evaluation length)."""
    metric = metric_of(rows)
    out = []
    for r in rows:
        row, spec = row_of[r["label"]]
        scores = {k: r.get(k) for k in (metric.field, *metric.means, *metric.counts)}
        out.append(dict(stat="seed", row=row, size=spec.size, train_len=spec.train_len, eval_len=r["eval_len"],
                        seed=spec.seed, **scores, protocol=r["protocol"], run=r["run"], code=r.get("code"),
                        machine=r.get("machine")))  # fmt: skip
    return out


def aggregate(rows: list, row_of: dict) -> list:
    """``mean``, ``std`` (sample; None for one seed) and ``n`` of the metric (:func:`metric_of`)
    per (row, size, training length, evaluation length), in the order rows first appear.
    Cells without a value (n/a) are left out of the statistics; a group with none has
    ``n = 0``."""
    metric = metric_of(rows)
    groups = {}
    for r in seed_rows(rows, row_of):
        groups.setdefault((r["row"], r["size"], r["train_len"], r["eval_len"]), []).append(r)
    out = []
    for (row, size, train_len, eval_len), members in groups.items():
        scored = [m for m in members if m[metric.field] is not None]
        values = np.array([m[metric.field] for m in scored], np.float64)
        means = {k: float(np.mean([m[k] for m in scored])) if scored and scored[0][k] is not None else None
                 for k in metric.means}  # fmt: skip
        out.append(dict(
            stat="mean", row=row, size=size, train_len=train_len, eval_len=eval_len, n=len(scored),
            **{metric.field: float(values.mean()) if len(scored) else None,
               f"{metric.field}_std": float(values.std(ddof=1)) if len(scored) > 1 else None},
            **means, **{k: members[0][k] for k in metric.counts}, protocol=members[0]["protocol"],
        ))  # fmt: skip
    return out


def _csv(rows: list, columns) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: "" if v is None else v for k, v in r.items()})
    return out.getvalue()


def cost_line(rows: list, cost: dict) -> str:
    """The sweep's measured cost: training from the runs' copied metrics
    (``fire.sweeps.results.training_cost``), evaluation from the rows' own timings."""
    eval_s = sum((r.get("time_s") or 0) + (r.get("compile_s") or 0) for r in rows)
    runs = (
        f"{cost['runs']} runs"
        if cost["runs_measured"] == cost["runs"]
        else f"the {cost['runs_measured']} of {cost['runs']} runs whose training logs are in train_logs/"
    )
    return (f"Measured cost: {runs} trained in {format_duration(cost['train_s'])} (sum of each "
            f"run's first to last logged step), evaluated in {format_duration(eval_s)} (sum over lengths, compile "
            f"included, rows reused from earlier evaluations count their first time).")  # fmt: skip


def _panels(table: list) -> list:
    return list(dict.fromkeys((a["size"], a["train_len"]) for a in table))


def _panel_title(group: list, size: str, train_len: int) -> str:
    first = group[0]
    if "task" in first:
        return f"{first['task']}, {size}, trained on {first['train_min_len']}-{first['train_max_len']} {first['length_unit']}"
    return f"{size}, training length {train_len}"


def markdown(rows: list, table: list, sweep_name: str, row_of: dict, cost: dict, missing=()) -> str:
    """One table per (size, training length); the best mean of each column in bold; the
    measured cost of the sweep; the runs not in it yet."""
    metric = metric_of(rows)
    by = "test" if metric is EXACT_MATCH else "evaluation"
    lines = [f"# Sweep {sweep_name}: {metric.axis.split(' (')[0]} by {by} length", "",
             f"Cells: mean ± sample standard deviation over seeds (n seeds) of {metric.title}; the best mean of "
             f"each column is bold.", "", cost_line(rows, cost), ""]  # fmt: skip
    if missing:
        lines += [f"Not in the table yet ({len(missing)} run(s) without rows): {', '.join(missing)}.", ""]
    for size, train_len in _panels(table):
        group = [a for a in table if (a["size"], a["train_len"]) == (size, train_len)]
        lengths = sorted({a["eval_len"] for a in group})
        best = {L: metric.best((a[metric.field] for a in group if a["eval_len"] == L and a[metric.field] is not None),
                               default=None) for L in lengths}  # fmt: skip
        runs = [r for r in rows if r["train_len"] == train_len and r["model"].startswith(f"{size}:")]
        setup = task_report.setup_line(runs) if metric is EXACT_MATCH else report.setup_line(runs)
        lines += [f"## {_panel_title(group, size, train_len)}", "", setup, "",
                  "| row | " + " | ".join(map(str, lengths)) + " |", "|---|" + "---:|" * len(lengths)]  # fmt: skip
        cells = {(a["row"], a["eval_len"]): a for a in group}
        for row in dict.fromkeys(a["row"] for a in group):
            out = []
            for L in lengths:
                a = cells.get((row, L))
                text = "" if a is None else metric.cell(a)
                bold = (
                    a is not None
                    and a[metric.field] is not None
                    and a[metric.field] == best[L]
                    and len({b[metric.field] for b in group if b["eval_len"] == L}) > 1
                )  # not a column of ties
                out.append(f"**{text}**" if bold else text)
            lines.append(f"| {row} | " + " | ".join(out) + " |")
        lines.append("")
    return "\n".join(lines)


def length_curve(table: list) -> Figure:
    """The metric against evaluation length, a line per row with a band of one standard
    deviation over seeds; the training length dotted (a task's training range shaded)."""
    metric = metric_of(table)
    panels = _panels(table)
    fig = Figure(figsize=(7, 4.2 * len(panels)))
    axes = np.atleast_1d(fig.subplots(len(panels), 1, squeeze=False)[:, 0])
    scale = 100 if metric is EXACT_MATCH else 1
    for ax, (size, train_len) in zip(axes, panels):
        group = [a for a in table if (a["size"], a["train_len"]) == (size, train_len) and a[metric.field] is not None]
        for i, row in enumerate(dict.fromkeys(a["row"] for a in group)):
            points = sorted((a for a in group if a["row"] == row), key=lambda a: a["eval_len"])
            x = np.array([a["eval_len"] for a in points])
            mean = scale * np.array([a[metric.field] for a in points])
            std = scale * np.array([a[f"{metric.field}_std"] or 0.0 for a in points])
            n = max(a["n"] for a in points)
            (line,) = ax.plot(x, mean, marker="o", label=f"{row} (n={n})", **line_style(i))
            if n > 1:
                ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2)
        lengths = sorted({a["eval_len"] for a in group})
        if metric is EXACT_MATCH and group:
            ax.axvspan(group[0]["train_min_len"], group[0]["train_max_len"], color="gray", alpha=0.15)
            ax.set_ylim(-3, 103)
            ax.set_xlabel(f"test length ({group[0]['length_unit']})")
            title = f"{_panel_title(group, size, train_len)}; trained lengths shaded"
        else:
            ax.axvline(train_len, color="gray", linestyle=":")
            ax.set_xscale("log", base=2)
            ax.set_xticks(lengths, [str(L) for L in lengths])
            ax.set_xlabel("evaluation length (tokens)")
            title = f"{size}, trained at {train_len} (dotted)"
        ax.set_ylabel(metric.axis)
        ax.set_title(f"{title}; band: ±1 std over seeds")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def write(output_dir: str, rows: list, row_of: dict, table: list, sweep_name: str, cost: dict, missing=()) -> list:
    """Writes the sweep's results files, each replaced atomically; returns their names."""
    per_seed = seed_rows(rows, row_of)
    files = {
        "results.md": markdown(rows, table, sweep_name, row_of, cost, missing),
        "results.csv": _csv(per_seed + table, TASK_COLUMNS if metric_of(rows) is EXACT_MATCH else COLUMNS),
        "results.json": json.dumps(
            {"runs": [report.finite(r) for r in per_seed], "aggregates": [report.finite(a) for a in table]}, indent=1
        ),  # fmt: skip
    }
    for name, text in files.items():
        report.write_atomic(os.path.join(output_dir, name), text)
    if any(a[metric_of(table).field] is not None for a in table):
        report.save_figure(length_curve(table), os.path.join(output_dir, "length_curve.png"))
        return [*files, "length_curve.png"]
    return list(files)
