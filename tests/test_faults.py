"""The fault suite: every defect of issue 13 reproduced on tiny hand-made sources.

Each test names the behaviour it protects; the sections follow the issue: valid CSV accepted
and damaged CSV quarantined, changes on systems out of service kept for the CAB, warehouse and
disk faults in one line, publication atomic across the table and the files, spreadsheet
formulas neutralised, and ``failcast validate`` judging each day as the nightly does.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pytest

from features.source import Source
from features.trading_time import TradingCalendar
from features.validate import stage_source_tables
from pipelines.resources import FailcastResource
from tests.conftest import write_source

CAL = TradingCalendar("XSHG", "Asia/Shanghai")
MON, TUE = dt.date(2025, 6, 9), dt.date(2025, 6, 10)
REMEDIATION = "Restarted service,\nreplayed messages"
INCIDENT_HEADER = "incident_id,system_id,opened_at,severity,title,remediation\n"


def stage(root):
    con = duckdb.connect()
    con.execute("SET TimeZone = 'Asia/Shanghai'")
    results = {r.table: r for r in stage_source_tables(con, Source.open(root))}
    return con, results


def staged(con, table, columns):
    return con.execute(f"SELECT {columns} FROM staged_{table} ORDER BY 1").fetchall()  # noqa: S608


def quarantined(con, table):
    return con.execute(
        'SELECT source_file, "row", column_name, reason, action FROM staged_quarantine '
        "WHERE table_name = ? ORDER BY 2", [table]).fetchall()


# ------------------------------------------------------------------ 1. CSV as RFC 4180 allows


def test_a_quoted_line_break_in_a_remediation_is_read_not_refused(tmp_path):
    write_source(tmp_path, incidents=(
        INCIDENT_HEADER
        + 'I1,A,2025-06-09T10:00:00,2,queue stuck,"Restarted service,\nreplayed messages"\n'
        + "I2,B,2025-06-09T11:00:00,3,disk,cleaned\n"))
    con, results = stage(tmp_path)
    assert staged(con, "incidents", "incident_id, remediation") == [
        ("I1", REMEDIATION), ("I2", "cleaned")]
    assert results["incidents"].rows_read == 2 and results["incidents"].rows_rejected == 0


@pytest.mark.parametrize("table", ["systems", "changes"])
def test_quoted_line_breaks_are_read_in_systems_and_changes(tmp_path, table):
    texts = {
        "systems": 'system_id,name,owner\nA,"order\nrouter",ops\nB,"risk ""engine""",ops\n',
        "changes": ('change_id,system_id,scheduled_start,description\n'
                    'C1,A,2025-06-10T20:00:00,"patch kernel,\nthen reboot"\n'
                    'C2,B,2025-06-10T21:00:00,plain\n'),
    }
    write_source(tmp_path, systems=texts["systems"] if table == "systems" else "system_id\nA\nB\n",
                 changes=texts["changes"])
    con, _ = stage(tmp_path)
    column = {"systems": "name", "changes": "description"}[table]
    values = [r[0] for r in con.execute(f"SELECT {column} FROM staged_{table} ORDER BY 1").fetchall()]  # noqa: S608
    assert {"systems": ["order\nrouter", 'risk "engine"'],
            "changes": ["patch kernel,\nthen reboot", "plain"]}[table] == values


def test_doubled_quotes_are_one_quote_and_commas_inside_quotes_stay(tmp_path):
    write_source(tmp_path, incidents=(
        INCIDENT_HEADER + 'I1,A,2025-06-09T10:00:00,2,"said ""restart"", then waited",ok\n'))
    con, _ = stage(tmp_path)
    assert staged(con, "incidents", "title") == [('said "restart", then waited',)]


def test_optional_columns_in_any_order_are_read_by_name(tmp_path):
    write_source(tmp_path, incidents=(
        "remediation,severity,title,opened_at,incident_id,system_id\n"
        "rebooted,2,hung,2025-06-09T10:00:00,I1,A\n"))
    con, _ = stage(tmp_path)
    assert staged(con, "incidents", "incident_id, system_id, severity, title, remediation") == [
        ("I1", "A", 2, "hung", "rebooted")]


