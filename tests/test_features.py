"""Feature values on hand-made data, a source without metrics, and the features job."""

import datetime as dt

import polars as pl
import pytest

from features.build import FEATURES_TABLE, build_and_write_features, build_features
from features.ingest import METRICS_TABLE, load_metrics, load_source_tables
from features.metric_stats import METRIC_DAY_STATS_TABLE, build_metric_day_stats
from features.source import Source
from features.trading_time import TradingCalendar
from features.warehouse import Warehouse
from tests.conftest import write_source

CAL = TradingCalendar("XSHG", "Asia/Shanghai")
DAYS = CAL.sessions("2025-06-03", "2025-07-11")  # 29 sessions


def disk_series(days: list[dt.date]) -> str:
    """disk_pct of system A every 10 minutes, +2 points a day; a 60-minute hole on the last day."""
    lines = ["ts,system_id,metric,value"]
    for n, day in enumerate(days):
        start = dt.datetime.combine(CAL.previous_session(day), dt.time(18))
        moment = start
        while moment < dt.datetime.combine(day, dt.time(18)):
            hole = n == len(days) - 1 and dt.time(10) <= moment.time() < dt.time(11)
            if not hole:
                after_close = moment.time() >= dt.time(15) and moment.date() == day
                lines.append(f"{moment.isoformat()},A,disk_pct,{50 + 2 * n + (5 if after_close else 0)}")
            moment += dt.timedelta(minutes=10)
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    root = tmp_path_factory.mktemp("features")
    days = DAYS
    source = write_source(root / "src", metrics={"disk.csv": disk_series(days)})
    wh = Warehouse(root / "wh.duckdb", timezone="Asia/Shanghai")
    with wh.lake_writer() as con:
        load_source_tables(con, wh.lake, Source.open(source))
        load_metrics(con, wh.lake, Source.open(source), CAL, days[0], days[-1])
        build_metric_day_stats(con, wh.lake, CAL.session_table(days[0], days[-1]))
        build_and_write_features(con, wh.lake, CAL, days[0], days[-1], chunk_sessions=7)
    return wh


def row(warehouse, as_of, system="A"):
    with warehouse.reader() as con:
        return con.sql(
            "SELECT * FROM system_day_features WHERE as_of = ? AND system_id = ?",
            params=[as_of, system],
        ).pl().row(0, named=True)


def test_day_statistics(warehouse):
    last = row(warehouse, dt.date(2025, 7, 11))
    top = 50 + 2 * (len(DAYS) - 1) + 5  # the last session, after the close
    assert last["disk_pct__last"] == pytest.approx(top)
    assert last["disk_pct__after_close_mean"] == pytest.approx(top)
    assert last["disk_pct__max"] == pytest.approx(top)
    assert last["disk_pct__longest_gap_min"] == pytest.approx(69)  # 60-minute hole + 9-minute cadence
    assert last["disk_pct__coverage"] == pytest.approx(138 / 1440)
    assert last["disk_pct__null_share"] == 0


def test_trend_baseline_and_limit(warehouse):
    day = row(warehouse, dt.date(2025, 7, 1))
    assert day["disk_pct__mean_slope5"] > 0.5  # +2 points per session, per calendar day less
    assert day["disk_pct__mean_z20"] > 1.5  # above its own 20-session baseline (linear rise: ~1.8)
    assert 0 < day["disk_pct__days_to_limit"] < 30
    early = row(warehouse, dt.date(2025, 6, 4))
    assert early["disk_pct__mean_z20"] is None  # not enough history for a baseline yet


def test_every_active_system_gets_a_row_even_without_metrics(warehouse):
    with warehouse.reader() as con:
        counts = con.execute(
            "SELECT system_id, count(*) FROM system_day_features GROUP BY 1 ORDER BY 1").fetchall()
    assert counts == [("A", len(DAYS)), ("B", len(DAYS))]
    assert row(warehouse, dt.date(2025, 7, 1), "B")["disk_pct__mean"] is None


