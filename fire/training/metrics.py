"""What a run reports: a progress line, ``metrics.jsonl`` and TensorBoard event files. Only
process 0 writes.

Each step is recorded once across resumes: a run that starts at step S (its checkpoint) first
drops what an earlier start recorded past S from both files, since those steps run again.
Event files are written here, synchronously (TFRecord framing of tensorboardX's protos: no
TensorFlow, no writer thread that could die unseen on a full disk).
"""

import json
import os
import socket
import struct
import sys
import time

import jax
from tensorboardX.proto import event_pb2, summary_pb2
from tensorboardX.record_writer import masked_crc32c

from fire.utils import format_duration
from fire.workdir import Workdir, WorkdirError

EVENTS_PREFIX = "events.out.tfevents."


class MetricsWriter:
    """``metrics.jsonl`` and a new event file; ``start_step``: the step the run starts from
    (records past it, from an earlier start, are dropped first).

    Raises:
      WorkdirError: the files cannot be written (a full disk, a read-only folder).
    """

    def __init__(self, workdir: str, start_step: int = 0):
        self.active = jax.process_index() == 0
        if not self.active:
            return
        paths = Workdir(workdir)
        self.path = paths.path
        try:
            keep_until(paths, start_step)
            self.jsonl = open(paths.metrics, "a")
            self.events = EventFile(paths.tensorboard)
        except OSError as e:
            raise self._error(e) from None

    def _error(self, e: OSError) -> WorkdirError:
        return WorkdirError(
            f"Cannot write metrics in {self.path}: {e.strerror or e}. Checkpoints are kept; fix the cause "
            f"(free space, permissions) and re-run the same command to resume."
        )

    def write(self, step: int, metrics: dict):
        if not self.active:
            return
        scalars = {k: float(v) for k, v in metrics.items()}
        try:
            self.jsonl.write(json.dumps({"step": step, "time": time.time(), **scalars}) + "\n")
            self.jsonl.flush()
            self.events.write(step, scalars)
        except OSError as e:
            raise self._error(e) from None

    def close(self):
        if self.active:
            try:
                self.jsonl.close()
            finally:
                self.events.close()


# ---------------------------------------------------------------- TensorBoard event files


def _frame(data: bytes) -> bytes:
    """One TFRecord: length, its masked CRC-32C, the data, its masked CRC-32C."""
    header = struct.pack("<Q", len(data))
    return header + struct.pack("<I", masked_crc32c(header)) + data + struct.pack("<I", masked_crc32c(data))


def read_records(path: str) -> list:
    """The records of a TFRecord file, up to the first one cut off or damaged (a write a kill
    interrupted)."""
    with open(path, "rb") as f:
        data = f.read()
    records, pos = [], 0
    while pos + 12 <= len(data):
        header = data[pos : pos + 8]
        (length,) = struct.unpack("<Q", header)
        end = pos + 12 + length + 4
        if end > len(data) or struct.unpack("<I", data[pos + 8 : pos + 12])[0] != masked_crc32c(header):
            break
        record = data[pos + 12 : pos + 12 + length]
        if struct.unpack("<I", data[end - 4 : end])[0] != masked_crc32c(record):
            break
        records.append(record)
        pos = end
    return records


class EventFile:
    """A TensorBoard event file in ``folder``: ``events.out.tfevents.TIME.HOST.PID``."""

    def __init__(self, folder: str):
        name = f"{EVENTS_PREFIX}{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}"
        self.path = os.path.join(folder, name)
        self.file = open(self.path, "ab")
        self._append(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))

    def _append(self, event):
        self.file.write(_frame(event.SerializeToString()))
        self.file.flush()

    def write(self, step: int, scalars: dict):
        values = [summary_pb2.Summary.Value(tag=k, simple_value=v) for k, v in scalars.items()]
        self._append(event_pb2.Event(wall_time=time.time(), step=step, summary=summary_pb2.Summary(value=values)))

    def close(self):
        self.file.close()


def event_files(folder: str) -> list:
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.startswith(EVENTS_PREFIX))


def scalars(folder: str) -> list:
    """``[(step, tag, value), ...]`` of every event file in ``folder``, in file order."""
    out = []
    for path in event_files(folder):
        for record in read_records(path):
            event = event_pb2.Event.FromString(record)
            out += [(event.step, v.tag, v.simple_value) for v in event.summary.value]
    return out


# ---------------------------------------------------------------- one record per step


def _replace(path: str, content: bytes) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(content)
    os.replace(tmp, path)


def keep_until(paths: Workdir, step: int) -> None:
    """Drops from ``metrics.jsonl`` and the event files every record past ``step`` (and any
    line or record a kill cut off): a run resuming at ``step`` records those steps again."""
    if os.path.exists(paths.metrics):
        with open(paths.metrics, "rb") as f:
            lines = f.read().splitlines(keepends=True)
        kept = [line for line in lines if _row_step(line) is not None and _row_step(line) <= step]
        if len(kept) != len(lines) or (lines and not lines[-1].endswith(b"\n")):
            _replace(paths.metrics, b"".join(line if line.endswith(b"\n") else line + b"\n" for line in kept))
    for path in event_files(paths.tensorboard):
        records = read_records(path)
        kept = [r for r in records if _event_step(r) <= step]
        if len(kept) != len(records) or os.path.getsize(path) != sum(len(r) + 16 for r in records):
            _replace(path, b"".join(_frame(r) for r in kept))


def _row_step(line: bytes):
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return None  # cut off by a kill


def _event_step(record: bytes) -> int:
    """A summary event's step; -1 (always kept) for other events (the file version)."""
    event = event_pb2.Event.FromString(record)
    return event.step if event.HasField("summary") else -1


class Progress:
    """``step 120/2000 | loss 2.3100 | 45.2k tok/s | MFU 38.1% | ETA 3m12s``."""

    def __init__(self, num_steps: int, tokens_per_step: int, flops_per_step: float, peak_flops: float):
        self.num_steps, self.tokens_per_step = num_steps, tokens_per_step
        self.flops_per_step, self.peak_flops = flops_per_step, peak_flops
        self.last_time, self.last_step = None, None

    def start(self, step: int):
        self.last_time, self.last_step = time.perf_counter(), step

    def rates(self, step: int) -> dict:
        now = time.perf_counter()
        steps = step - self.last_step
        elapsed = now - self.last_time
        self.last_time, self.last_step = now, step
        if steps <= 0 or elapsed <= 0:
            return {}
        steps_per_s = steps / elapsed
        return {
            "steps_per_s": steps_per_s,
            "tokens_per_s": steps_per_s * self.tokens_per_step,
            "mfu": steps_per_s * self.flops_per_step / self.peak_flops,
        }

    def line(self, step: int, metrics: dict) -> str:
        parts = [f"step {step}/{self.num_steps}", f"loss {metrics['loss']:.4f}"]
        if "tokens_per_s" in metrics:
            parts += [
                f"{metrics['tokens_per_s'] / 1e3:.1f}k tok/s",
                f"MFU {100 * metrics['mfu']:.1f}%",
                f"ETA {format_duration((self.num_steps - step) / metrics['steps_per_s'])}",
            ]
        return " | ".join(parts)


def log(message: str):
    if jax.process_index() == 0:
        print(message, file=sys.stdout, flush=True)
