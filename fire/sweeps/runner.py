"""Running a sweep: train every run (or one worker's share), then evaluate and aggregate.

Each run trains in its own ``train.py`` process, the command :meth:`RunSpec.command` prints,
with its output in the workdir's log; a run that fails is reported with that log and the
sweep goes on. Runs are resumable as ``train.py`` is: a finished run is skipped, an
interrupted one continues from its checkpoint. A cluster can run the same commands instead
(``--print_commands``), or N machines can each take ``--shard=I/N`` with no coordination.
"""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, Optional

from fire.checkpoint import latest_step
from fire.data import Protocol
from fire.evaluation import Settings
from fire.evaluation.length_sweep import evaluate
from fire.evaluation.runs import EvalError, check_runs, load_run
from fire.model import ModelConfig, abstract_params, count_params, train_flops_per_token
from fire.sweeps import aggregate
from fire.sweeps.spec import RunSpec, SweepError, eval_settings, named_pairs, run_config
from fire.training.trainer import build, compile_step
from fire.utils import format_bytes, format_count, format_duration
from fire.workdir import Workdir

MARKER = "sweep.json"  # in the results folder: which sweep it belongs to
BYTES_VOCAB = 259  # fire.data's byte tokenizer: 256 bytes, PAD, BOS, EOS


@dataclasses.dataclass(frozen=True)
class Cost:
    """What a run will cost: parameters, tokens seen and training FLOPs (PaLM's count)."""

    n_params: int
    tokens: int
    flops: float


def estimate(spec: RunSpec) -> Cost:
    """The run's cost from its config alone (no data, no compile). The vocabulary is the
    byte tokenizer's, or the configured SentencePiece size."""
    config = run_config(spec)
    vocab_size = config.data.spm_vocab_size if config.data.tokenizer == "sentencepiece" else BYTES_VOCAB
    cfg = ModelConfig.from_run_config(config, vocab_size)
    tokens = config.num_steps * config.batch_size * config.train_len
    return Cost(count_params(abstract_params(cfg)), tokens, train_flops_per_token(cfg, config.train_len) * tokens)


def compiled_memory(spec: RunSpec) -> dict:
    """The train step compiled for the run's shapes on this process's devices (its mesh
    from the config): XLA's plan per device in bytes, nothing allocated, no data read."""
    config = run_config(spec)
    vocab_size = config.data.spm_vocab_size if config.data.tokenizer == "sentencepiece" else BYTES_VOCAB
    setup = build(config, vocab_size=vocab_size)
    m = compile_step(setup).memory_analysis()
    return dict(mesh=dict(setup.mesh.shape), arguments=m.argument_size_in_bytes, outputs=m.output_size_in_bytes,
                temporaries=m.temp_size_in_bytes)  # fmt: skip


def status(spec: RunSpec) -> str:
    """``done``, ``partial`` (checkpoints short of num_steps) or ``new``."""
    if not Workdir(spec.workdir).is_run():
        return "new"
    step = latest_step(spec.workdir)
    if step is None:
        return "new"
    return "done" if step >= run_config(spec).num_steps else "partial"


def train_runs(specs: list, log: Callable = print, python: str = sys.executable) -> dict:
    """Trains every run not yet done, one after another; ``{name: 'done' | 'failed'}``.

    A failed run (non-zero exit) is reported with its log file and the others go on.
    """
    outcome, durations = {}, []
    todo = [s for s in specs if status(s) != "done"]
    log(f"{len(specs)} run(s): {len(specs) - len(todo)} done, {len(todo)} to train.")
    for s in specs:
        if s not in todo:
            outcome[s.name] = "done"
    for k, spec in enumerate(todo, 1):
        eta = format_duration(sum(durations) / len(durations) * (len(todo) - k + 1)) if durations else "?"
        log(f"[{k}/{len(todo)}] training {spec.name} ({status(spec)}) | ETA {eta}")
        paths = Workdir(spec.workdir)
        os.makedirs(paths.path, exist_ok=True)
        t0 = time.perf_counter()
        with open(paths.log, "a") as out:
            code, terminated = _train_child(spec.command(python), out)
        if terminated:
            log(f"[{k}/{len(todo)}] SIGTERM: passed on to {spec.name}, which saved a checkpoint (exit {code}); "
                "the sweep stops here. Run the same command to resume.")  # fmt: skip
            sys.exit(128 + signal.SIGTERM)
        durations.append(time.perf_counter() - t0)
        outcome[spec.name] = "done" if code == 0 and status(spec) == "done" else "failed"
        if outcome[spec.name] == "failed":
            log(f"[{k}/{len(todo)}] FAILED {spec.name} (exit {code}); see {paths.log}")
        else:
            log(f"[{k}/{len(todo)}] done {spec.name} in {format_duration(durations[-1])}")
    return outcome


