"""The task sweep: every task run at every test length, scored by exact match of its
greedily decoded answers, reusing what was computed before.

:func:`sweep` checks every input before any compute (the runs, one task for all, the
lengths, the output folder), then scores each ``(run, length)`` on the test set of
``fire.evaluation.task_scoring`` (the evaluation seed's examples, the same for every run) and
rewrites the results after every length, so an interrupted sweep loses at most the length in
flight. Rows computed before into the same folder (``cache.jsonl``) are reused when the run,
its checkpoint and config, the length and the protocol (task options, examples, evaluation
seed, decoding) all match; rows of other runs or lengths stay in the report, as in the length
sweep (``fire.evaluation.length_sweep``).
"""

import dataclasses
import re
import time
from typing import Callable, Mapping, Optional

from fire import provenance
from fire.config import max_position as run_max_position
from fire.config import task_of
from fire.encodings import LengthError
from fire.evaluation import task_report
from fire.evaluation.length_sweep import Cache, check_writable, config_hash, finish, kept_rows, row_key, save_row
from fire.evaluation.runs import EvalError, TrainedRun, load_runs
from fire.evaluation.scoring import check_positions, positions_label, randomized_positions
from fire.evaluation.task_scoring import evaluation_examples, score_task, score_task_teacher_forced
from fire.model.generate import GenerationError
from fire.tasks import Task, TaskError, build_task

TASK_SCORER_VERSION = 1  # bumped when a change of the scorer changes its numbers
DEFAULT_EXAMPLES = 500
DEFAULT_FACTORS = (1, 2, 4, 8)  # default test lengths: the longest training length times these
_RANGE = re.compile(r"^(\d+):(\d+)(?::(\d+))?$")


def parse_lengths(values) -> list:
    """``['5', '10:30:10']`` -> ``[5, 10, 20, 30]``: lengths and inclusive ranges
    ``START:STOP[:STEP]``, sorted, each once. Raises EvalError for anything else."""
    lengths = set()
    for value in map(str, values):
        value = value.strip()
        match = _RANGE.match(value)
        if match:
            start, stop, step = int(match[1]), int(match[2]), int(match[3] or 1)
            if start > stop or step < 1:
                raise EvalError(f"--lengths range {value}: give START:STOP[:STEP] with START <= STOP and STEP >= 1.")
            lengths.update(range(start, stop + 1, step))
        elif value.isdigit():
            lengths.add(int(value))
        else:
            raise EvalError(f"--lengths takes integers and ranges START:STOP[:STEP], got {value!r}.")
    if any(L < 1 for L in lengths):
        raise EvalError(f"--lengths must be at least 1, got {min(lengths)}.")
    return sorted(lengths)


def default_lengths(task: Task, run: TrainedRun) -> list:
    """The training range's ends, then its longest length times ``DEFAULT_FACTORS``, within
    what the task can make."""
    low, high = run.config.task.min_len, run.config.task.max_len
    top = task.max_length()
    return sorted({L for L in (low, *(high * k for k in DEFAULT_FACTORS)) if top is None or L <= top})


@dataclasses.dataclass(frozen=True)
class TaskProtocol:
    """What a task row measures besides the run and the length."""

    n_examples: int = DEFAULT_EXAMPLES
    eval_seed: int = 0
    batch_size: int = 64  # examples decoded together (a speed setting: not part of the key)
    positions: str = "ordinary"  # or randomized: scored teacher-forced (the KV cache decodes at 0..T-1)
    position_seed: int = 0

    def __post_init__(self):
        """Raises EvalError for no examples, a batch below 1, a negative seed, or an unknown
        positions mode."""
        if self.n_examples < 1 or self.batch_size < 1:
            raise EvalError(f"n_examples ({self.n_examples}) and batch_size ({self.batch_size}) must be at least 1.")
        if self.eval_seed < 0:
            raise EvalError(f"the evaluation seed must be >= 0, got {self.eval_seed}.")
        check_positions(self.positions, self.position_seed)

    @property
    def decoding(self) -> str:
        return "greedy" if self.positions == "ordinary" else "teacher-forced"

    def key(self, task: Task) -> dict:
        key = dict(name=f"task:{task.name}", task_options=dataclasses.asdict(task), n_examples=self.n_examples,
                   eval_seed=self.eval_seed, decoding=self.decoding)  # fmt: skip
        if self.positions == "randomized":
            key.update(positions="randomized", position_seed=self.position_seed)
        return key