def test_a_new_metric_adds_columns_without_rewriting_the_past(warehouse, tmp_path):
    day = dt.date(2025, 7, 11)
    before = len(warehouse.lake.current_files(FEATURES_TABLE))
    with warehouse.lake_writer() as con:
        warehouse.lake.write_partitions(
            con, METRIC_DAY_STATS_TABLE,
            "SELECT * FROM metric_day_stats WHERE as_of = ? UNION ALL BY NAME "
            "SELECT ?::DATE AS as_of, 'B' AS system_id, 'queue depth!' AS metric, "
            "3.0::DOUBLE AS mean, 4.0::DOUBLE AS max", [day, day], [day])
        build_and_write_features(con, warehouse.lake, CAL, day, day)
    assert row(warehouse, day, "B")["queue_depth___mean"] == 3.0
    assert row(warehouse, dt.date(2025, 7, 10), "B")["queue_depth___mean"] is None
    assert len(warehouse.lake.current_files(FEATURES_TABLE)) == before  # one day replaced


def test_case_library_only_source_on_a_24_7_calendar(tmp_path):
    cal = TradingCalendar("24/7", "America/Denver")
    source = write_source(
        tmp_path / "src",
        systems="system_id,cluster,procs\nN1,c1,4\nN2,c1,4\nN3,c2,128\n",
        incidents=(
            "incident_id,system_id,opened_at,severity,category\n"
            "I1,N1,2004-01-01T10:00:00,2,Hardware\nI2,N1,2004-01-03T19:00:00,4,Software\n"
            "I3,N2,2004-01-04T09:00:00,3,Hardware\n"
        ),
    )
    wh = Warehouse(tmp_path / "wh.duckdb", timezone="America/Denver")
    with wh.lake_writer() as con:
        load_source_tables(con, wh.lake, Source.open(source))
        frame = build_features(con, cal, dt.date(2004, 1, 4), dt.date(2004, 1, 4))
    n1 = frame.filter(pl.col("system_id") == "N1").row(0, named=True)
    assert n1["inc_7d"] == 2 and n1["inc_sev12_30d"] == 1
    assert n1["days_since_incident"] == pytest.approx((dt.datetime(2004, 1, 4, 18) - dt.datetime(2004, 1, 3, 19)).total_seconds() / 86400)
    assert n1["peer_cluster_inc_7d"] == pytest.approx(1.5)  # I1, I2 and I3 (before 18:00) over 2 nodes
    assert n1["inv_procs"] == 4
    assert not any("__" in c for c in frame.columns)  # no metrics, no metric features


def test_day_statistics_in_several_passes_equal_one_pass(warehouse, tmp_path):
    """A session too big for memory is split by metric; the numbers must not change."""
    lake = warehouse.lake
    with warehouse.lake_writer() as con:
        sessions = CAL.session_table(DAYS[0], DAYS[-1])
        build_metric_day_stats(con, lake, sessions)
        whole = con.sql("SELECT * FROM metric_day_stats ORDER BY ALL").pl()
        lake.write_partitions(con, METRICS_TABLE,
                              "SELECT * FROM metrics UNION ALL SELECT as_of, ts, system_id, "
                              "'mem_pct', value + 1 FROM metrics WHERE metric = 'disk_pct'",
                              days=DAYS)
        build_metric_day_stats(con, lake, sessions)
        both = con.sql("SELECT * FROM metric_day_stats ORDER BY ALL").pl()
        build_metric_day_stats(con, lake, sessions, max_rows_per_chunk=10)
        sliced = con.sql("SELECT * FROM metric_day_stats ORDER BY ALL").pl()
        lake.write_partitions(con, METRICS_TABLE,
                              "SELECT * FROM metrics WHERE metric <> 'mem_pct'", days=DAYS)
        build_metric_day_stats(con, lake, sessions)
    from polars.testing import assert_frame_equal

    assert_frame_equal(both.filter(pl.col("metric") == "disk_pct"), whole)
    assert_frame_equal(sliced, both)
