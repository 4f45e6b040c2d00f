"""Give the memory of freed frames back to the operating system between retrainings.

A retraining reads a few hundred megabytes of features from DuckDB into Polars and numpy, and
frees them when it is done. glibc's allocator keeps what was freed in its arenas for reuse, but
the next retraining's buffers rarely fit the holes the last one left, so a long walk-forward
grows: on the LANL records the DuckDB side of a walk-forward alone (training sets read and
dropped, no trees) held 1.37-1.45 GB after each week's frames were deleted, and 0.58-0.66 GB once
``malloc_trim`` had returned the free pages (docs/benchmarks.md, "LANL backtest memory").
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _trim():
    """glibc's ``malloc_trim``, or None where the C library is not glibc (macOS, musl)."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


def give_back_freed_memory() -> bool:
    """Return the allocator's free pages to the operating system; True where it could."""
    trim = _trim()
    if trim is None:
        return False
    trim(0)
    return True
