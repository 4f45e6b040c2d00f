"""Assemble ``system_day_features``: one row per system in service and as-of trading day.

The rows of a range of sessions are built in one batch (a backfill of a year is one pass per
query, not a query per day): a ``feature_base`` table of (system, as-of day, cutoff, window)
drives every feature query, each query returns frames keyed by (system_id, as_of), and Polars
joins them. Each day of the range becomes a partition of the lake table (``features.lake``);
the table's columns are the union of its partitions' columns, so a new metric adds columns without
rewriting the past.

Point in time: every query filters by the as-of day's cutoff from ``features.trading_time``;
the metric features read only the metric partitions up to that day.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

import duckdb
import polars as pl

from features.case_features import case_features
from features.change_actions import change_actions, with_signal_interactions
from features.change_features import change_features
from features.errors import DataError
from features.lake import Lake, LakeTable
from features.metric_features import LOOKBACK_SESSIONS, metric_features
from features.source import OPTIONAL_COLUMNS, REQUIRED_COLUMNS
from features.trading_time import LONG_BREAK_DAYS, TradingCalendar
from features.warehouse import quote_ident, table_columns, table_exists

TABLE = "system_day_features"
KEYS = ("system_id", "as_of", "target_date")
FEATURES_TABLE = LakeTable(TABLE, keys=KEYS)

FEATURE_BASE = """
CREATE OR REPLACE TEMP TABLE feature_base AS
SELECT s.system_id, s.tier, s.active_from, s.depends_on, d.*
FROM systems s JOIN base_sessions d
  ON (s.active_from IS NULL OR s.active_from <= d.as_of)
 AND (s.active_to IS NULL OR d.as_of <= s.active_to)
"""

INVENTORY = """
WITH downstream AS (
    SELECT upstream AS system_id, count(*) AS n_downstream
    FROM (SELECT unnest(depends_on) AS upstream FROM systems) GROUP BY upstream
)
SELECT b.system_id, b.as_of, b.target_date,
    b.tier, date_diff('day', b.active_from, b.as_of) AS age_days,
    len(b.depends_on) AS n_upstream, coalesce(n.n_downstream, 0) AS n_downstream,
    b.days_to_target, b.days_since_previous,
    b.days_to_target >= ? AS target_after_long_break,
    b.days_since_previous >= ? AS as_of_after_long_break,
    isodow(b.target_date) AS target_weekday,
    b.target_month_end, b.target_quarter_end
FROM feature_base b LEFT JOIN downstream n ON n.system_id = b.system_id
"""

# Extra numeric columns of systems.csv (memory, processors, ...) are inventory features too.
NUMERIC_ATTRIBUTES = """
WITH long AS (
    UNPIVOT (SELECT * EXCLUDE (name, category, owner, tier, depends_on, active_from, active_to)
             FROM systems)
    ON COLUMNS(* EXCLUDE (system_id)) INTO NAME attribute VALUE val
),
numeric AS (
    SELECT attribute FROM long GROUP BY attribute
    HAVING count(val) > 0 AND count(TRY_CAST(val AS DOUBLE)) = count(val)
)
SELECT b.system_id, b.as_of,
       'inv_' || regexp_replace(l.attribute, '[^A-Za-z0-9_]', '_', 'g') AS feature,
       TRY_CAST(l.val AS DOUBLE) AS value
FROM feature_base b JOIN long l ON l.system_id = b.system_id
WHERE l.attribute IN (SELECT attribute FROM numeric)
"""

# Counts over dependencies are zero, not unknown, for a system without dependencies.
ZERO_WHEN_MISSING = ("up_inc_1d", "up_inc_3d", "up_inc_7d", "up_inc_30d", "up_sev12_3d",
                     "up_chg_window", "up_chg_window_high")


@dataclass
class FeatureSummary:
    """What a (possibly chunked) build wrote, for metadata and checks."""

    first: dt.date
    last: dt.date
    rows: int = 0
    duplicates: int = 0
    null_counts: dict[str, int] = field(default_factory=dict)
    infinite: set[str] = field(default_factory=set)
    latest: pl.DataFrame = field(default_factory=pl.DataFrame)

    @property
    def features(self) -> list[str]:
        return list(self.null_counts)

    def add(self, frame: pl.DataFrame) -> None:
        self.rows += frame.height
        self.duplicates += frame.height - frame.select("system_id", "as_of").n_unique()
        for column in feature_columns(frame):
            self.null_counts[column] = self.null_counts.get(column, 0) + frame[column].null_count()
            if frame[column].is_infinite().any():
                self.infinite.add(column)
        if frame.height:
            self.latest = frame.filter(pl.col("as_of") == frame["as_of"].max())


PRESENT_BEFORE_SESSIONS = 5

# Per as-of day, how many systems have each metric: ``<metric>__coverage`` has a value exactly
# when the metric had samples in the day's window. Column names come from the table itself.
METRIC_PRESENCE = "SELECT as_of, {counts} FROM {table} WHERE as_of BETWEEN ? AND ? GROUP BY as_of"


def families_gone_empty(con: duckdb.DuckDBPyConnection, calendar: TradingCalendar,
                        first: dt.date, last: dt.date) -> dict[dt.date, list[str]]:
    """Days of ``first..last`` on which a metric that some system had in the
    ``PRESENT_BEFORE_SESSIONS`` sessions before has no value for any system: a feed that broke,
    not a feature that needs more history. Reads the written table, so call it after writing."""
    present = [c for c in table_columns(con, TABLE) if c.endswith("__coverage")]
    if not present:
        return {}
    since = calendar.sessions_back(calendar.require_session(first), PRESENT_BEFORE_SESSIONS)
    counts = ", ".join(f"count({quote_ident(c)}) AS {quote_ident(c)}" for c in present)
    frame = con.sql(METRIC_PRESENCE.format(counts=counts, table=TABLE),  # noqa: S608
                    params=[since, last]).pl().sort("as_of")
    out: dict[dt.date, list[str]] = {}
    for i, row in enumerate(frame.iter_rows(named=True)):
        day = row["as_of"]
        if day < first:
            continue
        before = frame.slice(max(0, i - PRESENT_BEFORE_SESSIONS), min(i, PRESENT_BEFORE_SESSIONS))
        gone = sorted(c.rsplit("__", 1)[0] for c in present
                      if row[c] == 0 and before.height and before[c].sum() > 0)
        if gone:
            out[day] = gone
    return out


def session_frame(calendar: TradingCalendar, first: dt.date, last: dt.date) -> pl.DataFrame:
    """The calendar's session table plus month and quarter ends of each target day."""
    sessions = calendar.session_table(first, last)
    month_end, quarter_end = [], []
    for target in sessions["target_date"].to_list():
        after = calendar.next_session(target)
        month_end.append(after.month != target.month)
        quarter_end.append(after.month != target.month and target.month % 3 == 0)
    return sessions.with_columns(
        target_month_end=pl.Series(month_end, dtype=pl.Boolean),
        target_quarter_end=pl.Series(quarter_end, dtype=pl.Boolean),
    )


