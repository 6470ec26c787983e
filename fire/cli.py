"""What the command lines share: a user's error is one line on stderr and exit code 2."""

import sys
from typing import Callable

from fire.errors import UserError

EXIT_USER_ERROR = 2


def report_user_errors(main: Callable[[], object]):
    """Runs ``main()``; a :class:`~fire.errors.UserError` prints ``error: ...`` and exits 2."""
    try:
        return main()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
