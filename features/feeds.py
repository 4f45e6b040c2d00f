"""Source watermarks: is each feed of the source still moving at an as-of day's cutoff?

A feed's watermark is its newest record known at the cutoff: the newest metric sample, the
newest incident opened, the newest change raised (``created_at``). A night is stale when

- metrics: the source has metric samples, but none in the as-of day's window: the day lies
  beyond the newest sample, so every metric feature would be empty;
- incidents, changes: the feed has not moved for more than ``max_age_days`` although, at its
  own pace over the year before, it would have brought at least ``EXPECTED_RECORDS`` records
  in that time (so the silence is not chance: a small estate with an incident a month is not
  stale after ten quiet days, a firm with a few a day is).

The messages are the one line an operator reads: the feed, its watermark in local time, and
how far behind the as-of day it is.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import duckdb

from features.trading_time import TradingCalendar

METRICS, INCIDENTS, CHANGES = "metrics", "incidents", "changes"
EXPECTED_RECORDS = 5.0  # a silence this unlikely at the feed's pace (Poisson: below 1%) is stale
RATE_WINDOW_DAYS = 365
MIN_RATE_SPAN_DAYS = 30  # a feed younger than this has no pace to judge by
SOURCE_LOOKBACK_DAYS = 400  # how far back the source is searched when the warehouse has nothing

NEWEST_IN_WINDOW = "SELECT max(ts) FROM metrics WHERE as_of = ?"
NEWEST_LOADED = "SELECT max(ts) FROM metrics WHERE as_of < ?"
# Instants are naive UTC in the warehouse; `{column}` is one of two constants below.
EVENT_FEED = """
WITH known AS (SELECT {column} AS instant FROM {table} WHERE {column} < ?),
mark AS (SELECT max(instant) AS watermark FROM known)
SELECT m.watermark,
       count(k.instant) FILTER (WHERE k.instant > m.watermark - INTERVAL 365 DAY) AS recent,
       min(k.instant) AS first
FROM mark m LEFT JOIN known k ON true
GROUP BY m.watermark
"""
EVENT_COLUMNS = {INCIDENTS: ("incidents", "opened_at"), CHANGES: ("changes", "created_at")}


@dataclass(frozen=True)
class FeedStatus:
    feed: str
    as_of: dt.date
    watermark: dt.datetime | None  # naive UTC, as the warehouse stores instants
    stale: bool
    message: str


def feed_status(con: duckdb.DuckDBPyConnection, calendar: TradingCalendar, as_of: dt.date,
                max_age_days: float, newest_in_source=None) -> list[FeedStatus]:
    """The three feeds' watermarks and verdicts at ``as_of``'s cutoff.

    ``newest_in_source(since, before)`` (optional, aware instants) finds the newest metric
    sample in the source files: the watermark is the source's, not only what the warehouse
    loaded; it is asked only when the day's window holds no sample."""
    as_of = calendar.require_session(as_of)
    return [_metrics(con, calendar, as_of, newest_in_source),
            *(_events(con, calendar, as_of, feed, max_age_days) for feed in EVENT_COLUMNS)]


def _local(calendar: TradingCalendar, instant: dt.datetime) -> str:
    local = instant.replace(tzinfo=dt.UTC).astimezone(calendar.tz)
    return f"{local:%Y-%m-%d %H:%M} {calendar.timezone}"


def _metrics(con, calendar: TradingCalendar, as_of: dt.date, newest_in_source) -> FeedStatus:
    from features.warehouse import table_exists

    if not table_exists(con, "metrics"):
        return FeedStatus(METRICS, as_of, None, False, "metrics: none loaded")
    (today,) = con.execute(NEWEST_IN_WINDOW, [as_of]).fetchall()[0]
    if today is not None:
        return FeedStatus(METRICS, as_of, today, False, f"metrics up to {_local(calendar, today)}")
    (newest,) = con.execute(NEWEST_LOADED, [as_of]).fetchall()[0]
    if newest_in_source is not None:
        # The source may hold samples the warehouse never loaded (days not ingested).
        window_start = calendar.metrics_window(as_of)[0]
        since = (newest.replace(tzinfo=dt.UTC) if newest is not None
                 else window_start - dt.timedelta(days=SOURCE_LOOKBACK_DAYS))
        known = [t for t in (newest, newest_in_source(since, window_start)) if t is not None]
        newest = max(known) if known else None
    if newest is None:
        return FeedStatus(METRICS, as_of, None, False,
                          "metrics: the source has no metric sample before this day")
    behind = len(calendar.sessions(_partition_of(calendar, newest), as_of)) - 1
    return FeedStatus(METRICS, as_of, newest, True,
                      f"metrics end {_local(calendar, newest)}; as-of {as_of} is {behind} "
                      f"trading day{'s' if behind != 1 else ''} later")


def _partition_of(calendar: TradingCalendar, instant_utc: dt.datetime) -> dt.date:
    """The as-of session whose metric window holds ``instant_utc``."""
    local = instant_utc.replace(tzinfo=dt.UTC).astimezone(calendar.tz)
    day = calendar.last_session_on_or_before(local.date())
    return day if local < calendar.cutoff(day) else calendar.next_session(day)


def _events(con, calendar: TradingCalendar, as_of: dt.date, feed: str,
            max_age_days: float) -> FeedStatus:
    table, column = EVENT_COLUMNS[feed]
    cutoff = calendar.cutoff_utc(as_of)
    rows = con.execute(EVENT_FEED.format(table=table, column=column), [cutoff]).fetchall()
    watermark, recent, first = rows[0] if rows else (None, 0, None)
    if watermark is None:
        return FeedStatus(feed, as_of, None, False, f"{feed}: no record before the cutoff")
    age = (cutoff - watermark).total_seconds() / 86400
    span = min(RATE_WINDOW_DAYS, (watermark - first).total_seconds() / 86400)
    newest = "opened" if feed == INCIDENTS else "raised"
    if span < MIN_RATE_SPAN_DAYS:
        return FeedStatus(feed, as_of, watermark, False,
                          f"{feed}: newest {newest} {_local(calendar, watermark)}")
    rate = recent / span
    stale = age > max_age_days and rate * age >= EXPECTED_RECORDS
    if not stale:
        return FeedStatus(feed, as_of, watermark, False,
                          f"{feed}: newest {newest} {_local(calendar, watermark)}")
    return FeedStatus(feed, as_of, watermark, True,
                      f"{feed} feed has not moved since {_local(calendar, watermark)}: {age:.0f} "
                      f"days before the cutoff of {as_of}, though it usually brings {rate:.1f} "
                      "a day")
