"""The length sweep: every run at every length, reusing what was computed before.

:func:`sweep` checks every input before any compute, scores each (run, length) with
``fire.evaluation.scoring.score_length``, reuses rows that earlier sweeps into the same folder
computed (``cache.jsonl``, keyed by :func:`row_key`: the run, its checkpoint and config, the
length and the whole protocol) and rewrites the results after every length, so an
interrupted sweep loses at most the length in flight. The results folder grows: rows of
other runs, lengths or protocols that an earlier sweep wrote there stay in the report. Each
computed row carries the code and machine that computed it, and each evaluation appends its
command to the folder's ``provenance.jsonl`` (``fire.provenance``).
"""

import hashlib
import json
import os
from typing import Callable, Optional

from fire import data as fire_data
from fire import provenance
from fire.encodings import LengthError
from fire.evaluation import report
from fire.evaluation.runs import EvalError, TrainedRun, encoding_bias, load_runs
from fire.evaluation.scoring import SCORER_VERSION, Settings, check_randomized_length, compile_scorer, score_length
from fire.utils import MiB, ceil_div, format_bytes

DEFAULT_FACTORS = (1, 2, 4, 8, 16)  # default eval lengths: the training length times these
CACHE = "cache.jsonl"


def parse_lengths(values) -> list:
    try:
        lengths = [int(v) for v in values]
    except ValueError:
        raise EvalError(f"--lengths must be integers, got {','.join(map(str, values))}.") from None
    if any(L < 1 for L in lengths):
        raise EvalError(f"--lengths must be positive, got {','.join(map(str, lengths))}.")
    return sorted(set(lengths))


def default_lengths(run: TrainedRun) -> list:
    return [run.config.train_len * k for k in DEFAULT_FACTORS]


def config_hash(run: TrainedRun) -> str:
    """A fingerprint of the run's config: a run retrained in place with another config does
    not reuse the old rows."""
    return hashlib.sha1(run.config.to_json(sort_keys=True).encode()).hexdigest()[:12]


def row_key(row: dict) -> tuple:
    """What makes two rows the same measurement: the run (folder, checkpoint, config), the
    length and every field of the protocol."""
    return (row["run_path"], row["step"], row["config_hash"], row["eval_len"], json.dumps(row["protocol_key"]))


class Cache:
    """Every row computed into an output folder, one JSON line each, appended as it is made;
    rows of another ``scorer`` version are not reused."""

    def __init__(self, output_dir: str, scorer: int = SCORER_VERSION):
        self.path = os.path.join(output_dir, CACHE)
        self.rows = {}
        if os.path.exists(self.path):
            with open(self.path) as f:
                for line in f:
                    try:
                        row = json.loads(line)
                        if row.get("scorer") == scorer:  # older scorers meant other numbers
                            row["run_path"] = os.path.abspath(row["run_path"])
                            self.rows[row_key(row)] = row
                    except (ValueError, KeyError, AttributeError):
                        pass  # a line cut off by an interrupted write

    def get(self, key) -> Optional[dict]:
        return self.rows.get(key)

    def add(self, row: dict):
        self.rows[row_key(row)] = row
        with open(self.path, "a") as f:  # paths relative to the working folder, as in results.json
            f.write(json.dumps({**row, "run_path": os.path.relpath(row["run_path"])}) + "\n")


def check_writable(output_dir: str):
    try:
        os.makedirs(output_dir, exist_ok=True)
        probe = os.path.join(output_dir, ".write_test")
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as e:
        raise EvalError(f"cannot write to the output folder {output_dir}: {e.strerror or e}.") from None


def _gib(mib):
    return format_bytes(None if mib is None else mib * MiB)


