"""Loading a source into the warehouse: partitions by cutoff, replacement, quarantine."""

import datetime as dt
import subprocess
import sys
import textwrap

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features.ingest import load_metrics, load_source_tables
from features.source import Source
from features.trading_time import TradingCalendar
from features.warehouse import Warehouse
from tests.conftest import write_source

CAL = TradingCalendar("XSHG", "Asia/Shanghai")
MON, TUE = dt.date(2025, 6, 9), dt.date(2025, 6, 10)

METRICS = (
    "ts,system_id,metric,value\n"
    "2025-06-06T18:00:00,A,cpu_pct,1\n"  # Friday's cutoff exactly: Monday's partition
    "2025-06-08T12:00:00,A,cpu_pct,2\n"  # the weekend: Monday's partition
    "2025-06-09T17:59:59,A,cpu_pct,3\n"  # just before Monday's cutoff
    "2025-06-09T18:00:00,A,cpu_pct,4\n"  # Monday's cutoff: Tuesday's partition
    "2025-06-09T18:00:00,A,cpu_pct,4\n"  # an exact duplicate
    "2025-06-10T01:00:00+00:00,A,cpu_pct,5\n"  # an instant with an offset (09:00 local)
    "2025-06-10T10:00:00,A,cpu_pct,\n"  # empty value: a missing sample, kept
    "2025-06-10T10:00:00,A,mem_pct,NaN\n"  # NaN: a missing sample, kept
    "2025-06-10T10:00:00,A,io_pct,inf\n"  # infinite: quarantined
    "2025-06-10T10:00:00,A,io_pct,lots\n"  # not a number: quarantined
    "2025-06-10T10:00:00,Z,cpu_pct,1\n"  # unknown system: quarantined
    "yesterday,A,cpu_pct,1\n"  # no usable timestamp: quarantined once, in no partition
)


HOLD_WRITE_LOCK = textwrap.dedent("""
    import duckdb, sys, time
    con = duckdb.connect(sys.argv[1])
    con.execute("CREATE TABLE IF NOT EXISTS held (x INT)")
    print("holding", flush=True)
    time.sleep(float(sys.argv[2]))
""")


def load(root, first=MON, last=TUE):
    warehouse = Warehouse(root / "wh.duckdb", timezone="Asia/Shanghai")
    with warehouse.lake_writer() as con:
        load_source_tables(con, warehouse.lake, Source.open(root))
        result = load_metrics(con, warehouse.lake, Source.open(root), CAL, first, last)
    return warehouse, result


def rows(warehouse, sql, params=()):
    with warehouse.reader() as con:
        return con.execute(sql, list(params)).fetchall()


@pytest.fixture
def source(tmp_path):
    return write_source(tmp_path / "src", metrics={"day/m.csv": METRICS})


def test_samples_fall_in_the_partition_of_the_next_cutoff(source):
    warehouse, result = load(source)
    values = rows(warehouse, "SELECT as_of, value FROM metrics WHERE metric = 'cpu_pct' ORDER BY ts")
    assert values == [(MON, 1.0), (MON, 2.0), (MON, 3.0), (TUE, 4.0), (TUE, 5.0), (TUE, None)]
    assert result.duplicates_dropped == 1
    assert result.rows_read == 11 and result.rows_loaded == 7 and result.rows_rejected == 3


def test_bad_metric_rows_are_quarantined_with_file_row_and_reason(source):
    warehouse, result = load(source)
    found = rows(warehouse, "SELECT row, column_name, reason, raw_value, as_of FROM quarantine "
                 "WHERE table_name = 'metrics' ORDER BY row")
    assert found == [
        (9, "value", "value is infinite", "inf", TUE),
        (10, "value", "value is not a number", "lots", TUE),
        (11, "system_id", "unknown system_id", "Z", TUE),
        (12, "ts", "ts is not an ISO-8601 timestamp", "yesterday", None),
    ]
    assert result.unplaced_rejected == 1
    assert rows(warehouse, "SELECT count(*) FROM metrics WHERE metric = 'mem_pct' AND value IS NULL") == [(1,)]


def test_reloading_a_partition_replaces_it(source):
    warehouse, _ = load(source)
    before = rows(warehouse, "SELECT * FROM metrics ORDER BY ts, metric")
    with warehouse.lake_writer() as con:
        load_metrics(con, warehouse.lake, Source.open(source), CAL, TUE, TUE)
        load_metrics(con, warehouse.lake, Source.open(source), CAL, MON, TUE)
    assert rows(warehouse, "SELECT * FROM metrics ORDER BY ts, metric") == before
    assert rows(warehouse, "SELECT count(*) FROM quarantine WHERE table_name = 'metrics'") == [(4,)]


