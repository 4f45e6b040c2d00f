"""A source as it stood at an instant: what the nightly run would have seen that evening.

``snapshot_source`` copies a source directory keeping only what was known at ``known_at``:

- incidents opened before it; one still open then has no ``resolved_at`` yet;
- changes raised before it (``created_at``, by default 7 days before ``scheduled_start``); one
  not finished by then (``scheduled_end``, or an hour after its start) still has the status it
  had while scheduled (``approved``; ``planned`` stays ``planned``), not its outcome;
- metric samples timestamped before it;
- ``systems.csv``, ``calendar.csv`` and ``failcast.toml`` as they are (the inventory has no
  history of its own).

Rows whose timestamps cannot be read are kept: they are quarantined either way. Timestamps follow
the contract (an offset is that instant, a naive one is local time in ``timezone``), parsed the
way ingestion parses them. It is how a test proves that the features of a night equal the
features computed later from the full history (``tests/test_as_known_then.py``).
"""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import dataclass
from pathlib import Path

import duckdb

from features.errors import UsageError
from features.source import CALENDAR, CHANGES, INCIDENTS, SETTINGS, SYSTEMS, Source

TS = "TRY_CAST(NULLIF(trim({col}), '') AS TIMESTAMPTZ)"
_CSV_IN = "read_csv(?, all_varchar = true, header = true)"
_CSV_OUT = "(FORMAT csv, HEADER true)"
FINAL_STATUSES = ("implemented", "failed", "rolled_back")

INCIDENTS_THEN = f"""
SELECT * REPLACE (
    CASE WHEN {TS.format(col='resolved_at')} >= $known THEN NULL ELSE resolved_at END AS resolved_at)
FROM {_CSV_IN.replace('?', '$path')}
WHERE {TS.format(col='opened_at')} < $known OR {TS.format(col='opened_at')} IS NULL
"""  # noqa: S608 - built from constants; data in parameters

CHANGES_THEN = f"""
WITH parsed AS (
    SELECT *, {TS.format(col='scheduled_start')} AS __start,
           coalesce({TS.format(col='created_at')},
                    {TS.format(col='scheduled_start')} - INTERVAL 7 DAY) AS __known,
           coalesce({TS.format(col='scheduled_end')},
                    {TS.format(col='scheduled_start')} + INTERVAL 1 HOUR) AS __ends
    FROM {_CSV_IN.replace('?', '$path')}
)
SELECT * EXCLUDE (__start, __known, __ends) REPLACE (
    CASE WHEN __ends > $known AND lower(trim(status)) IN {FINAL_STATUSES}
         THEN 'approved' ELSE status END AS status)
FROM parsed
WHERE __known < $known OR __start IS NULL
"""  # noqa: S608 - built from constants; data in parameters


@dataclass(frozen=True)
class Snapshot:
    out: Path
    known_at: dt.datetime
    incidents: int
    changes: int
    metric_files: int


def snapshot_source(source_dir: str | Path, out: str | Path, known_at: dt.datetime,
                    timezone: str, overwrite: bool = False) -> Snapshot:
    """Write the source at ``source_dir`` as it stood at ``known_at`` (aware) into ``out``."""
    if known_at.tzinfo is None:
        raise UsageError("known_at needs a time zone (naive times are local to the source)")
    source = Source.open(source_dir)
    out = Path(out).resolve()
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise UsageError(f"{out} is not empty; pass --overwrite to replace it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in (SYSTEMS, CALENDAR, SETTINGS):
        if source.path(name).is_file():
            shutil.copy2(source.path(name), out / name)
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = ?", [timezone])
        counts = {}
        for name, query in ((INCIDENTS, INCIDENTS_THEN), (CHANGES, CHANGES_THEN)):
            if not source.path(name).is_file():
                continue
            params = {"path": str(source.path(name)), "known": known_at}
            con.execute(f"COPY ({query}) TO '{_quoted(out / name)}' {_CSV_OUT}", params)  # noqa: S608
            ((counts[name],),) = con.execute(
                "SELECT count(*) FROM read_csv(?, all_varchar = true, header = true)",  # noqa: S608
                [str(out / name)]).fetchall()
        for path in (*source.metric_parquet, *source.metric_csv):
            _snapshot_metrics(con, path, out / path.relative_to(source.root), known_at)
    finally:
        con.close()
    files = len(source.metric_parquet) + len(source.metric_csv)
    return Snapshot(out, known_at, counts.get(INCIDENTS, 0), counts.get(CHANGES, 0), files)


def _snapshot_metrics(con: duckdb.DuckDBPyConnection, path: Path, target: Path,
                      known_at: dt.datetime) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        reader, fmt = "read_parquet(?, hive_partitioning = false)", "(FORMAT parquet)"
        kind = con.execute(f"DESCRIBE SELECT ts FROM {reader}", [str(path)]).fetchall()[0][1]  # noqa: S608
        # Naive Parquet timestamps are local time: cast under the connection's TimeZone.
        ts = "CAST(ts AS TIMESTAMPTZ)" if kind.upper().startswith("TIMESTAMP") \
            else TS.format(col="CAST(ts AS VARCHAR)")
    else:
        reader, fmt, ts = _CSV_IN, _CSV_OUT, TS.format(col="ts")
    con.execute(
        f"COPY (SELECT * FROM {reader.replace('?', '$path')} WHERE {ts} < $known OR {ts} IS NULL) "  # noqa: S608
        f"TO '{_quoted(target)}' {fmt}",
        {"path": str(path), "known": known_at})


def _quoted(path: Path) -> str:
    """A path as a SQL string literal (COPY TO takes no parameter for its target)."""
    return str(path).replace("'", "''")
