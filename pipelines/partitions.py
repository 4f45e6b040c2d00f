"""Trading-day partitions, built from the same calendar the features and labels use."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from features.errors import DataError
from features.trading_time import TradingCalendar

# A Dagster backfill runs up to this many trading days per run (a quarter; the steps batch at
# most as many inside a run): runs execute in parallel processes, up to the instance's run
# concurrency, and each run costs a process and its event log, so runs are not made smaller.
PARTITIONS_PER_RUN = 60


def partitions_start(calendar: TradingCalendar, start: dt.date | None,
                     earliest_record: dt.date | None, today: dt.date | None = None) -> dt.date:
    """The first as-of session, fixed so that partition keys never fall off.

    ``[pipeline] start`` when it is set; otherwise the first session on or after the source's
    earliest record (incident opened or change scheduled); a source without any starts with
    the first session of the current year.
    """
    wanted = start or earliest_record or dt.date((today or dt.date.today()).year, 1, 1)
    wanted = max(wanted, calendar.first_day + dt.timedelta(days=1))
    sessions = calendar.sessions(wanted, calendar.last_day)
    if not sessions:
        raise DataError(f"the {calendar.exchange} calendar has no trading day after {wanted}")
    return sessions[0]


def trading_day_partitions(calendar: TradingCalendar, first: dt.date) -> dg.DailyPartitionsDefinition:
    """One partition per as-of session from ``first``; holidays and weekends are not partitions.

    ``end_offset=1`` makes today's partition exist during the day, so the evening run can
    target it; the partitions stop where the calendar's knowledge stops.
    """
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
    """Arguments every trading-day asset shares: its partitions, and backfills in runs of
    ``PARTITIONS_PER_RUN`` days, so a long backfill runs in parallel processes while each run
    still batches its days (one pass over a quarter, not sixty)."""
    return {"partitions_def": partitions,
            "backfill_policy": dg.BackfillPolicy.multi_run(PARTITIONS_PER_RUN)}
