"""The input contract: where a source directory keeps each file and which columns it must have.

A source directory holds ``systems.csv`` and ``incidents.csv`` (required), and optionally
``changes.csv``, ``calendar.csv``, ``failcast.toml`` and a ``metrics/`` tree of ``.parquet`` and
``.csv`` files at any depth. This module finds those files and fails with a message that names
the file and column when the contract is broken; row-level rules live in ``features.validate``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import polars as pl

from features.errors import DataError

SYSTEMS, INCIDENTS, CHANGES, CALENDAR, SETTINGS = (
    "systems.csv",
    "incidents.csv",
    "changes.csv",
    "calendar.csv",
    "failcast.toml",
)
METRICS_DIR = "metrics"

REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "systems": ("system_id",),
    "incidents": ("incident_id", "system_id", "opened_at", "severity"),
    "changes": ("change_id", "system_id", "scheduled_start"),
    "metrics": ("ts", "system_id", "metric", "value"),
}
OPTIONAL_COLUMNS: dict[str, tuple[str, ...]] = {
    "systems": ("name", "category", "owner", "tier", "depends_on", "active_from", "active_to"),
    "incidents": ("resolved_at", "category", "title", "root_cause", "remediation"),
    "changes": (
        "scheduled_end",
        "created_at",
        "change_type",
        "risk_level",
        "status",
        "description",
    ),
    "metrics": (),
}


class SourceError(DataError):
    """The source directory breaks the input contract in a way no row-level repair can fix."""


@dataclass(frozen=True)
class Source:
    """The files of one source directory."""

    root: Path
    metric_parquet: tuple[Path, ...] = field(default=())
    metric_csv: tuple[Path, ...] = field(default=())

    @classmethod
    def open(cls, root: str | Path) -> Source:
        root = Path(root).expanduser().resolve()
        if not root.is_dir():
            raise SourceError(f"source directory {root} does not exist")
        for name in (SYSTEMS, INCIDENTS):
            if not (root / name).is_file():
                raise SourceError(f"{root / name} is missing: a source needs {name}")
        metrics = root / METRICS_DIR
        parquet = tuple(sorted(metrics.rglob("*.parquet"))) if metrics.is_dir() else ()
        csv = tuple(sorted(metrics.rglob("*.csv"))) if metrics.is_dir() else ()
        return cls(root, parquet, csv)

    def path(self, name: str) -> Path:
        return self.root / name

    @property
    def has_changes(self) -> bool:
        return self.path(CHANGES).is_file()

    @property
    def has_metrics(self) -> bool:
        return bool(self.metric_parquet or self.metric_csv)

    @cached_property
    def metric_csv_exact(self) -> tuple[Path, ...]:
        """Metric CSV files with quotes or mixed line endings: read by ``features.csv_text``
        (RFC 4180), the rest by DuckDB's fast reader."""
        from features.csv_text import needs_exact_reader

        return tuple(p for p in self.metric_csv if needs_exact_reader(p))


def check_text_file(path: Path) -> None:
    """Fail clearly on an empty or non-UTF-8 file before a reader fails obscurely."""
    if path.stat().st_size == 0:
        raise SourceError(f"{path.name} is empty: it needs at least a header row")
    with path.open("rb") as handle:
        for line_number, line in enumerate(handle, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise SourceError(
                    f"{path.name} is not UTF-8 text (line {line_number}, byte {exc.start + 1}); "
                    "save it as UTF-8"
                ) from None


def require_columns(path: Path, present: list[str], required: tuple[str, ...]) -> None:
    missing = [c for c in required if c not in present]
    if missing:
        names = ", ".join(missing)
        raise SourceError(
            f"{path.name} is missing required column{'s' if len(missing) > 1 else ''} {names} "
            f"(found: {', '.join(present) or 'no columns'})"
        )


def read_text_table(path: Path, required: tuple[str, ...]) -> pl.DataFrame:
    """Read a small CSV as strings (RFC 4180), checking encoding and required columns.

    A damaged record (the file cut inside a quoted field, an unquoted comma) is an error that
    names the file and row: a table read whole, such as the calendar, has no quarantine.
    """
    from features.csv_text import read_csv_text

    check_text_file(path)
    text = read_csv_text(path)
    require_columns(path, text.header, required)
    if text.problems:
        row = min(text.problems)
        raise SourceError(f"{path.name} row {row}: {text.problems[row][0]}")
    return text.frame().drop("_row", "_problem", "_record")


def earliest_record_day(root: Path, timezone: str) -> dt.date | None:
    """The local date of the earliest incident opened or change scheduled in the source, or
    None when there is none. Cheap enough to ask whenever definitions are built; a file that
    cannot be read is skipped here and reported by the ingest, which reads it properly."""
    import duckdb

    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = ?", [timezone])
        found = []
        for name, column in ((INCIDENTS, "opened_at"), (CHANGES, "scheduled_start")):
            path = root / name
            if not path.is_file():
                continue
            try:
                ((day,),) = con.execute(
                    f"SELECT min(CAST(TRY_CAST(NULLIF(trim({column}), '') AS TIMESTAMPTZ) AS DATE)) "  # noqa: S608
                    "FROM read_csv(?, all_varchar = true, header = true, null_padding = true)",
                    [str(path)]).fetchall()
            except duckdb.Error:
                continue
            if day is not None:
                found.append(day)
        return min(found) if found else None
    finally:
        con.close()