@pytest.mark.parametrize("newline", ["\n", "\r\n", "mixed"])
def test_lf_crlf_and_mixed_line_endings_read_the_same(tmp_path, newline):
    lines = [INCIDENT_HEADER.strip(), 'I1,A,2025-06-09T10:00:00,2,t1,"two\nlines"',
             "I2,B,2025-06-09T11:00:00,3,t2,r2", "I3,A,2025-06-09T12:00:00,1,t3,r3"]
    if newline == "mixed":
        text = lines[0] + "\r\n" + lines[1] + "\n" + lines[2] + "\r\n" + lines[3] + "\n"
    else:
        text = newline.join(lines) + newline
    write_source(tmp_path)
    (tmp_path / "incidents.csv").write_bytes(text.encode())
    con, _ = stage(tmp_path)
    assert staged(con, "incidents", "incident_id, title") == [("I1", "t1"), ("I2", "t2"), ("I3", "t3")]


def test_a_file_cut_inside_a_quoted_field_quarantines_the_last_record(tmp_path):
    write_source(tmp_path, incidents=(
        INCIDENT_HEADER + "I1,A,2025-06-09T10:00:00,2,ok,fixed\n"
        + 'I2,B,2025-06-09T11:00:00,3,disk,"Restarted service,\nrepl'))
    con, results = stage(tmp_path)
    assert staged(con, "incidents", "incident_id") == [("I1",)]  # never stored truncated
    [(file, row, column, reason, action)] = quarantined(con, "incidents")
    assert (file, row, action) == ("incidents.csv", 2, "rejected")
    assert "ends inside a quoted field" in reason
    assert results["incidents"].rows_rejected == 1 and results["incidents"].rows_read == 2


def test_calendar_csv_reads_quotes_line_breaks_any_column_order_and_mixed_endings(tmp_path):
    from features.trading_time import read_calendar_overrides

    path = tmp_path / "calendar.csv"
    path.write_bytes(b'note,is_trading_day,date\r\n"typhoon,\nexchange shut",0,2025-06-10\n'
                     b'"make-up ""Saturday""",1,2025-06-14\r\n')
    assert read_calendar_overrides(path) == {dt.date(2025, 6, 10): False, dt.date(2025, 6, 14): True}


def test_a_calendar_cut_inside_a_quoted_field_is_refused_naming_file_and_row(tmp_path):
    from features.source import SourceError
    from features.trading_time import read_calendar_overrides

    path = tmp_path / "calendar.csv"
    path.write_text('date,is_trading_day,note\n2025-06-10,0,typhoon\n2025-06-14,1,"make-up da')
    with pytest.raises(SourceError, match=r"calendar.csv row 2: the file ends inside a quoted field"):
        read_calendar_overrides(path)


def load_metric_csv(tmp_path, text: bytes):
    """Load Tuesday's metric samples from one hand-made CSV file; return the warehouse."""
    from features.ingest import load_metrics, load_source_tables
    from features.warehouse import Warehouse

    root = write_source(tmp_path / "src")
    (root / "metrics").mkdir()
    (root / "metrics" / "m.csv").write_bytes(text)
    warehouse = Warehouse(tmp_path / "wh.duckdb", timezone="Asia/Shanghai")
    with warehouse.lake_writer() as con:
        load_source_tables(con, warehouse.lake, Source.open(root))
        load_metrics(con, warehouse.lake, Source.open(root), CAL, TUE, TUE)
    return warehouse


def metric_rows(warehouse, sql):
    with warehouse.reader() as con:
        return con.execute(sql).fetchall()


def test_a_metric_csv_with_quoted_line_breaks_and_doubled_quotes_is_read(tmp_path):
    warehouse = load_metric_csv(tmp_path, (
        b'ts,system_id,metric,value,note\n'
        b'2025-06-10T10:00:00,A,cpu_pct,1.5,"failover,\nthen ""recovered"""\n'
        b'"2025-06-10T11:00:00","B","cpu_pct","2.5",plain\n'))
    assert metric_rows(warehouse, "SELECT system_id, value FROM metrics ORDER BY ts") == [
        ("A", 1.5), ("B", 2.5)]


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"mixed"])
def test_metric_csv_columns_in_any_order_with_any_line_endings(tmp_path, newline):
    lines = [b"value,metric,ts,system_id", b"1,cpu_pct,2025-06-10T10:00:00,A",
             b"2,cpu_pct,2025-06-10T11:00:00,B", b"3,cpu_pct,2025-06-10T12:00:00,A"]
    if newline == b"mixed":
        text = lines[0] + b"\r\n" + lines[1] + b"\n" + lines[2] + b"\r\n" + lines[3] + b"\n"
    else:
        text = newline.join(lines) + newline
    warehouse = load_metric_csv(tmp_path, text)
    assert metric_rows(warehouse, "SELECT system_id, value FROM metrics ORDER BY ts") == [
        ("A", 1.0), ("B", 2.0), ("A", 3.0)]


