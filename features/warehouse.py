"""The warehouse: a DuckDB file for published tables, and the lake beside it, read by name.

Two stores, one set of table names:

- ``warehouse.duckdb`` keeps the published, transactional tables (``risk_scores``,
  ``scores_staging``, ``feature_drift``, ``backtest_scores``, ...). DuckDB lets one process
  write it, and while it does no other process can open it at all, so writers keep their
  connection for one unit of work, readers open read-only, and both retry with jitter when the
  file is locked instead of failing the nightly run. A wait says so in one line that names the
  process holding the lock (DuckDB's error carries its PID), and ends after ``lock_timeout_s``
  with a ``ResourceError`` naming the file and the PID.
- ``lake/`` keeps the tables built per trading day (metric samples, day statistics, features,
  their quarantine and load log) and the source snapshots as Parquet (``features.lake``), so
  partition steps in parallel processes write without any lock.

Every connection (``reader``, ``writer``, ``lake_writer``) has a view per lake table, over the
files that were current when it opened, so code reads every table by name. The warehouse file
also keeps persistent views over the lake, refreshed by each writer, for people who open it
with the DuckDB CLI.

A full disk, a read-only file system or a missing permission ends in one line, for the file and
for the lake alike.

Every instant is a naive UTC ``TIMESTAMP``; connections run with the ``TimeZone`` setting of
the source so that naive source timestamps parse as local time.
"""

from __future__ import annotations

import random
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import duckdb

from features.errors import DataError, ResourceError, disk_fault
from features.lake import Lake, quote_ident

LOCK_MARKERS = ("Could not set lock", "Conflicting lock", "database is locked")
# DuckDB: 'Conflicting lock is held in /usr/bin/python3.11 (PID 15066)'
LOCK_HOLDER = re.compile(r"held in (?P<exe>.*?) \(PID (?P<pid>\d+)\)")
DEFAULT_LOCK_TIMEOUT_S = 60.0


class WarehouseMissing(DataError):
    """Nothing has been written to the warehouse yet."""


def lock_holder(message: str) -> str:
    """``PID n (its command line)`` of the process a DuckDB lock error names, as well as known."""
    found = LOCK_HOLDER.search(message)
    if not found:
        return "another process"
    pid, command = int(found["pid"]), found["exe"]
    with suppress(Exception):  # gone, or not ours to inspect: keep DuckDB's words
        import psutil

        command = " ".join(psutil.Process(pid).cmdline()) or command
    command = " ".join(command.split())  # one line, whatever the arguments hold
    if len(command) > 90:
        command = command[:89] + "…"
    return f"PID {pid} ({command})"


def _raise_disk_fault(exc: BaseException, what: str) -> None:
    """Raise the one-line ResourceError when ``exc`` is a full or read-only disk."""
    fault = disk_fault(exc, what)
    if fault is not None:
        raise fault from None


def _say(message: str) -> None:
    print(f"failcast: {message}", file=sys.stderr, flush=True)


