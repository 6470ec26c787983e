"""What the command lines share: every error a user can cause is one line on stderr and exit
code 2, wherever it is raised (flag parsing, the config file absl loads, the run itself);
Ctrl-C is one line and exit code 130, a preemption (SIGTERM, after saving) one line and exit
code 143; ``KEY=VALUE`` options parsed as Python values."""

import ast
import logging as py_logging
import os
import sys
import traceback
from typing import Callable, NoReturn, Optional

from fire.errors import Preempted, UserError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C
EXIT_PREEMPTED = 143  # 128 + SIGTERM: a preempted run saved its checkpoint but is not finished
# Libraries that log their own view of a failure (with tracebacks, from their threads) that the
# command line already reports as one line: their errors are quiet unless --verbosity is given.
QUIET_LIBRARIES = ("orbax", "tensorstore", "grain", "tensorflow_datasets")


def one_line(text) -> str:
    """``text`` with every run of whitespace (newlines included) made one space."""
    return " ".join(str(text).split())


def fail(message, code: int = EXIT_USER_ERROR) -> NoReturn:
    """Prints ``error: MESSAGE`` (one line) on stderr and exits with ``code`` (2; a
    :class:`~fire.errors.UserError` may carry its own ``exit_code``, e.g. 75 for a workdir
    another process holds).

    Library log records after it are dropped: the storage libraries log their shutdown at
    INFO (one record per closed store), which on a loaded machine can land after the line."""
    print(f"error: {one_line(message)}", file=sys.stderr, flush=True)
    py_logging.disable(py_logging.CRITICAL)
    sys.exit(code)


def report_user_errors(main: Callable[[], object]):
    """Runs ``main()``; a :class:`~fire.errors.UserError` prints ``error: ...`` and exits 2 (or
    its ``exit_code``: 75 when another process holds the workdir), Ctrl-C prints
    ``interrupted`` and exits 130, :class:`~fire.errors.Preempted` prints ``preempted: ...``
    and exits 143 (no traceback in any case)."""
    try:
        return main()
    except UserError as e:
        fail(e, getattr(e, "exit_code", EXIT_USER_ERROR))
    except Preempted as e:
        print(one_line(f"preempted: {e}"), file=sys.stderr, flush=True)
        sys.exit(EXIT_PREEMPTED)
    except KeyboardInterrupt as e:
        print(one_line(f"interrupted: {e}" if str(e) else "interrupted"), file=sys.stderr, flush=True)
        sys.exit(EXIT_INTERRUPTED)


def _chain(e: BaseException) -> list:
    """``e`` and the exceptions it was raised from or while handling, outermost first."""
    chain = []
    while e is not None and e not in chain:
        chain.append(e)
        e = e.__cause__ or e.__context__
    return chain


def flag_error_message(e: BaseException) -> str:
    """The one line a flag-parsing error comes down to: the innermost user error in its chain
    (a config file's ``ConfigError``, which ml_collections re-raises with a traceback in its
    text), else the library's own message with any traceback text cut away."""
    from absl import flags

    chain = _chain(e)
    users = [x for x in chain if isinstance(x, UserError)]
    if users:
        return str(users[-1])
    text = str(e) if isinstance(e, flags.Error) else f"{type(e).__name__}: {e}"
    if "Traceback (most recent call last)" in text:  # a config file failed with a non-user error
        head = text.split("Traceback (most recent call last)")[0].rstrip(": \n")
        last = [line.strip() for line in text.splitlines() if line.strip()][-1]
        text = f"{head}: {last}"
    return one_line(text.replace("Error whilst parsing config file:", "cannot load the config file:"))


def run_app(main: Callable[[list], object], check_argv: Optional[Callable[[list], None]] = None) -> None:
    """``absl.app.run(main)``, but every error a user can cause ends as one line and exit 2:
    errors while parsing flags (an unknown or ill-typed flag, a config file that fails to load,
    an unknown ``--config.`` key), and :class:`UserError` and Ctrl-C from ``main``.

    ``check_argv(argv)`` runs before absl parses ``argv`` and raises :class:`UserError` for
    what absl would report badly (e.g. an unknown ``--config.`` key, with the nearest names).
    """
    from absl import app, flags

    def parse(argv):
        try:
            if check_argv is not None:
                check_argv(argv)
            return flags.FLAGS(argv)
        except UserError as e:
            fail(e)
        except Exception as e:  # flags.Error, and what config files and ml_collections raise
            fail(flag_error_message(e))

    def run(argv):
        if not flags.FLAGS["verbosity"].present:
            quiet_libraries()
        return report_user_errors(lambda: main(argv))

    app.run(run, flags_parser=parse)


class _Quiet(py_logging.Filter):
    """Drops the libraries' ERROR records (their echo of a failure reported as one line);
    their warnings and CRITICAL records pass."""

    def filter(self, record) -> bool:
        if record.levelno != py_logging.ERROR:
            return True
        path = record.pathname.replace(os.sep, "/")
        return not any(f"/{lib}/" in path for lib in QUIET_LIBRARIES)


def _from_libraries(unraisable) -> bool:
    """Whether an unraisable exception comes from the storage libraries' own threads and event
    loops (asyncio callbacks of a write that failed after its save was abandoned)."""
    files = [frame.filename for frame in traceback.extract_tb(unraisable.exc_traceback)]
    files.append(repr(unraisable.object))
    return any(f"/{lib}/" in f.replace(os.sep, "/") for f in files for lib in ("asyncio", *QUIET_LIBRARIES))


def _quiet_unraisable(unraisable) -> None:
    if not _from_libraries(unraisable):
        sys.__unraisablehook__(unraisable)


def quiet_libraries() -> None:
    """Drops the storage and data libraries' ERROR records and the unraisable exceptions of
    their threads: they echo failures the command line reports itself (one line), with
    tracebacks."""
    from absl import logging

    logging.set_verbosity(logging.WARNING)  # orbax and grain log every save at INFO
    logger = logging.get_absl_logger()
    if not any(isinstance(f, _Quiet) for f in logger.filters):
        logger.addFilter(_Quiet())
    sys.unraisablehook = _quiet_unraisable


def parse_value(text: str):
    """A command-line value as Python: numbers, True/False, None, else the string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_options(items) -> dict:
    """``['a=1', 'b=x']`` -> ``{'a': 1, 'b': 'x'}``. Raises UserError for an item without ``=``."""
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"expected KEY=VALUE, got {item!r}.")
        options[key.strip()] = parse_value(value.strip())
    return options
