"""Published files for a target day: Parquet, CSV and the CAB's HTML page.

Each file is written under a temporary name of its own (the writer's process id and a random
part) in the same folder and renamed into place, so a reader never sees half a file, a crash
leaves the previous version where it was, and two writers of the same day never write into
each other's file. Temporary files a killed writer left behind are removed by the next one.

The files of a day are written before its rows are committed to ``risk_scores`` (the publish
assets run in that order): a day the table serves always has its page. The CSV is
spreadsheet-safe (``models.spreadsheet``). A full or read-only disk ends in one line.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from contextlib import suppress
from pathlib import Path

import polars as pl
import psutil

from features.errors import DataError, disk_fault
from models.spreadsheet import write_safe_csv

PARTIAL = re.compile(r"^\..+\.(?P<pid>\d+)-[0-9a-f]+\.partial$")
ABANDONED_AFTER_S = 60  # a partial file this old whose writer is gone is abandoned


def _partial_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(6)}.partial")


def remove_abandoned_partials(folder: Path) -> int:
    """Delete temporary files of writers that died; how many."""
    removed = 0
    for path in folder.glob(".*.partial"):
        found = PARTIAL.match(path.name)
        with suppress(OSError):
            old = time.time() - path.stat().st_mtime > ABANDONED_AFTER_S
            if old and not (found and psutil.pid_exists(int(found["pid"]))):
                path.unlink()
                removed += 1
    return removed


def write_atomically(path: Path, write, what: str = "the published file") -> None:
    """Write ``path`` whole or not at all: ``write(temporary path)``, then rename into place."""
    partial = _partial_name(path)
    try:
        write(partial)
        os.replace(partial, path)
    except Exception as exc:
        fault = disk_fault(exc, f"{what} {path}")
        if fault is not None:
            raise fault from None
        raise
    finally:
        with suppress(OSError):
            partial.unlink(missing_ok=True)


def publish_files(out_dir: Path, scores: pl.DataFrame, html: str) -> dict[str, Path]:
    """Write ``risk_scores.parquet``, ``risk_scores.csv`` and ``change_review.html``."""
    if scores.is_empty():
        raise DataError("nothing to publish: no scores")
    target = scores["target_date"][0]
    folder = out_dir / str(target)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fault = disk_fault(exc, f"the published folder {folder}")
        if fault is not None:
            raise fault from None
        raise
    remove_abandoned_partials(folder)
    files = {
        "parquet": folder / "risk_scores.parquet",
        "csv": folder / "risk_scores.csv",
        "html": folder / "change_review.html",
    }
    write_atomically(files["parquet"], scores.write_parquet)
    write_atomically(files["csv"], lambda p: write_safe_csv(scores, p))
    write_atomically(files["html"], lambda p: p.write_text(html, encoding="utf-8"))
    return files
