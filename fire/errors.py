"""Errors that mean "fix the input", reported as one clear line, never a traceback."""


class ConfigError(ValueError):
    """A configuration the run cannot honour, caught before any compute."""


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or Inf; the last good checkpoint is kept."""


def user_errors():
    """The exception types the command-line tools report without a traceback."""
    from fire.data import DataError
    from fire.encodings import LengthError, UnknownEncodingError
    from fire.evaluation import EvalError
    from fire.sharding import MeshError

    return (ConfigError, NonFiniteLossError, DataError, LengthError, UnknownEncodingError, MeshError, EvalError)
