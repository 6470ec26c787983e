"""A sweep's results folder: claimed by one sweep, grown by every evaluation, never replaced
by a partial one.

    OUTPUT/
      sweep.json        the sweep the folder belongs to (another sweep's is refused)
      results.md, results.csv, results.json, length_curve.png
                        the table over seeds (fire.sweeps.aggregate) of every row in
                        per_run/ that belongs to the sweep's runs, whichever command scored it
      per_run/          the length sweep's own folder (fire.evaluation.length_sweep), which
                        keeps every row it did not re-score
      train_logs/NAME/  each evaluated run's train.log, metrics.jsonl, config.json and
                        code_version.json, copied from its workdir (the record of how it trained)
      provenance.jsonl  one line per command that wrote here: code, command, machine

An evaluation of some runs (one shard's, ``--only``, the runs present on this machine) scores
those and rebuilds the table from all the rows: rows of runs it did not evaluate are kept.
"""

import dataclasses
import json
import os
import shutil
from typing import Callable, Optional

from fire import provenance
from fire.data import Protocol
from fire.evaluation import Settings, report
from fire.evaluation.length_sweep import evaluate
from fire.evaluation.runs import EvalError, check_runs, load_run
from fire.sweeps import aggregate
from fire.sweeps.runner import status
from fire.sweeps.spec import RunSpec, SweepError, eval_settings, named_pairs
from fire.workdir import CODE_VERSION, CONFIG, LOG, METRICS, Workdir

MARKER = "sweep.json"
PER_RUN = "per_run"
TRAIN_LOGS = "train_logs"


def check_output_dir(output_dir: str, sweep_name: str) -> None:
    """The results folder belongs to one sweep: refuse another's, claim a new one."""
    marker = os.path.join(output_dir, MARKER)
    if os.path.exists(marker):
        try:
            with open(marker) as f:
                owner = json.load(f).get("sweep")
        except (OSError, ValueError, AttributeError):
            raise SweepError(f"{marker} cannot be read: the folder's owner is unknown; choose another output_dir.")
        if owner != sweep_name:
            raise SweepError(f"{output_dir} holds the results of sweep {owner!r}, not {sweep_name!r}: "
                             f"choose another output_dir (--output_dir).")  # fmt: skip
        return
    try:
        os.makedirs(output_dir, exist_ok=True)
        with open(marker, "w") as f:
            json.dump({"sweep": sweep_name}, f)
    except OSError as e:
        raise SweepError(f"cannot write to the output folder {output_dir}: {e.strerror or e}.") from None


@dataclasses.dataclass(frozen=True)
class Row:
    """One row of the sweep's table on one run: a trained row, or an evaluation-time variant
    of it (encoding options, or another encoding of the same parameters, ``pe``)."""

    row: str
    spec: RunSpec
    options: Optional[dict] = None
    pe: Optional[str] = None

    @property
    def label(self) -> str:
        return f"{self.row} {os.path.basename(self.spec.workdir)}"


def table_rows(sweep, specs: list) -> list:
    """Every (row, run) of the table, in the table's order: each trained row's runs, followed by
    the evaluation-time variants (``eval_variants``) of that row. A variant that sets ``pe`` is
    the row of that encoding (named by the variant, e.g. ``rope_pi`` on the ``rope`` runs); one
    that sets encoding options is ``ROW [NAME]``. ``"train_len"`` in an option stands for the
    run's training length.

    Raises:
      SweepError: a ``pe`` variant named like a row the sweep trains."""
    trained = list(dict.fromkeys(spec.row for spec in specs))
    variants = named_pairs(sweep.get("eval_variants"))
    for name, v in variants:
        if v.get("pe") and name in trained:
            raise SweepError(f"eval variant {name!r} sets pe, so it names its own row, and the sweep trains a row "
                             f"{name!r} already: give the variant another name.")  # fmt: skip
    out = []
    for row in trained:
        runs = [spec for spec in specs if spec.row == row]
        out += [Row(row, spec) for spec in runs]
        for name, v in variants:
            if row in (v.get("rows") or trained):
                pe, encoding = v.get("pe"), dict(v.get("encoding") or {})
                for spec in runs:
                    options = {k: spec.train_len if x == "train_len" else x for k, x in encoding.items()}
                    out.append(Row(name if pe else f"{row} [{name}]", spec, options or None, pe))
    return out