class Warehouse:
    """The DuckDB file and the lake beside it; a connection lasts one unit of work."""

    def __init__(
        self,
        path: str | Path,
        *,
        timezone: str = "UTC",
        threads: int | None = None,
        memory_limit: str | None = None,
        lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
        on_wait: Callable[[str], None] = _say,
        lake: str | Path | None = None,
    ) -> None:
        self.path = Path(path)
        self.lake = Lake(lake if lake is not None else self.path.parent / "lake")
        self.timezone = timezone
        self.threads = threads
        self.memory_limit = memory_limit
        self.lock_timeout_s = lock_timeout_s
        self.on_wait = on_wait

    def __repr__(self) -> str:
        return f"Warehouse({str(self.path)!r})"

    def _config(self) -> dict:
        config = {}
        if self.threads:
            config["threads"] = self.threads
        if self.memory_limit:
            config["memory_limit"] = self.memory_limit
        return config

    def _prepare(self, con: duckdb.DuckDBPyConnection) -> None:
        con.execute("SET TimeZone = ?", [self.timezone])
        # Lake files never change under their name, so their footers may be cached.
        con.execute("SET parquet_metadata_cache = true")

    def _connect(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        config = self._config()
        deadline = time.monotonic() + self.lock_timeout_s
        delay, said = 0.05, False
        while True:
            try:
                con = duckdb.connect(str(self.path), read_only=read_only, config=config)
                break
            except duckdb.Error as exc:
                message = str(exc)
                if not any(m in message for m in LOCK_MARKERS):
                    _raise_disk_fault(exc, f"the warehouse {self.path}")
                    raise
                holder = lock_holder(message)
                if time.monotonic() > deadline:
                    raise ResourceError(
                        f"the warehouse {self.path} is still locked by {holder} after "
                        f"{self.lock_timeout_s:g} s: let that process finish or stop it, or wait "
                        "longer with [engine] lock_timeout_s (FAILCAST_LOCK_TIMEOUT_S)") from None
                if not said:
                    self.on_wait(f"the warehouse {self.path} is locked by {holder}; waiting up "
                                 f"to {self.lock_timeout_s:g} s for it")
                    said = True
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 2.0)
        self._prepare(con)
        return con

    @contextmanager
    def reader(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection to every table; fails clearly when nothing was built yet.

        Before anything was published the warehouse file does not exist: the lake's tables are
        then read through an in-memory database."""
        tables = lake_tables()
        self._migrate_if_legacy()
        if self.path.exists():
            con = self._connect(read_only=True)
            try:
                self.lake.attach(con, tables)
                yield con
            finally:
                con.close()
        elif self.lake.has_data(tables):
            with self._in_memory() as con:
                yield con
        else:
            raise WarehouseMissing(
                f"no warehouse at {self.path}: run `failcast demo`, `failcast backfill` or the "
                "nightly job first"
            )

    @contextmanager
    def writer(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The single read-write connection to the warehouse file, held for one unit of work.

        It also sees every lake table, and brings the file's persistent views of the lake up
        to date (a write only when a table got its first file)."""
        with self._read_write() as (con, _):
            yield con

    @contextmanager
    def _read_write(self) -> Iterator[tuple[duckdb.DuckDBPyConnection, list[str]]]:
        what = f"the warehouse {self.path}"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            _raise_disk_fault(exc, what)
            raise
        tables = lake_tables()
        con = self._connect(read_only=False)
        try:
            _migrate_legacy_tables(con, self.lake)
            changed = self.lake.publish_views(con, tables)
            self.lake.attach(con, tables)
            yield con, changed
        except duckdb.Error as exc:
            _raise_disk_fault(exc, what)
            raise
        finally:
            try:
                con.close()
            except duckdb.Error as exc:  # the last checkpoint writes too
                _raise_disk_fault(exc, what)
                raise

    @contextmanager
    def lake_writer(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection for steps that build lake partitions: every lake table by name, in an
        in-memory database that never opens the warehouse file, so any number of processes
        can build partitions at once (and while the file is locked by a writer)."""
        self._migrate_if_legacy()
        with self._in_memory() as con:
            yield con

    @contextmanager
    def _in_memory(self) -> Iterator[duckdb.DuckDBPyConnection]:
        # Spill files go to a folder of this connection's own (by default DuckDB would use
        # .tmp in the working directory, shared by every process started there).
        scratch = self.lake.scratch()
        con = duckdb.connect(":memory:", config={**self._config(), "temp_directory": str(scratch)})
        try:
            self._prepare(con)
            self.lake.attach(con, lake_tables())
            yield con
        finally:
            con.close()
            shutil.rmtree(scratch, ignore_errors=True)

    def publish_views(self) -> list[str]:
        """Bring the warehouse file's views of the lake up to date (after lake-only work, so a
        person with the DuckDB CLI sees the new tables); returns the views that changed."""
        with self._read_write() as (_, changed):
            return changed

    def _migrate_if_legacy(self) -> None:
        # A warehouse file without a lake beside it may hold the tables of the layout before
        # the lake; one short writer moves them. Checked without opening the file.
        if self.path.exists() and not self.lake.root.exists():
            with self.writer():
                pass
            self.lake.root.mkdir(parents=True, exist_ok=True)


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """All or nothing: readers see the old rows until the new ones are complete."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def lake_tables() -> tuple:
    """Every table and view of the lake, declared by the module that writes it."""
    from features.build import FEATURES_TABLE
    from features.ingest import (
        CHANGES_TABLE,
        INCIDENTS_TABLE,
        LOAD_LOG,
        METRIC_LOAD_LOG_TABLE,
        METRIC_QUARANTINE_TABLE,
        METRICS_TABLE,
        QUARANTINE,
        SOURCE_LOAD_LOG_TABLE,
        SOURCE_QUARANTINE_TABLE,
        SYSTEMS_TABLE,
        TRADING_CALENDAR_TABLE,
    )
    from features.metric_stats import METRIC_DAY_STATS_TABLE

    return (TRADING_CALENDAR_TABLE, SYSTEMS_TABLE, INCIDENTS_TABLE, CHANGES_TABLE,
            SOURCE_QUARANTINE_TABLE, SOURCE_LOAD_LOG_TABLE, METRICS_TABLE,
            METRIC_QUARANTINE_TABLE, METRIC_LOAD_LOG_TABLE, METRIC_DAY_STATS_TABLE,
            FEATURES_TABLE, QUARANTINE, LOAD_LOG)


def table_exists(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    found = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]
    ).fetchall()[0]
    return bool(found and found[0])


