"""The lake: partitions replaced under readers, snapshots, clean-up, views by name everywhere."""

import datetime as dt
import json
import subprocess
import sys
import textwrap
import time

import duckdb
import pytest

from features.build import FEATURES_TABLE
from features.ingest import METRICS_TABLE
from features.lake import GRACE
from features.warehouse import Warehouse

DAYS = [dt.date(2025, 6, 9), dt.date(2025, 6, 10), dt.date(2025, 6, 11)]

# `rows` samples per day, each day's values summing to a number that says which write it was.
SAMPLES = """
SELECT d.as_of, TIMESTAMP '2025-06-01' + to_minutes(i) AS ts, 'S' || (i % 7) AS system_id,
       'cpu_pct' AS metric, ?::DOUBLE AS value
FROM (SELECT unnest(?::DATE[]) AS as_of) d, range(?) r(i)
"""


def write_metrics(warehouse: Warehouse, rows: int, value: float, days=DAYS) -> None:
    with warehouse.lake_writer() as con:
        warehouse.lake.write_partitions(con, METRICS_TABLE, SAMPLES, [value, days, rows], days)


@pytest.fixture
def warehouse(tmp_path):
    return Warehouse(tmp_path / "home" / "warehouse.duckdb", timezone="Asia/Shanghai")


READ_WHILE_WRITTEN = textwrap.dedent("""
    import json, sys, time
    from features.warehouse import Warehouse
    warehouse = Warehouse(sys.argv[1], timezone="Asia/Shanghai")
    seen, errors, deadline = set(), [], time.monotonic() + float(sys.argv[2])
    print("reading", flush=True)
    while time.monotonic() < deadline:
        try:
            with warehouse.reader() as con:
                for day, rows, value in con.execute(
                        "SELECT as_of, count(*), min(value) FROM metrics GROUP BY ALL").fetchall():
                    seen.add((rows, value))
        except Exception as exc:
            errors.append(str(exc)[:200])
    print(json.dumps({"seen": sorted(seen), "errors": errors[:5], "error_count": len(errors)}))
""")


def test_readers_see_whole_partitions_while_they_are_replaced(warehouse):
    """DuckDB reads a Parquet file more than once per query: a file replaced in place makes a
    concurrent reader fail. New versions under new names keep every read whole."""
    write_metrics(warehouse, 5000, 1.0)
    reader = subprocess.Popen([sys.executable, "-c", READ_WHILE_WRITTEN, str(warehouse.path), "6"],
                              stdout=subprocess.PIPE, text=True)
    assert reader.stdout.readline().strip() == "reading"
    writes = 0
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        writes += 1
        write_metrics(warehouse, 5000 if writes % 2 else 20000, float(writes % 2 + 1))
    outcome = json.loads(reader.stdout.read())
    assert reader.wait(timeout=60) == 0
    assert writes > 5
    assert outcome["error_count"] == 0, outcome["errors"]
    assert set(map(tuple, outcome["seen"])) <= {(5000, 1.0), (20000, 1.0), (5000, 2.0), (20000, 2.0)}
    assert len(outcome["seen"]) >= 2  # it did read while the partitions changed


def test_a_connection_reads_the_snapshot_it_opened_with(warehouse):
    write_metrics(warehouse, 10, 1.0)
    with warehouse.reader() as con:
        write_metrics(warehouse, 20, 2.0)
        assert con.execute("SELECT count(*), max(value) FROM metrics").fetchall() == [(30, 1.0)]
    with warehouse.reader() as con:
        assert con.execute("SELECT count(*), max(value) FROM metrics").fetchall() == [(60, 2.0)]


def test_superseded_versions_go_after_the_grace_period_only(warehouse):
    write_metrics(warehouse, 10, 1.0)
    write_metrics(warehouse, 10, 2.0)
    folder = warehouse.lake.root / "metrics" / "as_of=2025-06-10"
    files = sorted(folder.iterdir())
    assert len(files) == 2
    assert warehouse.lake.collect_garbage(METRICS_TABLE) == 0
    later = time.time() + GRACE.total_seconds() + 1
    assert warehouse.lake.collect_garbage(METRICS_TABLE, now=later) == len(DAYS)
    assert sorted(folder.iterdir()) == files[1:]
    with warehouse.reader() as con:
        assert con.execute("SELECT DISTINCT value FROM metrics").fetchall() == [(2.0,)]


def test_a_day_written_empty_loses_its_old_rows(warehouse):
    write_metrics(warehouse, 10, 1.0)
    write_metrics(warehouse, 0, 1.0, days=DAYS[1:2])
    with warehouse.reader() as con:
        assert con.execute("SELECT as_of, count(*) FROM metrics GROUP BY 1 ORDER BY 1").fetchall() == [
            (DAYS[0], 10), (DAYS[2], 10)]


def test_tables_before_any_write(warehouse):
    """Fixed-schema tables exist empty with their types; open-schema ones do not exist yet."""
    warehouse.lake.root.mkdir(parents=True)
    with warehouse.lake_writer() as con:
        assert con.execute("SELECT count(*) FROM metrics").fetchall() == [(0,)]
        assert con.execute("SELECT count(*) FROM quarantine").fetchall() == [(0,)]
        types = dict((r[0], r[1]) for r in con.execute("DESCRIBE metrics").fetchall())
        assert types == {"as_of": "DATE", "ts": "TIMESTAMP", "system_id": "VARCHAR",
                         "metric": "VARCHAR", "value": "DOUBLE"}
        with pytest.raises(duckdb.CatalogException):
            con.execute("SELECT * FROM system_day_features")


