"""Check a source directory against the contract without touching the warehouse."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import duckdb
import polars as pl

from features.ingest import MetricsProfile, profile_metrics
from features.source import Source
from features.validate import StageResult, stage_source_tables


@dataclass(frozen=True)
class SourceReport:
    source: Source
    tables: list[StageResult]
    metrics: MetricsProfile
    quarantine: pl.DataFrame  # table_name, reason, column_name, rows, examples
    incidents_span: tuple[dt.datetime | None, dt.datetime | None]
    max_share: float

    @property
    def worst_share(self) -> float:
        shares = [t.reject_share for t in self.tables]
        if self.metrics.rows:
            shares.append(int(self.metrics.problems["rows"].sum()) / self.metrics.rows)
        return max(shares, default=0.0)

    @property
    def usable(self) -> bool:
        systems = next(t for t in self.tables if t.table == "systems")
        return systems.rows_loaded > 0 and self.worst_share <= self.max_share


def validate_source(source: Source, timezone: str, max_share: float) -> SourceReport:
    """Stage every table in an in-memory DuckDB and profile every metric row."""
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = ?", [timezone])
        tables = stage_source_tables(con, source)
        metrics = profile_metrics(con, source, systems_table="staged_systems")
        quarantine = con.sql(
            """
            SELECT table_name, action, reason, column_name, count(*) AS rows,
                   min("row") AS example_row, any_value(raw_value) AS example_value
            FROM staged_quarantine GROUP BY ALL ORDER BY table_name, rows DESC
            """
        ).pl()
        span = con.execute("SELECT min(opened_at), max(opened_at) FROM staged_incidents").fetchall()[0]
    finally:
        con.close()
    return SourceReport(source, tables, metrics, quarantine, span, max_share)
