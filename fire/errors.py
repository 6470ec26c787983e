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