def table_columns(con: duckdb.DuckDBPyConnection, name: str) -> list[str]:
    """The columns of the table or view ``name`` resolves to ([] when there is none).

    A connection's view of a lake table shadows the file's view of the same name, so this asks
    DuckDB what the name means rather than listing every catalog's columns."""
    if not table_exists(con, name):
        return []
    return [r[0] for r in con.execute(f"DESCRIBE {quote_ident(name)}").fetchall()]


def _migrate_legacy_tables(con: duckdb.DuckDBPyConnection, lake: Lake) -> None:
    """Move the tables that lived in the warehouse file before the lake into the lake.

    A warehouse built by an earlier failcast keeps metrics, statistics, features, the source
    tables, the quarantine and the load log in the file; their names are views now. Each is
    copied into the lake (unless the lake already has that table) and dropped from the file.
    """
    from features.build import FEATURES_TABLE
    from features.ingest import (
        METRIC_LOAD_LOG_TABLE,
        METRIC_QUARANTINE_TABLE,
        METRICS_TABLE,
        SOURCE_GROUP,
        SOURCE_LOAD_LOG_TABLE,
        SOURCE_QUARANTINE_TABLE,
        TRADING_CALENDAR_TABLE,
    )
    from features.metric_stats import METRIC_DAY_STATS_TABLE

    names = {t.name for t in lake_tables()}
    legacy = {name for (name,) in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
        "AND NOT temporary").fetchall()} & names
    if not legacy:
        return
    ((database,),) = con.execute("SELECT current_database()").fetchall()

    def old(name: str) -> str:
        return f"{quote_ident(database)}.main.{quote_ident(name)}"

    def days_of(name: str) -> list:
        return [d for (d,) in con.execute(f"SELECT DISTINCT as_of FROM {old(name)} ORDER BY 1").fetchall()]  # noqa: S608

    def copy_partitions(table, query: str, days: list) -> None:
        if not lake.current_files(table):
            for start in range(0, len(days), 30):  # a month at a time: bounded open files
                chunk = days[start:start + 30]
                lake.write_partitions(con, table, f"SELECT * FROM ({query}) WHERE as_of BETWEEN ? AND ?",  # noqa: S608
                                      [chunk[0], chunk[-1]], chunk)

    metric_days = days_of("metrics") if "metrics" in legacy else []
    if "metrics" in legacy:
        copy_partitions(METRICS_TABLE, f"SELECT * FROM {old('metrics')}", metric_days)  # noqa: S608
    for table in (METRIC_DAY_STATS_TABLE, FEATURES_TABLE):
        if table.name in legacy:
            copy_partitions(table, f"SELECT * FROM {old(table.name)}", days_of(table.name))  # noqa: S608
    if "quarantine" in legacy:
        copy_partitions(METRIC_QUARANTINE_TABLE, f"SELECT * FROM {old('quarantine')} "  # noqa: S608
                        "WHERE table_name = 'metrics' AND as_of IS NOT NULL", metric_days)
    if "load_log" in legacy:
        copy_partitions(METRIC_LOAD_LOG_TABLE, f"SELECT * FROM {old('load_log')} "  # noqa: S608
                        "WHERE table_name = 'metrics' AND as_of IS NOT NULL", metric_days)
    if {"systems", "incidents"} <= legacy and not lake.has_data([SOURCE_QUARANTINE_TABLE]):
        from features.ingest import CHANGES_TABLE, INCIDENTS_TABLE, SYSTEMS_TABLE

        def rows(name: str, where: str = "true") -> tuple[str, list]:
            if name not in legacy:  # quarantine and load log may be absent; changes too
                return "SELECT * FROM (SELECT 1) WHERE false", []
            return f"SELECT * FROM {old(name)} WHERE {where}", []  # noqa: S608

        source_rows = "as_of IS NULL"
        lake.write_snapshot(con, SOURCE_GROUP, {
            SYSTEMS_TABLE: rows("systems"),
            INCIDENTS_TABLE: rows("incidents"),
            CHANGES_TABLE: rows("changes"),
            SOURCE_QUARANTINE_TABLE: (rows("quarantine", source_rows) if "quarantine" in legacy
                                      else (SOURCE_QUARANTINE_TABLE.empty_sql(), [])),
            SOURCE_LOAD_LOG_TABLE: (rows("load_log", source_rows) if "load_log" in legacy
                                    else (SOURCE_LOAD_LOG_TABLE.empty_sql(), [])),
        })
    if "trading_calendar" in legacy and not lake.current_files(TRADING_CALENDAR_TABLE):
        lake.write_snapshot(con, TRADING_CALENDAR_TABLE.group, {
            TRADING_CALENDAR_TABLE: (f"SELECT * FROM {old('trading_calendar')}", [])})  # noqa: S608
    for name in sorted(legacy):
        con.execute(f"DROP TABLE {old(name)}")
