"""Bad input gets a clear answer and loses nothing valid."""

import datetime as dt

import duckdb
import pytest

from features.source import Source, SourceError
from features.validate import stage_source_tables
from tests.conftest import write_source

SYSTEMS = "system_id,name,tier,depends_on,active_from\nA,alpha,1,,2020-01-01\nB,beta,2,A;Z,\nC,gamma,,A,\n"


def stage(root):
    con = duckdb.connect()
    con.execute("SET TimeZone = 'Asia/Shanghai'")
    results = {r.table: r for r in stage_source_tables(con, Source.open(root))}
    return con, results


def quarantine(con, table):
    return con.execute(
        "SELECT row, column_name, reason, raw_value, action FROM staged_quarantine "
        "WHERE table_name = ? ORDER BY row, column_name", [table]
    ).fetchall()


def test_missing_required_file_names_it(tmp_path):
    write_source(tmp_path, incidents=None)
    with pytest.raises(SourceError, match="incidents.csv is missing"):
        Source.open(tmp_path)


def test_missing_required_column_names_file_and_column(tmp_path):
    write_source(tmp_path, incidents="incident_id,system_id,opened_at\n")
    with pytest.raises(SourceError, match="incidents.csv is missing required column severity"):
        stage(tmp_path)


def test_empty_file_is_a_clear_error(tmp_path):
    write_source(tmp_path, incidents="")
    with pytest.raises(SourceError, match="incidents.csv is empty"):
        stage(tmp_path)


def test_non_utf8_file_names_the_line(tmp_path):
    write_source(tmp_path)
    (tmp_path / "incidents.csv").write_bytes(
        b"incident_id,system_id,opened_at,severity,title\nI1,A,2025-01-02T10:00:00,2,caf\xe9\n")
    with pytest.raises(SourceError, match=r"incidents.csv is not UTF-8 text \(line 2"):
        stage(tmp_path)


def test_header_only_case_library_is_fine(tmp_path):
    write_source(tmp_path)
    con, results = stage(tmp_path)
    assert results["incidents"].rows_loaded == 0
    assert results["changes"].file is None  # no changes.csv: no known changes


def test_rows_breaking_rules_are_quarantined_and_valid_rows_kept(tmp_path):
    write_source(
        tmp_path,
        systems=SYSTEMS + "A,dup,3,,\n,noname,1,,\nD,delta,9,,\n",
        incidents=(
            "incident_id,system_id,opened_at,resolved_at,severity,title\n"
            "I1,A,2025-01-02T10:00:00,2025-01-02T11:00:00,2,ok\n"
            "I2,A,not a time,,2,bad time\n"
            "I3,Z,2025-01-02T10:00:00,,2,unknown system\n"
            "I1,B,2025-01-03T10:00:00,,3,duplicate id\n"
            "I4,B,2025-01-03T10:00:00,,7,severity out of range\n"
            "I5,B,2025-01-03T10:00:00,yesterday,4,bad optional value\n"
            "I6,C,,,,missing time and severity\n"
        ),
    )
    con, results = stage(tmp_path)
    assert [r[0] for r in con.execute("SELECT system_id FROM staged_systems").fetchall()] == [
        "A", "B", "C", "D"]
    assert quarantine(con, "systems") == [
        (2, "depends_on", "depends_on names an unknown system; dropped", "Z", "value dropped"),
        (4, "system_id", "duplicate system_id, first on row 1", "A", "rejected"),
        (5, "system_id", "system_id is empty", None, "rejected"),
        (6, "tier", "tier must be an integer 1-4; 3 used", "9", "value dropped"),
    ]
    deps = dict(con.execute("SELECT system_id, depends_on FROM staged_systems").fetchall())
    assert deps["B"] == ["A"]
    tiers = dict(con.execute("SELECT system_id, tier FROM staged_systems").fetchall())
    assert tiers == {"A": 1, "B": 2, "C": 3, "D": 3}

    kept = [r[0] for r in con.execute("SELECT incident_id FROM staged_incidents").fetchall()]
    assert kept == ["I1", "I5"]
    reasons = {(row, reason) for row, _, reason, _, _ in quarantine(con, "incidents")}
    assert reasons == {
        (2, "opened_at is not an ISO-8601 timestamp"),
        (3, "unknown system_id"),
        (4, "duplicate incident_id, first on row 1"),
        (5, "severity must be an integer 1-4"),
        (6, "resolved_at is not an ISO-8601 timestamp"),
        (7, "opened_at is empty"),
        (7, "severity is empty"),
    }
    assert results["incidents"].rows_rejected == 5 and results["incidents"].values_dropped == 1


def test_naive_and_offset_timestamps_mixed_each_mean_what_they_say(tmp_path):
    write_source(
        tmp_path,
        incidents=(
            "incident_id,system_id,opened_at,severity\n"
            "I1,A,2025-01-02T09:30:00,2\n"  # naive: Shanghai local time
            "I2,A,2025-01-02T09:30:00+00:00,2\n"  # an instant
            "I3,A,2025-01-02T09:30:00Z,2\n"
            "I4,A,2025-01-02 09:30,2\n"
        ),
    )
    con, _ = stage(tmp_path)
    opened = dict(con.execute("SELECT incident_id, opened_at FROM staged_incidents").fetchall())
    assert opened == {
        "I1": dt.datetime(2025, 1, 2, 1, 30),
        "I2": dt.datetime(2025, 1, 2, 9, 30),
        "I3": dt.datetime(2025, 1, 2, 9, 30),
        "I4": dt.datetime(2025, 1, 2, 1, 30),
    }


def test_changes_default_created_at_and_repair_optional_values(tmp_path):
    write_source(
        tmp_path,
        changes=(
            "change_id,system_id,scheduled_start,created_at,risk_level,status\n"
            "C1,A,2025-01-10T20:00:00,,HIGH,approved\n"
            "C2,A,2025-01-10T20:00:00,whenever,extreme,done\n"
            "C1,B,2025-01-11T20:00:00,,low,planned\n"
        ),
    )
    con, results = stage(tmp_path)
    rows = con.execute(
        "SELECT change_id, created_at, risk_level, status FROM staged_changes ORDER BY 1").fetchall()
    assert rows == [
        ("C1", dt.datetime(2025, 1, 3, 12), "high", "approved"),
        ("C2", dt.datetime(2025, 1, 3, 12), None, None),
    ]
    assert results["changes"].rows_rejected == 1 and results["changes"].values_dropped == 3
