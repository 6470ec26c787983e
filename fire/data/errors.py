"""The one error type of the data layer."""


class DataError(ValueError):
    """Bad data input: unknown names, unreadable or empty corpora, impossible requests.

    Raised with a single message that says what was asked for and what was found,
    so a user can fix the config without reading a traceback.
    """
