"""Row-level rules of the input contract for the inventory, the case library and the changes.

Each file is read as text (``features.csv_text``: RFC 4180, so quoted line breaks and doubled
quotes are data), every value is parsed by DuckDB, and every rule is one SQL condition. A row
that breaks a rule on a required value is *rejected* (it goes to the quarantine with its file,
row, column and reason); an invalid optional value is *dropped* (set to its default, the row
kept, the drop recorded); a damaged record (a file cut inside a quoted field) is rejected whole.
A change on a system the inventory does not know is *kept for review*: the quarantine records
it, and the CAB still sees it (a change nobody can place is exactly what the board must look
at), so it does not count toward the share of rejected rows that blocks publishing. Nothing
valid is lost.

Timestamps follow the contract: an ISO-8601 value with an offset is that instant, a naive one
is local time in the source's timezone (the connection's ``TimeZone``). Both are stored as
naive UTC.

The staged results are TEMP tables (``staged_<table>``, ``staged_quarantine``) on the caller's
connection; ``features.ingest`` publishes them, ``failcast validate`` only counts them.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from features.csv_text import PROBLEM, RECORD, ROW, read_csv_text
from features.source import (
    CHANGES,
    INCIDENTS,
    OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
    SYSTEMS,
    Source,
    SourceError,
    check_text_file,
    require_columns,
)

REJECT, DROP, FLAG = "rejected", "value dropped", "kept for review"
QUARANTINE_COLUMNS = "table_name, source_file, row, column_name, reason, raw_value, action, as_of"

# Parse a text timestamp under the connection's TimeZone and keep it as naive UTC.
UTC = "timezone('UTC', TRY_CAST(NULLIF(trim({col}), '') AS TIMESTAMPTZ))"


def _ts(col: str) -> str:
    return UTC.format(col=col)


@dataclass(frozen=True)
class Rule:
    column: str
    when: str  # SQL condition over the parsed row
    reason: str  # SQL expression giving the reason text
    action: str = REJECT


@dataclass(frozen=True)
class TableSpec:
    table: str
    file: str
    parsed: dict[str, str]  # name -> SQL expression over the raw text columns
    rules: tuple[Rule, ...]
    output: dict[str, str]  # published column -> SQL expression over the parsed row

    @property
    def known(self) -> tuple[str, ...]:
        return REQUIRED_COLUMNS[self.table] + OPTIONAL_COLUMNS[self.table]


def _text(col: str) -> str:
    return f"NULLIF(trim({col}), '')"


def _id_rules(key: str) -> tuple[Rule, ...]:
    return (
        Rule(key, f"__{key} IS NULL", f"'{key} is empty'"),
        Rule(key, f"__{key} IS NOT NULL AND __dup > 1", f"'duplicate {key}, first on row ' || __first"),
    )


def _system_rules(unknown: str = REJECT) -> tuple[Rule, ...]:
    return (
        Rule("system_id", "__system_id IS NULL", "'system_id is empty'"),
        Rule(
            "system_id",
            "__system_id IS NOT NULL AND __system_id NOT IN (SELECT system_id FROM staged_systems)",
            "'unknown system_id'",
            unknown,
        ),
    )


def _timestamp_rules(col: str, action: str, required: bool) -> tuple[Rule, ...]:
    rules = [
        Rule(
            col,
            f"{_text(col)} IS NOT NULL AND __{col} IS NULL",
            f"'{col} is not an ISO-8601 timestamp'",
            action,
        )
    ]
    if required:
        rules.insert(0, Rule(col, f"{_text(col)} IS NULL", f"'{col} is empty'", action))
    return tuple(rules)


def _dup(key: str) -> dict[str, str]:
    return {
        f"__{key}": _text(key),
        "__dup": f"row_number() OVER (PARTITION BY {_text(key)} ORDER BY _row)",
        "__first": f"min(_row) OVER (PARTITION BY {_text(key)})",
    }


SYSTEMS_SPEC = TableSpec(
    table="systems",
    file=SYSTEMS,
    parsed={
        **_dup("system_id"),
        "__tier": "TRY_CAST(trim(tier) AS INTEGER)",
        "__active_from": "TRY_CAST(trim(active_from) AS DATE)",
        "__active_to": "TRY_CAST(trim(active_to) AS DATE)",
    },
    rules=(
        *_id_rules("system_id"),
        Rule(
            "tier",
            f"{_text('tier')} IS NOT NULL AND (__tier IS NULL OR __tier NOT BETWEEN 1 AND 4)",
            "'tier must be an integer 1-4; 3 used'",
            DROP,
        ),
        Rule(
            "active_from",
            f"{_text('active_from')} IS NOT NULL AND __active_from IS NULL",
            "'active_from is not a date'",
            DROP,
        ),
        Rule(
            "active_to",
            f"{_text('active_to')} IS NOT NULL AND __active_to IS NULL",
            "'active_to is not a date'",
            DROP,
        ),
        Rule(
            "active_to",
            "__active_to < __active_from",
            "'active_to is before active_from'",
            DROP,
        ),
    ),
    output={
        "system_id": "__system_id",
        "name": _text("name"),
        "category": _text("category"),
        "owner": _text("owner"),
        "tier": "CASE WHEN __tier BETWEEN 1 AND 4 THEN __tier ELSE 3 END",
        # Unknown ids are removed from this list afterwards (see _check_dependencies).
        "depends_on": (
            "list_distinct(list_filter(list_transform(string_split(coalesce(depends_on, ''), ';'),"
            " lambda x: trim(x)), lambda x: x <> '' AND x <> __system_id))"
        ),
        "active_from": "__active_from",
        "active_to": "CASE WHEN __active_to < __active_from THEN NULL ELSE __active_to END",
    },
)

INCIDENTS_SPEC = TableSpec(
    table="incidents",
    file=INCIDENTS,
    parsed={
        **_dup("incident_id"),
        "__system_id": _text("system_id"),
        "__opened_at": _ts("opened_at"),
        "__resolved_at": _ts("resolved_at"),
        "__severity": "TRY_CAST(trim(severity) AS INTEGER)",
    },
    rules=(
        *_id_rules("incident_id"),
        *_system_rules(),
        *_timestamp_rules("opened_at", REJECT, required=True),
        Rule("severity", f"{_text('severity')} IS NULL", "'severity is empty'"),
        Rule(
            "severity",
            f"{_text('severity')} IS NOT NULL AND (__severity IS NULL OR __severity NOT BETWEEN 1 AND 4)",
            "'severity must be an integer 1-4'",
        ),
        *_timestamp_rules("resolved_at", DROP, required=False),
        Rule(
            "resolved_at",
            "__resolved_at < __opened_at",
            "'resolved_at is before opened_at'",
            DROP,
        ),
    ),
    output={
        "incident_id": "__incident_id",
        "system_id": "__system_id",
        "opened_at": "__opened_at",
        "resolved_at": "CASE WHEN __resolved_at < __opened_at THEN NULL ELSE __resolved_at END",
        "severity": "__severity",
        "category": _text("category"),
        "title": _text("title"),
        "root_cause": _text("root_cause"),
        "remediation": _text("remediation"),
    },
)

RISK_LEVELS = ("low", "medium", "high")
STATUSES = ("planned", "approved", "implemented", "failed", "rolled_back", "cancelled")
_RISK = f"lower(trim(risk_level)) IN {RISK_LEVELS}"
_STATUS = f"lower(trim(status)) IN {STATUSES}"

CHANGES_SPEC = TableSpec(
    table="changes",
    file=CHANGES,
    parsed={
        **_dup("change_id"),
        "__system_id": _text("system_id"),
        "__scheduled_start": _ts("scheduled_start"),
        "__scheduled_end": _ts("scheduled_end"),
        "__created_at": _ts("created_at"),
    },
    rules=(
        *_id_rules("change_id"),
        *_system_rules(unknown=FLAG),
        *_timestamp_rules("scheduled_start", REJECT, required=True),
        *_timestamp_rules("scheduled_end", DROP, required=False),
        Rule(
            "scheduled_end",
            "__scheduled_end < __scheduled_start",
            "'scheduled_end is before scheduled_start'",
            DROP,
        ),
        *_timestamp_rules("created_at", DROP, required=False),
        Rule(
            "risk_level",
            f"{_text('risk_level')} IS NOT NULL AND NOT ({_RISK})",
            "'risk_level must be low, medium or high'",
            DROP,
        ),
        Rule(
            "status",
            f"{_text('status')} IS NOT NULL AND NOT ({_STATUS})",
            f"'status must be one of {', '.join(STATUSES)}'",
            DROP,
        ),
    ),
    output={
        "change_id": "__change_id",
        "system_id": "__system_id",
        "scheduled_start": "__scheduled_start",
        "scheduled_end": (
            "CASE WHEN __scheduled_end < __scheduled_start THEN NULL ELSE __scheduled_end END"
        ),
        # Contract: a change is known from created_at on, by default 7 days before its start.
        "created_at": "coalesce(__created_at, __scheduled_start - INTERVAL 7 DAY)",
        "change_type": _text("change_type"),
        "risk_level": f"CASE WHEN {_RISK} THEN lower(trim(risk_level)) END",
        "status": f"CASE WHEN {_STATUS} THEN lower(trim(status)) END",
        "description": _text("description"),
    },
)

SPECS = {spec.table: spec for spec in (SYSTEMS_SPEC, INCIDENTS_SPEC, CHANGES_SPEC)}

EMPTY_CHANGES = """
CREATE OR REPLACE TEMP TABLE staged_changes (
    change_id VARCHAR, system_id VARCHAR, scheduled_start TIMESTAMP, scheduled_end TIMESTAMP,
    created_at TIMESTAMP, change_type VARCHAR, risk_level VARCHAR, status VARCHAR,
    description VARCHAR
)
"""


@dataclass(frozen=True)
class StageResult:
    """Counts of one staged table."""

    table: str
    file: str | None
    rows_read: int
    rows_loaded: int
    rows_rejected: int
    values_dropped: int
    duplicates_dropped: int = 0
    rows_flagged: int = 0  # kept, and recorded in the quarantine for review

    @property
    def reject_share(self) -> float:
        return self.rows_rejected / self.rows_read if self.rows_read else 0.0


def init_staging(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE staged_quarantine (
            table_name VARCHAR, source_file VARCHAR, "row" BIGINT, column_name VARCHAR,
            reason VARCHAR, raw_value VARCHAR, action VARCHAR, as_of DATE
        )
        """
    )


