"""`failcast backfill`: trading days built in parallel processes give the same tables as one."""

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import dagster as dg
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from pipelines.backfill import (
    BACKFILL_TAG,
    BackfillBug,
    Task,
    days_per_run,
    plan,
    run_backfill,
    run_task,
)
from pipelines.cli import main
from pipelines.settings import load_settings

# One worker builds the module's backfills once; the tests without them go to either worker.
BACKFILLS = pytest.mark.xdist_group("backfill")

FIRST, LAST = dt.date(2025, 6, 3), dt.date(2025, 6, 27)  # 19 sessions: runs of 5, 5, 5 and 4 days
TABLES = {  # every table the backfill builds, and the columns that say when, not what
    "systems": (), "incidents": (), "changes": (), "trading_calendar": (),
    "metrics": (), "metric_day_stats": (), "system_day_features": (),
    "quarantine": ("loaded_at",), "load_log": ("loaded_at",),
}

READ_DURING_BACKFILL = textwrap.dedent("""
    import json, sys, time
    from features.warehouse import Warehouse, WarehouseMissing
    warehouse = Warehouse(sys.argv[1], timezone="Asia/Shanghai")
    reads, errors, days = 0, [], []
    while True:
        try:
            with warehouse.reader() as con:
                per_day = con.execute("SELECT as_of, count(*) FROM system_day_features "
                                      "GROUP BY 1").fetchall() if con.execute(
                    "SELECT count(*) FROM information_schema.tables "
                    "WHERE table_name = 'system_day_features'").fetchall()[0][0] else []
                days.append(len(per_day))
                reads += 1
        except WarehouseMissing:
            pass
        except Exception as exc:
            errors.append(str(exc)[:300])
        if sys.stdin in __import__("select").select([sys.stdin], [], [], 0)[0]:
            break
        time.sleep(0.05)
    print(json.dumps({"reads": reads, "errors": errors, "days": days}))
""")


def snapshot(settings) -> dict:
    with settings.warehouse().reader() as con:
        frames = {}
        for table, volatile in TABLES.items():
            frame = con.sql(f"SELECT * FROM {table}").pl().drop(list(volatile))  # noqa: S608
            frames[table] = frame.select(sorted(frame.columns)).sort(sorted(frame.columns))
        return frames


