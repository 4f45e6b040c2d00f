"""Load a source directory into the lake (``features.lake``).

- ``load_source_tables``: systems, incidents and changes, validated (``features.validate``) and
  replaced together as one snapshot, with their quarantine rows, the metric rows that have no
  usable timestamp (they fit no partition), and the load log.
- ``load_metrics``: the samples of a range of as-of sessions, read by DuckDB straight from the
  Parquet/CSV files, checked row by row in SQL, each sample assigned to the session whose
  window ``[cutoff(previous), cutoff(d))`` holds it, and exact duplicates dropped and counted.
  Each session is a partition of ``metrics``, ``metric_quarantine`` and ``metric_load_log``;
  re-loading a range replaces its partitions, it never duplicates them.

The tables are declared here, beside the code that writes them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import duckdb
import polars as pl

from features.csv_text import PROBLEM, RECORD, ROW, read_csv_text
from features.errors import DataError
from features.lake import Lake, LakeTable, LakeUnion, StagedPartitions
from features.source import REQUIRED_COLUMNS, Source, check_text_file, require_columns
from features.trading_time import LONG_BREAK_DAYS, TradingCalendar
from features.validate import (
    QUARANTINE_COLUMNS,
    REJECT,
    StageResult,
    stage_source_tables,
)

SOURCE_TABLES = ("systems", "incidents", "changes")
SOURCE_GROUP = "source"

_QUARANTINE = (
    ("table_name", "VARCHAR"), ("source_file", "VARCHAR"), ("row", "BIGINT"),
    ("column_name", "VARCHAR"),
    ("reason", "VARCHAR"),
    ("raw_value", "VARCHAR"),
    ("action", "VARCHAR"),      # 'rejected' (row not loaded) or 'value dropped'
    ("as_of", "DATE"),          # metrics partition the row fell in, NULL otherwise
    ("loaded_at", "TIMESTAMP"),
)
_LOAD_LOG = (
    ("table_name", "VARCHAR"), ("as_of", "DATE"), ("rows_read", "BIGINT"),
    ("rows_loaded", "BIGINT"), ("rows_rejected", "BIGINT"), ("values_dropped", "BIGINT"),
    ("duplicates_dropped", "BIGINT"), ("loaded_at", "TIMESTAMP"),
)

SYSTEMS_TABLE = LakeTable("systems", keys=("system_id",), group=SOURCE_GROUP)
INCIDENTS_TABLE = LakeTable("incidents", group=SOURCE_GROUP)
CHANGES_TABLE = LakeTable("changes", group=SOURCE_GROUP)
SOURCE_QUARANTINE_TABLE = LakeTable("source_quarantine", _QUARANTINE, group=SOURCE_GROUP)
SOURCE_LOAD_LOG_TABLE = LakeTable("source_load_log", _LOAD_LOG, group=SOURCE_GROUP)
METRICS_TABLE = LakeTable("metrics", (
    ("as_of", "DATE"), ("ts", "TIMESTAMP"), ("system_id", "VARCHAR"), ("metric", "VARCHAR"),
    ("value", "DOUBLE"),
))
METRIC_QUARANTINE_TABLE = LakeTable("metric_quarantine", _QUARANTINE)
METRIC_LOAD_LOG_TABLE = LakeTable("metric_load_log", _LOAD_LOG)
QUARANTINE = LakeUnion("quarantine", (SOURCE_QUARANTINE_TABLE, METRIC_QUARANTINE_TABLE))
LOAD_LOG = LakeUnion("load_log", (SOURCE_LOAD_LOG_TABLE, METRIC_LOAD_LOG_TABLE))
TRADING_CALENDAR_TABLE = LakeTable("trading_calendar", group="trading_calendar")


def write_trading_calendar(con: duckdb.DuckDBPyConnection, lake: Lake,
                           sessions: pl.DataFrame) -> None:
    """Replace the table ``trading_calendar`` (sessions with their cutoffs and windows)."""
    con.register("calendar_frame", sessions)
    try:
        lake.write_snapshot(con, TRADING_CALENDAR_TABLE.group,
                            {TRADING_CALENDAR_TABLE: ("SELECT * FROM calendar_frame", [])})
    finally:
        con.unregister("calendar_frame")


def load_source_tables(con: duckdb.DuckDBPyConnection, lake: Lake,
                       source: Source) -> list[StageResult]:
    """Validate and publish systems, incidents and changes together; returns their counts.

    The metric rows without a usable timestamp are quarantined here too: they belong to no
    partition, and finding them means reading every metric file once per load of the source,
    not once per partition."""
    results = stage_source_tables(con, source)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    if source.has_metrics:
        _quarantine_undated(con, source)
    log = pl.DataFrame(
        [(r.table, None, r.rows_read, r.rows_loaded, r.rows_rejected, r.values_dropped, 0, now)
         for r in results],
        schema=[(name, _POLARS[sql_type]) for name, sql_type in _LOAD_LOG], orient="row")
    con.register("source_load_rows", log)
    try:
        lake.write_snapshot(con, SOURCE_GROUP, {
            SYSTEMS_TABLE: ("SELECT * FROM staged_systems", []),
            INCIDENTS_TABLE: ("SELECT * FROM staged_incidents", []),
            CHANGES_TABLE: ("SELECT * FROM staged_changes", []),
            SOURCE_QUARANTINE_TABLE: (
                f"SELECT {QUARANTINE_COLUMNS}, ?::TIMESTAMP AS loaded_at FROM staged_quarantine",  # noqa: S608
                [now]),
            SOURCE_LOAD_LOG_TABLE: ("SELECT * FROM source_load_rows", []),
        })
    finally:
        con.unregister("source_load_rows")
    return results


_POLARS = {"VARCHAR": pl.String, "DATE": pl.Date, "BIGINT": pl.Int64,
           "TIMESTAMP": pl.Datetime("us")}


# ------------------------------------------------------------------------------ metrics


@dataclass(frozen=True)
class MetricsLoad:
    first: dt.date
    last: dt.date
    rows_read: int
    rows_loaded: int
    rows_rejected: int
    duplicates_dropped: int
    unplaced_rejected: int  # rows with no usable timestamp, anywhere in the source
    reasons: dict[str, int]

    @property
    def reject_share(self) -> float:
        return self.rows_rejected / self.rows_read if self.rows_read else 0.0


def _column_types(con: duckdb.DuckDBPyConnection, reader: str, files: list[str]) -> dict[str, str]:
    rows = con.execute(f"DESCRIBE SELECT * FROM {reader}", [files]).fetchall()  # noqa: S608
    return {r[0]: r[1] for r in rows}


_PARQUET = (
    "read_parquet(?, union_by_name = true, filename = true, file_row_number = true, "
    "hive_partitioning = false)"
)
_CSV = (
    "read_csv(?, all_varchar = true, header = true, union_by_name = true, filename = true, "
    "hive_partitioning = false, null_padding = true)"
)
# Metric CSV files DuckDB's reader cannot take exactly (quotes, mixed line endings), read by
# features.csv_text and registered on the connection under this name.
EXACT_CSV = "metric_csv_exact"


def _register_exact_csv(con: duckdb.DuckDBPyConnection, source: Source) -> None:
    frames = []
    for path in source.metric_csv_exact:
        check_text_file(path)
        text = read_csv_text(path)
        require_columns(path, text.header, REQUIRED_COLUMNS["metrics"])
        frames.append(text.frame().select(ROW, *REQUIRED_COLUMNS["metrics"], PROBLEM, RECORD)
                      .with_columns(source_file=pl.lit(str(path))))
    con.register(EXACT_CSV, pl.concat(frames))


def _damaged_records(con: duckdb.DuckDBPyConnection, source: Source) -> str | None:
    """SQL over the damaged records of the exactly read files (cut off, unquoted comma)."""
    if not source.metric_csv_exact:
        return None
    return (f"SELECT source_file, {ROW} AS row, {PROBLEM} AS reason, {RECORD} AS raw_value "  # noqa: S608
            f"FROM {EXACT_CSV} WHERE {PROBLEM} IS NOT NULL")


def _source_select(
    con: duckdb.DuckDBPyConnection,
    source: Source,
    window: tuple[dt.datetime, dt.datetime] | None,
    undated_only: bool = False,
) -> tuple[str, list]:
    """SQL (and its parameters) over the metric files, pre-filtered to ``window``.

    With a window ``[lo, hi)`` typed Parquet timestamps are filtered where DuckDB can push the
    filter into the files' statistics (the caller applies the exact bound); with
    ``undated_only`` the Parquet part reads only rows without a timestamp.

    Columns: source_file, row, ts_utc, system_id, metric, value, bad_value, raw_ts, raw_value.
    The SQL text is built from constants chosen by the column *types*; all data travels in
    parameters. Columns a query does not use (the raw text) are never computed.
    """
    from features.source import SourceError

    parts, params = [], []
    if source.metric_parquet:
        files = [str(p) for p in source.metric_parquet]
        types = _column_types(con, _PARQUET, files)
        require_columns(source.metric_parquet[0], list(types), REQUIRED_COLUMNS["metrics"])
        ts_type, value_type = types["ts"].upper(), types["value"].upper()
        offset = _fixed_offset(window)
        if ts_type.startswith("TIMESTAMP WITH TIME ZONE"):
            ts_utc, ts_params, bounds = "make_timestamp(epoch_us(ts))", [], list(window or ())
        elif ts_type.startswith("TIMESTAMP") and offset is not None:
            # Naive Parquet timestamps are local time. Without a DST change inside the window
            # local time is UTC plus a fixed offset: plain arithmetic, ten times cheaper than a
            # time zone lookup per row, and the filter on the raw column is exact.
            ts_utc, ts_params = "ts - to_seconds(?)", [offset]
            bounds = [_local_naive(window[0]), _local_naive(window[1])]
        elif ts_type.startswith("TIMESTAMP"):
            # A DST change inside the window: look the zone up per row (the connection's
            # TimeZone); the slack keeps the pushed-down filter safe, the exact bound follows.
            ts_utc, ts_params = "timezone('UTC', CAST(ts AS TIMESTAMPTZ))", []
            slack = dt.timedelta(days=1)
            bounds = [_local_naive(window[0]) - slack, _local_naive(window[1]) + slack] if window else []
        elif ts_type == "VARCHAR":
            ts_utc, ts_params, bounds = _TEXT_TS, [], []
        else:
            raise SourceError(f"metrics column ts has type {ts_type}; expected a timestamp")
        if bounds:
            prefilter = "ts >= ? AND ts < ?"
        else:
            prefilter = "ts IS NULL" if undated_only and ts_type != "VARCHAR" else "true"
        numeric = value_type.startswith(("DOUBLE", "FLOAT", "REAL", "BIGINT", "INTEGER", "SMALLINT",
                                         "TINYINT", "HUGEINT", "UBIGINT", "UINTEGER", "DECIMAL"))
        value = "CAST(value AS DOUBLE)" if numeric else "TRY_CAST(trim(CAST(value AS VARCHAR)) AS DOUBLE)"
        bad_value = "false" if numeric else _BAD_TEXT_VALUE
        parts.append(
            f"SELECT filename AS source_file, file_row_number + 1 AS row, {ts_utc} AS ts_utc, "  # noqa: S608
            f"NULLIF(trim(CAST(system_id AS VARCHAR)), '') AS system_id, "
            f"NULLIF(trim(CAST(metric AS VARCHAR)), '') AS metric, {value} AS value, "
            f"{bad_value} AS bad_value, ts AS raw_ts, value AS raw_value "
            f"FROM {_PARQUET} WHERE {prefilter}"
        )
        params += [*ts_params, files, *bounds]
    exact = source.metric_csv_exact
    plain = [p for p in source.metric_csv if p not in exact]
    if exact:
        _register_exact_csv(con, source)
        parts.append(
            f"SELECT source_file, {ROW} AS row, {_TEXT_TS} AS ts_utc, "  # noqa: S608
            "NULLIF(trim(system_id), '') AS system_id, NULLIF(trim(metric), '') AS metric, "
            f"TRY_CAST(trim(value) AS DOUBLE) AS value, {_BAD_TEXT_VALUE} AS bad_value, "
            f"ts AS raw_ts, value AS raw_value FROM {EXACT_CSV} WHERE {PROBLEM} IS NULL"
        )
    if plain:
        files = [str(p) for p in plain]
        types = _column_types(con, _CSV, files)
        require_columns(plain[0], list(types), REQUIRED_COLUMNS["metrics"])
        parts.append(
            "SELECT filename AS source_file, "  # noqa: S608
            "row_number() OVER (PARTITION BY filename) AS row, "
            f"{_TEXT_TS} AS ts_utc, NULLIF(trim(system_id), '') AS system_id, "
            "NULLIF(trim(metric), '') AS metric, TRY_CAST(trim(value) AS DOUBLE) AS value, "
            f"{_BAD_TEXT_VALUE} AS bad_value, ts AS raw_ts, value AS raw_value "
            f"FROM {_CSV}"
        )
        params += [files]
    # Cast the raw columns to text so Parquet and CSV parts union cleanly.
    union = " UNION ALL ".join(
        f"SELECT source_file, row, ts_utc, system_id, metric, value, bad_value, "  # noqa: S608
        f"CAST(raw_ts AS VARCHAR) AS raw_ts, CAST(raw_value AS VARCHAR) AS raw_value FROM ({p})"
        for p in parts
    )
    return union, params


def _fixed_offset(window: tuple[dt.datetime, dt.datetime] | None) -> int | None:
    """Seconds east of UTC when the zone's offset is the same through the window, else None."""
    if window is None:
        return None
    lo, hi = window
    if lo.utcoffset() != hi.utcoffset() or lo.utcoffset() is None:
        return None
    return int(lo.utcoffset().total_seconds())


