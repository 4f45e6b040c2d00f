"""Trading-day partitions, built from the same calendar the features and labels use."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from features.errors import DataError
from features.trading_time import TradingCalendar

DEFAULT_HISTORY_DAYS = 730


def partitions_start(calendar: TradingCalendar, start: dt.date | None, today: dt.date) -> dt.date:
    """The first as-of session: the configured start, or about two years back."""
    wanted = start or today - dt.timedelta(days=DEFAULT_HISTORY_DAYS)
    wanted = max(wanted, calendar.first_day + dt.timedelta(days=1))
    sessions = calendar.sessions(wanted, calendar.last_day)
    if not sessions:
        raise DataError(f"the {calendar.exchange} calendar has no trading day after {wanted}")
    return sessions[0]


def trading_day_partitions(
    calendar: TradingCalendar, start: dt.date | None, today: dt.date | None = None
) -> dg.DailyPartitionsDefinition:
    """One partition per as-of session; holidays and weekends are not partitions at all.

    ``end_offset=1`` makes today's partition exist during the day, so the evening run can
    target it; the partitions stop where the calendar's knowledge stops.
    """
    first = partitions_start(calendar, start, today or dt.date.today())
    exclusions = [
        dt.datetime.combine(day, dt.time()) for day in calendar.non_sessions(first, calendar.last_day)
    ]
    return dg.DailyPartitionsDefinition(
        start_date=first.isoformat(),
        end_date=(calendar.last_day + dt.timedelta(days=1)).isoformat(),
        timezone=calendar.timezone,
        end_offset=1,
        exclusions=exclusions,
    )


def per_trading_day(partitions: dg.PartitionsDefinition) -> dict:
    """Arguments every trading-day asset shares: its partitions, and backfills that run a range
    as one batch (one pass over a year, not 250 runs)."""
    return {"partitions_def": partitions, "backfill_policy": dg.BackfillPolicy.single_run()}