def evaluate_runs(sweep, specs: list, log: Callable = print, output_dir: Optional[str] = None, only=None) -> list:
    """Length-sweeps the finished runs among ``only`` (default: all of ``specs``) and their
    evaluation-time variants into ``output_dir/per_run`` (default: the sweep's output_dir),
    then rebuilds the table from every row there that belongs to the sweep. Returns the
    aggregate rows.

    Raises:
      SweepError: a variant a run cannot take, or a table that would lose rows of the
        sweep's runs (per_run/ lacking rows that the folder's results.json has).
    """
    output_dir = output_dir or sweep.output_dir
    given = eval_settings(sweep)
    settings = Settings(Protocol(given["protocol"], given["eval_tokens"], given["stride"]))
    protocol_key = json.dumps(settings.protocol.key(), sort_keys=True)
    lengths = lambda spec: given["lengths"] or [spec.train_len * k for k in given["factors"]]
    rows = table_rows(sweep, specs)
    row_of = {r.label: (r.row, r.spec) for r in rows}
    chosen = {s.name for s in (only if only is not None else specs)}
    done = {s.name for s in specs if s.name in chosen and status(s) == "done"}
    plan = []
    for r in rows:
        if r.spec.name not in done:
            continue
        try:
            run = load_run(r.spec.workdir, encoding_options=r.options, pe=r.pe)
        except EvalError as e:
            raise SweepError(f"row {r.row!r}: {e}") from None
        run.label = r.label
        plan += [(run, L) for L in lengths(r.spec)]
    per_run_dir = os.path.join(output_dir, PER_RUN)
    if plan:
        check_runs(list({id(run): run for run, _ in plan}.values()))
        evaluate(plan, settings, per_run_dir, log=log)
        copy_train_logs(output_dir, [s for s in specs if s.name in done])
    else:
        log(f"No finished run to evaluate here; the table is rebuilt from the rows in {per_run_dir}.")
    wanted = {(r.label, os.path.abspath(r.spec.workdir), L) for r in rows for L in lengths(r.spec)}
    order = {label: i for i, label in enumerate(row_of)}  # the table's row order, whoever scored a row
    scored = sorted(
        (r for r in report.read_results(per_run_dir)
         if (r["label"], r["run_path"], r["eval_len"]) in wanted
         and json.dumps(r.get("protocol_key"), sort_keys=True) == protocol_key),
        key=lambda r: (order[r["label"]], r["eval_len"]),
    )  # fmt: skip
    if not scored:
        log("No results to tabulate yet.")
        return []
    _check_nothing_lost(output_dir, scored, row_of, wanted)
    table = aggregate.aggregate(scored, row_of)
    in_table = {row_of[r["label"]][1].name for r in scored}
    cost = training_cost(output_dir, [s for s in specs if s.name in in_table])
    written = aggregate.write(output_dir, scored, row_of, table, sweep.name, cost)
    provenance.record(output_dir, evaluated=sorted(done), rows_in_table=len(scored))
    log(f"Wrote {', '.join(written)} to {output_dir} ({len(scored)} rows: {len(plan)} evaluated now, the rest kept)")
    return table


def _check_nothing_lost(output_dir: str, scored: list, row_of: dict, wanted: set) -> None:
    """Refuses to write a table that drops a (row, run, length) the folder's table has and the
    sweep still names, because its per-run row is missing (per_run/ deleted or replaced)."""
    try:
        with open(os.path.join(output_dir, "results.json")) as f:
            earlier = json.load(f).get("runs", [])
    except (OSError, ValueError, AttributeError):
        return
    have = {(r["label"], r["eval_len"]) for r in scored}
    labels = {(row, os.path.abspath(spec.workdir)): label for label, (row, spec) in row_of.items()}
    lost = []
    for r in earlier:
        label = labels.get((r.get("row"), os.path.abspath(r.get("run") or "")))
        if label is not None and (label, os.path.abspath(r["run"]), r["eval_len"]) in wanted:
            if (label, r["eval_len"]) not in have:
                lost.append(f"{r['row']} {r['run']} at {r['eval_len']}")
    if lost:
        raise SweepError(
            f"{output_dir}/results.json has {len(lost)} row(s) that {PER_RUN}/ no longer holds (e.g. {lost[0]}); "
            f"writing the table would drop them. Restore {PER_RUN}/ (e.g. from git), or use another --output_dir."
        )


def copy_train_logs(output_dir: str, specs: list) -> None:
    """Each run's training record (log, metrics, config, code version) into
    ``output_dir/train_logs/NAME/``; files a run does not have are skipped."""
    for spec in specs:
        paths = Workdir(spec.workdir)
        target = os.path.join(output_dir, TRAIN_LOGS, spec.name)
        for name in (LOG, METRICS, CONFIG, CODE_VERSION):
            source = os.path.join(paths.path, name)
            if os.path.isfile(source):
                os.makedirs(target, exist_ok=True)
                shutil.copy2(source, os.path.join(target, name))


def training_cost(output_dir: str, specs: list) -> dict:
    """The sweep's measured training time from the copied metrics (``train_logs/``): the sum
    over runs of each run's first to last logged step (pauses of a resumed run included, so
    an upper bound; startup and compile are not in it), and how many runs it covers."""
    seconds, measured = 0.0, 0
    for spec in specs:
        path = os.path.join(output_dir, TRAIN_LOGS, spec.name, METRICS)
        times = []
        if os.path.isfile(path):
            with open(path) as f:
                for line in f:
                    try:
                        times.append(json.loads(line)["time"])
                    except (ValueError, KeyError, TypeError):
                        pass  # a line cut short by a kill
        if times:
            seconds, measured = seconds + max(times) - min(times), measured + 1
    return dict(train_s=seconds, runs_measured=measured, runs=len(specs))
