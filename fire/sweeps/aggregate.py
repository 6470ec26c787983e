"""A sweep's results over seeds: mean, standard deviation and n per (row, size, training
length, evaluation length), as tables in the paper's layout and a figure with seed bands.

Files in the sweep's output folder:
  ``results.md``    one table per (model size, training length): rows down, evaluation lengths
                    across, ``mean ± std (n)`` of the log-perplexity, the setup above each;
  ``results.csv``   every seed's row (``stat = seed``), then the aggregates (``stat = mean``,
                    whose loss, ppl and bits per byte are means over ``n`` seeds, with ``loss_std``);
  ``results.json``  ``{"runs": [...], "aggregates": [...]}``, the same;
  ``length_curve.png``  log-perplexity against evaluation length, one line per row with a
                    band of one standard deviation, the training length marked.
The standard deviation is the sample one (``ddof = 1``); with one seed it is absent.
"""

import csv
import io
import json
import os

import numpy as np
from matplotlib.figure import Figure

from fire.evaluation import report
from fire.evaluation.plots import line_style
from fire.utils import format_duration

# A seed's row has its run and seed; an aggregate's ``loss``, ``ppl`` and ``bits_per_byte`` are
# means over its ``n`` seeds, with ``loss_std``.
COLUMNS = ("stat", "row", "size", "train_len", "eval_len", "seed", "n", "loss", "loss_std", "ppl", "bits_per_byte",
           "n_tokens", "protocol", "run", "code", "machine")  # fmt: skip


def seed_rows(rows: list, row_of: dict) -> list:
    """The length sweep's rows as the sweep sees them: one per (run, evaluation length)."""
    out = []
    for r in rows:
        row, spec = row_of[r["label"]]
        out.append(dict(stat="seed", row=row, size=spec.size, train_len=spec.train_len, eval_len=r["eval_len"],
                        seed=spec.seed, loss=r["loss"], ppl=r["ppl"], bits_per_byte=r["bits_per_byte"],
                        n_tokens=r["n_tokens"], protocol=r["protocol"], run=r["run"], code=r.get("code"),
                        machine=r.get("machine")))  # fmt: skip
    return out


def aggregate(rows: list, row_of: dict) -> list:
    """``mean``, ``std`` (sample; None for one seed) and ``n`` of the loss per (row, size,
    training length, evaluation length), in the order rows first appear. Cells without a
    loss (n/a) are left out of the statistics; a group with none has ``n = 0``."""
    groups = {}
    for r in seed_rows(rows, row_of):
        groups.setdefault((r["row"], r["size"], r["train_len"], r["eval_len"]), []).append(r)
    out = []
    for (row, size, train_len, eval_len), members in groups.items():
        scored = [m for m in members if m["loss"] is not None]
        losses = np.array([m["loss"] for m in scored], np.float64)
        out.append(dict(
            stat="mean", row=row, size=size, train_len=train_len, eval_len=eval_len, n=len(scored),
            loss=float(losses.mean()) if len(scored) else None,
            loss_std=float(losses.std(ddof=1)) if len(scored) > 1 else None,
            ppl=float(np.mean([m["ppl"] for m in scored])) if scored else None,
            bits_per_byte=float(np.mean([m["bits_per_byte"] for m in scored])) if scored else None,
            n_tokens=members[0]["n_tokens"], protocol=members[0]["protocol"],
        ))  # fmt: skip
    return out


def _csv(rows: list, columns) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: "" if v is None else v for k, v in r.items()})
    return out.getvalue()


def _cell(a: dict) -> str:
    if a["loss"] is None:
        return "n/a"
    spread = f" ± {a['loss_std']:.3f}" if a["loss_std"] is not None else ""
    return f"{a['loss']:.3f}{spread} ({a['n']})"


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


