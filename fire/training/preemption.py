"""Stopping at a step boundary: SIGTERM (a scheduler's preemption notice) and Ctrl-C.

The loop asks :meth:`Preemption.reached` once per step; every process answers the same (one
all-gather), so a multi-host run saves the same step everywhere and stops together.
"""

import os
import signal
import threading

import jax
import numpy as np
from jax.experimental import multihost_utils


class Preemption:
    """SIGTERM (a preemption notice) and Ctrl-C (SIGINT) set a flag; the loop saves and exits
    at the next step boundary, all processes at the same step. A second Ctrl-C exits at once
    (KeyboardInterrupt), without saving."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.requested = None  # the first signal received
        self.previous = {}
        if threading.current_thread() is threading.main_thread():  # handlers only install there
            self.previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}

    def _handle(self, signum, frame):
        if signum == signal.SIGINT and self.requested is not None:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt("a second Ctrl-C: stopped at once, without saving")
        self.requested = self.requested or signal.Signals(signum)
        if signum == signal.SIGINT and jax.process_index() == 0:
            # os.write, not print: a handler may interrupt a print to the same stream.
            os.write(1, b"Ctrl-C: saving at the end of this step, then stopping (Ctrl-C again to stop at once).\n")

    def reached(self) -> bool:
        if jax.process_count() == 1:
            return self.requested is not None
        return bool(multihost_utils.process_allgather(np.array(self.requested is not None)).any())

    @property
    def interrupted(self) -> bool:
        """Stopped by Ctrl-C (not a preemption notice)."""
        return self.requested == signal.SIGINT

    def restore(self):
        for s, handler in self.previous.items():
            signal.signal(s, handler)
