"""What a run reports: a progress line, ``metrics.jsonl`` and TensorBoard event files
(written with tensorboardX: no TensorFlow needed). Only process 0 writes."""

import json
import sys
import time

import jax

from fire.utils import format_duration
from fire.workdir import Workdir


class MetricsWriter:
    def __init__(self, workdir: str):
        self.active = jax.process_index() == 0
        if not self.active:
            return
        paths = Workdir(workdir)
        self.jsonl = open(paths.metrics, "a")
        from tensorboardX import SummaryWriter

        self.tensorboard = SummaryWriter(paths.tensorboard)

    def write(self, step: int, metrics: dict):
        if not self.active:
            return
        scalars = {k: float(v) for k, v in metrics.items()}
        self.jsonl.write(json.dumps({"step": step, "time": time.time(), **scalars}) + "\n")
        self.jsonl.flush()
        for k, v in scalars.items():
            self.tensorboard.add_scalar(k, v, step)

    def close(self):
        if self.active:
            self.jsonl.close()
            self.tensorboard.close()


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