def markdown(rows: list, table: list, sweep_name: str, row_of: dict, cost: dict, missing=()) -> str:
    """One table per (size, training length); the best mean of each column in bold; the
    measured cost of the sweep; the runs not in it yet."""
    lines = [f"# Sweep {sweep_name}: log-perplexity by evaluation length", "",
             "Cells: mean ± sample standard deviation over seeds (n seeds) of the log-perplexity in nats "
             "per token; the best mean of each column is bold.", "", cost_line(rows, cost), ""]  # fmt: skip
    if missing:
        lines += [f"Not in the table yet ({len(missing)} run(s) without rows): {', '.join(missing)}.", ""]
    for size, train_len in dict.fromkeys((a["size"], a["train_len"]) for a in table):
        group = [a for a in table if (a["size"], a["train_len"]) == (size, train_len)]
        lengths = sorted({a["eval_len"] for a in group})
        best = {L: min((a["loss"] for a in group if a["eval_len"] == L and a["loss"] is not None),
                       default=None) for L in lengths}  # fmt: skip
        runs = [r for r in rows if r["train_len"] == train_len and r["model"].startswith(f"{size}:")]
        lines += [f"## {size}, training length {train_len}", "", report.setup_line(runs), "",
                  "| row | " + " | ".join(map(str, lengths)) + " |", "|---|" + "---:|" * len(lengths)]  # fmt: skip
        cells = {(a["row"], a["eval_len"]): a for a in group}
        for row in dict.fromkeys(a["row"] for a in group):
            out = []
            for L in lengths:
                a = cells.get((row, L))
                text = "" if a is None else _cell(a)
                bold = a is not None and a["loss"] is not None and a["loss"] == best[L] and len(group) > 1
                out.append(f"**{text}**" if bold else text)
            lines.append(f"| {row} | " + " | ".join(out) + " |")
        lines.append("")
    return "\n".join(lines)


def length_curve(table: list) -> Figure:
    panels = list(dict.fromkeys((a["size"], a["train_len"]) for a in table))
    fig = Figure(figsize=(7, 4.2 * len(panels)))
    axes = np.atleast_1d(fig.subplots(len(panels), 1, squeeze=False)[:, 0])
    for ax, (size, train_len) in zip(axes, panels):
        group = [a for a in table if (a["size"], a["train_len"]) == (size, train_len) and a["loss"] is not None]
        for i, row in enumerate(dict.fromkeys(a["row"] for a in group)):
            points = sorted((a for a in group if a["row"] == row), key=lambda a: a["eval_len"])
            x = np.array([a["eval_len"] for a in points])
            mean = np.array([a["loss"] for a in points])
            std = np.array([a["loss_std"] or 0.0 for a in points])
            n = max(a["n"] for a in points)
            (line,) = ax.plot(x, mean, marker="o", label=f"{row} (n={n})", **line_style(i))
            if n > 1:
                ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2)
        ax.axvline(train_len, color="gray", linestyle=":")
        ax.set_xscale("log", base=2)
        lengths = sorted({a["eval_len"] for a in group})
        ax.set_xticks(lengths, [str(L) for L in lengths])
        ax.set_xlabel("evaluation length (tokens)")
        ax.set_ylabel("log-perplexity (nats per token)")
        ax.set_title(f"{size}, trained at {train_len} (dotted); band: ±1 std over seeds")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def write(output_dir: str, rows: list, row_of: dict, table: list, sweep_name: str, cost: dict, missing=()) -> list:
    """Writes the sweep's results files, each replaced atomically; returns their names."""
    per_seed = seed_rows(rows, row_of)
    files = {
        "results.md": markdown(rows, table, sweep_name, row_of, cost, missing),
        "results.csv": _csv(per_seed + table, COLUMNS),
        "results.json": json.dumps(
            {"runs": [report.finite(r) for r in per_seed], "aggregates": [report.finite(a) for a in table]}, indent=1
        ),  # fmt: skip
    }
    for name, text in files.items():
        report.write_atomic(os.path.join(output_dir, name), text)
    if any(a["loss"] is not None for a in table):
        report.save_figure(length_curve(table), os.path.join(output_dir, "length_curve.png"))
        return [*files, "length_curve.png"]
    return list(files)
