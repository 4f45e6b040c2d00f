"""Labels: did a failure open in the label window ``(cutoff(d), cutoff(next session)]``?

A label is *known* once its window has closed: the label of ``d`` is known at the cutoff of
the next session. Only labels known at ``known_at`` (an as-of day) are ever returned, which is
how training for an as-of day uses only what was known then.
"""

from __future__ import annotations

import datetime as dt

import duckdb
import polars as pl

from features.trading_time import TradingCalendar

LABELS = """
SELECT b.system_id, b.as_of, b.target_date,
       count(i.incident_id) > 0 AS label,
       count(i.incident_id) AS failures
FROM ({keys}) b
LEFT JOIN incidents i
  ON i.system_id = b.system_id AND i.severity <= ?
 AND i.opened_at > b.cutoff_utc AND i.opened_at <= b.target_cutoff_utc
GROUP BY ALL
"""

_KEYS_FROM_FRAME = """
SELECT k.system_id, k.as_of, s.target_date, s.cutoff_utc, s.target_cutoff_utc
FROM label_keys k JOIN label_sessions s ON s.as_of = k.as_of
"""
_KEYS_FROM_FEATURES = """
SELECT f.system_id, f.as_of, s.target_date, s.cutoff_utc, s.target_cutoff_utc
FROM system_day_features f JOIN label_sessions s ON s.as_of = f.as_of
"""


def known_sessions(calendar: TradingCalendar, first: dt.date, last: dt.date,
                   known_at: dt.date | None) -> list[dt.date]:
    """Sessions ``first..last`` whose label window has closed by ``known_at``'s cutoff."""
    sessions = calendar.sessions(first, last)
    if known_at is None:
        return sessions
    return [d for d in sessions if calendar.next_session(d) <= known_at]


def labels(
    con: duckdb.DuckDBPyConnection,
    calendar: TradingCalendar,
    keys: pl.DataFrame,
    max_severity: int,
    known_at: dt.date | None = None,
) -> pl.DataFrame:
    """Labels of the (system_id, as_of) rows in ``keys`` that are known at ``known_at``."""
    empty = pl.DataFrame(schema={"system_id": pl.String, "as_of": pl.Date, "target_date": pl.Date,
                                 "label": pl.Boolean, "failures": pl.Int64})
    if keys.is_empty():
        return empty
    days = known_sessions(calendar, keys["as_of"].min(), keys["as_of"].max(), known_at)
    if not days:
        return empty
    con.register("label_keys", keys.select("system_id", "as_of"))
    con.register("label_sessions", calendar.session_table(days[0], days[-1]))
    try:
        return con.sql(LABELS.format(keys=_KEYS_FROM_FRAME), params=[max_severity]).pl().sort(
            "as_of", "system_id")
    finally:
        con.unregister("label_keys")
        con.unregister("label_sessions")


def create_label_table(
    con: duckdb.DuckDBPyConnection,
    calendar: TradingCalendar,
    first: dt.date,
    last: dt.date,
    max_severity: int,
    known_at: dt.date,
) -> int:
    """TEMP table ``window_labels``: the known labels of every feature row in ``first..last``.

    Returns its number of rows."""
    days = known_sessions(calendar, first, last, known_at)
    if not days:
        con.execute("CREATE OR REPLACE TEMP TABLE window_labels (system_id VARCHAR, as_of DATE, "
                    "target_date DATE, label BOOLEAN, failures BIGINT)")
        return 0
    con.register("label_sessions", calendar.session_table(days[0], days[-1]))
    try:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE window_labels AS "
            + LABELS.format(keys=_KEYS_FROM_FEATURES),
            [max_severity],
        )
    finally:
        con.unregister("label_sessions")
    return con.execute("SELECT count(*) FROM window_labels").fetchall()[0][0]