def test_parquet_with_naive_and_aware_timestamps(tmp_path):
    root = write_source(tmp_path / "src")
    folder = root / "metrics" / "date=2025-06-10"
    folder.mkdir(parents=True)
    naive = pa.table({"ts": pa.array([dt.datetime(2025, 6, 10, 9, 0)], pa.timestamp("us")),
                      "system_id": ["A"], "metric": ["cpu_pct"], "value": [1.5]})
    pq.write_table(naive, folder / "naive.parquet")
    aware_root = write_source(tmp_path / "aware")
    (aware_root / "metrics").mkdir()
    aware = pa.table({"ts": pa.array([dt.datetime(2025, 6, 10, 1, 0, tzinfo=dt.UTC)],
                                     pa.timestamp("us", tz="UTC")),
                      "system_id": ["B"], "metric": ["cpu_pct"], "value": [2.5]})
    pq.write_table(aware, aware_root / "metrics" / "aware.parquet")
    for path, system in ((root, "A"), (aware_root, "B")):
        warehouse, _ = load(path, TUE, TUE)
        assert rows(warehouse, "SELECT ts, system_id FROM metrics") == [
            (dt.datetime(2025, 6, 10, 1, 0), system)]


def test_source_without_metrics_or_changes_loads(tmp_path):
    root = write_source(tmp_path / "src",
                        incidents="incident_id,system_id,opened_at,severity\nI1,A,2025-06-09T10:00:00,2\n")
    warehouse, result = load(root)
    assert result.rows_read == 0
    assert rows(warehouse, "SELECT count(*) FROM changes") == [(0,)]
    assert rows(warehouse, "SELECT count(*) FROM incidents") == [(1,)]


def test_loading_partitions_never_waits_for_the_warehouse_file(source):
    """Partition steps write the lake only: another process holding the warehouse file's
    write lock (a publication, say) does not stop them."""
    warehouse, _ = load(source)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_WRITE_LOCK, str(warehouse.path), "60"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        quick = Warehouse(warehouse.path, timezone="Asia/Shanghai", lock_timeout_s=0.5)
        with quick.lake_writer() as con:
            load_metrics(con, quick.lake, Source.open(source), CAL, TUE, TUE)
            assert con.execute("SELECT count(*) FROM metrics").fetchall()[0][0] == 7
        assert holder.poll() is None  # the lock was held the whole time
    finally:
        holder.kill()
        holder.wait()


def test_nan_in_parquet_with_statistics_is_a_missing_sample(tmp_path):
    """pyarrow writes min/max statistics that leave NaN out; NaN must still become NULL."""
    root = write_source(tmp_path / "src")
    (root / "metrics").mkdir()
    moments = [dt.datetime(2025, 6, 10, 9, m) for m in range(3)]
    pq.write_table(pa.table({"ts": pa.array(moments, pa.timestamp("us")),
                             "system_id": ["A"] * 3, "metric": ["cpu_pct"] * 3,
                             "value": pa.array([1.0, float("nan"), 2.0], pa.float32())}),
                   root / "metrics" / "nan.parquet")
    warehouse, result = load(root, TUE, TUE)
    assert rows(warehouse, "SELECT value FROM metrics ORDER BY ts") == [(1.0,), (None,), (2.0,)]
    assert result.rows_rejected == 0


def test_naive_parquet_timestamps_across_a_dst_change(tmp_path):
    """New York springs forward on 2025-03-09: Monday's window spans two UTC offsets."""
    nyse = TradingCalendar("XNYS", "America/New_York")
    root = write_source(tmp_path / "src")
    (root / "metrics").mkdir()
    local = [dt.datetime(2025, 3, 8, 12), dt.datetime(2025, 3, 10, 12),
             dt.datetime(2025, 3, 10, 17, 59), dt.datetime(2025, 3, 10, 18, 30)]
    pq.write_table(pa.table({"ts": pa.array(local, pa.timestamp("us")), "system_id": ["A"] * 4,
                             "metric": ["cpu_pct"] * 4, "value": [1.0, 2.0, 3.0, 4.0]}),
                   root / "metrics" / "m.parquet")
    warehouse = Warehouse(tmp_path / "wh.duckdb", timezone="America/New_York")
    with warehouse.lake_writer() as con:
        load_source_tables(con, warehouse.lake, Source.open(root))
        load_metrics(con, warehouse.lake, Source.open(root), nyse, dt.date(2025, 3, 10),
                     dt.date(2025, 3, 11))
    assert rows(warehouse, "SELECT as_of, ts, value FROM metrics ORDER BY ts") == [
        (dt.date(2025, 3, 10), dt.datetime(2025, 3, 8, 17), 1.0),  # EST: UTC-5
        (dt.date(2025, 3, 10), dt.datetime(2025, 3, 10, 16), 2.0),  # EDT: UTC-4
        (dt.date(2025, 3, 10), dt.datetime(2025, 3, 10, 21, 59), 3.0),
        (dt.date(2025, 3, 11), dt.datetime(2025, 3, 10, 22, 30), 4.0),
    ]
