"""Is a system's data for an as-of day good enough to forecast from, judged by its own normal?

Each system in service gets a ``data_status`` and ``data_notes`` (words a reviewer reads):

- ``no_history``: fewer than ``MIN_HISTORY_SESSIONS`` sessions in service before the day, or a
  telemetry feed that started too recently to know its normal: scored, but on little.
- ``no_telemetry``: the system normally sends metrics and sent none for the day's window.
- ``partial``: some of the metrics it normally sends are missing or thin (less than half of
  the share of minutes they usually cover).
- ``ok``: everything it normally sends arrived. A system that never sends metrics (an estate
  with only a case library, such as the LANL records) is ``ok`` on its incident history.

"Normally" is the system's own last ``NORMAL_SESSIONS`` sessions in service: a metric is part
of its normal when it had samples on at least half of them, and its usual coverage is the median
share of the window's minutes it covered (zero on the days it sent nothing). Judging each
system against itself copes with estates where cadences and metric sets differ per system.

Everything comes from ``metric_day_stats`` (a few rows per system, metric and day), read by
name, and ``systems``; nothing here scans the raw samples.
"""

from __future__ import annotations

import datetime as dt

import duckdb
import polars as pl

from features.trading_time import TradingCalendar

OK, PARTIAL, NO_TELEMETRY, NO_HISTORY = "ok", "partial", "no_telemetry", "no_history"
STATUSES = (OK, PARTIAL, NO_TELEMETRY, NO_HISTORY)
NORMAL_SESSIONS = 20
MEMORY_SESSIONS = 250  # a system silent for longer than about a year has a new normal: none
MIN_HISTORY_SESSIONS = 5
THIN_RATIO = 0.5
LISTED_METRICS = 4  # metrics named in a note before "and N more"

ACTIVE = """
SELECT system_id, active_from FROM systems
WHERE (active_from IS NULL OR active_from <= ?) AND (active_to IS NULL OR ? <= active_to)
"""

# A system's normal is its last NORMAL_SESSIONS sessions up to the last one on which it sent
# anything (within MEMORY_SESSIONS): a system silent for weeks is still one that normally sends
# metrics. Coverage is zero on the sessions in service that hold no row for a series (sessions
# before the warehouse's first metrics are unknown, not zero); the median of that is the
# series' usual coverage.
USUAL = """
WITH sessions AS (SELECT * FROM status_sessions),
last_sent AS (
    SELECT m.system_id, max(m.as_of) AS last_day FROM metric_day_stats m
    JOIN status_systems a USING (system_id)
    WHERE m.as_of < ? AND m.as_of >= ? GROUP BY ALL
),
reference AS (
    SELECT l.system_id, s.day FROM last_sent l
    JOIN sessions e ON e.day = l.last_day
    JOIN sessions s ON s.i BETWEEN e.i - ? + 1 AND e.i
    JOIN status_systems a ON a.system_id = l.system_id
    WHERE (a.active_from IS NULL OR a.active_from <= s.day)
      AND s.day >= (SELECT min(as_of) FROM metric_day_stats)  -- before the history: unknown
),
series AS (
    SELECT DISTINCT m.system_id, m.metric FROM metric_day_stats m
    JOIN reference r ON r.system_id = m.system_id AND r.day = m.as_of
)
SELECT r.system_id, x.metric,
       median(coalesce(m.coverage, 0)) AS usual,
       count(m.as_of) AS days_with_samples,
       count(*) AS days_in_service
FROM reference r
JOIN series x USING (system_id)
LEFT JOIN metric_day_stats m ON m.system_id = r.system_id AND m.metric = x.metric AND m.as_of = r.day
GROUP BY ALL
"""

TODAY = """
SELECT m.system_id, m.metric, m.coverage FROM metric_day_stats m
JOIN status_systems a USING (system_id) WHERE m.as_of = ?
"""

LAST_SEEN = """
SELECT m.system_id, m.metric, max(m.as_of) AS last_day FROM metric_day_stats m
JOIN status_systems a USING (system_id) WHERE m.as_of < ? GROUP BY ALL
"""


