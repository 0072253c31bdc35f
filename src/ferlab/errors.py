"""The one exception type for problems a user can fix (bad paths, data, options)."""

__all__ = ["FerlabError"]


class FerlabError(Exception):
    """An expected error: the CLI prints its message, without a traceback, and exits non-zero."""