def _read_raw(con: duckdb.DuckDBPyConnection, spec: TableSpec, source: Source) -> None:
    path = source.path(spec.file)
    check_text_file(path)
    text = read_csv_text(path)
    require_columns(path, text.header, REQUIRED_COLUMNS[spec.table])
    clash = [c for c in (ROW, PROBLEM, RECORD) if c in text.header]
    if clash:
        raise SourceError(f"{spec.file}: column name {clash[0]} is reserved; rename the column")
    con.register("raw_frame", text.frame())
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE raw_{spec.table} AS SELECT * FROM raw_frame")  # noqa: S608
    finally:
        con.unregister("raw_frame")
    present = text.header
    for column in OPTIONAL_COLUMNS[spec.table]:
        if column not in present:
            con.execute(f"ALTER TABLE raw_{spec.table} ADD COLUMN {column} VARCHAR")


def stage_table(con: duckdb.DuckDBPyConnection, table: str, source: Source) -> StageResult:
    """Validate one CSV of the source into ``staged_<table>`` and ``staged_quarantine``.

    ``incidents`` and ``changes`` check system ids against ``staged_systems``, so stage
    ``systems`` first. A source without ``changes.csv`` stages an empty changes table.
    """
    spec = SPECS[table]
    if table == "changes" and not source.has_changes:
        con.execute(EMPTY_CHANGES)
        return StageResult(table, None, 0, 0, 0, 0)
    _read_raw(con, spec, source)
    parsed = ", ".join(f"{expr} AS {name}" for name, expr in spec.parsed.items())
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE parsed_{table} AS SELECT *, {parsed} FROM raw_{table}"  # noqa: S608
    )
    # A damaged record is rejected whole; the rules judge only the records read intact.
    damaged = (
        f"SELECT _row, 'record' AS column_name, {PROBLEM} AS reason, {RECORD} AS raw_value, "  # noqa: S608
        f"'{REJECT}' AS action FROM parsed_{table} WHERE {PROBLEM} IS NOT NULL"
    )
    checks = " UNION ALL ".join([damaged, *(
        f"SELECT _row, '{rule.column}' AS column_name, {rule.reason} AS reason, "  # noqa: S608
        f"CAST({rule.column} AS VARCHAR) AS raw_value, '{rule.action}' AS action "
        f"FROM parsed_{table} WHERE ({rule.when}) AND {PROBLEM} IS NULL"
        for rule in spec.rules
    )])
    con.execute(f"CREATE OR REPLACE TEMP TABLE issues_{table} AS {checks}")
    extras = ", ".join([ROW, PROBLEM, RECORD, *spec.known, *spec.parsed])
    output = ", ".join(f"{expr} AS {name}" for name, expr in spec.output.items())
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE staged_{table} AS "  # noqa: S608
        f"SELECT {output}, * EXCLUDE ({extras}) FROM parsed_{table} "
        f"WHERE _row NOT IN (SELECT _row FROM issues_{table} WHERE action = '{REJECT}') "
        "ORDER BY _row"
    )
    if table == "systems":
        _check_dependencies(con)
    con.execute(
        "INSERT INTO staged_quarantine SELECT ?, ?, _row, column_name, reason, raw_value, "  # noqa: S608
        f"action, NULL FROM issues_{table} ORDER BY _row",
        [table, spec.file],
    )
    return _counts(con, table, spec.file)