def progress_line(i: int, total: int, row: dict, reused: bool) -> str:
    head = f"[{i}/{total}] {row['label']} | len {row['eval_len']} | {row['protocol']}"
    if row["loss"] is None:
        return f"{head} | {row['note']}"
    bpb = "n/a" if row["bits_per_byte"] is None else f"{row['bits_per_byte']:.4f}"
    scores = f"loss {row['loss']:.4f} ppl {row['ppl']:.3g} bpb {bpb}"
    if reused:
        return f"{head} | {row['n_tokens']:,} tokens | {scores} | reused"
    return (
        f"{head} | {row['n_tokens']:,} tokens | {scores} | {row['impl']} {row['batch_size']}x{row['eval_len']} "
        f"| {row['time_s']:.1f}s (+{row['compile_s']:.1f}s compile) | XLA plan {_gib(row['xla_mib'])}, "
        f"peak RSS {_gib(row['peak_rss_mib'])}"
    )


def sweep(
    patterns,
    lengths,
    settings: Settings,
    output_dir: Optional[str],
    dry_run: bool = False,
    log: Callable = print,
    encoding_options=None,
) -> list:
    """Evaluates every run (workdirs or globs) at every length (default: each run's training
    length times ``DEFAULT_FACTORS``); writes ``output_dir`` (``fire.evaluation.report`` and
    ``fire.evaluation.plots``). ``encoding_options`` evaluates with encoding options changed
    (an evaluation-time variant, see ``load_run``). Returns the rows. ``dry_run`` compiles
    each length and prints its memory plan instead."""
    runs = load_runs(patterns, settings.block_size, need_checkpoints=not dry_run, encoding_options=encoding_options)
    lengths = parse_lengths(lengths) if lengths else None
    plan = [(run, L) for run in runs for L in (lengths or default_lengths(run))]
    return evaluate(plan, settings, output_dir, dry_run, log)


def evaluate(plan: list, settings: Settings, output_dir: Optional[str], dry_run: bool = False,
             log: Callable = print) -> list:  # fmt: skip
    """Scores each ``(TrainedRun, length)`` of ``plan`` (runs loaded and checked, labels set),
    reusing and writing ``output_dir`` as :func:`sweep` does."""
    # Every window set is cut before any compute: a length the data cannot give fails now.
    windows = {}
    for run, L in plan:
        key = (run.config.data.to_json(), L)
        if key not in windows:
            windows[key] = fire_data.eval_windows(run.config.data, run.tokenizer, L, settings.protocol)
    windows_for = lambda run, L: windows[(run.config.data.to_json(), L)]
    if settings.positions == "randomized":
        for run, L in plan:
            check_randomized_length(run, L)
    if dry_run:
        for i, (run, L) in enumerate(plan, 1):
            log(dry_run_line(i, len(plan), run, windows_for(run, L), settings))
        return []

    from fire.evaluation import plots  # matplotlib only when writing

    check_writable(output_dir)
    cache = Cache(output_dir)
    rows, biases, n_reused = [], {}, 0
    protocol_key = settings.key()
    found = report.read_results(output_dir)
    if any("exact_match" in r for r in found):
        raise EvalError(f"{output_dir} holds results of eval_task.py (exact match): give the length sweep its "
                        f"own --output_dir.")  # fmt: skip
    earlier = kept_rows(found, plan, protocol_key)
    for i, (run, L) in enumerate(plan, 1):
        w = windows_for(run, L)
        row = cache.get(row_key(_identity(run, L, protocol_key)))
        if row is None:
            run.params(log)  # reading may skip a damaged newest step: the row is then the older step's
            row = cache.get(row_key(_identity(run, L, protocol_key)))
        reused = row is not None
        if not reused:
            row = {**score_length(run, w, settings), **_identity(run, L, protocol_key), **provenance.row_stamp()}
        n_reused += reused
        row = {**row, "label": run.label, "run": run.workdir}
        rows.append(row)
        log(progress_line(i, len(plan), row, reused))
        # n/a cells cost nothing to recompute
        save_row(
            cache, row, not reused and row["loss"] is not None, lambda: report.write_results(output_dir, earlier + rows)
        )
        if i == len(plan) or plan[i][0] is not run:  # the run's last length
            if run.model_cfg.build_encoding().plot_bias and run.label not in biases:
                queries = bias_queries(run, [L for r, L in plan if r is run])
                curves, thresholds = encoding_bias(run, queries)
                biases[run.label] = dict(
                    train_len=run.config.train_len, queries=queries, curves=curves, thresholds=thresholds
                )
            run.release()
    finish(output_dir, plan, rows, len(earlier), n_reused, lambda: plots.write_plots(output_dir, earlier + rows, biases),
           log)  # fmt: skip
    return rows