@pytest.mark.parametrize(("text", "exact"), [
    (b"ts,value\n1,2\n3,4\n", False), (b"ts,value\r\n1,2\r\n3,4\r\n", False),
    (b"ts,value\r\n1,2\n3,4\r\n", True), (b'ts,value\n1,"2"\n', True),
    (b"ts,value\n1,2\n3,4\r\n", True)])
def test_the_byte_scan_sends_quoted_and_mixed_files_to_the_exact_reader(tmp_path, monkeypatch,
                                                                        text, exact):
    import features.csv_text as csv_text

    monkeypatch.setattr(csv_text, "SCAN_CHUNK", 3)  # line endings split across reads
    (tmp_path / "m.csv").write_bytes(text)
    assert csv_text.needs_exact_reader(tmp_path / "m.csv") is exact


def test_a_metric_csv_cut_inside_a_quoted_field_quarantines_the_last_record(tmp_path):
    warehouse = load_metric_csv(tmp_path, (
        b'ts,system_id,metric,value,note\n'
        b'2025-06-10T10:00:00,A,cpu_pct,1.5,"ok"\n'
        b'2025-06-10T11:00:00,B,cpu_pct,2.5,"half a no'))
    assert metric_rows(warehouse, "SELECT system_id, value FROM metrics") == [("A", 1.5)]
    [(file, row, reason, action)] = metric_rows(
        warehouse, "SELECT source_file, row, reason, action FROM quarantine WHERE table_name = 'metrics'")
    assert file.endswith("m.csv") and row == 2 and action == "rejected"
    assert "ends inside a quoted field" in reason


# ------------------------------------------------------------------ 2. changes the CAB must see

AS_OF = dt.date(2025, 6, 10)
SERVICE_SYSTEMS = ("system_id,active_from,active_to\nA,,\nOLD,2020-01-01,2025-06-06\n"
                   "NEW,2025-06-20,\nEND,,2025-06-10\n")
SERVICE_CHANGES = (
    "change_id,system_id,scheduled_start,created_at,risk_level,description\n"
    "C-A,A,2025-06-10T20:00:00,2025-06-01T10:00:00,low,patch\n"
    "C-OLD,OLD,2025-06-10T20:00:00,2025-06-01T10:00:00,low,on a retired system\n"
    "C-NEW,NEW,2025-06-10T20:00:00,2025-06-01T10:00:00,low,before it enters service\n"
    "C-GHOST,GHOST,2025-06-10T20:00:00,2025-06-01T10:00:00,low,on a system nobody knows\n"
    "C-END,END,2025-06-11T09:00:00,2025-06-01T10:00:00,low,after its last day in service\n"
)
OUT_OF_SERVICE = {"C-OLD": "out of service since 2025-06-07", "C-NEW": "enters service on 2025-06-20",
                  "C-GHOST": "not in the inventory", "C-END": "out of service since 2025-06-11"}


@pytest.fixture
def service(tmp_path):
    """Published low risk for A and END as of 2025-06-10; OLD, NEW and GHOST have none."""
    from features.ingest import load_source_tables
    from models.scoring import ensure_tables
    from pipelines.settings import load_settings

    source = write_source(tmp_path / "src", systems=SERVICE_SYSTEMS, changes=SERVICE_CHANGES)
    settings = load_settings(source, tmp_path / "home", env={})
    warehouse = settings.warehouse()
    with warehouse.lake_writer() as con:
        results = {r.table: r for r in load_source_tables(con, warehouse.lake, Source.open(source))}
    with warehouse.writer() as con:
        ensure_tables(con)
        for rank, system in enumerate(("A", "END"), start=1):
            con.execute("INSERT INTO risk_scores BY NAME SELECT DATE '2025-06-10' AS as_of, "
                        "DATE '2025-06-11' AS target_date, ? AS system_id, 0.01 AS risk, "
                        "'low' AS tier, ? AS rank, '[]' AS top_factors, '[]' AS similar_incidents, "
                        "'[]' AS scheduled_changes, 'm' AS model_name, '1' AS model_version, "
                        "'r' AS mlflow_run_id, now() AS scored_at, 'ok' AS data_status, "
                        "'' AS data_notes", [system, rank])
    return settings, results