@pytest.fixture(scope="module")
def backfills(tiny_estate, tmp_path_factory):
    """The same range backfilled by one worker, and by two while another process reads."""
    root = tmp_path_factory.mktemp("backfill")
    source = root / "source"
    shutil.copytree(tiny_estate, source)
    system = pl.read_csv(source / "systems.csv")["system_id"][0]
    bad = source / "metrics" / "late" / "bad.csv"
    bad.parent.mkdir(parents=True)
    # cpu_pct, a metric the estate has: a family seen on one day only trips the gone-empty check
    bad.write_text("ts,system_id,metric,value\n"
                   f"2025-06-10T10:30:00,{system},cpu_pct,3\n"
                   f"2025-06-10T10:30:00,{system},cpu_pct,3\n"  # an exact duplicate
                   "2025-06-10T10:00:00,NOBODY,cpu_pct,1\n"  # unknown system: quarantined
                   f"2025-06-18T10:00:00,{system},cpu_pct,lots\n"  # not a number
                   f"someday,{system},cpu_pct,1\n")  # no timestamp: in no partition
    os.environ["DAGSTER_HOME"] = str(root / "dagster")
    one = load_settings(source, root / "one", env={})
    two = load_settings(source, root / "two", env={})
    run_backfill(one, FIRST, LAST, workers=1, per_run=5)
    reader = subprocess.Popen([sys.executable, "-c", READ_DURING_BACKFILL,
                               str(two.warehouse_path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    result = run_backfill(two, FIRST, LAST, workers=2, per_run=5)
    reads = json.loads(reader.communicate("stop\n", timeout=60)[0])
    yield one, two, result, reads
    os.environ["DAGSTER_HOME"] = ""


@BACKFILLS
def test_two_workers_build_the_same_tables_as_one(backfills):
    one, two, _, _ = backfills
    first, second = snapshot(one), snapshot(two)
    for table in TABLES:
        assert first[table].height > 0, table
        assert_frame_equal(first[table], second[table])
    assert first["quarantine"].height == 3
    assert first["load_log"]["duplicates_dropped"].sum() == 1


@BACKFILLS
def test_a_backfill_runs_while_another_process_reads(backfills):
    _, _, _, reads = backfills
    assert reads["errors"] == []
    assert reads["reads"] > 10
    assert reads["days"] == sorted(reads["days"]) and reads["days"][-1] == 19  # days only appear


@BACKFILLS
def test_every_run_is_recorded_in_the_dagster_instance(backfills):
    _, _, result, _ = backfills
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs(dg.RunsFilter(tags={BACKFILL_TAG: result.backfill_id}))
    assert len(runs) == len(result.runs) == 9
    assert {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}


def test_features_wait_for_the_statistics_of_their_lookback():
    from features.trading_time import TradingCalendar

    calendar = TradingCalendar("XSHG", "Asia/Shanghai")
    tasks = plan(calendar, dt.date(2025, 3, 3), dt.date(2025, 6, 27), per_run=20)
    for task in tasks:
        if task.label == "features":
            since = calendar.sessions_back(task.first, 21)
            covered = [tasks[i] for i in task.needs if tasks[i].label == "metrics"]
            assert min(t.first for t in covered) <= max(since, dt.date(2025, 3, 3))
            assert max(t.last for t in covered) >= task.last


def test_runs_are_as_long_as_keeps_every_worker_busy():
    from pipelines.partitions import PARTITIONS_PER_RUN

    assert days_per_run(2, 1) == days_per_run(500, 1) == PARTITIONS_PER_RUN  # one worker: fewest runs
    assert days_per_run(120, 2) == 30  # two runs for each of two workers
    assert days_per_run(500, 2) == PARTITIONS_PER_RUN
    assert days_per_run(2, 2) == 1


def test_an_unexpected_error_in_a_run_reaches_the_parent_as_one_picklable_error(
        tiny_estate, tmp_path, monkeypatch):
    # A worker's exception travels to the parent pickled; Dagster's errors cannot be rebuilt
    # there, which used to break the whole pool instead of naming the run.
    import pickle

    from pipelines.settings import settings_as_text

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    settings = load_settings(tiny_estate, tmp_path / "home", env={})
    task = Task("metrics", ("no_such_asset",), dt.date(2025, 6, 3), dt.date(2025, 6, 3))
    with pytest.raises(BackfillBug, match=r"^metrics 2025-06-03..2025-06-03: \w+") as raised:
        run_task(str(tiny_estate), str(settings.home), settings_as_text(settings), task, "x")
    assert pickle.loads(pickle.dumps(raised.value)).args == raised.value.args


def test_backfill_command_checks_its_range(tiny_estate, tmp_path, capsys):
    args = ["backfill", "--source", str(tiny_estate), "--home", str(tmp_path)]
    assert main([*args, "--start", "2025-06-10", "--end", "2025-06-03"]) == 2
    assert "before --start" in capsys.readouterr().err
    assert main([*args, "--start", "2025-05-06", "--end", "2025-06-03"]) == 2
    assert "[pipeline] start" in capsys.readouterr().err


def test_backfill_command_shows_progress_and_publishes_views(tiny_estate, tmp_path, capsys,
                                                             monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    home = tmp_path / "home"
    assert main(["backfill", "--source", str(tiny_estate), "--home", str(home),
                 "--start", "2025-06-03", "--end", "2025-06-04"]) == 0
    err = capsys.readouterr().err
    assert "[1/3] source tables" in err and "[3/3] features 2025-06-03..2025-06-04" in err
    import duckdb

    cli = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        assert cli.execute("SELECT count(DISTINCT as_of) FROM system_day_features").fetchall() == [(2,)]
    finally:
        cli.close()


def test_a_terminated_backfill_takes_its_workers_with_it(tiny_estate, tmp_path):
    """SIGTERM (a scheduler's stop) reaches the parent only: its workers must not go on."""
    import psutil

    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "dagster")}
    parent = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "backfill", "--source", str(tiny_estate),
         "--home", str(tmp_path / "home"), "--start", str(FIRST), "--end", str(LAST),
         "--workers", "2"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        workers: list = []
        while len(workers) < 2 and parent.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
            workers = [p for p in psutil.Process(parent.pid).children()
                       if (line := _command_line(p)) and "resource_tracker" not in line]
        assert len(workers) >= 2, "the backfill never started its two workers"
        time.sleep(2)  # into their first runs
        parent.send_signal(signal.SIGTERM)
        _, err = parent.communicate(timeout=60)
        assert parent.returncode == 130 and "interrupted" in err
        gone, alive = psutil.wait_procs(workers, timeout=30)
        assert not alive, f"workers left running: {[p.pid for p in alive]}"
    finally:
        if parent.poll() is None:
            parent.kill()


def _command_line(process) -> str:
    """A child's command line; empty for one that ended meanwhile (a short-lived helper the
    parent has not reaped yet is a zombie, whose command line cannot be read): not a worker."""
    import psutil

    try:
        return " ".join(process.cmdline())
    except psutil.Error:
        return ""
