"""Check a source directory against the contract without touching the warehouse."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import duckdb
import polars as pl

from features.ingest import MetricsProfile, profile_metrics
from features.source import Source
from features.trading_time import TradingCalendar
from features.validate import StageResult, stage_source_tables


@dataclass(frozen=True)
class SourceReport:
    """What ``failcast validate`` found, judged by the rules of the nightly's blocking checks:
    each source table's rejected share over the whole table, and the metrics' rejected share
    per as-of day (the partition the nightly loads)."""

    source: Source
    tables: list[StageResult]
    metrics: MetricsProfile
    quarantine: pl.DataFrame  # table_name, reason, column_name, rows, examples
    incidents_span: tuple[dt.datetime | None, dt.datetime | None]
    max_share: float

    @property
    def day_shares(self) -> pl.DataFrame:
        """as_of, rows, rejected, share of every as-of day that holds metric rows."""
        days = self.metrics.days
        return days.with_columns(share=pl.col("rejected") / pl.col("rows"))

    @property
    def refused_days(self) -> pl.DataFrame:
        """The as-of days whose nightly run the quarantine check would stop."""
        return self.day_shares.filter(pl.col("share") > self.max_share)

    @property
    def refused_tables(self) -> list[StageResult]:
        return [t for t in self.tables if t.reject_share > self.max_share]

    @property
    def worst_share(self) -> float:
        shares = [t.reject_share for t in self.tables] + self.day_shares["share"].to_list()
        return max(shares, default=0.0)

    @property
    def usable(self) -> bool:
        systems = next(t for t in self.tables if t.table == "systems")
        return (systems.rows_loaded > 0 and not self.refused_tables
                and self.refused_days.is_empty())


def validate_source(source: Source, calendar: TradingCalendar, max_share: float) -> SourceReport:
    """Stage every table in an in-memory DuckDB and profile every metric row, per as-of day."""
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = ?", [calendar.timezone])
        tables = stage_source_tables(con, source)
        metrics = profile_metrics(con, source, systems_table="staged_systems", calendar=calendar)
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
