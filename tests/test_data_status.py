"""Data status of each system against its own normal, and the source feeds' watermarks."""

import datetime as dt

import duckdb
import polars as pl
import pytest

from features.data_status import (
    NO_HISTORY,
    NO_TELEMETRY,
    OK,
    PARTIAL,
    data_status,
    missing_share,
    with_stale_feeds,
)
from features.feeds import feed_status
from features.trading_time import TradingCalendar

CAL = TradingCalendar("XSHG", "Asia/Shanghai")
AS_OF = dt.date(2025, 7, 18)
HISTORY = CAL.sessions(dt.date(2025, 6, 3), CAL.previous_session(AS_OF))


def warehouse(systems: list[tuple], stats: list[tuple]) -> duckdb.DuckDBPyConnection:
    """An in-memory warehouse with ``systems`` (id, active_from, active_to) and
    ``metric_day_stats`` rows (as_of, system_id, metric, coverage)."""
    con = duckdb.connect()
    con.execute("CREATE TABLE systems (system_id VARCHAR, active_from DATE, active_to DATE)")
    for row in systems:
        con.execute("INSERT INTO systems VALUES (?, ?, ?)", list(row))
    con.execute("CREATE TABLE metric_day_stats (as_of DATE, system_id VARCHAR, metric VARCHAR, "
                "samples BIGINT, coverage DOUBLE)")
    for row in stats:
        con.execute("INSERT INTO metric_day_stats VALUES (?, ?, ?, 96, ?)", list(row))
    return con


def days(system, metric, coverage, sessions):
    return [(d, system, metric, coverage) for d in sessions]


def status_of(con, system, as_of=AS_OF) -> dict:
    frame = data_status(con, CAL, as_of)
    return frame.filter(pl.col("system_id") == system).row(0, named=True)


def test_a_system_that_sends_what_it_always_sends_is_ok():
    con = warehouse([("A", None, None)], days("A", "cpu_pct", 0.066, [*HISTORY, AS_OF]))
    assert status_of(con, "A")["data_status"] == OK


def test_an_estate_without_telemetry_is_ok_on_its_case_library():
    con = warehouse([("N1", None, None), ("N2", dt.date(2020, 1, 1), None)], [])
    frame = data_status(con, CAL, AS_OF)
    assert frame["data_status"].to_list() == [OK, OK]
    assert missing_share(frame) == (0, 0, 0.0)


def test_a_metric_that_stopped_is_partial_with_the_day_it_stopped():
    stopped = HISTORY[-3]
    con = warehouse([("A", None, None)],
                    days("A", "cpu_pct", 0.066, [*HISTORY, AS_OF])
                    + days("A", "disk_pct", 0.066, [d for d in HISTORY if d <= stopped]))
    row = status_of(con, "A")
    assert row["data_status"] == PARTIAL
    assert row["data_notes"] == f"disk_pct missing since {stopped}"


def test_a_thin_metric_is_partial_judged_by_its_own_cadence():
    con = warehouse([("A", None, None)],
                    days("A", "cpu_pct", 0.066, HISTORY) + [(AS_OF, "A", "cpu_pct", 0.02)])
    row = status_of(con, "A")
    assert row["data_status"] == PARTIAL and "cpu_pct thin (2.0% of minutes, usually 6.6%)" in row["data_notes"]


def test_a_system_silent_for_weeks_is_still_one_that_sends_metrics():
    last = HISTORY[5]  # more than 20 sessions before the day: beyond the normal window
    con = warehouse([("A", None, None)], days("A", "cpu_pct", 0.066, HISTORY[:6]))
    row = status_of(con, "A")
    assert row["data_status"] == NO_TELEMETRY and f"since {last}" in row["data_notes"]
    assert row["normally_sends_metrics"]


def test_a_new_system_has_no_history():
    con = warehouse([("NEW", HISTORY[-2], None)], days("NEW", "cpu_pct", 0.066, HISTORY[-2:]))
    row = status_of(con, "NEW")
    assert row["data_status"] == NO_HISTORY
    assert row["data_notes"].startswith(f"in service since {HISTORY[-2]}: 2 session(s)")


