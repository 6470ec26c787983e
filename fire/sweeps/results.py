"""A sweep's results folder: claimed by one sweep, grown by every evaluation, never replaced
by a partial one.

    OUTPUT/
      sweep.json        the sweep the folder belongs to (another sweep's is refused)
      results.md, results.csv, results.json, length_curve.png
                        the table over seeds (fire.sweeps.aggregate) of every row in
                        per_run/ that belongs to the sweep's runs, whichever command scored it
      per_run/          the length sweep's own folder (fire.evaluation.length_sweep; a task
                        sweep's: fire.evaluation.task_sweep), which keeps every row it did
                        not re-score
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
from fire.config import task_of
from fire.data import Protocol
from fire.evaluation import Settings, length_sweep, report, task_sweep
from fire.evaluation.runs import EvalError, check_runs, load_run
from fire.evaluation.task_sweep import TaskProtocol
from fire.sweeps import aggregate
from fire.sweeps.runner import status
from fire.sweeps.spec import RunSpec, SweepError, eval_settings, named_pairs, run_config
from fire.workdir import CODE_VERSION, CONFIG, LOG, METRICS, Workdir, results_lock, write_atomic

MARKER = "sweep.json"
PER_RUN = "per_run"
TRAIN_LOGS = "train_logs"


def check_output_dir(output_dir: str, sweep_name: str) -> None:
    """The results folder belongs to one sweep: claim a missing or empty one, accept this
    sweep's, refuse another sweep's or a folder holding anything else.

    Raises:
      SweepError: naming the folder and what to do."""
    marker = os.path.join(output_dir, MARKER)
    if os.path.exists(marker):
        try:
            with open(marker) as f:
                owner = json.load(f)["sweep"]
        except (OSError, ValueError, KeyError, TypeError):
            raise SweepError(f"{marker} cannot be read, so the folder's sweep is unknown: if the folder is "
                             f"{sweep_name!r}'s, write {{\"sweep\": \"{sweep_name}\"}} into it; else choose "
                             f"another --output_dir.") from None  # fmt: skip
        if owner != sweep_name:
            raise SweepError(f"{output_dir} holds the results of sweep {owner!r}, not {sweep_name!r}: "
                             f"choose another output_dir (--output_dir).")  # fmt: skip
        return
    if os.path.isdir(output_dir) and os.listdir(output_dir):
        found = ", ".join(sorted(os.listdir(output_dir))[:5])
        raise SweepError(f"{output_dir} holds files of no sweep ({found}): its tables would be replaced. Choose "
                         f"another --output_dir, or an empty or new folder.")  # fmt: skip
    try:
        os.makedirs(output_dir, exist_ok=True)
        write_atomic(marker, json.dumps({"sweep": sweep_name}))
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
    positions: str = "ordinary"  # or randomized: the evaluation's position ids

    @property
    def label(self) -> str:
        return f"{self.row} {os.path.basename(self.spec.workdir)}"


def table_rows(sweep, specs: list) -> list:
    """Every (row, run) of the table, in the table's order: each trained row's runs, followed by
    the evaluation-time variants (``eval_variants``) of that row. A variant that sets ``pe`` is
    the row of that encoding (named by the variant, e.g. ``rope_pi`` on the ``rope`` runs); one
    that sets encoding options or ``positions`` (randomized position ids at evaluation) is
    ``ROW [NAME]``. ``"train_len"`` in an option stands for the
    run's training length.

    The variants are checked when the sweep is expanded (``fire.sweeps.spec.check_eval_variants``)."""
    trained = list(dict.fromkeys(spec.row for spec in specs))
    variants = named_pairs(sweep.get("eval_variants"))
    out = []
    for row in trained:
        runs = [spec for spec in specs if spec.row == row]
        out += [Row(row, spec) for spec in runs]
        for name, v in variants:
            if row in (v.get("rows") or trained):
                pe, encoding = v.get("pe"), dict(v.get("encoding") or {})
                for spec in runs:
                    options = {k: spec.train_len if x == "train_len" else x for k, x in encoding.items()}
                    out.append(Row(name if pe else f"{row} [{name}]", spec, options or None, pe,
                                   v.get("positions") or "ordinary"))  # fmt: skip
    return out


def evaluate_runs(
    sweep, specs: list, log: Callable = print, output_dir: Optional[str] = None, only=None, prune: bool = False
) -> list:
    """Length-sweeps (a task sweep's runs: task-sweeps) the finished runs among ``only`` (default: all of ``specs``) and their
    evaluation-time variants into ``output_dir/per_run`` (default: the sweep's output_dir),
    then rebuilds the table from every row there that belongs to the sweep. Returns the
    aggregate rows. The folder is held for this process meanwhile.

    A cell of the folder's table (row, size, training length, evaluation length, seed) that
    neither ``per_run/`` nor this evaluation would give again (its run left the sweep, the
    protocol or lengths changed, ``per_run/`` was deleted) is never dropped silently: the
    evaluation is refused before any compute, unless ``prune`` (then the dropped cells are
    logged; ``per_run/`` keeps its rows).

    Raises:
      SweepError: a variant a run cannot take, or cells the table would lose.
      WorkdirBusy: another process is writing to the folder.
    """
    output_dir = output_dir or sweep.output_dir
    given = eval_settings(sweep)
    task = task_of(run_config(specs[0]))  # expand() checked that every run shares it
    if task is None:
        settings = lambda positions: Settings(Protocol(given["protocol"], given["eval_tokens"], given["stride"]),
                                              positions=positions)  # fmt: skip
        protocol_key = lambda positions: json.dumps(settings(positions).key(), sort_keys=True)
        lengths = lambda spec: given["lengths"] or [spec.train_len * k for k in given["factors"]]
        evaluate = lambda plan, positions: length_sweep.evaluate(plan, settings(positions), per_run_dir, log=log)
    else:
        protocol = lambda positions: TaskProtocol(n_examples=given["n_examples"], eval_seed=given["eval_seed"],
                                                  positions=positions)  # fmt: skip
        protocol_key = lambda positions: json.dumps(protocol(positions).key(task), sort_keys=True)
        fixed = task_sweep.parse_lengths(given["lengths"]) if given["lengths"] else None
        top = task.max_length() or float("inf")
        max_len = {spec.name: run_config(spec).task.max_len for spec in specs}  # each config built once
        lengths = lambda spec: fixed or [L for L in (max_len[spec.name] * k for k in given["factors"]) if L <= top]
        evaluate = lambda plan, positions: task_sweep.evaluate(plan, task, protocol(positions), per_run_dir, log=log)
    rows = table_rows(sweep, specs)
    row_of = {r.label: (r.row, r.spec) for r in rows}
    cell = lambda row, spec, L: (row, spec.size, spec.train_len, L, spec.seed)
    chosen = {s.name for s in (only if only is not None else specs)}
    done = {s.name for s in specs if s.name in chosen and status(s) == "done"}
    wanted = {(r.label, os.path.abspath(r.spec.workdir), L) for r in rows for L in lengths(r.spec)}
    key_of_label = {r.label: protocol_key(r.positions) for r in rows}
    per_run_dir = os.path.join(output_dir, PER_RUN)

    def sweep_rows() -> list:
        """The rows of ``per_run/`` that are cells of this sweep's table, in the table's order."""
        order = {label: i for i, label in enumerate(row_of)}
        found = [r for r in report.read_results(per_run_dir) if (r["label"], r["run_path"], r["eval_len"]) in wanted
                 and json.dumps(r.get("protocol_key"), sort_keys=True) == key_of_label[r["label"]]]  # fmt: skip
        return sorted(found, key=lambda r: (order[r["label"]], r["eval_len"]))

    with results_lock(output_dir, log):
        plans, planned = {}, set()  # positions -> (run, length) pairs
        for r in rows:
            if r.spec.name not in done:
                continue
            try:
                run = load_run(r.spec.workdir, encoding_options=r.options, pe=r.pe)
            except EvalError as e:
                raise SweepError(f"row {r.row!r}: {e}") from None
            run.label = r.label
            plans.setdefault(r.positions, []).extend((run, L) for L in lengths(r.spec))
            planned |= {cell(r.row, r.spec, L) for L in lengths(r.spec)}
        kept = {cell(*row_of[x["label"]], x["eval_len"]) for x in sweep_rows()}
        _check_nothing_lost(output_dir, kept | planned, prune, log)
        plan = [pair for group in plans.values() for pair in group]
        if plan:
            check_runs(list({id(run): run for run, _ in plan}.values()))
            for positions, group in plans.items():
                evaluate(group, positions)
            copy_train_logs(output_dir, [s for s in specs if s.name in done])
        else:
            log(f"No finished run to evaluate here; the table is rebuilt from the rows in {per_run_dir}.")
        scored = sweep_rows()
        if not scored:
            log("No results to tabulate yet.")
            return []
        table = aggregate.aggregate(scored, row_of)
        in_table = {row_of[r["label"]][1].name for r in scored}
        missing = [s.name for s in specs if s.name not in in_table]
        cost = training_cost(output_dir, [s for s in specs if s.name in in_table])
        written = aggregate.write(output_dir, scored, row_of, table, sweep.name, cost, missing)
        provenance.record(output_dir, evaluated=sorted(done), rows_in_table=len(scored), runs_missing=missing)
    log(
        f"Wrote {', '.join(written)} to {output_dir} ({len(scored)} rows: {len(plan)} from the runs evaluated now, the rest kept)"
    )
    if missing:
        log(f"Not in the table yet: {len(missing)} run(s) with no rows here ({', '.join(missing[:5])}"
            f"{', ...' if len(missing) > 5 else ''}): train them, then evaluate again.")  # fmt: skip
    return table


def _check_nothing_lost(output_dir: str, available: set, prune: bool, log: Callable) -> None:
    """Refuses (before any compute) a table that would lose a cell of the folder's table, i.e.
    one of ``results.json``'s rows that ``available`` (the cells the new table will have) lacks;
    with ``prune`` the lost cells are logged instead."""
    try:
        with open(os.path.join(output_dir, "results.json")) as f:
            earlier = json.load(f)["runs"]
    except (OSError, ValueError, KeyError, TypeError):
        return  # no table yet (check_output_dir refuses a folder holding anything else)
    lost = [r for r in earlier if (r["row"], r["size"], r["train_len"], r["eval_len"], r["seed"]) not in available]
    if not lost:
        return
    rows = list(dict.fromkeys(r["row"] for r in lost))
    what = (f"{len(lost)} cell(s) of {output_dir}'s table, in row(s) {', '.join(rows)} (e.g. {lost[0]['row']} "
            f"{lost[0]['size']} L{lost[0]['train_len']} seed {lost[0]['seed']} at {lost[0]['eval_len']})")  # fmt: skip
    if prune:
        log(f"--prune: dropping {what} from the table; {PER_RUN}/ keeps their rows.")
        return
    raise SweepError(
        f"this evaluation would drop {what}: no row of the sweep's runs in {PER_RUN}/ gives them (their runs "
        f"left the sweep, its protocol or lengths changed, or {PER_RUN}/ lost rows). Restore them (e.g. from git), "
        f"write to another --output_dir, or pass --prune to drop them."
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