def test_partitions_of_different_columns_read_as_one_table(warehouse):
    with warehouse.lake_writer() as con:
        lake = warehouse.lake
        lake.write_partitions(con, FEATURES_TABLE,
                              "SELECT 'A' AS system_id, ?::DATE AS as_of, NULL::DATE AS target_date, "
                              "1.0::DOUBLE AS cpu",
                              [DAYS[0]], DAYS[:1])
        lake.write_partitions(con, FEATURES_TABLE,
                              "SELECT 'A' AS system_id, ?::DATE AS as_of, NULL::DATE AS target_date, "
                              "2.0::DOUBLE AS mem, "
                              "3.0::DOUBLE AS cpu", [DAYS[1]], DAYS[1:2])
    with warehouse.reader() as con:
        rows = con.sql("SELECT * FROM system_day_features ORDER BY as_of").pl()
        plan = con.execute("EXPLAIN ANALYZE SELECT count(*) FROM system_day_features "
                           "WHERE as_of = ?", [DAYS[1]]).fetchall()[0][1]
    assert rows.columns[:3] == ["system_id", "as_of", "target_date"]
    assert rows.select("cpu", "mem").rows() == [(1.0, None), (3.0, 2.0)]
    assert "Total Files Read: 0" in plan  # the other day's file was never opened


def test_the_duckdb_cli_sees_every_table_by_name(warehouse):
    """After a writer, the warehouse file alone answers for the lake's tables (latest versions)."""
    write_metrics(warehouse, 10, 1.0)
    write_metrics(warehouse, 10, 2.0)  # two versions on disk until the grace period ends
    with warehouse.lake_writer() as con:
        warehouse.lake.write_partitions(con, FEATURES_TABLE,
                                        "SELECT 'A' AS system_id, ?::DATE AS as_of, "
                                        "NULL::DATE AS target_date", [DAYS[0]],
                                        DAYS[:1])
    assert "metrics" in warehouse.publish_views()
    assert warehouse.publish_views() == []  # unchanged definitions are not rewritten
    cli = duckdb.connect(str(warehouse.path), read_only=True)
    try:
        assert cli.execute("SELECT count(*), max(value) FROM metrics").fetchall() == [(30, 2.0)]
        assert cli.execute("SELECT count(*) FROM system_day_features").fetchall() == [(1,)]
        assert cli.execute("SELECT count(*) FROM quarantine").fetchall() == [(0,)]
    finally:
        cli.close()


LEGACY = """
CREATE TABLE metrics (as_of DATE, ts TIMESTAMP, system_id VARCHAR, metric VARCHAR, value DOUBLE);
INSERT INTO metrics VALUES ('2025-06-10', '2025-06-10 01:00:00', 'A', 'cpu_pct', 5.0);
CREATE TABLE system_day_features (system_id VARCHAR, as_of DATE, target_date DATE, x DOUBLE);
INSERT INTO system_day_features VALUES ('A', '2025-06-10', '2025-06-11', 1.5);
CREATE TABLE systems (system_id VARCHAR, tier INTEGER);
INSERT INTO systems VALUES ('A', 1);
CREATE TABLE incidents (incident_id VARCHAR, system_id VARCHAR);
CREATE TABLE changes (change_id VARCHAR, system_id VARCHAR);
CREATE TABLE quarantine (table_name VARCHAR, source_file VARCHAR, "row" BIGINT,
    column_name VARCHAR, reason VARCHAR, raw_value VARCHAR, action VARCHAR, as_of DATE,
    loaded_at TIMESTAMP);
INSERT INTO quarantine VALUES ('metrics', 'm.csv', 3, 'value', 'bad', 'x', 'rejected',
    '2025-06-10', now()), ('systems', 'systems.csv', 2, 'tier', 'bad', '9', 'value dropped',
    NULL, now());
CREATE TABLE risk_scores (as_of DATE, system_id VARCHAR, risk DOUBLE);
INSERT INTO risk_scores VALUES ('2025-06-10', 'A', 0.1);
"""


def test_a_warehouse_from_before_the_lake_moves_into_it(warehouse):
    warehouse.path.parent.mkdir(parents=True)
    old = duckdb.connect(str(warehouse.path))
    old.execute(LEGACY)
    old.close()
    with warehouse.reader() as con:
        assert con.execute("SELECT value FROM metrics").fetchall() == [(5.0,)]
        assert con.execute("SELECT x FROM system_day_features").fetchall() == [(1.5,)]
        assert con.execute("SELECT tier FROM systems").fetchall() == [(1,)]
        assert con.execute("SELECT table_name, as_of FROM quarantine ORDER BY 1").fetchall() == [
            ("metrics", dt.date(2025, 6, 10)), ("systems", None)]
        assert con.execute("SELECT risk FROM risk_scores").fetchall() == [(0.1,)]
    cli = duckdb.connect(str(warehouse.path), read_only=True)
    kinds = dict(cli.execute("SELECT table_name, table_type FROM information_schema.tables").fetchall())
    cli.close()
    assert kinds["metrics"] == "VIEW" and kinds["risk_scores"] == "BASE TABLE"


def test_a_full_disk_is_one_line_naming_the_lake(warehouse, monkeypatch):
    import errno
    import os

    from features.errors import ResourceError

    write_metrics(warehouse, 10, 1.0)

    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "rename", full)
    with pytest.raises(ResourceError, match=r"cannot write the lake .*lake: No space left on device; free space"):
        write_metrics(warehouse, 10, 2.0)
    monkeypatch.undo()
    with warehouse.reader() as con:  # the old partitions are intact
        assert con.execute("SELECT count(*), max(value) FROM metrics").fetchall() == [(30, 1.0)]
