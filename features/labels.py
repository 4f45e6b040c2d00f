"""Labels: did a failure open in the label window ``(cutoff(d), cutoff(next session)]``?

A label is *known* once its window has closed: the label of ``d`` is known at the cutoff of
the next session. ``labels`` returns only labels known at ``known_at`` (an as-of day), which is
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
FROM feature_keys b
LEFT JOIN incidents i
  ON i.system_id = b.system_id AND i.severity <= ?
 AND i.opened_at > b.cutoff_utc AND i.opened_at <= b.target_cutoff_utc
GROUP BY ALL
"""


def labels(
    con: duckdb.DuckDBPyConnection,
    calendar: TradingCalendar,
    keys: pl.DataFrame,
    max_severity: int,
    known_at: dt.date | None = None,
) -> pl.DataFrame:
    """Labels of the (system_id, as_of) rows in ``keys``.

    With ``known_at``, rows whose window closes after ``known_at``'s cutoff are dropped, and so
    are incidents opened after that cutoff: nothing later than the as-of day can leak in.
    """
    if keys.is_empty():
        return keys.select("system_id", "as_of").with_columns(
            target_date=pl.lit(None, pl.Date), label=pl.lit(None, pl.Boolean),
            failures=pl.lit(None, pl.Int64))
    first, last = keys["as_of"].min(), keys["as_of"].max()
    if known_at is not None:
        last = min(last, calendar.previous_session(calendar.next_session(known_at)))
        known_sessions = [d for d in calendar.sessions(first, last) if calendar.next_session(d) <= known_at]
        if not known_sessions:
            return labels(con, calendar, keys.head(0), max_severity)
        last = known_sessions[-1]
    sessions = calendar.session_table(first, last).select("as_of", "cutoff_utc", "target_cutoff_utc",
                                                          "target_date")
    frame = keys.select("system_id", "as_of").join(sessions, on="as_of", how="inner")
    con.register("feature_keys", frame)
    try:
        return con.sql(LABELS, params=[max_severity]).pl().sort("as_of", "system_id")
    finally:
        con.unregister("feature_keys")
