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

import errno
import os

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


# Write failures an operator fixes on the machine, and what to do about each.
DISK_FAULTS = {
    errno.ENOSPC: "free space on that disk",
    errno.EDQUOT: "free space or raise the disk quota",
    errno.EFBIG: "raise the file size limit (ulimit -f) or free space",
    errno.EROFS: "the file system is mounted read-only: remount it read-write or choose another "
                 "home (--home, FAILCAST_HOME)",
    errno.EACCES: "give this user write permission there, or choose another home (--home, "
                  "FAILCAST_HOME)",
    errno.EPERM: "give this user write permission there, or choose another home (--home, "
                 "FAILCAST_HOME)",
}


def disk_fault(exc: BaseException, what: str) -> ResourceError | None:
    """The one-line ``ResourceError`` for a write that failed on the disk, or None.

    ``what`` names the resource and its path (``"the warehouse /x/warehouse.duckdb"``). Libraries
    report these failures in their own words (Python's ``OSError``, Polars' ``ComputeError``,
    DuckDB's ``IOException``), all carrying the system's text, so the text decides.
    """
    code = getattr(exc, "errno", None)
    if code not in DISK_FAULTS:
        text = str(exc)
        code = next((c for c in DISK_FAULTS if os.strerror(c) in text), None)
    if code is None:
        return None
    return ResourceError(f"cannot write {what}: {os.strerror(code)}; {DISK_FAULTS[code]}, "
                         "then run the command again")
