"""Published files for a target day: Parquet, CSV and the CAB's HTML page.

Each file is written under a temporary name in the same folder and renamed into place, so a
reader never sees half a file and a crash leaves the previous version where it was.
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

from features.errors import DataError


def _atomic(path: Path, write) -> None:
    partial = path.with_name(f".{path.name}.partial")
    try:
        write(partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def publish_files(out_dir: Path, scores: pl.DataFrame, html: str) -> dict[str, Path]:
    """Write ``risk_scores.parquet``, ``risk_scores.csv`` and ``change_review.html``."""
    if scores.is_empty():
        raise DataError("nothing to publish: no scores")
    target = scores["target_date"][0]
    folder = out_dir / str(target)
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "parquet": folder / "risk_scores.parquet",
        "csv": folder / "risk_scores.csv",
        "html": folder / "change_review.html",
    }
    _atomic(files["parquet"], scores.write_parquet)
    _atomic(files["csv"], scores.write_csv)
    _atomic(files["html"], lambda p: p.write_text(html, encoding="utf-8"))
    return files