def _check_dependencies(con: duckdb.DuckDBPyConnection) -> None:
    """Drop ``depends_on`` entries that name no known system, recording each drop."""
    con.execute(
        """
        INSERT INTO issues_systems
        SELECT p._row, 'depends_on', 'depends_on names an unknown system; dropped', dep, 'value dropped'
        FROM (SELECT system_id, unnest(depends_on) AS dep FROM staged_systems) d
        JOIN parsed_systems p ON p.__system_id = d.system_id AND p.__dup = 1
        WHERE dep NOT IN (SELECT system_id FROM staged_systems)
        """
    )
    con.execute(
        """
        UPDATE staged_systems SET depends_on = list_filter(depends_on, lambda x: list_contains(k.ids, x))
        FROM (SELECT list(system_id) AS ids FROM staged_systems) k
        """
    )


def _counts(con: duckdb.DuckDBPyConnection, table: str, file: str) -> StageResult:
    read, loaded = con.execute(
        f"SELECT (SELECT count(*) FROM raw_{table}), (SELECT count(*) FROM staged_{table})"  # noqa: S608
    ).fetchall()[0]
    rejected, dropped, flagged = con.execute(
        f"SELECT count(DISTINCT _row) FILTER (WHERE action = '{REJECT}'), "  # noqa: S608
        f"count(*) FILTER (WHERE action = '{DROP}'), "
        f"count(DISTINCT _row) FILTER (WHERE action = '{FLAG}') FROM issues_{table}"
    ).fetchall()[0]
    return StageResult(table, file, read, loaded, rejected, dropped, rows_flagged=flagged)


def stage_source_tables(con: duckdb.DuckDBPyConnection, source: Source) -> list[StageResult]:
    """Stage systems, incidents and changes, in that order."""
    init_staging(con)
    return [stage_table(con, table, source) for table in ("systems", "incidents", "changes")]
