"""Errors a user can fix: the CLI prints them as one line and exits with code 2."""


class UsageError(Exception):
    """A bad argument or input the user can correct; the message says what to fix."""
