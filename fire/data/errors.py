"""The one error type of the data layer."""

from fire.errors import UserError


class DataError(UserError, ValueError):
    """Bad data input: unknown names, unreadable or empty corpora, impossible requests.

    Raised with a single message that says what was asked for and what was found,
    so a user can fix the config without reading a traceback.
    """