def test_a_change_on_an_unknown_system_is_kept_and_recorded_without_blocking(service):
    settings, results = service
    with settings.warehouse().reader() as con:
        kept = con.execute("SELECT change_id FROM changes WHERE system_id = 'GHOST'").fetchall()
        recorded = con.execute("SELECT source_file, \"row\", reason, action FROM quarantine "
                               "WHERE table_name = 'changes'").fetchall()
    assert kept == [("C-GHOST",)]
    assert recorded == [("changes.csv", 4, "unknown system_id", "kept for review")]
    assert results["changes"].rows_rejected == 0 and results["changes"].reject_share == 0
    assert results["changes"].rows_flagged == 1


@pytest.mark.parametrize("change", sorted(OUT_OF_SERVICE))
def test_review_change_on_a_system_out_of_service_says_so_and_asks_for_extra_review(
        service, change, capsys):
    from pipelines.cli import main

    settings, _ = service
    code = main(["review-change", "--source", str(settings.source), "--home", str(settings.home),
                 change])
    out, err = capsys.readouterr()
    assert code == 10, err
    assert "EXTRA REVIEW" in out and OUT_OF_SERVICE[change] in out
    assert "nightly" not in out + err


def test_review_change_on_a_system_in_service_still_follows_the_matrix(service, capsys):
    from pipelines.cli import main

    settings, _ = service
    assert main(["review-change", "--source", str(settings.source), "--home", str(settings.home),
                 "C-A"]) == 0


def test_every_window_change_gets_a_decision_and_the_cab_page_shows_those_without_a_score(service):
    import polars as pl

    from models.report import render_change_review
    from models.scoring import change_entries

    settings, _ = service
    calendar = settings.calendar
    with settings.warehouse().reader() as con:
        entries = change_entries(con, calendar, AS_OF, {"A": "low", "END": "low"})
        scores = con.sql("SELECT * FROM risk_scores ORDER BY rank").pl()
    decided = {e["change_id"]: (e["action"], e["action_reason"]) for e in entries}
    assert decided["C-A"] == ("approve", "system risk tier low, change risk low")
    for change, fact in OUT_OF_SERVICE.items():
        action, reason = decided[change]
        assert action == "extra review" and fact in reason, (change, reason)
    unscored = [e for e in entries if e["system_id"] not in ("A", "END")]
    html = render_change_review(scores, pl.DataFrame({"system_id": ["A"], "name": ["a"],
                                                      "category": ["c"], "owner": ["o"]}),
                                cutoff="c", target_cutoff="t", timezone="UTC",
                                thresholds=(0.05, 0.15, 0.35), unscored_changes=unscored)
    for change in ("C-OLD", "C-NEW", "C-GHOST"):
        assert change in html and OUT_OF_SERVICE[change] in html


# ------------------------------------------------------------------ 3. warehouse and disk faults

HOLD_LOCK = textwrap.dedent("""
    import duckdb, sys, time
    con = duckdb.connect(sys.argv[1])
    con.execute("CREATE TABLE IF NOT EXISTS held (x INTEGER)")
    print("locked", flush=True)
    time.sleep(120)
""")


@pytest.fixture
def locked(tmp_path):
    """A warehouse file whose write lock another process holds; yields (path, that PID)."""
    path = tmp_path / "home" / "warehouse.duckdb"
    path.parent.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield path, holder.pid
    finally:
        holder.kill()
        holder.wait()


def test_a_locked_warehouse_names_the_holder_says_it_waits_and_gives_up_in_bounded_time(locked):
    from features.errors import ResourceError
    from features.warehouse import Warehouse

    path, pid = locked
    said = []
    started = time.monotonic()
    with pytest.raises(ResourceError) as raised, Warehouse(path, lock_timeout_s=1,
                                                           on_wait=said.append).writer():
        pass
    assert time.monotonic() - started < 30  # bounded: not DuckDB's silent two minutes
    assert len(said) == 1 and f"PID {pid}" in said[0] and "waiting up to 1 s" in said[0]
    message = str(raised.value)
    assert str(path) in message and f"PID {pid}" in message and "lock_timeout_s" in message


