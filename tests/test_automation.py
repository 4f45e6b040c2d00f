"""When the sensor starts the nightly run."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from features.trading_time import TradingCalendar
from models.lifecycle import PolicyConfig, RetrainPolicy
from pipelines.automation import freshness_due, nightly_due, retrain_due

CAL = TradingCalendar("XSHG", "Asia/Shanghai")
SH = ZoneInfo("Asia/Shanghai")
FRIDAY_CUTOFF = dt.datetime(2025, 6, 6, 18, tzinfo=SH)


def test_due_once_files_land_after_the_cutoff():
    after = (FRIDAY_CUTOFF + dt.timedelta(minutes=20)).timestamp()
    assert nightly_due(CAL, FRIDAY_CUTOFF + dt.timedelta(minutes=30), None, after)[0] == dt.date(2025, 6, 6)


def test_not_due_before_the_data_lands_or_twice():
    before = (FRIDAY_CUTOFF - dt.timedelta(minutes=5)).timestamp()
    after = (FRIDAY_CUTOFF + dt.timedelta(minutes=20)).timestamp()
    day, reason = nightly_due(CAL, FRIDAY_CUTOFF + dt.timedelta(minutes=30), None, before)
    assert day is None and "no file has landed" in reason
    day, reason = nightly_due(CAL, FRIDAY_CUTOFF + dt.timedelta(minutes=30), "2025-06-06", after)
    assert day is None and "already started" in reason


def test_on_a_weekend_the_due_day_is_friday():
    saturday = dt.datetime(2025, 6, 7, 10, tzinfo=SH)
    assert nightly_due(CAL, saturday, None, saturday.timestamp())[0] == dt.date(2025, 6, 6)
    before_cutoff = dt.datetime(2025, 6, 9, 9, tzinfo=SH)  # Monday morning: still Friday's
    assert nightly_due(CAL, before_cutoff, "2025-06-05", before_cutoff.timestamp())[0] == dt.date(2025, 6, 6)


def test_calendar_check_warns_a_month_before_the_calendar_ends():
    from pipelines.assets.ingest import calendar_coverage

    assert calendar_coverage(CAL, dt.date(2026, 11, 1)).passed  # XSHG is recorded to 2026-12-31
    late = calendar_coverage(CAL, dt.date(2026, 12, 15))
    assert not late.passed and late.severity.value == "WARN"
    assert "calendar.csv" in late.description


@pytest.mark.parametrize(("when", "due"), [
    (dt.datetime(2025, 9, 30, 19, 30, tzinfo=SH), True),   # a trading day, at the deadline
    (dt.datetime(2025, 9, 30, 19, 29, tzinfo=SH), False),  # before it
    (dt.datetime(2025, 10, 1, 20, 0, tzinfo=SH), False),   # National Day: no publication due
    (dt.datetime(2025, 10, 9, 9, 0, tzinfo=SH), False),    # the morning after the holiday
    (dt.datetime(2025, 10, 9, 21, 0, tzinfo=SH), True),
    (dt.datetime(2025, 10, 11, 21, 0, tzinfo=SH), False),  # a Saturday
])
def test_publication_freshness_is_judged_after_the_deadline_on_trading_days(when, due):
    assert freshness_due(CAL, when, dt.time(19, 30)) is due


def test_the_retrain_runs_the_morning_after_each_retraining_day():
    weekly = RetrainPolicy(PolicyConfig(cadence="weekly"))
    assert retrain_due(CAL, weekly, dt.date(2025, 9, 27)) == dt.date(2025, 9, 26)  # Saturday
    assert retrain_due(CAL, weekly, dt.date(2025, 9, 28)) == dt.date(2025, 9, 26)  # same run key
    assert retrain_due(CAL, weekly, dt.date(2025, 10, 1)) == dt.date(2025, 9, 30)  # holidays
    assert retrain_due(CAL, weekly, dt.date(2025, 9, 26)) is None  # Friday's night not run yet
    monthly = RetrainPolicy(PolicyConfig(cadence="monthly"))
    assert retrain_due(CAL, monthly, dt.date(2025, 9, 27)) is None
    assert retrain_due(CAL, monthly, dt.date(2025, 11, 1)) == dt.date(2025, 10, 31)
