"""Training a sweep's runs (all of them, or one worker's share), one ``train.py`` process each.

Each run trains in its own process, the command :meth:`RunSpec.command` prints, with its
output in the workdir's ``train.log``; while it trains, the sweep prints its progress (step,
tokens/s, the run's and the sweep's ETA) from the run's ``metrics.jsonl``. Runs are resumable
as ``train.py`` is: a finished run is skipped, an interrupted one continues from its
checkpoint. A run that another worker holds or has finished is reported as such, not as a
failure. A cluster can run the same commands instead (``--print_commands``), or N machines can
each take ``--shard=I/N`` (or a job array's index) with no coordination.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, Optional

from fire.checkpoint import latest_step
from fire.cli import EXIT_PREEMPTED
from fire.errors import Preempted
from fire.sweeps.plan import estimate
from fire.sweeps.spec import RunSpec, run_config
from fire.utils import format_duration
from fire.workdir import Workdir, WorkdirBusy

EXIT_BUSY = WorkdirBusy.exit_code  # train.py refused a workdir another process holds
PROGRESS_EVERY_S = 30.0  # at most one progress line per run this often


def status(spec: RunSpec) -> str:
    """``done``, ``partial`` (checkpoints short of num_steps) or ``new``."""
    if not Workdir(spec.workdir).is_run():
        return "new"
    step = latest_step(spec.workdir)
    if step is None:
        return "new"
    return "done" if step >= run_config(spec).num_steps else "partial"


def train_runs(specs: list, log: Callable = print, python: str = sys.executable) -> dict:
    """Trains every run not yet done, one after another; ``{name: outcome}`` with outcome
    ``done``, ``failed``, ``busy`` (another process holds its workdir: train.py exited 75) or
    ``done elsewhere`` (another worker finished it meanwhile).

    A failed run (non-zero exit) is reported with its log file and the others go on.

    Raises:
      fire.errors.Preempted: a SIGTERM reached the sweep (passed on to the run in training,
        which saved a checkpoint), or the run exited as preempted (code 143).
    """
    outcome = {}
    todo = [s for s in specs if status(s) != "done"]
    log(f"{len(specs)} run(s): {len(specs) - len(todo)} done, {len(todo)} to train.")
    for s in specs:
        if s not in todo:
            outcome[s.name] = "done"
    clock = SweepClock(todo)
    for k, spec in enumerate(todo, 1):
        head = f"[{k}/{len(todo)}] {spec.name}"
        log(f"{head}: training ({status(spec)}) | sweep ETA {clock.eta(spec, None)}")
        paths = Workdir(spec.workdir)
        os.makedirs(paths.path, exist_ok=True)
        t0 = time.perf_counter()
        watch = ProgressWatch(spec, head, clock, log)
        with open(paths.log, "a") as out:
            code, terminated = _train_child(spec.command(python), out, on_wait=watch.poll)
        if terminated or code == EXIT_PREEMPTED:
            how = "SIGTERM: passed on to the run, which" if terminated else "the run was preempted and"
            step = latest_step(spec.workdir)
            saved = "had no checkpoint yet" if step is None else f"saved step {step}"
            raise Preempted(f"{head}: {how} {saved} (exit {code}); the sweep stops here. Run the same command "
                            f"to resume.", step)  # fmt: skip
        clock.finished(spec, time.perf_counter() - t0)
        outcome[spec.name] = _outcome(spec, code)
        message = {
            "done": f"done in {format_duration(time.perf_counter() - t0)}",
            "done elsewhere": "finished by another worker meanwhile",
            "busy": f"in training by another process (its holder is named in {paths.log}); left to it",
            "failed": f"FAILED (exit {code}); see {paths.log}",
        }[outcome[spec.name]]
        log(f"{head}: {message}")
    return outcome


def _outcome(spec: RunSpec, code: int) -> str:
    """What a run's exit code means: 0 done; ``EXIT_BUSY`` another process holds the workdir
    (train.py refused it), which may have finished it meanwhile; anything else a failure,
    unless the run is done all the same."""
    finished = status(spec) == "done"
    if code == EXIT_BUSY:
        return "done elsewhere" if finished else "busy"
    return "done" if code == 0 or finished else "failed"


class SweepClock:
    """The sweep's ETA: the run in training's own rate, and each remaining run's FLOPs at the
    rate (FLOP/s) the sweep has measured so far (finished runs, else the run in training)."""

    def __init__(self, todo: list):
        self.flops = {s.name: estimate(s).flops for s in todo}
        self.remaining = [s.name for s in todo]
        self.done_flops = self.done_s = 0.0

    def finished(self, spec: RunSpec, seconds: float) -> None:
        self.remaining.remove(spec.name)
        self.done_flops, self.done_s = self.done_flops + self.flops[spec.name], self.done_s + seconds

    def eta(self, current: RunSpec, current_eta_s: Optional[float], current_rate: Optional[float] = None) -> str:
        """``'1h12m'``, or ``'?'`` before any rate is known."""
        rate = self.done_flops / self.done_s if self.done_s > 0 else current_rate
        if not rate:
            return "?"
        later = sum(self.flops[name] for name in self.remaining if name != current.name) / rate
        now = current_eta_s if current_eta_s is not None else self.flops[current.name] / rate
        return format_duration(now + later)


class ProgressWatch:
    """Prints a training run's progress from its ``metrics.jsonl`` while the sweep waits for it:
    ``[3/32] rope/tiny_L128_s1: step 400/1000 | 7.4k tok/s | run ETA 1m21s | sweep ETA 2h13m``."""

    def __init__(self, spec: RunSpec, head: str, clock: SweepClock, log: Callable):
        self.spec, self.head, self.clock, self.log = spec, head, clock, log
        self.metrics = Workdir(spec.workdir).metrics
        self.num_steps = run_config(spec).num_steps
        self.flops_per_step = clock.flops[spec.name] / self.num_steps
        self.last_step, self.last_time = None, time.monotonic()

    def poll(self) -> None:
        if time.monotonic() - self.last_time < PROGRESS_EVERY_S:
            return
        record = _last_progress(self.metrics)
        if record is None or record["step"] == self.last_step:
            return
        self.last_step, self.last_time = record["step"], time.monotonic()
        run_eta = (self.num_steps - record["step"]) / record["steps_per_s"]
        sweep_eta = self.clock.eta(self.spec, run_eta, record["steps_per_s"] * self.flops_per_step)
        self.log(f"{self.head}: step {record['step']}/{self.num_steps} | {record['tokens_per_s'] / 1e3:.1f}k tok/s | "
                 f"run ETA {format_duration(run_eta)} | sweep ETA {sweep_eta}")  # fmt: skip


def _last_progress(path: str) -> Optional[dict]:
    """The last record of ``metrics.jsonl`` with a throughput (its step, steps/s, tokens/s)."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - 16384))
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("steps_per_s") and {"step", "tokens_per_s"} <= set(record):
            return record
    return None


def _train_child(command: list, out, on_wait: Callable = lambda: None, poll_s: float = 1.0) -> tuple:
    """Runs one training process to its end: ``(exit code, whether a SIGTERM came)``,
    calling ``on_wait()`` every ``poll_s`` seconds meanwhile.

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
        while True:
            try:
                code = child.wait(timeout=poll_s)
                break
            except subprocess.TimeoutExpired:
                on_wait()
    except KeyboardInterrupt:
        child.wait()  # Ctrl-C reached the child too (one process group): it saves before the sweep stops
        raise
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
    return code, bool(received)


def summary(outcome: dict, specs: list) -> Optional[str]:
    """The failed runs with their logs, for stderr; None if none failed."""
    failed = [s for s in specs if outcome.get(s.name) == "failed"]
    if not failed:
        return None
    return "failed runs:\n" + "\n".join(f"  {s.name}: see {Workdir(s.workdir).log}" for s in failed)