def test_a_reader_of_a_locked_warehouse_ends_in_one_line_and_exit_3(locked, monkeypatch, capsys):
    from pipelines.cli import main

    path, pid = locked
    monkeypatch.setenv("FAILCAST_LOCK_TIMEOUT_S", "0.5")
    root = write_source(path.parent.parent / "src")
    assert main(["risk", "--source", str(root), "--home", str(path.parent)]) == 3
    waiting, error = capsys.readouterr().err.strip().splitlines()
    assert waiting.startswith("failcast: the warehouse") and "waiting up to 0.5 s" in waiting
    assert error.startswith("failcast: error: the warehouse") and f"PID {pid}" in error


def test_a_lock_met_inside_a_dagster_step_ends_the_command_with_its_own_line(locked, tmp_path):
    """The step's ResourceError, not "the run failed" (exit 1): its line and its exit code."""
    import dagster as dg

    from pipelines.runner import RunFailed, run_job, step_printer
    from pipelines.settings import load_settings

    path, pid = locked
    settings = load_settings(write_source(tmp_path / "src"), path.parent, env={},
                             lock_timeout_s=0.5)

    @dg.asset
    def writes_the_warehouse(failcast: FailcastResource) -> None:
        with failcast.warehouse().writer():
            pass

    defs = dg.Definitions(assets=[writes_the_warehouse], loggers={"steps": step_printer},
                          jobs=[dg.define_asset_job("write_job")],
                          resources={"failcast": FailcastResource.from_settings(settings)})
    with pytest.raises(RunFailed, match=f"write_job failed at writes_the_warehouse: the warehouse .* is still locked by PID {pid}") as failed:
        run_job(defs, "write_job", settings)
    assert failed.value.exit_code == 3