def load_task_runs(patterns, task_options: Optional[Mapping] = None) -> tuple:
    """The runs and the task they are tested on (their task, with ``task_options`` changed:
    an evaluation-time variant such as passkey's ``depth``), checked before any compute.

    Raises:
      EvalError: a language-modelling run, runs of different tasks or training options, or
        options that change the task's vocabulary.
      TaskError: an unknown task option or a value the task cannot honour.
    """
    runs = load_runs(patterns)
    trained = {}
    for run in runs:
        task = task_of(run.config)
        if task is None:
            raise EvalError(
                f"{run.workdir} is a language-modelling run (task=''): score it with eval_length.py; "
                f"eval_task.py scores runs trained on a task."
            )
        trained[run.workdir] = task
    tasks = {(t.name, repr(dataclasses.asdict(t))) for t in trained.values()}
    if len(tasks) > 1:
        which = ", ".join(f"{w}: {t.name} {dataclasses.asdict(t)}" for w, t in trained.items())
        raise EvalError(f"the runs were trained on different tasks ({which}); sweep each into its own --output_dir.")
    base = next(iter(trained.values()))
    task = build_task(base.name, {**dataclasses.asdict(base), **dict(task_options or {})})
    if task.vocabulary.fingerprint != base.vocabulary.fingerprint:
        raise EvalError(
            f"--task_option {', '.join(f'{k}={v}' for k, v in task_options.items())} changes task={task.name}'s "
            f"symbols, which the runs' embeddings are for: vary only options that keep them."
        )
    if task_options:
        variant = " [" + ", ".join(f"{k}={v}" for k, v in task_options.items()) + "]"
        for run in runs:
            run.label += variant
    return runs, task


def sweep(patterns, lengths, protocol: TaskProtocol, output_dir: str, task_options: Optional[Mapping] = None,
          log: Callable = print) -> list:  # fmt: skip
    """Scores every task run (workdirs or globs) at every test length (default
    :func:`default_lengths`), writes ``output_dir`` (``fire.evaluation.task_report``) and
    returns the rows.

    Raises:
      EvalError, TaskError: bad input (:func:`load_task_runs`, :func:`parse_lengths`, a length
        the task cannot make, an output folder that cannot be written), before any compute.
    """
    runs, task = load_task_runs(patterns, task_options)
    lengths = parse_lengths(lengths) if lengths else None
    plan = [(run, L) for run in runs for L in (lengths or default_lengths(task, run))]
    return evaluate(plan, task, protocol, output_dir, log)


