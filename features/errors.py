"""The problems failcast understands, and the exit code each one ends a command with.

Every library (``features``, ``models``) and the Dagster layer raise these for anything a user
or an operator can act on; the CLI prints the message as one line and exits with the class's
code. Anything else that escapes is a bug: exit 1, one line, ``FAILCAST_DEBUG=1`` for the
traceback. Messages name the thing (file and column, date, resource) and what to do.

    exit 0   success (review-change: approve)
    exit 1   an internal error: a bug, please report it
    exit 2   usage or data: the command line, a setting, the source or the warehouse's
             contents do not allow what was asked (including a night refused by a check)
    exit 3   a resource failcast needs is unavailable (MLflow, the warehouse file, the disk):
             nothing was changed; fix the resource and run the command again
    exit 10  review-change: extra review
    exit 20  review-change: defer
"""

from __future__ import annotations

EXIT_OK, EXIT_BUG, EXIT_USAGE, EXIT_RESOURCE = 0, 1, 2, 3


class FailcastError(Exception):
    """A problem failcast understands; its message is the one line a user reads."""

    exit_code = EXIT_USAGE


class UsageError(FailcastError, ValueError):
    """The command line or a setting asks for something that cannot be done as asked."""


class DataError(FailcastError, ValueError):
    """The data (the source, or what the warehouse holds) does not allow what was asked."""


class NightRefused(DataError):
    """A nightly run was stopped before publishing: its data is stale, missing or damaged."""


class ResourceError(FailcastError):
    """An outside resource (MLflow, the warehouse file, the disk) is unavailable."""

    exit_code = EXIT_RESOURCE
