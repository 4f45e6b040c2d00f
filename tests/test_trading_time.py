import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from features.trading_time import CalendarRangeError, TradingCalendar, to_utc_naive

SH = ZoneInfo("Asia/Shanghai")


@pytest.fixture(scope="module")
def xshg() -> TradingCalendar:
    return TradingCalendar("XSHG", "Asia/Shanghai")


def test_friday_label_window_ends_at_mondays_cutoff(xshg):
    window = xshg.label_window("2025-06-06")  # a Friday
    assert window.target_date == dt.date(2025, 6, 9)
    assert window.start == dt.datetime(2025, 6, 6, 18, tzinfo=SH)
    assert window.end == dt.datetime(2025, 6, 9, 18, tzinfo=SH)
    assert window.contains(dt.datetime(2025, 6, 8, 3, tzinfo=SH))  # the weekend is inside


def test_window_spans_a_multi_day_holiday(xshg):
    # Spring Festival 2025: the exchange closed 2025-01-28 to 2025-02-04.
    window = xshg.label_window("2025-01-27")
    assert window.target_date == dt.date(2025, 2, 5)
    assert window.contains(dt.datetime(2025, 1, 31, 12, tzinfo=SH))
    assert xshg.session_table("2025-01-27", "2025-01-27")["days_to_target"][0] == 9


def test_target_open_is_the_exchanges_open_inside_the_window(xshg):
    assert xshg.target_open("2025-06-06") == dt.datetime(2025, 6, 9, 9, 30, tzinfo=SH)  # Monday
    always = TradingCalendar("24/7", "Asia/Shanghai")
    assert always.target_open("2025-06-06") == always.cutoff("2025-06-06")  # never closes
    far = TradingCalendar("XNYS", "Asia/Shanghai")  # New York opens after Shanghai's cutoff
    assert far.target_open("2025-06-05") == far.cutoff("2025-06-05")
    assert xshg.session_table("2025-06-06", "2025-06-06")["target_open_utc"][0] == \
        dt.datetime(2025, 6, 9, 1, 30)


def test_instant_at_the_cutoff_belongs_to_the_window_that_ends_there(xshg):
    cutoff = xshg.cutoff("2025-06-10")
    assert xshg.label_window("2025-06-09").contains(cutoff)
    assert not xshg.label_window("2025-06-10").contains(cutoff)
    assert xshg.as_of_for_instant(cutoff) == dt.date(2025, 6, 9)
    assert xshg.as_of_for_instant(cutoff + dt.timedelta(microseconds=1)) == dt.date(2025, 6, 10)
    start, end = xshg.metrics_window("2025-06-10")
    assert end == cutoff and start == xshg.cutoff("2025-06-09")  # samples at the cutoff go later


def test_windows_are_gapless(xshg):
    days = xshg.sessions("2025-01-01", "2025-12-31")
    for day in days[:-1]:
        assert xshg.label_window(day).end == xshg.label_window(xshg.next_session(day)).start


def test_24_7_calendar_has_every_day_and_day_long_windows():
    cal = TradingCalendar("24/7", "America/Denver")
    assert cal.is_session("2004-01-03")  # a Saturday
    window = cal.label_window("2004-01-03")
    assert window.target_date == dt.date(2004, 1, 4)
    assert window.end - window.start == dt.timedelta(days=1)
    assert cal.after_close_start("2004-01-03") == cal.cutoff("2004-01-03") - dt.timedelta(hours=3)


def test_calendar_csv_overrides_and_extends_the_exchange():
    overrides = {
        dt.date(2025, 6, 10): False,  # a Tuesday closed for an outage drill
        dt.date(2025, 6, 14): True,  # a Saturday make-up session
        dt.date(2027, 1, 4): True,  # beyond XSHG's recorded holidays
        dt.date(2027, 1, 5): True,
    }
    cal = TradingCalendar("XSHG", "Asia/Shanghai", overrides=overrides)
    assert not cal.is_session("2025-06-10")
    assert cal.next_session("2025-06-09") == dt.date(2025, 6, 11)
    assert cal.next_session("2025-06-13") == dt.date(2025, 6, 14)
    assert cal.last_day == dt.date(2027, 1, 5)
    # Beyond the exchange's range the overrides are the whole truth.
    assert cal.next_session("2026-12-31") == dt.date(2027, 1, 4)
    assert not cal.is_session("2027-01-01")


def test_dates_beyond_the_calendar_name_calendar_csv(xshg):
    with pytest.raises(CalendarRangeError, match="calendar.csv"):
        xshg.label_window("2027-03-01")
    with pytest.raises(CalendarRangeError, match="calendar.csv"):
        xshg.next_session("2026-12-31")


def test_non_session_is_refused_with_the_next_session(xshg):
    with pytest.raises(ValueError, match="next one is 2025-06-09"):
        xshg.label_window("2025-06-07")


def test_cutoff_in_utc_follows_daylight_saving():
    ny = TradingCalendar("XNYS", "America/New_York")
    assert to_utc_naive(ny.cutoff("2025-01-06")) == dt.datetime(2025, 1, 6, 23)
    assert to_utc_naive(ny.cutoff("2025-07-07")) == dt.datetime(2025, 7, 7, 22)
    assert ny.after_close_start("2025-07-07").hour == 16  # the NYSE close, local time


def test_unknown_exchange_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown exchange calendar 'XXXX'"):
        TradingCalendar("XXXX")