def _constrained(folder: Path, kind: str, script: str, *args: str,
                 **env_values: str) -> subprocess.CompletedProcess:
    """Run ``script`` with ``folder`` on a full (1 MB tmpfs) or read-only file system, in a
    mount namespace of its own so nothing outside the test sees it."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare for a private mount namespace")
    mount = {"full": f'mount -t tmpfs -o size=1m tmpfs "{folder}"',
             "read-only": f'mount --bind "{folder}" "{folder}" && '
                          f'mount -o remount,ro,bind "{folder}"'}[kind]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent), **env_values}
    result = subprocess.run(["unshare", "--mount", "sh", "-c", f'{mount} && exec "$0" "$@"',
                             sys.executable, "-c", script, *args],
                            capture_output=True, text=True, timeout=120, env=env)
    if "mount:" in result.stderr and "permission denied" in result.stderr.lower():
        pytest.skip("mounts are not allowed here")
    return result


WRITE_WAREHOUSE = textwrap.dedent("""
    import sys
    from features.errors import FailcastError
    from features.warehouse import Warehouse
    try:
        with Warehouse(sys.argv[1]).writer() as con:
            con.execute("CREATE TABLE filler AS SELECT range AS a, repeat(md5(range::VARCHAR), 6) AS b "
                        "FROM range(200000)")
    except FailcastError as exc:
        print(f"failcast: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
""")


@pytest.mark.parametrize(("kind", "words"), [("full", "No space left on device"),
                                              ("read-only", "Read-only file system")])
def test_a_full_or_read_only_warehouse_disk_is_one_line_naming_the_path(tmp_path, kind, words):
    home = tmp_path / "home"
    home.mkdir()
    result = _constrained(home, kind, WRITE_WAREHOUSE, str(home / "warehouse.duckdb"))
    assert result.returncode == 3, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"failcast: error: cannot write the warehouse {home / 'warehouse.duckdb'}")
    assert words in line


INGEST_INTO_FULL_HOME = textwrap.dedent("""
    import os, sys
    from pipelines.cli import main
    home = sys.argv[2]
    try:  # fill the disk first, as a night finds it
        with open(os.path.join(home, "filler"), "wb") as handle:
            while True:
                handle.write(bytes(65536))
    except OSError:
        pass
    sys.exit(main(["ingest", "--source", sys.argv[1], "--home", home, "--date", "2025-06-10"]))
""")


def test_a_nightly_command_on_a_full_home_ends_in_one_line_and_exit_3(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    result = _constrained(home, "full", INGEST_INTO_FULL_HOME, str(write_source(tmp_path / "src")),
                          str(home), DAGSTER_HOME="")  # Dagster's default: <home>/dagster
    assert result.returncode == 3, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last == (f"failcast: error: cannot write the Dagster instance {home / 'dagster'}: "
                    "No space left on device; free space on that disk, then run the command again")
    assert "Traceback" not in result.stderr and "sqlalche" not in result.stderr


PUBLISH_FILES = textwrap.dedent("""
    import datetime as dt, sys
    import polars as pl
    from features.errors import FailcastError
    from models.publish import publish_files
    scores = pl.DataFrame({"target_date": [dt.date(2025, 6, 11)] * 20000,
                           "system_id": [f"S{i}" for i in range(20000)], "risk": [0.1] * 20000})
    try:
        publish_files(__import__("pathlib").Path(sys.argv[1]), scores, "<html>" + "x" * 2_000_000)
    except FailcastError as exc:
        print(f"failcast: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
""")


@pytest.mark.parametrize(("kind", "words"), [("full", "No space left on device"),
                                              ("read-only", "Read-only file system")])
def test_a_full_or_read_only_published_folder_is_one_line_naming_the_path(tmp_path, kind, words):
    published = tmp_path / "published"
    (published / "2025-06-11").mkdir(parents=True)
    result = _constrained(published, kind, PUBLISH_FILES, str(published))
    assert result.returncode == 3, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"failcast: error: cannot write the published file {published / '2025-06-11'}")
    assert words in line


# ------------------------------------------------------------------ 5. publication atomic

D0, D1 = dt.date(2025, 6, 9), dt.date(2025, 6, 10)  # as-of days; targets are the next sessions


def day_scores(as_of: dt.date, risk: float):
    import polars as pl

    systems = ["A", "B", "=HYPERLINK(\"http://x\",\"click\")"]
    return pl.DataFrame({
        "as_of": [as_of] * 3, "target_date": [CAL.next_session(as_of)] * 3, "system_id": systems,
        "risk": [risk, risk / 2, -0.0], "tier": ["high", "elevated", "low"],
        "rank": pl.Series([1, 2, 3], dtype=pl.Int32), "top_factors": ["[]"] * 3,
        "similar_incidents": ["[]"] * 3, "scheduled_changes": ["[]"] * 3,
        "model_name": ["m"] * 3, "model_version": ["1"] * 3, "mlflow_run_id": ["r"] * 3,
        "scored_at": [dt.datetime(2025, 6, 10, 11)] * 3,
    })


# The publish assets' sequence for a staged day: files (change_review), then the table
# (risk_scores); the argument says where this process is killed (SIGKILL, like kill -9).
PUBLISH_STAGED_DAY = textwrap.dedent("""
    import datetime as dt, os, signal, sys
    from contextlib import contextmanager
    from pathlib import Path
    import models.publish as publish
    import models.scoring as scoring
    from features.warehouse import Warehouse

    home, as_of, kill_at = Path(sys.argv[1]), dt.date.fromisoformat(sys.argv[2]), sys.argv[3]
    die = lambda: os.kill(os.getpid(), signal.SIGKILL)
    if kill_at == "between files":
        real_write, calls = publish.write_atomically, []
        def write_then_die(*args, **kwargs):
            calls.append(1)
            if len(calls) == 2:
                die()
            real_write(*args, **kwargs)
        publish.write_atomically = write_then_die
    if kill_at == "inside the table's transaction":
        real_transaction = scoring.transaction
        @contextmanager
        def dying(con):
            with real_transaction(con):
                yield con
                die()  # the day's rows are written, not committed
        scoring.transaction = dying
    warehouse = Warehouse(home / "warehouse.duckdb")
    with warehouse.reader() as con:
        scores = scoring.read_scores(con, scoring.STAGING, as_of)
    publish.publish_files(home / "published", scores, f"<p>page of {as_of}</p>")
    if kill_at == "after the files, before the table":
        die()
    with warehouse.writer() as con:
        scoring.publish_day(con, as_of)
    if kill_at == "after the table":
        die()
""")
KILL_POINTS = ["between files", "after the files, before the table",
               "inside the table's transaction", "after the table"]


def publish_in_a_process(home: Path, as_of: dt.date, kill_at: str) -> int:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    return subprocess.run([sys.executable, "-c", PUBLISH_STAGED_DAY, str(home), as_of.isoformat(),
                           kill_at], env=env, timeout=120).returncode


def publish_here(home: Path, as_of: dt.date) -> None:
    """The same sequence, uninterrupted, in this process."""
    from features.warehouse import Warehouse
    from models.publish import publish_files
    from models.scoring import STAGING, publish_day, read_scores

    warehouse = Warehouse(home / "warehouse.duckdb")
    with warehouse.reader() as con:
        scores = read_scores(con, STAGING, as_of)
    publish_files(home / "published", scores, f"<p>page of {as_of}</p>")
    with warehouse.writer() as con:
        publish_day(con, as_of)


def served_days_have_their_files(home: Path) -> None:
    """The invariant: every day the table serves has its page, CSV and Parquet, equal to it."""
    import polars as pl

    from features.warehouse import Warehouse

    with Warehouse(home / "warehouse.duckdb").reader() as con:
        table = con.sql("SELECT * FROM risk_scores ORDER BY as_of, rank").pl()
    for (target,), rows in table.group_by(["target_date"]):
        folder = home / "published" / str(target)
        assert (folder / "change_review.html").is_file()
        assert pl.read_parquet(folder / "risk_scores.parquet").equals(rows)
        assert pl.read_csv(folder / "risk_scores.csv").height == rows.height


@pytest.mark.parametrize("kill_at", KILL_POINTS)
def test_publication_killed_at_each_step_never_serves_a_day_without_its_files(tmp_path, kill_at):
    from features.warehouse import Warehouse
    from models.scoring import stage_day

    home = tmp_path / "home"
    with Warehouse(home / "warehouse.duckdb").writer() as con:
        stage_day(con, day_scores(D0, 0.4), D0)
        stage_day(con, day_scores(D1, 0.3), D1)
    publish_here(home, D0)  # yesterday, published cleanly
    before = (home / "published" / "2025-06-10" / "risk_scores.parquet").read_bytes()

    assert publish_in_a_process(home, D1, kill_at) == -9
    served_days_have_their_files(home)
    assert (home / "published" / "2025-06-10" / "risk_scores.parquet").read_bytes() == before
    with Warehouse(home / "warehouse.duckdb").reader() as con:
        days = [r[0] for r in con.execute("SELECT DISTINCT as_of FROM risk_scores ORDER BY 1").fetchall()]
    assert days == ([D0, D1] if kill_at == "after the table" else [D0])

    for partial in (home / "published").rglob("*.partial"):  # a minute later
        os.utime(partial, (time.time() - 3600, time.time() - 3600))
    publish_here(home, D1)  # the rerun completes the day
    served_days_have_their_files(home)
    assert not list((home / "published").rglob("*.partial"))


def test_the_publish_assets_write_the_files_before_the_table(tmp_path):
    from pipelines.definitions import build_definitions
    from pipelines.settings import load_settings

    settings = load_settings(write_source(tmp_path / "src"), tmp_path / "home", env={})
    graph = build_definitions(settings, today=dt.date(2025, 6, 11)).resolve_asset_graph()
    parents = {k.to_user_string(): {p.to_user_string() for p in graph.get(k).parent_keys}
               for k in graph.get_all_asset_keys()}
    assert "scored_systems" in parents["change_review"]
    assert "change_review" in parents["risk_scores"]


def test_two_writers_of_one_day_use_temporary_names_of_their_own(tmp_path, monkeypatch):
    import models.publish as publish

    renamed = []
    real_replace = os.replace
    monkeypatch.setattr(publish.os, "replace",
                        lambda src, dst: (renamed.append(Path(src).name), real_replace(src, dst)))
    for _ in range(2):
        publish.publish_files(tmp_path, day_scores(D1, 0.3), "<p>page</p>")
    assert len(renamed) == 6 and len(set(renamed)) == 6
    assert ".risk_scores.parquet.partial" not in renamed  # the old fixed name


KILLED_RUN = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import dagster as dg
    from pipelines.runner import run_job, step_printer
    from pipelines.settings import load_settings

    @dg.op
    def long_step():
        Path(sys.argv[3]).touch()
        time.sleep(120)

    @dg.job
    def long_job():
        long_step()

    defs = dg.Definitions(jobs=[long_job], loggers={"steps": step_printer})
    run_job(defs, "long_job", load_settings(sys.argv[1], sys.argv[2], env={}))
""")


def test_a_run_killed_mid_way_ends_failed_not_started_forever(tmp_path):
    import dagster as dg

    from pipelines.run_health import fail_abandoned_runs

    source, home, started = write_source(tmp_path / "src"), tmp_path / "home", tmp_path / "started"
    env = {**os.environ, "DAGSTER_HOME": str(home / "dagster"),
           "PYTHONPATH": str(Path(__file__).parent.parent)}
    run = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(source), str(home), str(started)],
                           env=env)
    try:
        deadline = time.monotonic() + 90
        while not started.exists() and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert started.exists(), "the run did not start"
    finally:
        run.kill()
        run.wait()
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        [killed] = instance.get_runs()
        assert killed.status == dg.DagsterRunStatus.STARTED  # what the UI showed forever
        assert fail_abandoned_runs(instance) == [killed.run_id]
        assert instance.get_run_by_id(killed.run_id).status == dg.DagsterRunStatus.FAILURE
        [failure] = instance.all_logs(killed.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
        assert f"PID {run.pid}" in failure.message
        assert fail_abandoned_runs(instance) == []  # once


def test_the_abandoned_runs_sensor_sweeps_while_the_daemon_runs():
    import dagster as dg

    from pipelines.run_health import abandoned_runs_sensor

    with dg.instance_for_test() as instance:
        tick = abandoned_runs_sensor.evaluate_tick(dg.build_sensor_context(instance=instance))
    assert tick.skip_message == "no abandoned run"


# ------------------------------------------------------------------ 6. spreadsheet formulas


def test_published_csv_cells_never_run_as_formulas_and_numbers_stay_numbers(tmp_path):
    import csv

    from models.publish import publish_files

    scores = day_scores(D1, 0.3).with_columns(
        model_name=__import__("polars").Series(["+cmd|' /C calc'!A0", "@SUM(1+1)", "\tx"]),
        model_version=__import__("polars").Series(["-1.5", "\r=1", "v2"]))
    files = publish_files(tmp_path, scores, "<p>page</p>")
    with files["csv"].open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["system_id"] for r in rows] == ["A", "B", "'=HYPERLINK(\"http://x\",\"click\")"]
    assert [r["model_name"] for r in rows] == ["'+cmd|' /C calc'!A0", "'@SUM(1+1)", "'\tx"]
    assert [r["model_version"] for r in rows] == ["-1.5", "'\r=1", "v2"]  # -1.5 is a number
    assert [r["risk"] for r in rows] == ["0.3", "0.15", "-0.0"]  # numeric columns untouched
    parquet = __import__("polars").read_parquet(files["parquet"])
    assert parquet["system_id"][2].startswith("=")  # typed files keep the data as it is


