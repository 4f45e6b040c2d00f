"""Score an as-of day for the CAB: risk, tier, rank, reasons, similar incidents, changes.

``score_day`` returns one row per system in service, in the schema of the published
``risk_scores`` table. Writing goes through a staging table (``scores_staging``): checks look
at the staged day, and only then ``publish_day`` replaces that day in ``risk_scores`` in one
transaction (write, audit, publish), so a bad night never touches what was published.
"""

from __future__ import annotations

import datetime as dt
import json
from zoneinfo import ZoneInfo

import duckdb
import numpy as np
import polars as pl

from features.errors import DataError
from features.trading_time import TradingCalendar
from features.warehouse import transaction
from models.dataset import read_features
from models.decisions import decide, service_gap, tier_of
from models.explain import explain_day
from models.model import FailureModel
from models.registry import RegisteredModel
from models.similar import similar_incidents

SCORE_COLUMNS = """
    as_of DATE NOT NULL,
    target_date DATE NOT NULL,
    system_id VARCHAR NOT NULL,
    risk DOUBLE NOT NULL,
    tier VARCHAR NOT NULL,
    rank INTEGER NOT NULL,
    top_factors JSON,
    similar_incidents JSON,
    scheduled_changes JSON,
    model_name VARCHAR,
    model_version VARCHAR,
    mlflow_run_id VARCHAR,
    scored_at TIMESTAMP,
    data_status VARCHAR,
    data_notes VARCHAR
"""
# Columns added after the first release: older warehouses get them on their next write
# (their earlier rows stay NULL: "not judged").
ADDED_COLUMNS = (("data_status", "VARCHAR"), ("data_notes", "VARCHAR"))
STAGING, PUBLISHED = "scores_staging", "risk_scores"

WINDOW_CHANGES = """
SELECT c.change_id, c.system_id, c.scheduled_start, c.scheduled_end, c.change_type,
       c.risk_level, c.status, c.description, c.created_at,
       s.system_id IS NOT NULL AS system_known, s.active_from, s.active_to
FROM changes c LEFT JOIN systems s ON s.system_id = c.system_id
WHERE c.created_at < ? AND c.scheduled_start > ? AND c.scheduled_start <= ?
ORDER BY c.scheduled_start, c.change_id
"""


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    for table in (STAGING, PUBLISHED):
        con.execute(f"CREATE TABLE IF NOT EXISTS {table} ({SCORE_COLUMNS})")
        for column, kind in ADDED_COLUMNS:
            con.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {kind}")


def window_changes(con: duckdb.DuckDBPyConnection, calendar: TradingCalendar,
                   as_of: dt.date) -> pl.DataFrame:
    """Changes scheduled in the label window of ``as_of`` and known before its cutoff."""
    window = calendar.label_window(as_of)
    cutoff = calendar.cutoff_utc(as_of)
    return con.sql(WINDOW_CHANGES, params=[cutoff, cutoff, calendar.cutoff_utc(window.target_date)]).pl()


def _local(moment: dt.datetime | None, tz: ZoneInfo) -> str | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=dt.UTC).astimezone(tz).strftime("%Y-%m-%d %H:%M")


def change_entries(con: duckdb.DuckDBPyConnection, calendar: TradingCalendar, as_of: dt.date,
                   tier_by_system: dict[str, str],
                   state_by_system: dict[str, tuple[str, str]] | None = None) -> list[dict]:
    """Every change of the window of ``as_of`` with its recommended action and reasons.

    ``tier_by_system`` holds the tier of each scored system, ``state_by_system`` its data
    status and notes. A change whose system is unknown, not in service on the change's day or
    not scored keeps its place, with at least extra review and that fact as its reason
    (``models.decisions.decide``); so does one whose system's data is not ``ok``.
    """
    tz = ZoneInfo(calendar.timezone)
    entries = []
    for change in window_changes(con, calendar, as_of).iter_rows(named=True):
        system_id = change["system_id"]
        tier = tier_by_system.get(system_id)
        day = change["scheduled_start"].replace(tzinfo=dt.UTC).astimezone(tz).date()
        system = change if change["system_known"] else None
        gap = service_gap(system_id, system, day, as_of, scored=tier is not None)
        action, reasons = decide(tier, change["risk_level"], gap,
                                 *(state_by_system or {}).get(system_id, ("ok", "")))
        entries.append({
            "change_id": change["change_id"],
            "system_id": system_id,
            "scheduled_start": _local(change["scheduled_start"], tz),
            "scheduled_end": _local(change["scheduled_end"], tz),
            "change_type": change["change_type"],
            "risk_level": change["risk_level"],
            "status": change["status"],
            "description": change["description"],
            "action": action,
            "action_reason": "; ".join(reasons),
        })
    return entries