def save_row(cache: Cache, row: dict, new: bool, write_results: Callable) -> None:
    """After each row: a ``new`` row into the cache, then the tables rewritten
    (``write_results()``), so an interruption loses at most the row in flight.

    Raises EvalError for a write that fails, naming where the rows computed so far are."""
    try:
        if new:
            cache.add(row)
        write_results()
    except OSError as e:
        raise EvalError(
            f"could not write results to {os.path.dirname(cache.path)}: {e.strerror or e}. Rows computed so far are "
            f"in {cache.path}."
        ) from None


def finish(output_dir: str, plan: list, rows: list, n_kept: int, n_reused: int, write_plots: Callable,
           log: Callable) -> None:  # fmt: skip
    """The end of a sweep: the figures (``write_plots()`` returns their names), the folder's
    provenance line, and what was written."""
    try:
        written = write_plots()
        provenance.record(output_dir, rows_computed=len(rows) - n_reused, rows_reused=n_reused, rows_kept=n_kept,
                          runs=sorted({os.path.relpath(r.path) for r, _ in plan}))  # fmt: skip
    except OSError as e:
        raise EvalError(f"could not write plots to {output_dir}: {e.strerror or e}.") from None
    log(f"Wrote {', '.join(['results.csv', 'results.json', 'results.md', *written])} to {output_dir}")


def _identity(run: TrainedRun, length: int, protocol_key: dict) -> dict:
    """The fields of a row that say what was measured (:func:`row_key`), for the step read."""
    return dict(run_path=run.path, step=run.step, config_hash=config_hash(run), eval_len=length,
                protocol_key=protocol_key)  # fmt: skip


def _slot(run_path: str, label: str, eval_len: int, protocol_key) -> tuple:
    return (run_path, label, eval_len, json.dumps(protocol_key, sort_keys=True))


def kept_rows(earlier: list, plan: list, protocol_key: dict) -> list:
    """The rows of an earlier report in the folder that this evaluation does not redo: the
    results folder grows. A kept row whose label a new run now uses is told apart by folder."""
    planned = {_slot(run.path, run.label, L, protocol_key) for run, L in plan}
    planned |= {_slot(run.path, run.label, L, protocol_key["name"]) for run, L in plan}  # rows without a key
    labels = {run.label: run.path for run, _ in plan}
    kept = []
    for r in earlier:
        if _slot(r["run_path"], r["label"], r["eval_len"], r.get("protocol_key") or r["protocol"]) in planned:
            continue
        if labels.get(r["label"], r["run_path"]) != r["run_path"]:
            r = {**r, "label": f"{r['label']} ({os.path.basename(r['run_path'])})"}
        kept.append(r)
    return kept


def bias_queries(run: TrainedRun, lengths) -> list:
    """Query positions for the bias figure: inside, at and beyond the training length."""
    L = run.config.train_len
    longest = max(lengths)
    return sorted({q - 1 for q in (L // 2, L, 4 * L, longest) if 1 < q <= max(longest, L)})


def dry_run_line(i: int, total: int, run: TrainedRun, windows, settings: Settings) -> str:
    head = f"[{i}/{total}] {run.label} | len {windows.length} | {windows.protocol}"
    try:
        run.model_cfg.check_length(windows.length)
    except LengthError as e:
        return f"{head} | n/a: {e}"
    scorer = compile_scorer(run, windows.length, len(windows.inputs), settings)
    n_batches = ceil_div(len(windows.inputs), scorer.batch)
    return (
        f"{head} | {windows.n_tokens:,} tokens in {n_batches} batch(es) of {scorer.batch}x{windows.length} | "
        f"{scorer.impl} | XLA plan {format_bytes(scorer.planned)} | compiled in {scorer.compile_s:.1f}s"
    )
