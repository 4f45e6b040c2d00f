"""The DuckDB warehouse: short-lived connections, one writer at a time, read-only readers.

DuckDB lets one process write a database file; while it does, no other process can open the
file at all. So writers keep their connection for one unit of work, readers open read-only,
and both retry with jitter when the file is locked instead of failing the nightly run.

Every instant in the warehouse is a naive UTC ``TIMESTAMP``; connections run with the
``TimeZone`` setting of the source so that naive source timestamps parse as local time.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from features.errors import DataError

LOCK_MARKERS = ("Could not set lock", "Conflicting lock", "database is locked")

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


class Warehouse:
    """A DuckDB database file, opened briefly for each unit of work."""

    def __init__(
        self,
        path: str | Path,
        *,
        timezone: str = "UTC",
        threads: int | None = None,
        memory_limit: str | None = None,
        lock_timeout_s: float = 120.0,
    ) -> None:
        self.path = Path(path)
        self.timezone = timezone
        self.threads = threads
        self.memory_limit = memory_limit
        self.lock_timeout_s = lock_timeout_s

    def __repr__(self) -> str:
        return f"Warehouse({str(self.path)!r})"

    def _connect(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        config = {}
        if self.threads:
            config["threads"] = self.threads
        if self.memory_limit:
            config["memory_limit"] = self.memory_limit
        deadline = time.monotonic() + self.lock_timeout_s
        delay = 0.05
        while True:
            try:
                con = duckdb.connect(str(self.path), read_only=read_only, config=config)
                break
            except duckdb.Error as exc:
                if not any(m in str(exc) for m in LOCK_MARKERS) or time.monotonic() > deadline:
                    raise
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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = self._connect(read_only=False)
        try:
            con.execute(SCHEMA)
            yield con
        finally:
            con.close()


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
