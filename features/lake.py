"""The lake: Parquet tables beside the DuckDB file, written by partition steps in parallel.

DuckDB admits one writer process per database file, and while it writes no other process can
even read the file. Trading-day partitions are independent, so the steps that build them
(metric samples, day statistics, features) write Parquet files here instead, each process its
own partitions, without a lock; the DuckDB file keeps the small transactional tables that are
published (``features.warehouse``). Every connection failcast opens sees both by table name.

Layout under ``<home>/lake``::

    <table>/as_of=YYYY-MM-DD/<version>.<schema>.parquet   a table partitioned by as-of day
    <group>/version=<version>/<table>.parquet              tables replaced together (a snapshot)
    .staging/                                              files being written; never read

Three rules make concurrent readers and writers safe:

- A file under its final name never changes. DuckDB opens a Parquet file more than once per
  query (the schema when it binds, the data when it scans), so a file replaced in place under a
  running query makes it fail ("Prefetch registered for bytes outside file", Thrift errors): a
  new version gets a new name and is moved into place by one rename, atomic on one file system.
- The current version of a partition (or snapshot) is its newest. A connection fixes the list
  of current files when it opens (``attach``): it reads whole partitions, old or new, never a mix,
  and later writes do not move under it. Versions sort by the time they were written.
- A superseded version is deleted once it has been superseded for ``GRACE``, far longer than a
  connection lives (connections last one unit of work), so no open snapshot loses a file.

Views: files with one schema are read by one ``read_parquet`` over an explicit list; files of
different schemas (a feature table gains columns when a new metric appears) are combined with
``UNION ALL BY NAME``. The schema's fingerprint is in the file name, so a connection groups files
without opening them (``union_by_name`` would read every file's footer at every bind).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import os
import secrets
import shutil
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb

from features.errors import disk_fault

PARTITION = "as_of"
GRACE = dt.timedelta(hours=1)
STAGING = ".staging"
_VERSION_DIR = "version="


def sql_string(value: str) -> str:
    """A SQL string literal. Only for DDL that cannot take parameters (views over file paths)."""
    return "'" + value.replace("'", "''") + "'"


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class LakeTable:
    """A table of the lake.

    ``columns``: the declared ``(name, SQL type)`` pairs, in order, for a table whose schema is
    fixed; such a table always has a view (empty until written). An open schema (no columns)
    grows with the data, and its view exists once something was written; ``keys`` lead it.
    ``group``: tables replaced together as one snapshot; None for a table partitioned by as-of day.
    """

    name: str
    columns: tuple[tuple[str, str], ...] = ()
    keys: tuple[str, ...] = ()
    group: str | None = None

    @property
    def partitioned(self) -> bool:
        return self.group is None

    def projection(self, extra: Sequence[str] = ()) -> str:
        if self.columns:
            return ", ".join(quote_ident(name) for name, _ in self.columns)
        if not self.keys and not extra:
            return "*"
        hidden = ", ".join(quote_ident(c) for c in (*self.keys, *extra))
        return ", ".join([*(quote_ident(k) for k in self.keys), f"* EXCLUDE ({hidden})"])

    def empty_sql(self) -> str:
        """A typed, empty relation with the declared columns."""
        casts = ", ".join(f"CAST(NULL AS {sql_type}) AS {quote_ident(name)}"
                          for name, sql_type in self.columns)
        return f"SELECT {casts} LIMIT 0"


@dataclass(frozen=True)
class LakeUnion:
    """A view that puts several typed lake tables together (``quarantine``, ``load_log``)."""

    name: str
    parts: tuple[LakeTable, ...]

    def sql(self) -> str:
        return " UNION ALL BY NAME ".join(f"SELECT * FROM {quote_ident(p.name)}"  # noqa: S608
                                          for p in self.parts)


def _disk_fault_is_a_resource_error(method):
    """A full, read-only or forbidden disk is an operator's problem with a one-line answer
    (``features.errors.disk_fault``), not a bug."""

    @functools.wraps(method)
    def guarded(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except (OSError, duckdb.Error) as exc:
            root = self.root if isinstance(self, Lake) else self.lake.root
            fault = disk_fault(exc, f"the lake {root}")
            if fault is None:
                raise
            raise fault from None

    return guarded


def new_version() -> str:
    """A name that sorts by the time it was made and is unique across processes."""
    return f"{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(4)}"


def _version_time(version: str) -> float:
    return int(version.split("-", 1)[0]) / 1e9


class Lake:
    """The Parquet tables under one directory, their views, and how they are replaced."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"Lake({str(self.root)!r})"

    # ------------------------------------------------------------------------- reading

    def current_files(self, table: LakeTable) -> list[Path]:
        """The newest version of each partition (or the newest snapshot's file), by as-of day."""
        if not table.partitioned:
            latest = self._latest_snapshot(table.group)
            path = latest / f"{table.name}.parquet" if latest else None
            return [path] if path and path.is_file() else []
        found = []
        try:
            folders = sorted(e.path for e in os.scandir(self.root / table.name)
                             if e.name.startswith(f"{PARTITION}=") and e.is_dir())
        except FileNotFoundError:
            return []
        for folder in folders:
            versions = sorted(name for name in os.listdir(folder) if name.endswith(".parquet"))
            if versions:
                found.append(Path(folder) / versions[-1])
        return found

    def has_data(self, tables: Iterable[LakeTable | LakeUnion]) -> bool:
        return any(self.current_files(t) for t in tables if isinstance(t, LakeTable))

    def view_sql(self, table: LakeTable, files: Sequence[Path]) -> str | None:
        """The SELECT of a connection's view over ``files``; None for an open schema with no file."""
        if not files:
            return table.empty_sql() if table.columns else None
        if not table.partitioned:
            return (f"SELECT {table.projection()} FROM read_parquet({sql_string(str(files[0]))}, "  # noqa: S608
                    "hive_partitioning = false)")
        groups: dict[str, list[str]] = {}
        for path in files:  # already in as-of order: groups come in the order they first appear
            groups.setdefault(path.name.split(".")[1], []).append(str(path))
        reads = [
            "SELECT * FROM read_parquet([" + ", ".join(sql_string(p) for p in paths) + "], "  # noqa: S608
            f"hive_partitioning = true, hive_types = {{'{PARTITION}': 'DATE'}})"
            for paths in groups.values()
        ]
        union = " UNION ALL BY NAME ".join(reads)
        return f"SELECT {table.projection()} FROM ({union})"  # noqa: S608

    def glob_view_sql(self, table: LakeTable) -> str | None:
        """A view that finds the current files when it is queried (for people using the DuckDB
        CLI on the warehouse file); None while the table has no file (a glob must match)."""
        if not self.current_files(table):
            return table.empty_sql() if table.columns else None
        if table.partitioned:
            pattern = str(self.root / table.name / f"{PARTITION}=*" / "*.parquet")
            latest = f"SELECT max(file) FROM glob({sql_string(pattern)}) GROUP BY parse_dirpath(file)"  # noqa: S608
            hive = f", hive_partitioning = true, hive_types = {{'{PARTITION}': 'DATE'}}"
        else:
            pattern = str(self.root / table.group / f"{_VERSION_DIR}*" / f"{table.name}.parquet")
            latest = f"SELECT max(file) FROM glob({sql_string(pattern)})"  # noqa: S608
            hive = ", hive_partitioning = false"
        return (
            f"SELECT {table.projection(extra=('filename',))} FROM read_parquet("  # noqa: S608
            f"{sql_string(pattern)}, union_by_name = true, filename = true{hive}) "
            f"WHERE filename IN ({latest})"
        )

    def attach(self, con: duckdb.DuckDBPyConnection,
               tables: Iterable[LakeTable | LakeUnion]) -> None:
        """(Re)create this connection's TEMP views over the current files of ``tables``.

        Temporary views shadow the warehouse file's views of the same name, so failcast reads
        the snapshot taken here while a person's DuckDB CLI reads the globbing views."""
        for table in tables:
            if isinstance(table, LakeUnion):
                sql = table.sql()
            else:
                sql = self.view_sql(table, self.current_files(table))
            if sql is None:
                con.execute(f"DROP VIEW IF EXISTS temp.main.{quote_ident(table.name)}")
            else:
                con.execute(f"CREATE OR REPLACE TEMP VIEW {quote_ident(table.name)} AS {sql}")

    def publish_views(self, con: duckdb.DuckDBPyConnection,
                      tables: Iterable[LakeTable | LakeUnion]) -> list[str]:
        """Create or update the warehouse file's persistent views over the lake; returns the
        names that changed. A view's text changes only when a table gets its first file."""
        existing = dict(con.execute(
            "SELECT view_name, comment FROM duckdb_views() "
            "WHERE database_name = current_database() AND NOT temporary").fetchall())
        changed = []
        for table in tables:
            sql = table.sql() if isinstance(table, LakeUnion) else self.glob_view_sql(table)
            if sql is None:
                continue
            # The comment records which definition the view has (DuckDB reformats its SQL).
            stamp = f"failcast lake view {hashlib.sha1(sql.encode()).hexdigest()[:12]}"
            if existing.get(table.name) == stamp:
                continue
            con.execute(f"CREATE OR REPLACE VIEW {quote_ident(table.name)} AS {sql}")
            con.execute(f"COMMENT ON VIEW {quote_ident(table.name)} IS {sql_string(stamp)}")
            changed.append(table.name)
        return changed

    # ------------------------------------------------------------------------- writing

    def write_partitions(
        self,
        con: duckdb.DuckDBPyConnection,
        table: LakeTable,
        query: str,
        params: Sequence = (),
        days: Sequence[dt.date] = (),
    ) -> int:
        """Replace the partitions ``days`` of ``table`` with the rows of ``query``; returns the
        number of rows written (``stage_partitions`` then ``publish``)."""
        staged = self.stage_partitions(con, table, query, params, days)
        staged.publish(con)
        return staged.rows

    @_disk_fault_is_a_resource_error
    def stage_partitions(
        self,
        con: duckdb.DuckDBPyConnection,
        table: LakeTable,
        query: str,
        params: Sequence = (),
        days: Sequence[dt.date] = (),
    ) -> StagedPartitions:
        """Write the rows of ``query`` as new versions of the partitions ``days``, not yet visible.

        ``query`` has an ``as_of`` column; a day in ``days`` without rows becomes an empty
        partition (the day was built and has nothing), so its old rows go when it is published.
        """
        staging = self._staging()
        try:
            out = staging / "out"
            con.execute("SET partitioned_write_max_open_files = ?", [max(100, len(days) + 1)])
            (rows,) = con.execute(
                f"COPY ({query}) TO ? (FORMAT parquet, PARTITION_BY ({PARTITION}))",  # noqa: S608
                [*params, str(out)],
            ).fetchall()[0]
            written = self._partition_files(out)
            unexpected = set(written) - {d.isoformat() for d in days}
            if unexpected:
                raise RuntimeError(
                    f"{table.name}: rows for days outside the write: {sorted(unexpected)[:3]}")
            sample = next(iter(written.values()), None)
            template = f"SELECT * EXCLUDE ({PARTITION}) FROM ({query}) LIMIT 0"  # noqa: S608
            template_params = list(params)
            if sample is not None:
                template, template_params = "SELECT * FROM read_parquet(?) LIMIT 0", [str(sample)]
            empty = staging / "empty.parquet"
            con.execute(f"COPY ({template}) TO ? (FORMAT parquet)", [*template_params, str(empty)])  # noqa: S608
            schema = _fingerprint(con, empty)
            files = {}
            for day in days:
                path = written.get(day.isoformat())
                if path is None:  # staged files all sit in hive folders: readable like the table
                    path = out / f"{PARTITION}={day.isoformat()}" / "empty.parquet"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(empty, path)
                files[day] = (path, schema)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return StagedPartitions(self, table, files, [staging], int(rows))

    def write_frame_partitions(self, con: duckdb.DuckDBPyConnection, table: LakeTable, frame,
                               days: Sequence[dt.date]) -> int:
        """``write_partitions`` for a Polars (or Arrow) frame with an ``as_of`` column."""
        con.register("lake_frame", frame)
        try:
            return self.write_partitions(con, table, "SELECT * FROM lake_frame", (), days)
        finally:
            con.unregister("lake_frame")

    @_disk_fault_is_a_resource_error
    def write_snapshot(self, con: duckdb.DuckDBPyConnection, group: str,
                       queries: Mapping[LakeTable, tuple[str, Sequence]]) -> None:
        """Replace the tables of ``group`` together: readers see all the old ones or all the new."""
        staging = self._staging()
        try:
            for table, (query, params) in queries.items():
                if table.group != group:
                    raise RuntimeError(f"{table.name} is not in the snapshot group {group}")
                con.execute(f"COPY ({query}) TO ? (FORMAT parquet)",  # noqa: S608
                            [*params, str(staging / f"{table.name}.parquet")])
            target = self.root / group / f"{_VERSION_DIR}{new_version()}"
            target.parent.mkdir(parents=True, exist_ok=True)
            os.rename(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self.collect_garbage(next(iter(queries)))
        self.attach(con, queries)

    # ----------------------------------------------------------------------- housekeeping

    def collect_garbage(self, table: LakeTable, now: float | None = None) -> int:
        """Delete versions superseded more than ``GRACE`` ago, and abandoned staging files.
        Returns how many versions went."""
        now = time.time() if now is None else now
        grace = GRACE.total_seconds()
        removed = 0
        if table.partitioned:
            try:
                folders = [e.path for e in os.scandir(self.root / table.name) if e.is_dir()]
            except FileNotFoundError:
                folders = []
            for folder in folders:
                versions = sorted(n for n in os.listdir(folder) if n.endswith(".parquet"))
                for old, newer in zip(versions, versions[1:], strict=False):
                    if now - _version_time(newer) > grace:
                        _unlink(Path(folder) / old)
                        removed += 1
        else:
            versions = self._snapshots(table.group)
            for old, newer in zip(versions, versions[1:], strict=False):
                if now - _version_time(newer.name[len(_VERSION_DIR):]) > grace:
                    shutil.rmtree(old, ignore_errors=True)
                    removed += 1
        staging = self.root / STAGING
        if staging.is_dir():
            for entry in os.scandir(staging):
                if now - _version_time(entry.name) > grace:
                    shutil.rmtree(entry.path, ignore_errors=True)
        return removed

    @_disk_fault_is_a_resource_error
    def scratch(self) -> Path:
        """A directory of its own under the lake (for DuckDB's spill files), removed by the
        caller; left-overs of a killed process are collected after ``GRACE``."""
        return self._staging()

    def _staging(self) -> Path:
        path = self.root / STAGING / new_version()
        path.mkdir(parents=True)
        return path

    def _snapshots(self, group: str) -> list[Path]:
        try:
            return sorted((Path(e.path) for e in os.scandir(self.root / group)
                           if e.name.startswith(_VERSION_DIR) and e.is_dir()), key=lambda p: p.name)
        except FileNotFoundError:
            return []

    def _latest_snapshot(self, group: str) -> Path | None:
        snapshots = self._snapshots(group)
        return snapshots[-1] if snapshots else None

    @staticmethod
    def _partition_files(out: Path) -> dict[str, Path]:
        found = {}
        if not out.is_dir():
            return found
        for folder in out.iterdir():
            files = sorted(folder.glob("*.parquet"))
            if len(files) != 1:
                raise RuntimeError(f"expected one file in {folder}, found {len(files)}")
            found[folder.name.split("=", 1)[1]] = files[0]
        return found


@dataclass
class StagedPartitions:
    """New versions of some partitions of a table, written but not yet visible to anyone."""

    lake: Lake
    table: LakeTable
    files: dict[dt.date, tuple[Path, str]]  # day -> (staged file, schema fingerprint)
    staging: list[Path]
    rows: int

    def paths(self, days: Iterable[dt.date] | None = None) -> list[str]:
        """The staged files (of ``days``), to read them back before they are published."""
        wanted = self.files if days is None else days
        return [str(self.files[d][0]) for d in wanted]

    def replace(self, other: StagedPartitions) -> None:
        """Take ``other``'s files for the days it staged (a corrected version of those days)."""
        self.files.update(other.files)
        self.staging.extend(other.staging)

    @_disk_fault_is_a_resource_error
    def publish(self, con: duckdb.DuckDBPyConnection) -> None:
        """Move every staged partition into place, each with one rename, and refresh ``con``'s
        view. A failure leaves each day either as it was or complete."""
        version = new_version()
        try:
            for day, (path, schema) in sorted(self.files.items()):
                folder = self.lake.root / self.table.name / f"{PARTITION}={day.isoformat()}"
                folder.mkdir(parents=True, exist_ok=True)
                os.rename(path, folder / f"{version}.{schema}.parquet")
        finally:
            self.discard()
        self.lake.collect_garbage(self.table)
        self.lake.attach(con, [self.table])

    def discard(self) -> None:
        for path in self.staging:
            shutil.rmtree(path, ignore_errors=True)


def _fingerprint(con: duckdb.DuckDBPyConnection, path: Path) -> str:
    columns = con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [str(path)]).fetchall()
    text = ";".join(f"{name}:{sql_type}" for name, sql_type, *_ in columns)
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):  # another process collected it first
        path.unlink()
