"""Errors a user can cause, reported by the command lines as one line, never a traceback.

Every such error derives from :class:`UserError`; the command-line tools catch that one
class (``fire.cli.run_main``). Each subsystem keeps its own subclass so a caller can tell
them apart (``fire.data.DataError``, ``fire.encodings.UnknownEncodingError``, ...). They are
also ``ValueError``s or ``RuntimeError``s, as Python code expects of bad input.
"""


class UserError(Exception):
    """Input the run cannot honour: the message says what was asked and what to do."""


class ConfigError(UserError, ValueError):
    """A configuration the run cannot honour, caught before any compute."""


class NonFiniteLossError(UserError, RuntimeError):
    """The loss, or the state a checkpoint would hold, became NaN or Inf; the last good
    (finite) checkpoint is kept."""


class Preempted(Exception):
    """A preemption notice (SIGTERM) stopped the run after it saved a checkpoint: the run is
    not finished, and re-running the same command resumes it. The command lines exit with
    code 143 (128 + SIGTERM, what a shell reports for a process SIGTERM stopped), so that
    ``train.py && next-step`` does not go on with an unfinished run."""

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step  # the step saved
