"""Errors a user can fix: the CLI prints them as one line and exits with code 2."""


class UsageError(Exception):
    """A bad argument or input the user can correct; the message says what to fix."""


def first_line(exc: BaseException) -> str:
    """Returns the first line of an exception's message (a library's may span many), or its type's name when it
    has none."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
