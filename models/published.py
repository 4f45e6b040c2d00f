"""What was published for a target day, as the CAB and ``failcast risk`` read it.

``published_risk`` finds the day (the latest published target day by default), its rows in
rank order, the label window they forecast in words, and what every system shares that night
(``models.reasons.estate_effects``), so the command line only formats.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

import duckdb
import polars as pl

from features.errors import DataError
from features.trading_time import TradingCalendar
from features.warehouse import table_exists
from models import reasons
from models.scoring import PUBLISHED


@dataclass(frozen=True)
class PublishedDay:
    scores: pl.DataFrame  # risk_scores rows in rank order (one system's, when asked)
    as_of: dt.date
    target_date: dt.date
    window: str  # the label window in words
    shared: dict  # reasons.estate_effects of the whole day


def window_words(calendar: TradingCalendar, as_of: dt.date) -> str:
    """"between the cutoff of 2026-09-24 18:00 and the cutoff of 2026-09-28 18:00
    Asia/Shanghai (4 days)": the span a published risk is about."""
    window = calendar.label_window(as_of)
    span = (window.target_date - window.as_of).days
    return (f"between the cutoff of {window.start:%Y-%m-%d %H:%M} and the cutoff of "
            f"{window.end:%Y-%m-%d %H:%M} {calendar.timezone} ({span} day{'s' if span != 1 else ''})")


def published_risk(con: duckdb.DuckDBPyConnection, calendar: TradingCalendar,
                   target_date: dt.date | None = None, system: str | None = None) -> PublishedDay:
    """The published scores of ``target_date`` (default: the latest), optionally one system's."""
    if not table_exists(con, PUBLISHED):
        raise DataError("nothing published yet: run `failcast demo` or the nightly job")
    latest = con.execute(f"SELECT max(target_date) FROM {PUBLISHED}").fetchall()[0][0]  # noqa: S608
    day = target_date or latest
    frame = con.sql(f"SELECT * FROM {PUBLISHED} WHERE target_date = ? ORDER BY rank",  # noqa: S608
                    params=[day]).pl()
    if frame.is_empty():
        raise DataError(f"no published scores for target date {day} "
                        f"(latest published target date: {latest})")
    shared = reasons.estate_effects([json.loads(f or "[]") for f in frame["top_factors"].to_list()])
    as_of = frame["as_of"][0]
    if system is not None:
        frame = frame.filter(pl.col("system_id") == system)
        if frame.is_empty():
            raise DataError(f"no published score for system {system} on target date {day}")
    return PublishedDay(frame, as_of, day, window_words(calendar, as_of), shared)