def evaluate(plan: list, task: Task, protocol: TaskProtocol, output_dir: str, log: Callable = print) -> list:
    """Scores each ``(TrainedRun, length)`` of ``plan`` (runs loaded and checked, labels set)
    on ``task``'s test sets, reusing and writing ``output_dir`` as :func:`sweep` does.

    Raises:
      TaskError: a length the task cannot make; EvalError: an output folder that cannot be
        written. Both before any compute."""
    for L in sorted({L for _, L in plan}):
        try:
            task.check_length(L)
        except TaskError as e:
            raise TaskError(f"--lengths: {e}") from None
    if protocol.positions == "randomized":
        for run, L in plan:  # the longest example's inputs need that many distinct ids
            bound = run_max_position(run.config)
            if task.max_tokens(L) - 1 > bound:
                fits = max((k for k in range(1, L) if task.max_tokens(k) - 1 <= bound), default=None)
                raise EvalError(
                    f"{run.label}: randomized positions draw up to {task.max_tokens(L) - 1} distinct ids at {L} "
                    f"{task.length_unit}, more than the run's [0, {bound}) holds: test at lengths up to {fits}, or "
                    f"with --positions=ordinary."
                )
    check_writable(output_dir)
    cache = Cache(output_dir, TASK_SCORER_VERSION)
    protocol_key = protocol.key(task)
    found = task_report.read_results(output_dir)
    if any("exact_match" not in r for r in found):
        raise EvalError(f"{output_dir} holds results of eval_length.py (log-perplexity): give the task sweep its "
                        f"own --output_dir.")  # fmt: skip
    earlier = kept_rows(found, plan, protocol_key)
    examples, rows, n_reused = {}, [], 0
    for i, (run, L) in enumerate(plan, 1):
        identity = dict(run_path=run.path, step=run.step, config_hash=config_hash(run), eval_len=L,
                        protocol_key=protocol_key)  # fmt: skip
        row = cache.get(row_key(identity))
        if row is None:
            run.params(log)  # reading may skip a damaged newest step: the row is then the older step's
            identity["step"] = run.step
            row = cache.get(row_key(identity))
        reused = row is not None
        if not reused:
            if L not in examples:
                examples[L] = evaluation_examples(task, L, protocol.n_examples, protocol.eval_seed)
            row = {**_score(run, task, examples[L], protocol), **identity, **provenance.row_stamp()}
        n_reused += reused
        row = {**row, "label": run.label, "run": run.workdir}
        rows.append(row)
        log(progress_line(i, len(plan), row, reused))
        save_row(cache, row, not reused and row["exact_match"] is not None,
                 lambda: task_report.write_results(output_dir, earlier + rows))  # fmt: skip
        if i == len(plan) or plan[i][0] is not run:
            run.release()
    finish(output_dir, plan, rows, len(earlier), n_reused, lambda: task_report.write_plots(output_dir, earlier + rows),
           log)  # fmt: skip
    return rows


def _score(run: TrainedRun, task: Task, examples: list, protocol: TaskProtocol) -> dict:
    """One row's measurement: the run's fields, the task's, the scores and their counts."""
    info = {**run.info(), "task_options": dataclasses.asdict(task), "length_unit": task.length_unit}
    max_position = run_max_position(run.config)
    randomized = protocol.positions == "randomized"
    fields = dict(n_examples=len(examples), decoding=protocol.decoding, eval_seed=protocol.eval_seed,
                  positions=positions_label(protocol.positions, protocol.position_seed, max_position),
                  scorer=TASK_SCORER_VERSION,
                  protocol=f"task:{task.name}" + (", randomized positions" if randomized else ""))  # fmt: skip
    t0 = time.perf_counter()
    try:
        if randomized:
            ids = lambda length, rows: randomized_positions(protocol.position_seed, length, rows, max_position)
            score = score_task_teacher_forced(run.model, run.params(), task, examples, ids, protocol.batch_size,
                                              run.model_cfg.attention)  # fmt: skip
        else:
            score = score_task(run.model, run.params(), task, examples, protocol.batch_size, run.model_cfg.attention)
    except (LengthError, GenerationError) as e:
        return {**info, **fields, "exact_match": None, "token_accuracy": None, "note": str(e)}
    return {
        **info, **fields, "exact_match": score.exact_match, "token_accuracy": score.token_accuracy,
        "exact": score.exact, "correct_tokens": score.correct_tokens, "n_answer_tokens": score.n_answer_tokens,
        "time_s": time.perf_counter() - t0,
    }  # fmt: skip


def progress_line(i: int, total: int, row: dict, reused: bool) -> str:
    head = f"[{i}/{total}] {row['label']} | {row['task']} at {row['eval_len']} {row['length_unit']}"
    if row["exact_match"] is None:
        return f"{head} | {row['note']}"
    scores = (
        f"exact match {row['exact_match']:.1%} ({row['exact']}/{row['n_examples']}) | token accuracy "
        f"{row['token_accuracy']:.1%} ({row['correct_tokens']}/{row['n_answer_tokens']})"
    )
    return f"{head} | {scores} | " + ("reused" if reused else f"{row['time_s']:.1f}s")