def test_retired_systems_are_not_judged():
    con = warehouse([("OLD", None, HISTORY[-1]), ("A", None, None)], [])
    assert data_status(con, CAL, AS_OF)["system_id"].to_list() == ["A"]


def test_missing_share_counts_only_systems_that_normally_send():
    con = warehouse([("A", None, None), ("B", None, None), ("C", None, None)],
                    days("A", "cpu_pct", 0.1, HISTORY) + days("B", "cpu_pct", 0.1, [*HISTORY, AS_OF]))
    frame = data_status(con, CAL, AS_OF)
    assert missing_share(frame) == (1, 2, 0.5)


def test_stale_feeds_mark_every_system_that_looked_ok():
    frame = pl.DataFrame({"system_id": ["A", "B"], "data_status": [OK, NO_TELEMETRY],
                          "data_notes": ["", "no metric samples"]})
    marked = with_stale_feeds(frame, ["incidents feed has not moved since X"])
    assert marked["data_status"].to_list() == [PARTIAL, NO_TELEMETRY]
    assert all("published with stale feeds: incidents feed has not moved since X" in n
               for n in marked["data_notes"])


# ---------------------------------------------------------------------------------- feeds


def feeds_warehouse(metrics_until: dt.datetime | None, incidents: list[dt.datetime]):
    con = duckdb.connect()
    con.execute("CREATE TABLE metrics (as_of DATE, ts TIMESTAMP, system_id VARCHAR, metric VARCHAR, value DOUBLE)")
    if metrics_until:
        local = metrics_until.replace(tzinfo=dt.UTC).astimezone(CAL.tz)
        day = CAL.last_session_on_or_before(local.date())
        day = day if local < CAL.cutoff(day) else CAL.next_session(day)
        con.execute("INSERT INTO metrics VALUES (?, ?, 'A', 'cpu_pct', 1.0)", [day, metrics_until])
    con.execute("CREATE TABLE incidents (opened_at TIMESTAMP)")
    for instant in incidents:
        con.execute("INSERT INTO incidents VALUES (?)", [instant])
    con.execute("CREATE TABLE changes (created_at TIMESTAMP)")
    return con


def test_a_night_beyond_the_newest_sample_is_stale_with_its_watermark():
    end = dt.datetime(2026, 9, 24, 9, 59)  # 17:59 in Shanghai, the demo's last sample
    con = feeds_warehouse(end, [])
    (metrics, incidents, changes) = feed_status(con, CAL, dt.date(2026, 11, 16), 10)
    assert metrics.stale
    assert metrics.message == ("metrics end 2026-09-24 17:59 Asia/Shanghai; as-of 2026-11-16 "
                               "is 31 trading days later")
    assert not incidents.stale and not changes.stale  # no records: nothing to judge by


def test_the_day_with_samples_is_fresh():
    con = feeds_warehouse(dt.datetime(2026, 9, 24, 9, 59), [])
    assert not feed_status(con, CAL, dt.date(2026, 9, 24), 10)[0].stale


@pytest.mark.parametrize(("per_day", "stale"), [(3.0, True), (0.05, False)])
def test_a_silent_incident_feed_is_stale_only_when_its_pace_makes_silence_unlikely(per_day, stale):
    last = dt.datetime(2026, 9, 1, 2, 0)
    every = dt.timedelta(days=1 / per_day)
    opened = [last - every * i for i in range(int(300 * per_day))]
    con = feeds_warehouse(None, opened)
    incidents = feed_status(con, CAL, dt.date(2026, 9, 30), 10)[1]
    assert incidents.stale is stale
    if stale:
        assert incidents.message.startswith(
            "incidents feed has not moved since 2026-09-01 10:00 Asia/Shanghai: 29 days before "
            "the cutoff of 2026-09-30, though it usually brings 3.0 a day")
