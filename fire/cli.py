"""What the command lines share: a user's error is one line on stderr and exit code 2;
``KEY=VALUE`` options parsed as Python values."""

import ast
import sys
from typing import Callable

from fire.errors import UserError

EXIT_USER_ERROR = 2


def quiet_libraries() -> None:
    """absl logging at WARNING unless ``--verbosity`` was given: orbax and grain log every
    checkpoint they open or save at INFO."""
    from absl import flags, logging

    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)


def report_user_errors(main: Callable[[], object]):
    """Runs ``main()``; a :class:`~fire.errors.UserError` prints ``error: ...`` and exits 2."""
    try:
        return main()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)


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