def data_status(con: duckdb.DuckDBPyConnection, calendar: TradingCalendar,
                as_of: dt.date) -> pl.DataFrame:
    """One row per system in service on ``as_of``: system_id, as_of, data_status, data_notes,
    normally_sends_metrics (whether it is one of the systems the estate-wide rule counts)."""
    as_of = calendar.require_session(as_of)
    previous = calendar.sessions(calendar.sessions_back(as_of, NORMAL_SESSIONS),
                                 calendar.previous_session(as_of))
    previous = [d for d in previous if d < as_of]
    active = con.sql(ACTIVE, params=[as_of, as_of]).pl()
    con.register("status_systems", active)
    try:
        has_stats = _has_table(con, "metric_day_stats")
        if has_stats and previous:
            memory = calendar.sessions(calendar.sessions_back(as_of, MEMORY_SESSIONS), as_of)
            con.register("status_sessions", pl.DataFrame(
                {"day": memory, "i": list(range(len(memory)))}, schema={"day": pl.Date, "i": pl.Int64}))
            try:
                usual = con.sql(USUAL, params=[as_of, memory[0], NORMAL_SESSIONS]).pl()
            finally:
                con.unregister("status_sessions")
        else:
            usual = pl.DataFrame(schema={"system_id": pl.String, "metric": pl.String,
                                         "usual": pl.Float64, "days_with_samples": pl.Int64,
                                         "days_in_service": pl.Int64})
        today = con.sql(TODAY, params=[as_of]).pl() if has_stats else pl.DataFrame(
            schema={"system_id": pl.String, "metric": pl.String, "coverage": pl.Float64})
        last_seen = con.sql(LAST_SEEN, params=[as_of]).pl() if has_stats else pl.DataFrame(
            schema={"system_id": pl.String, "metric": pl.String, "last_day": pl.Date})
    finally:
        con.unregister("status_systems")
    usual_by = _by_system(usual, ("metric", "usual", "days_with_samples", "days_in_service"))
    sent_by = {k: dict(v) for k, v in _by_system(today, ("metric", "coverage")).items()}
    seen_by = {k: dict(v) for k, v in _by_system(last_seen, ("metric", "last_day")).items()}
    rows = [_judge(system, active_from, as_of, previous, usual_by.get(system, []),
                   sent_by.get(system, {}), seen_by.get(system, {}))
            for system, active_from in active.iter_rows()]
    return pl.DataFrame(rows, schema={"system_id": pl.String, "as_of": pl.Date,
                                      "data_status": pl.String, "data_notes": pl.String,
                                      "normally_sends_metrics": pl.Boolean},
                        orient="row").sort("system_id")


def _by_system(frame: pl.DataFrame, columns: tuple[str, ...]) -> dict[str, list[tuple]]:
    out: dict[str, list[tuple]] = {}
    for system, *values in frame.select("system_id", *columns).iter_rows():
        out.setdefault(system, []).append(tuple(values))
    return out


def _judge(system: str, active_from: dt.date | None, as_of: dt.date, previous: list[dt.date],
           usual: list[tuple], sent: dict[str, float], seen: dict[str, dt.date]) -> tuple:
    in_service = [d for d in previous if active_from is None or active_from <= d]
    if len(in_service) < MIN_HISTORY_SESSIONS:
        since = f"in service since {active_from}" if active_from else "no earlier session"
        return (system, as_of, NO_HISTORY,
                f"{since}: {len(in_service)} session(s) of history, too few to know its normal",
                False)
    reference = max((in_days for *_, in_days in usual), default=0)
    if 0 < reference < MIN_HISTORY_SESSIONS or (sent and not usual):
        return (system, as_of, NO_HISTORY,
                f"{_names(sorted(sent or {m for m, *_ in usual}))}: {reference} session(s) of "
                "metrics before this one, too few to know its normal", False)
    normal = [(metric, level) for metric, level, with_samples, in_days in usual
              if with_samples * 2 >= in_days]
    if not normal:
        return system, as_of, OK, "", False
    missing, thin = [], []
    for metric, level in normal:
        coverage = sent.get(metric, 0.0)
        if coverage == 0:
            missing.append(metric)
        elif coverage < THIN_RATIO * level:
            thin.append(f"{metric} thin ({coverage:.1%} of minutes, usually {level:.1%})")
    if not sent:
        last = max((seen[m] for m in missing if m in seen), default=None)
        since = f"since {last}" if last else "in the last sessions"
        return (system, as_of, NO_TELEMETRY,
                f"no metric samples {since}; it normally sends {_names(sorted(missing))}", True)
    if not missing and not thin:
        return system, as_of, OK, "", True
    notes = [f"{metric} missing" + (f" since {seen[metric]}" if metric in seen else "")
             for metric in sorted(missing)[:LISTED_METRICS]]
    if len(missing) > LISTED_METRICS:
        notes.append(f"{len(missing) - LISTED_METRICS} more metrics missing")
    notes += sorted(thin)[:LISTED_METRICS]
    return system, as_of, PARTIAL, "; ".join(notes), True


def _names(metrics: list[str]) -> str:
    shown = ", ".join(metrics[:LISTED_METRICS])
    more = len(metrics) - LISTED_METRICS
    return shown + (f" and {more} more" if more > 0 else "")


def _has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    from features.warehouse import table_exists

    return table_exists(con, name)


def missing_share(status: pl.DataFrame) -> tuple[int, int, float]:
    """(systems without telemetry, systems that normally send it, the share) for the rule that
    refuses a night when too much of the estate went silent."""
    senders = status.filter(pl.col("normally_sends_metrics"))
    silent = senders.filter(pl.col("data_status") == NO_TELEMETRY).height
    return silent, senders.height, silent / senders.height if senders.height else 0.0


def with_stale_feeds(status: pl.DataFrame, stale: list[str]) -> pl.DataFrame:
    """Statuses for a night published although feeds were stale (``--allow-stale``): every
    system that looked ``ok`` is ``partial``, and every note says which feed stood still."""
    if not stale:
        return status
    note = "published with stale feeds: " + "; ".join(stale)
    return status.with_columns(
        data_status=pl.when(pl.col("data_status") == OK).then(pl.lit(PARTIAL))
        .otherwise(pl.col("data_status")),
        data_notes=pl.when(pl.col("data_notes") == "").then(pl.lit(note))
        .otherwise(pl.col("data_notes") + "; " + note),
    )