_TEXT_TS = "timezone('UTC', TRY_CAST(NULLIF(trim(CAST(ts AS VARCHAR)), '') AS TIMESTAMPTZ))"
_BAD_TEXT_VALUE = (
    "(NULLIF(trim(CAST(value AS VARCHAR)), '') IS NOT NULL "
    "AND TRY_CAST(trim(CAST(value AS VARCHAR)) AS DOUBLE) IS NULL)"
)

# Why a sample is rejected, first rule that applies; NULL = valid.
_REASON = """
CASE
    WHEN system_id IS NULL THEN 'system_id is empty'
    WHEN metric IS NULL THEN 'metric is empty'
    WHEN known_id IS NULL THEN 'unknown system_id'
    WHEN bad_value THEN 'value is not a number'
    WHEN isinf(value) THEN 'value is infinite'
END
"""
_REASON_COLUMN = """
CASE
    WHEN system_id IS NULL OR known_id IS NULL THEN 'system_id'
    WHEN metric IS NULL THEN 'metric'
    ELSE 'value'
END
"""


def _local_naive(instant: dt.datetime) -> dt.datetime:
    return instant.replace(tzinfo=None)


def load_metrics(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    source: Source,
    calendar: TradingCalendar,
    first: dt.date,
    last: dt.date,
    max_rows_per_chunk: int = 30_000_000,
    on_chunk: Callable[[int, int], None] | None = None,
) -> MetricsLoad:
    """Replace the metric partitions of sessions ``first..last`` in the lake.

    A long range loads in chunks of whole sessions so memory stays bounded: the first chunk is
    one session, and later chunks hold as many sessions as fit in ``max_rows_per_chunk``
    samples at the rate seen so far. A failure leaves each partition either as it was or
    completely reloaded. ``systems`` (``load_source_tables``) must be loaded first.
    """
    sessions = calendar.session_table(first, last)
    if sessions.is_empty():
        raise DataError(f"no trading day between {first} and {last}")
    first, last = sessions["as_of"][0], sessions["as_of"][-1]
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    totals = {"read": 0, "rejected": 0, "duplicates": 0}
    reasons: dict[str, int] = {}
    offset, size = 0, 1
    while offset < sessions.height:
        chunk = sessions.slice(offset, size)
        counts, chunk_reasons = _load_chunk(con, lake, source, calendar, chunk, now)
        for key in totals:
            totals[key] += counts[key]
        for reason, count in chunk_reasons.items():
            reasons[reason] = reasons.get(reason, 0) + count
        offset += chunk.height
        per_session = max(1, totals["read"] // offset)
        size = max(1, min(60, max_rows_per_chunk // per_session))
        if on_chunk:
            on_chunk(offset, sessions.height)
    ((unplaced,),) = con.execute(
        "SELECT count(*) FROM source_quarantine WHERE table_name = 'metrics' AND as_of IS NULL"
    ).fetchall()
    loaded = totals["read"] - totals["rejected"] - totals["duplicates"]
    return MetricsLoad(first, last, totals["read"], loaded, totals["rejected"],
                       totals["duplicates"], int(unplaced), reasons)


_VALID_SAMPLES = """
SELECT s.as_of, c.ts_utc AS ts, c.system_id, c.metric,
       -- NaN -> NULL (a missing sample). Not isnan(): DuckDB 2.0 folds it to false when
       -- Parquet statistics have a min/max, though NaN hides there.
       CASE WHEN isfinite(c.value) OR isinf(c.value) THEN c.value END AS value
FROM ({select}) c JOIN load_sessions s
  ON c.ts_utc >= s.previous_cutoff_utc AND c.ts_utc < s.cutoff_utc
WHERE {valid}
"""


def _load_chunk(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    source: Source,
    calendar: TradingCalendar,
    sessions: pl.DataFrame,
    now: dt.datetime,
) -> tuple[dict[str, int], dict[str, int]]:
    first, last = sessions["as_of"][0], sessions["as_of"][-1]
    days = sessions["as_of"].to_list()
    lo, hi = calendar.metrics_window(first)[0], calendar.cutoff(last)
    lo_utc, hi_utc = sessions["previous_cutoff_utc"][0], sessions["cutoff_utc"][-1]
    # A native temp table, not a registered frame: the planner then knows it holds a handful
    # of rows and joins millions of samples against it cheaply.
    con.register("load_sessions_frame", sessions)
    con.execute("CREATE OR REPLACE TEMP TABLE load_sessions AS SELECT * FROM load_sessions_frame")
    con.unregister("load_sessions_frame")
    con.execute(
        "CREATE OR REPLACE TEMP TABLE rejected_metrics (as_of DATE, source_file VARCHAR, "
        '"row" BIGINT, system_id VARCHAR, metric VARCHAR, raw_value VARCHAR, reason VARCHAR, '
        "reason_column VARCHAR)"
    )
    staged: list[StagedPartitions] = []
    try:
        if source.has_metrics:
            select, params = _source_select(con, source, (lo, hi))
            valid = (
                "c.system_id IN (SELECT system_id FROM systems) AND c.metric IS NOT NULL "
                "AND NOT c.bad_value AND NOT coalesce(isinf(c.value), false)"
            )
            # Rejected rows are few: count them cheaply first, and only when there are some
            # spell out why with their raw text (which costs a cast of every row's value).
            window_params = [*params, lo_utc, hi_utc]
            invalid = f"FROM ({select}) c WHERE c.ts_utc >= ? AND c.ts_utc < ? AND NOT ({valid})"
            ((bad_rows,),) = con.execute(f"SELECT count(*) {invalid}", window_params).fetchall()  # noqa: S608
            if bad_rows:
                con.execute(
                    f"""
                    INSERT INTO rejected_metrics
                    SELECT s.as_of, c.source_file, c.row, c.system_id, c.metric, c.raw_value,
                           {_REASON} AS reason, {_REASON_COLUMN} AS reason_column
                    FROM (SELECT c.* {invalid}) c
                    LEFT JOIN (SELECT system_id AS known_id FROM systems) k ON k.known_id = c.system_id
                    JOIN load_sessions s ON c.ts_utc >= s.previous_cutoff_utc AND c.ts_utc < s.cutoff_utc
                    """,  # noqa: S608
                    window_params,
                )
            # Samples join the session whose window holds them; a range join on a handful of
            # sessions is cheap, where an ASOF join would sort every sample.
            samples = lake.stage_partitions(
                con, METRICS_TABLE, _VALID_SAMPLES.format(select=select, valid=valid), params, days)
        else:
            samples = lake.stage_partitions(con, METRICS_TABLE, METRICS_TABLE.empty_sql(), (), days)
        staged.append(samples)
        duplicates = _drop_exact_duplicates(con, lake, samples, sessions)
        per_day = _rows_per_partition(con, samples.paths())
        staged.append(lake.stage_partitions(
            con, METRIC_QUARANTINE_TABLE,
            f"""
            SELECT 'metrics' AS table_name, source_file, "row", reason_column AS column_name, reason,
                   CASE reason_column WHEN 'system_id' THEN system_id
                                      WHEN 'metric' THEN metric ELSE raw_value END AS raw_value,
                   '{REJECT}' AS action, as_of, ?::TIMESTAMP AS loaded_at
            FROM rejected_metrics
            """,  # noqa: S608 - constants only; data in parameters
            [now], days))
        rejected_per_day = dict(con.execute(
            "SELECT as_of, count(*) FROM rejected_metrics GROUP BY as_of").fetchall())
        reasons = dict(
            con.execute("SELECT reason, count(*) FROM rejected_metrics GROUP BY reason").fetchall())
        log = pl.DataFrame(
            [("metrics", day, per_day.get(day, 0) + duplicates.get(day, 0) + rejected_per_day.get(day, 0),
              per_day.get(day, 0), rejected_per_day.get(day, 0), 0, duplicates.get(day, 0), now)
             for day in days],
            schema=[(name, _POLARS[sql_type]) for name, sql_type in _LOAD_LOG], orient="row")
        con.register("metric_load_rows", log)
        try:
            staged.append(lake.stage_partitions(
                con, METRIC_LOAD_LOG_TABLE, "SELECT * FROM metric_load_rows", (), days))
        finally:
            con.unregister("metric_load_rows")
        for part in staged:
            part.publish(con)
    finally:
        for part in staged:
            part.discard()
        con.execute("DROP TABLE IF EXISTS load_sessions")
        con.execute("DROP TABLE IF EXISTS rejected_metrics")
    rejected = sum(rejected_per_day.values())
    dropped = sum(duplicates.values())
    read = sum(per_day.values()) + rejected + dropped
    return {"read": read, "rejected": rejected, "duplicates": dropped}, reasons


def _drop_exact_duplicates(con: duckdb.DuckDBPyConnection, lake: Lake, samples: StagedPartitions,
                           sessions: pl.DataFrame) -> dict[dt.date, int]:
    """Drop exact duplicate samples from the staged sessions; returns how many, per day.

    A full DISTINCT over a firm's day costs seconds, so only series that hold more samples than
    minutes with a sample are checked exactly; at a cadence of a minute or slower that is no
    series at all unless something was delivered twice. The minute maps are built a session at
    a time: one bit per minute of the window and series stays small that way.
    """
    con.execute("CREATE OR REPLACE TEMP TABLE suspicious_series "
                "(as_of DATE, system_id VARCHAR, metric VARCHAR)")
    for session in sessions.iter_rows(named=True):
        window = int((session["cutoff_utc"] - session["previous_cutoff_utc"]).total_seconds() // 60)
        con.execute(
            """
            INSERT INTO suspicious_series
            SELECT ?::DATE, system_id, metric FROM read_parquet(?)
            GROUP BY ALL
            HAVING count(*) > bit_count(bitstring_agg(
                datediff('minute', ?::TIMESTAMP, ts)::INTEGER, 0, ?))
            """,
            [session["as_of"], samples.paths([session["as_of"]]), session["previous_cutoff_utc"],
             window],
        )
    days = [d for (d,) in con.execute(
        "SELECT DISTINCT as_of FROM suspicious_series ORDER BY 1").fetchall()]
    if not days:
        return {}
    staged = samples.paths(days)
    before = _rows_per_partition(con, staged)
    corrected = lake.stage_partitions(
        con, METRICS_TABLE,
        """
        SELECT * FROM read_parquet(?, hive_partitioning = true, hive_types = {'as_of': 'DATE'}) m
        WHERE NOT EXISTS (SELECT 1 FROM suspicious_series s WHERE s.as_of = m.as_of
                          AND s.system_id = m.system_id AND s.metric = m.metric)
        UNION ALL
        SELECT DISTINCT m.* FROM read_parquet(?, hive_partitioning = true,
                                              hive_types = {'as_of': 'DATE'}) m
        SEMI JOIN suspicious_series s
          ON s.as_of = m.as_of AND s.system_id = m.system_id AND s.metric = m.metric
        """,
        [staged, staged], days)
    samples.replace(corrected)
    after = _rows_per_partition(con, samples.paths(days))
    return {day: before.get(day, 0) - after.get(day, 0) for day in days}


def newest_sample(con: duckdb.DuckDBPyConnection, source: Source, since: dt.datetime,
                  before: dt.datetime) -> dt.datetime | None:
    """The newest metric sample in the source files in ``[since, before)`` (aware instants), as
    naive UTC, or None. A narrow span lets Parquet files be pruned by their statistics."""
    if not source.has_metrics:
        return None
    select, params = _source_select(con, source, (since, before))
    bounds = [t.astimezone(dt.UTC).replace(tzinfo=None) for t in (since, before)]
    ((newest,),) = con.execute(
        f"SELECT max(ts_utc) FROM ({select}) WHERE ts_utc >= ? AND ts_utc < ?",  # noqa: S608
        [*params, *bounds]).fetchall()
    return newest


def _rows_per_partition(con: duckdb.DuckDBPyConnection, paths: list[str]) -> dict[dt.date, int]:
    return dict(con.execute(
        "SELECT as_of, count(*) FROM read_parquet(?, hive_partitioning = true, "
        "hive_types = {'as_of': 'DATE'}) GROUP BY as_of", [paths]).fetchall())


def _quarantine_undated(con: duckdb.DuckDBPyConnection, source: Source) -> int:
    """Quarantine (in ``staged_quarantine``) the metric rows whose timestamp is missing or
    unreadable, and damaged records: they fit no partition."""
    select, params = _source_select(con, source, None, undated_only=True)
    damaged = _damaged_records(con, source)
    if damaged:
        con.execute(
            f"INSERT INTO staged_quarantine SELECT 'metrics', source_file, row, 'record', "  # noqa: S608
            f"reason, raw_value, '{REJECT}', NULL FROM ({damaged})"
        )
    (count,) = con.execute(
        f"""
        INSERT INTO staged_quarantine
        SELECT 'metrics', source_file, row, 'ts',
               CASE WHEN raw_ts IS NULL OR trim(raw_ts) = '' THEN 'ts is empty'
                    ELSE 'ts is not an ISO-8601 timestamp' END,
               raw_ts, '{REJECT}', NULL
        FROM ({select}) WHERE ts_utc IS NULL
        """,  # noqa: S608
        params,
    ).fetchall()[0]
    if damaged:
        count += con.execute(f"SELECT count(*) FROM ({damaged})").fetchall()[0][0]  # noqa: S608
    return int(count)


@dataclass(frozen=True)
class MetricsProfile:
    rows: int
    first_ts: dt.datetime | None
    last_ts: dt.datetime | None
    systems: int
    metrics: int
    problems: pl.DataFrame  # reason, column_name, rows, example_file, example_row, example_value
    # as_of, rows, rejected: the rows each as-of day's partition would hold, as the nightly
    # counts them (rows without a usable timestamp fall in no day)
    days: pl.DataFrame = field(default_factory=lambda: _no_days())


def _no_days() -> pl.DataFrame:
    return pl.DataFrame(schema={"as_of": pl.Date, "rows": pl.Int64, "rejected": pl.Int64})


def profile_metrics(
    con: duckdb.DuckDBPyConnection, source: Source, systems_table: str = "systems",
    calendar: TradingCalendar | None = None,
) -> MetricsProfile:
    """Every metric row of the source checked against the rules, without loading anything.

    ``systems_table`` names the table of known systems (``systems`` in the warehouse,
    ``staged_systems`` while validating). With a ``calendar`` the rows are also counted per
    as-of day, the unit the nightly's quarantine check judges.
    """
    empty = pl.DataFrame(schema={"reason": pl.String, "column_name": pl.String, "rows": pl.Int64,
                                 "example_file": pl.String, "example_row": pl.Int64,
                                 "example_value": pl.String})
    if not source.has_metrics:
        return MetricsProfile(0, None, None, 0, 0, empty)
    select, params = _source_select(con, source, None)
    known = {"systems": "systems", "staged_systems": "staged_systems"}[systems_table]
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE metric_profile AS
        WITH src AS ({select})
        SELECT src.*,
               CASE WHEN ts_utc IS NULL AND (raw_ts IS NULL OR trim(raw_ts) = '') THEN 'ts is empty'
                    WHEN ts_utc IS NULL THEN 'ts is not an ISO-8601 timestamp'
                    ELSE {_REASON} END AS reason,
               CASE WHEN ts_utc IS NULL THEN 'ts' ELSE {_REASON_COLUMN} END AS reason_column
        FROM src LEFT JOIN (SELECT system_id AS known_id FROM {known}) k ON k.known_id = src.system_id
        """,  # noqa: S608 - constants only; data in parameters
        params,
    )
    rows, first, last, systems, metrics = con.execute(
        "SELECT count(*), min(ts_utc), max(ts_utc), count(DISTINCT system_id), "
        "count(DISTINCT metric) FROM metric_profile"
    ).fetchall()[0]
    problems = con.sql(
        """
        SELECT reason, reason_column AS column_name, count(*) AS rows,
               any_value(source_file) AS example_file, min(row) AS example_row,
               any_value(CASE reason_column WHEN 'ts' THEN raw_ts WHEN 'value' THEN raw_value
                              WHEN 'metric' THEN metric ELSE system_id END) AS example_value
        FROM metric_profile WHERE reason IS NOT NULL GROUP BY ALL ORDER BY rows DESC
        """
    ).pl()
    damaged = _damaged_records(con, source)
    if damaged:
        cut = con.sql(
            f"SELECT reason, 'record' AS column_name, count(*) AS rows, "  # noqa: S608
            f"any_value(source_file) AS example_file, min(row) AS example_row, "
            f"any_value(raw_value) AS example_value FROM ({damaged}) GROUP BY ALL"
        ).pl()
        rows += cut["rows"].sum()
        problems = pl.concat([problems, cut], how="vertical_relaxed")
    days = _rows_per_day(con, calendar, first, last) if calendar and first else None
    con.execute("DROP TABLE metric_profile")
    profile = MetricsProfile(rows, first, last, systems, metrics,
                             problems if problems.height else empty)
    return profile if days is None else replace(profile, days=days)


def _rows_per_day(con: duckdb.DuckDBPyConnection, calendar: TradingCalendar, first: dt.datetime,
                  last: dt.datetime) -> pl.DataFrame:
    """Rows and rejected rows of ``metric_profile`` in each as-of day's partition."""
    # Sessions whose windows can hold the rows, within the calendar (each needs a neighbour).
    lo = max(first.date() - dt.timedelta(days=1), calendar.next_session(calendar.first_day))
    hi = min(last.date() + dt.timedelta(days=LONG_BREAK_DAYS * 3),
             calendar.previous_session(calendar.last_day))
    if hi < lo:
        return _no_days()
    con.register("profile_sessions", calendar.session_table(lo, hi))
    try:
        return con.sql(
            """
            SELECT s.as_of, count(*) AS rows, count(*) FILTER (WHERE p.reason IS NOT NULL) AS rejected
            FROM metric_profile p JOIN profile_sessions s
              ON p.ts_utc >= s.previous_cutoff_utc AND p.ts_utc < s.cutoff_utc
            GROUP BY s.as_of ORDER BY s.as_of
            """
        ).pl()
    finally:
        con.unregister("profile_sessions")
