"""The length sweep's tables: ``results.csv``, ``results.json`` and ``results.md``.

Rows are dicts made by ``fire.evaluation.scoring.score_length``: the contract's fields (``run, pe,
train_len, eval_len, protocol, n_tokens, loss, ppl, bits_per_byte``) first, then cost and
provenance. A cell that does not exist (``pe=learned`` past its table) has loss ``None``
and a note. Files are replaced atomically, so a reader never sees half a table.
"""

import csv
import io
import json
import math
import os

from fire.utils import format_count
from fire.workdir import write_atomic

CONTRACT = ("run", "pe", "train_len", "eval_len", "protocol", "n_tokens", "loss", "ppl", "bits_per_byte")
COLUMNS = CONTRACT + (
    "time_s",  # wall time of the compiled eval steps over all windows (compile excluded)
    "compile_s",
    "xla_mib",  # XLA's plan for one eval step: arguments + outputs + temporaries
    "peak_rss_mib",  # the process's peak RSS while this length ran (host memory, all of it)
    "device_peak_mib",  # an accelerator's peak bytes in use so far in the process (None on CPU)
    "impl",
    "batch_size",
    "n_windows",
    "stride",
    "eval_tokens",
    "step",
    "label",
    "model",
    "n_params",
    "train_tokens",
    "data",
    "tokenizer",
    "run_path",
    "code",  # the code that computed the row: commit (and -dirty), fire.provenance
    "machine",  # where it was computed
    "note",
)


def write_results(output_dir: str, rows: list):
    """The three tables; paths (``run_path``) are written relative to the working directory."""
    rows = [{**r, "run_path": os.path.relpath(r["run_path"])} if r.get("run_path") else r for r in rows]
    write_atomic(os.path.join(output_dir, "results.csv"), to_csv(rows))
    json_rows = ",\n".join(json.dumps(finite(r)) for r in rows)  # one row per line
    write_atomic(os.path.join(output_dir, "results.json"), f"[\n{json_rows}\n]\n")
    write_atomic(os.path.join(output_dir, "results.md"), to_markdown(rows))


def read_results(output_dir: str) -> list:
    """The rows of an earlier ``results.json`` in ``output_dir`` (paths made absolute again),
    or [] if there is none or it cannot be read."""
    path = os.path.join(output_dir, "results.json")
    try:
        with open(path) as f:
            rows = json.load(f)
    except (OSError, ValueError):
        return []
    return [
        {**r, "run_path": os.path.abspath(r["run_path"])} for r in rows if isinstance(r, dict) and r.get("run_path")
    ]


def save_figure(fig, path: str) -> None:
    """A matplotlib figure as a PNG, replaced atomically (a reader never sees half an image)."""
    tmp = f"{path}.tmp{os.getpid()}.png"
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    os.replace(tmp, path)


def finite(row: dict) -> dict:
    """JSON has no NaN or infinity: such values (and n/a cells) become null."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()}


def to_csv(rows: list) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in finite(row).items()})
    return out.getvalue()


def _per_run(runs: dict, field: str, fmt=str) -> str:
    """One value if every run agrees, else ``label value`` for each run."""
    values = {label: row.get(field) for label, row in runs.items()}
    if len(set(map(str, values.values()))) == 1:
        return fmt(next(iter(values.values())))
    return "; ".join(f"{label} {fmt(v)}" for label, v in values.items())


def setup_line(rows: list) -> str:
    """Everything a reader needs to interpret the numbers next to them."""
    runs = {}
    for r in rows:
        runs.setdefault(r["label"], r)
    first = rows[0]
    return (
        f"Model {_per_run(runs, 'model')} ({_range(r['n_params'] for r in runs.values())} parameters); "
        f"data {_per_run(runs, 'data')} (tokenizer {first['tokenizer']}); "
        f"trained on {_per_run(runs, 'train_tokens', format_count)} tokens "
        f"(checkpoint step {_per_run(runs, 'step')}); protocol {first['protocol']}"
        + (f" (stride {_stride(rows)})" if first["protocol"] == "sliding" else "")
        + f"; {_range(r['n_tokens'] for r in rows)} tokens scored per length."
    )


def _stride(rows) -> str:
    if all(r["stride"] == r["eval_len"] // 2 for r in rows):
        return "half the length"
    return _range(r["stride"] for r in rows)


def _range(values) -> str:
    values = sorted(set(values))
    return f"{values[0]:,}" if len(values) == 1 else f"{values[0]:,} to {values[-1]:,}"


def _grid(rows: list, cell) -> list:
    """A markdown table: runs down, evaluation lengths across, ``cell(row)`` in each cell."""
    lengths = sorted({r["eval_len"] for r in rows})
    cells = {(r["label"], r["eval_len"]): r for r in rows}
    lines = ["| run | " + " | ".join(map(str, lengths)) + " |", "|---|" + "---:|" * len(lengths)]
    for label in dict.fromkeys(r["label"] for r in rows):
        out = [cell(cells[label, L]) if (label, L) in cells else "" for L in lengths]
        lines.append(f"| {label} | " + " | ".join(out) + " |")
    return lines


def _table(rows: list, value, best=min) -> list:
    """``value(row)`` to 3 decimals; the best value of each column in bold; n/a cells."""
    winners = {}
    for L in {r["eval_len"] for r in rows}:
        scored = [value(r) for r in rows if r["eval_len"] == L and r["loss"] is not None]
        winners[L] = best(scored) if len(scored) > 1 else None

    def cell(r):
        if r["loss"] is None:
            return "n/a"
        text = f"{value(r):.3f}"
        return f"**{text}**" if value(r) == winners[r["eval_len"]] else text

    return _grid(rows, cell)


def to_markdown(rows: list) -> str:
    """The paper's layout; one section per protocol when the folder holds several."""
    if not rows:
        return "No results.\n"
    protocols = list(dict.fromkeys(r["protocol"] for r in rows))
    if len(protocols) > 1:
        sections = [_markdown([r for r in rows if r["protocol"] == p]).replace("# Length generalization",
                                                                              f"# Length generalization: {p}", 1)
                    for p in protocols]  # fmt: skip
        return "\n".join(sections)
    return _markdown(rows)


def _markdown(rows: list) -> str:
    lines = [
        "# Length generalization",
        "",
        setup_line(rows),
        "",
        "## Log-perplexity (nats per token) by evaluation length",
        "",
        "Rows are runs (`encoding@training length`, then options that differ from the encoding's defaults); "
        "the best of each column is bold.",
        "",
        *_table(rows, lambda r: r["loss"]),
        "",
        "## Bits per byte",
        "",
        *_table(rows, lambda r: r["bits_per_byte"]),
        "",
    ]
    notes = list(dict.fromkeys(r["note"] for r in rows if r.get("note")))
    if notes:
        lines += [f"- {note}" for note in notes] + [""]
    timed = [r for r in rows if r.get("time_s") is not None]
    if timed:
        lines += [
            "## Cost",
            "",
            "Eval time in seconds (compile excluded) / the process's peak RSS in GiB while the "
            "length ran / XLA's planned memory for one step in GiB.",
            "",
            *_cost_table(timed),
            "",
        ]
    return "\n".join(lines)


def _cost_table(rows: list) -> list:
    gib = lambda mib: "?" if mib is None else f"{mib / 1024:.2f}"
    return _grid(rows, lambda c: f"{c['time_s']:.1f} / {gib(c['peak_rss_mib'])} / {gib(c['xla_mib'])}")
