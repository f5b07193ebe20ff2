"""Errors a user can cause: the CLI prints them as one line and exits non-zero."""

__all__ = ["UserError"]


class UserError(Exception):
    """A problem with the input (path, revision, file), not a bug."""