def build_features(
    con: duckdb.DuckDBPyConnection,
    calendar: TradingCalendar,
    first: dt.date,
    last: dt.date,
) -> pl.DataFrame:
    """The feature rows of every system in service on each session ``first..last``."""
    sessions = session_frame(calendar, first, last)
    if sessions.is_empty():
        raise DataError(f"no trading day between {first} and {last}")
    first, last = sessions["as_of"][0], sessions["as_of"][-1]
    lookback = calendar.sessions_back(first, LOOKBACK_SESSIONS)
    con.register("base_sessions", sessions)
    try:
        con.execute(FEATURE_BASE)
        base = con.sql(INVENTORY, params=[LONG_BREAK_DAYS, LONG_BREAK_DAYS]).pl()
        parts = [*case_features(con), *change_features(con), change_actions(con)]
        numeric = con.sql(NUMERIC_ATTRIBUTES).pl() if _extra_columns(con) else pl.DataFrame()
        if table_exists(con, "metric_day_stats"):
            parts.append(metric_features(con, first, last, lookback))
    finally:
        con.unregister("base_sessions")
    if numeric.height:
        wide = numeric.pivot(on="feature", index=["system_id", "as_of"], values="value",
                             aggregate_function="first")
        parts.append(wide.select("system_id", "as_of", *sorted(wide.columns[2:])))
    frame = base
    for part in parts:
        if part.width > 2 and part.height:
            frame = frame.join(part, on=["system_id", "as_of"], how="left")
    frame = with_signal_interactions(frame)
    zero = [c for c in ZERO_WHEN_MISSING if c in frame.columns]
    frame = frame.with_columns(pl.col(zero).fill_null(0))
    features = [c for c in frame.columns if c not in KEYS]
    # NaN (a slope over one point, say) means "unknown" here, exactly like NULL.
    frame = frame.with_columns(pl.col(features).cast(pl.Float64).fill_nan(None))
    return frame.sort("as_of", "system_id")


def write_features(con: duckdb.DuckDBPyConnection, lake: Lake, frame: pl.DataFrame,
                   days: list[dt.date]) -> None:
    """Replace the partitions ``days`` of ``system_day_features`` with the rows of ``frame``."""
    lake.write_frame_partitions(con, FEATURES_TABLE, frame, days)


def build_and_write_features(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    calendar: TradingCalendar,
    first: dt.date,
    last: dt.date,
    chunk_sessions: int = 60,
    on_chunk: Callable[[int, int], None] | None = None,
) -> FeatureSummary:
    """Build and replace the features of ``first..last``, a chunk of sessions at a time.

    Chunks bound memory on estates with thousands of systems; each chunk is whole days, each
    day a partition replaced at once.
    """
    sessions = calendar.sessions(first, last)
    if not sessions:
        raise DataError(f"no trading day between {first} and {last}")
    summary = FeatureSummary(sessions[0], sessions[-1])
    chunks = [sessions[i:i + chunk_sessions] for i in range(0, len(sessions), chunk_sessions)]
    for done, chunk in enumerate(chunks, start=1):
        frame = build_features(con, calendar, chunk[0], chunk[-1])
        write_features(con, lake, frame, chunk)
        summary.add(frame)
        if on_chunk:
            on_chunk(done, len(chunks))
    return summary


ACTIVE_SYSTEM_DAYS = """
SELECT count(*) FROM systems s JOIN (SELECT unnest(?::DATE[]) AS as_of) d
  ON (s.active_from IS NULL OR s.active_from <= d.as_of)
 AND (s.active_to IS NULL OR d.as_of <= s.active_to)
"""


def active_system_days(con: duckdb.DuckDBPyConnection, sessions: list[dt.date]) -> int:
    """How many (system, day) pairs of ``sessions`` have the system in service."""
    return con.execute(ACTIVE_SYSTEM_DAYS, [sessions]).fetchall()[0][0]


def feature_columns(frame: pl.DataFrame) -> list[str]:
    return [c for c in frame.columns if c not in KEYS]


def _extra_columns(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Columns of systems.csv beyond the contract's (kept, and used as inventory features)."""
    known = set(REQUIRED_COLUMNS["systems"] + OPTIONAL_COLUMNS["systems"])
    return [c for c in table_columns(con, "systems") if c not in known]