def _train_child(command: list, out) -> tuple:
    """Runs one training process to its end: ``(exit code, whether a SIGTERM came)``.

    A SIGTERM to the sweep (a scheduler's preemption notice) is passed on to the child, which
    saves a checkpoint and exits; Ctrl-C reaches both already (one process group).
    """
    child = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    received = []

    def pass_on(signum, frame):
        received.append(signum)
        child.send_signal(signum)

    in_main_thread = threading.current_thread() is threading.main_thread()  # where handlers can be set
    previous = signal.signal(signal.SIGTERM, pass_on) if in_main_thread else None
    try:
        code = child.wait()
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
    return code, bool(received)


def check_output_dir(output_dir: str, sweep_name: str) -> None:
    """The results folder belongs to one sweep: refuse another's, claim a new one."""
    marker = os.path.join(output_dir, MARKER)
    if os.path.exists(marker):
        with open(marker) as f:
            owner = json.load(f).get("sweep")
        if owner != sweep_name:
            raise SweepError(f"{output_dir} holds the results of sweep {owner!r}, not {sweep_name!r}: "
                             f"choose another output_dir.")  # fmt: skip
        return
    os.makedirs(output_dir, exist_ok=True)
    with open(marker, "w") as f:
        json.dump({"sweep": sweep_name}, f)


def evaluate_runs(sweep, specs: list, log: Callable = print) -> list:
    """Length-sweeps every finished run (and the evaluation-time variants), then aggregates
    over seeds into the sweep's output folder. Returns the aggregate rows."""
    settings_ = eval_settings(sweep)
    settings = Settings(Protocol(settings_["protocol"], settings_["eval_tokens"], settings_["stride"]))
    done = [s for s in specs if status(s) == "done"]
    if not done:
        log("No finished run to evaluate.")
        return []
    variants = {"": (None, None)}
    for name, v in named_pairs(sweep.get("eval_variants")):
        variants[name] = (set(v.get("rows") or [s.row for s in specs]), dict(v["encoding"]))
    plan, row_of = [], {}
    for name, (rows, options) in variants.items():
        for spec in done:
            if rows is not None and spec.row not in rows:
                continue
            # "train_len" stands for the run's training length.
            run_options = {k: spec.train_len if v == "train_len" else v for k, v in (options or {}).items()}
            try:
                run = load_run(spec.workdir, encoding_options=run_options or None)
            except EvalError as e:
                raise SweepError(f"eval variant {name!r}: {e}") from None
            row = f"{spec.row} [{name}]" if name else spec.row
            run.label = f"{row} {os.path.basename(spec.workdir)}"
            row_of[run.label] = (row, spec)
            plan += [(run, L) for L in settings_["lengths"] or [spec.train_len * k for k in settings_["factors"]]]
    check_runs(list({id(r): r for r, _ in plan}.values()))
    per_run_dir = os.path.join(sweep.output_dir, "per_run")
    rows = evaluate(plan, settings, per_run_dir, log=log)
    table = aggregate.aggregate(rows, row_of)
    written = aggregate.write(sweep.output_dir, rows, row_of, table, sweep.name)
    log(f"Wrote {', '.join(written)} to {sweep.output_dir}")
    return table


def dry_run(specs: list, log: Callable = print, memory: bool = False) -> None:
    """Lists the runs with their status and cost; with ``memory``, also the train step's
    compiled memory per device for the mesh the devices form."""
    tokens = flops = 0
    for k, spec in enumerate(specs, 1):
        cost = estimate(spec)
        tokens, flops = tokens + cost.tokens, flops + cost.flops
        line = (f"[{k}/{len(specs)}] {spec.name} | {status(spec)} | {format_count(cost.n_params)} params | "
                f"{format_count(cost.tokens)} tokens | {cost.flops:.2e} FLOP")  # fmt: skip
        if memory:
            m = compiled_memory(spec)
            line += (f" | mesh {m['mesh']}: per device {format_bytes(m['arguments'])} arguments, "
                     f"{format_bytes(m['temporaries'])} temporaries")  # fmt: skip
        log(line)
    log(f"total: {len(specs)} runs, {format_count(tokens)} tokens, {flops:.2e} FLOP")


def summary(outcome: dict, specs: list) -> Optional[str]:
    failed = [s for s in specs if outcome.get(s.name) == "failed"]
    if not failed:
        return None
    return "failed runs:\n" + "\n".join(f"  {s.name}: see {Workdir(s.workdir).log}" for s in failed)