def test_backtest_csv_and_risk_csv_report_are_neutralised_too(tmp_path, capsys):
    import polars as pl

    from models.backtest_run import write_scores
    from models.scoring import ensure_tables
    from pipelines.cli import main
    from pipelines.settings import load_settings

    out = tmp_path / "backtest.csv"
    write_scores(pl.DataFrame({"system_id": ["=1+1", "A"], "risk": [-0.5, 0.2]}), out)
    assert pl.read_csv(out)["system_id"].to_list() == ["'=1+1", "A"]
    assert pl.read_csv(out)["risk"].to_list() == [-0.5, 0.2]

    settings = load_settings(write_source(tmp_path / "src"), tmp_path / "home", env={})
    with settings.warehouse().writer() as con:
        ensure_tables(con)
        con.register("rows", day_scores(D1, 0.3))
        con.execute("INSERT INTO risk_scores BY NAME SELECT * FROM rows")
    assert main(["risk", "--source", str(settings.source), "--home", str(settings.home),
                 "--format", "csv"]) == 0
    assert "'=HYPERLINK" in capsys.readouterr().out


# ------------------------------------------------------------------ 7. validate judges each day


def test_validate_names_the_days_the_nightly_would_refuse(tmp_path, capsys):
    """A new system in the metrics only: 0.65% of the source, but 20% of Tuesday."""
    from pipelines.cli import main

    monday = "".join(f"2025-06-09T{h:02d}:{m:02d}:00,A,cpu_pct,1\n" for h in range(10, 15)
                     for m in range(60))  # 300 samples, all valid
    tuesday = ("2025-06-10T10:00:00,NEW,cpu_pct,1\n2025-06-10T10:01:00,NEW,cpu_pct,1\n"
               + "".join(f"2025-06-10T11:{m:02d}:00,A,cpu_pct,1\n" for m in range(8)))
    root = write_source(tmp_path / "src", metrics={"m.csv": "ts,system_id,metric,value\n"
                                                   + monday + tuesday})
    assert main(["validate", "--source", str(root)]) == 2
    out = capsys.readouterr().out
    assert "2025-06-10: 2 of 10 metric rows quarantined (20.00%)" in out
    assert "2025-06-09" not in out.split("would refuse")[1]
    assert "NOT usable" in out
