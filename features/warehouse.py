"""The DuckDB warehouse: short-lived connections, one writer at a time, read-only readers.

DuckDB lets one process write a database file; while it does, no other process can open the
file at all. So writers keep their connection for one unit of work, readers open read-only,
and both retry with jitter when the file is locked instead of failing the nightly run. A
wait says so in one line that names the process holding the lock (DuckDB's error carries its
PID), and ends after ``lock_timeout_s`` with a ``ResourceError`` naming the file and the PID.
A full disk, a read-only file system or a missing permission ends in one line too.

Every instant in the warehouse is a naive UTC ``TIMESTAMP``; connections run with the
``TimeZone`` setting of the source so that naive source timestamps parse as local time.
"""

from __future__ import annotations

import random
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import duckdb

from features.errors import DataError, ResourceError, disk_fault

LOCK_MARKERS = ("Could not set lock", "Conflicting lock", "database is locked")
# DuckDB: 'Conflicting lock is held in /usr/bin/python3.11 (PID 15066)'
LOCK_HOLDER = re.compile(r"held in (?P<exe>.*?) \(PID (?P<pid>\d+)\)")
DEFAULT_LOCK_TIMEOUT_S = 60.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS quarantine (
    table_name VARCHAR NOT NULL,
    source_file VARCHAR,
    "row" BIGINT,
    column_name VARCHAR,
    reason VARCHAR NOT NULL,
    raw_value VARCHAR,
    action VARCHAR NOT NULL,          -- 'rejected' (row not loaded) or 'value dropped'
    as_of DATE,                       -- metrics partition the row fell in, NULL otherwise
    loaded_at TIMESTAMP NOT NULL
);
CREATE TABLE IF NOT EXISTS metrics (
    as_of DATE NOT NULL,
    ts TIMESTAMP NOT NULL,
    system_id VARCHAR NOT NULL,
    metric VARCHAR NOT NULL,
    value DOUBLE
);
CREATE TABLE IF NOT EXISTS load_log (
    table_name VARCHAR NOT NULL,
    as_of DATE,
    rows_read BIGINT,
    rows_loaded BIGINT,
    rows_rejected BIGINT,
    values_dropped BIGINT,
    duplicates_dropped BIGINT,
    loaded_at TIMESTAMP NOT NULL
);
"""


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
    """A DuckDB database file, opened briefly for each unit of work."""

    def __init__(
        self,
        path: str | Path,
        *,
        timezone: str = "UTC",
        threads: int | None = None,
        memory_limit: str | None = None,
        lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
        on_wait: Callable[[str], None] = _say,
    ) -> None:
        self.path = Path(path)
        self.timezone = timezone
        self.threads = threads
        self.memory_limit = memory_limit
        self.lock_timeout_s = lock_timeout_s
        self.on_wait = on_wait

    def __repr__(self) -> str:
        return f"Warehouse({str(self.path)!r})"

    def _connect(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        config = {}
        if self.threads:
            config["threads"] = self.threads
        if self.memory_limit:
            config["memory_limit"] = self.memory_limit
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
        con.execute("SET TimeZone = ?", [self.timezone])
        return con

    @contextmanager
    def reader(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection; fails clearly when the warehouse does not exist yet."""
        if not self.path.exists():
            raise WarehouseMissing(
                f"no warehouse at {self.path}: run `failcast demo` or the nightly job first"
            )
        con = self._connect(read_only=True)
        try:
            yield con
        finally:
            con.close()

    @contextmanager
    def writer(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The single read-write connection, held for one unit of work only."""
        what = f"the warehouse {self.path}"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            _raise_disk_fault(exc, what)
            raise
        con = self._connect(read_only=False)
        try:
            con.execute(SCHEMA)
            yield con
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
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """All or nothing: readers see the old rows until the new ones are complete."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def table_exists(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    found = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]
    ).fetchall()[0]
    return bool(found and found[0])


def table_columns(con: duckdb.DuckDBPyConnection, name: str) -> list[str]:
    rows = con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
        "ORDER BY ordinal_position",
        [name],
    ).fetchall()
    return [r[0] for r in rows]


def quote_ident(name: str) -> str:
    """Quote an identifier that came from data (a column name) for use in SQL."""
    return '"' + name.replace('"', '""') + '"'


_DUCKDB_TYPES = {
    "Float64": "DOUBLE", "Float32": "DOUBLE", "Int64": "BIGINT", "Int32": "INTEGER",
    "Int16": "INTEGER", "Int8": "INTEGER", "UInt32": "BIGINT", "UInt64": "UBIGINT",
    "Boolean": "BOOLEAN", "String": "VARCHAR", "Date": "DATE",
}


def _duckdb_type(dtype) -> str:
    name = str(dtype)
    if name.startswith("Datetime"):
        return "TIMESTAMP"
    return _DUCKDB_TYPES.get(name.split("(")[0], "VARCHAR")


def replace_by_name(con, table: str, frame, date_column: str, first, last) -> None:
    """Replace the rows of ``first..last`` in ``table`` with ``frame``, in one transaction.

    The table's columns follow the frame: a column the table lacks is added, a column the
    frame lacks stays NULL for these rows. That is how a wide feature table grows when a new
    metric appears, without rewriting the past.
    """
    con.register("replacement_rows", frame)
    try:
        with transaction(con):
            if not table_exists(con, table):
                con.execute(
                    f"CREATE TABLE {quote_ident(table)} AS SELECT * FROM replacement_rows LIMIT 0"  # noqa: S608
                )
            present = set(table_columns(con, table))
            for column, dtype in frame.schema.items():
                if column not in present:
                    con.execute(
                        f"ALTER TABLE {quote_ident(table)} ADD COLUMN {quote_ident(column)} "
                        f"{_duckdb_type(dtype)}"
                    )
            con.execute(
                f"DELETE FROM {quote_ident(table)} WHERE {quote_ident(date_column)} BETWEEN ? AND ?",  # noqa: S608
                [first, last],
            )
            con.execute(f"INSERT INTO {quote_ident(table)} BY NAME SELECT * FROM replacement_rows")  # noqa: S608
    finally:
        con.unregister("replacement_rows")