def score_day(
    con: duckdb.DuckDBPyConnection,
    calendar: TradingCalendar,
    as_of: dt.date,
    model: FailureModel,
    registered: RegisteredModel,
    thresholds: tuple[float, float, float],
    *,
    status: pl.DataFrame | None = None,
    k_factors: int = 5,
    k_similar: int = 3,
    now: dt.datetime | None = None,
) -> pl.DataFrame:
    """The ``risk_scores`` rows of one as-of day.

    ``status`` (``features.data_status``: system_id, data_status, data_notes) says how good
    each system's data is; without it every system is taken as ``ok``."""
    as_of = calendar.require_session(as_of)
    rows = read_features(con, as_of, as_of)
    if rows.is_empty():
        raise DataError(f"no features for {as_of}: build system_day_features for it first")
    states = rows.select("system_id").join(
        status.select("system_id", "data_status", "data_notes") if status is not None
        else pl.DataFrame(schema={"system_id": pl.String, "data_status": pl.String,
                                  "data_notes": pl.String}),
        on="system_id", how="left", maintain_order="left",
    ).with_columns(pl.col("data_status").fill_null("ok"), pl.col("data_notes").fill_null(""))
    state_by_system = {s: (st, nt) for s, st, nt in states.iter_rows()}
    risk = np.clip(model.predict(rows), 0.0, 1.0)
    factors = explain_day(con, calendar, as_of, model, rows, k_factors)
    similar = similar_incidents(con, calendar, as_of, rows, factors, k_similar)
    tiers = [tier_of(float(r), thresholds) for r in risk]
    tier_by_system = dict(zip(rows["system_id"].to_list(), tiers, strict=True))
    by_system: dict[str, list[dict]] = {}
    for entry in change_entries(con, calendar, as_of, tier_by_system, state_by_system):
        by_system.setdefault(entry.pop("system_id"), []).append(entry)
    scored_at = now or dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    frame = rows.select("as_of", "target_date", "system_id").with_columns(
        risk=pl.Series(risk, dtype=pl.Float64),
        tier=pl.Series(tiers, dtype=pl.String),
        top_factors=pl.Series([json.dumps(f) for f in factors], dtype=pl.String),
        similar_incidents=pl.Series([json.dumps(s) for s in similar], dtype=pl.String),
        scheduled_changes=pl.Series(
            [json.dumps(by_system.get(s, [])) for s in rows["system_id"].to_list()], dtype=pl.String),
        model_name=pl.lit(registered.name),
        model_version=pl.lit(registered.version),
        mlflow_run_id=pl.lit(registered.run_id),
        scored_at=pl.lit(scored_at),
        data_status=states["data_status"],
        data_notes=states["data_notes"],
    )
    frame = frame.sort(["risk", "system_id"], descending=[True, False]).with_columns(
        rank=pl.int_range(1, frame.height + 1, dtype=pl.Int32))
    return frame.select("as_of", "target_date", "system_id", "risk", "tier", "rank", "top_factors",
                        "similar_incidents", "scheduled_changes", "model_name", "model_version",
                        "mlflow_run_id", "scored_at", "data_status", "data_notes")


def stage_day(con: duckdb.DuckDBPyConnection, frame: pl.DataFrame, as_of: dt.date) -> None:
    """Replace the day in ``scores_staging`` (nothing published yet)."""
    _replace(con, STAGING, frame, as_of)


def publish_day(con: duckdb.DuckDBPyConnection, as_of: dt.date) -> int:
    """Copy the staged day into ``risk_scores``, replacing that day, in one transaction."""
    ensure_tables(con)
    with transaction(con):
        con.execute(f"DELETE FROM {PUBLISHED} WHERE as_of = ?", [as_of])  # noqa: S608
        con.execute(f"INSERT INTO {PUBLISHED} BY NAME SELECT * FROM {STAGING} WHERE as_of = ?", [as_of])  # noqa: S608
        return con.execute(f"SELECT count(*) FROM {PUBLISHED} WHERE as_of = ?", [as_of]).fetchall()[0][0]  # noqa: S608


def _replace(con: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame, as_of: dt.date) -> None:
    ensure_tables(con)
    con.register("day_scores", frame)
    try:
        with transaction(con):
            con.execute(f"DELETE FROM {table} WHERE as_of = ?", [as_of])  # noqa: S608
            con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM day_scores")  # noqa: S608
    finally:
        con.unregister("day_scores")


def read_scores(con: duckdb.DuckDBPyConnection, table: str, as_of: dt.date) -> pl.DataFrame:
    names = {STAGING: STAGING, PUBLISHED: PUBLISHED}
    return con.sql(f"SELECT * FROM {names[table]} WHERE as_of = ? ORDER BY rank",  # noqa: S608
                   params=[as_of]).pl()
