"""Reasons a reviewer can read: LightGBM's own SHAP values, said in words with their context.

``pred_contrib`` splits each row's raw log-odds into one contribution per feature plus a bias.
A system's reasons are its ``k`` largest system-specific contributions, up or down; what every
system shares that day (the calendar) is kept apart with ``scope = "estate"``, so the page can
state it once. Each factor is said by the catalogue (``models.reasons``) against the system's
own normal: the average of the same statistic over its last 20 sessions (``metric_day_stats``,
days before the as-of day only), or the estate's median that day.
"""

from __future__ import annotations

import datetime as dt
import re

import duckdb
import numpy as np
import polars as pl

from features.trading_time import TradingCalendar
from features.warehouse import table_exists
from models import reasons
from models.model import FailureModel

NORMAL_SESSIONS = 20
NORMAL_STATS = ("mean", "std", "p95", "max", "last", "after_close_mean", "null_share",
                "coverage", "longest_gap_min")

# The system's normal of each statistic of the metrics its reasons name: the average over its
# last NORMAL_SESSIONS sessions before the as-of day (names reduced as the features reduce them).
NORMALS = """
WITH stats AS (
    SELECT s.system_id, regexp_replace(s.metric, '[^A-Za-z0-9_]', '_', 'g') AS metric, s.*
        EXCLUDE (system_id, metric)
    FROM metric_day_stats s
    WHERE s.as_of >= ? AND s.as_of < ?
)
SELECT k.system_id, k.metric, {averages}
FROM normal_keys k JOIN stats s ON s.system_id = k.system_id AND s.metric = k.metric
GROUP BY k.system_id, k.metric
"""


def top_factors(model: FailureModel, frame: pl.DataFrame, k: int = 5) -> list[list[dict]]:
    """For each row, its ``k`` largest system-specific contributions, then the estate-wide ones.

    Each factor: ``feature``, ``value`` (None when missing), ``contribution`` (log-odds),
    ``direction`` and ``scope``. Factors that contribute nothing are left out.
    """
    if frame.is_empty():
        return []
    contributions = model.contributions(frame)[:, :-1]  # the last column is the bias
    values = frame.select([pl.col(f) if f in frame.columns else pl.lit(None).alias(f)
                           for f in model.features]).cast(pl.Float64).to_numpy()
    shared = np.array([reasons.scope(f) == reasons.ESTATE for f in model.features])
    own = np.where(shared[None, :], 0.0, np.abs(contributions))
    order = np.argsort(-own, axis=1, kind="stable")[:, :k]
    estate = np.flatnonzero(shared)
    out = []
    for row, picks in enumerate(order):
        factors = []
        for j in [*picks, *estate]:
            contribution = float(contributions[row, j])
            if contribution == 0.0:
                continue
            value = values[row, j]
            factors.append({
                "feature": model.features[j],
                "value": None if np.isnan(value) else round(float(value), 4),
                "contribution": round(contribution, 4),
                "direction": "raises" if contribution > 0 else "lowers",
                "scope": reasons.ESTATE if shared[j] else reasons.SYSTEM,
            })
        out.append(factors)
    return out


def explain_day(
    con: duckdb.DuckDBPyConnection,
    calendar: TradingCalendar,
    as_of: dt.date,
    model: FailureModel,
    rows: pl.DataFrame,
    k: int = 5,
) -> list[list[dict]]:
    """The reasons of every row of one as-of day, in words against each system's normal."""
    factors = top_factors(model, rows, k)
    if not factors:
        return factors
    usual = system_normals(con, calendar, as_of, rows["system_id"].to_list(), factors)
    features = sorted({f["feature"] for row in factors for f in row} | {"inc_365d", "mtbf5_days"})
    present = [f for f in features if f in rows.columns]
    estate = {f: rows[f].cast(pl.Float64).median() for f in present}
    attributes = system_attributes(con)
    for system, row, row_factors in zip(rows["system_id"].to_list(),
                                        rows.to_dicts(), factors, strict=True):
        context = reasons.Context(usual=usual.get(system, {}), estate=estate,
                                  attributes=attributes.get(system, {}), row=row)
        for factor in row_factors:
            said = reasons.say(factor["feature"], factor["value"], context)
            factor.update({
                "text": said.text,
                "subject": said.subject,
                "clause": said.clause,
                "aspect": said.aspect,
                "mechanism": said.mechanism.name if said.mechanism else None,
            })
            if said.usual is not None:
                factor["usual"] = round(float(said.usual), 4)
    return factors


def system_normals(con: duckdb.DuckDBPyConnection, calendar: TradingCalendar, as_of: dt.date,
                   systems: list[str], factors: list[list[dict]]) -> dict[str, dict]:
    """``system -> {(metric, stat): normal}`` for the metrics named in ``factors``."""
    keys = {(system, parsed[0]) for system, row in zip(systems, factors, strict=True)
            for f in row if (parsed := reasons.parse_metric(f["feature"]))}
    if not keys or not table_exists(con, "metric_day_stats"):
        return {}
    first = calendar.sessions_back(as_of, NORMAL_SESSIONS)
    frame = pl.DataFrame(sorted(keys), schema={"system_id": pl.String, "metric": pl.String},
                         orient="row")
    averages = ", ".join(f"avg(s.{stat}) AS {stat}" for stat in NORMAL_STATS)
    con.register("normal_keys", frame)
    try:
        found = con.sql(NORMALS.format(averages=averages), params=[first, as_of]).pl()
    finally:
        con.unregister("normal_keys")
    out: dict[str, dict] = {}
    for record in found.iter_rows(named=True):
        normals = out.setdefault(record["system_id"], {})
        for stat in NORMAL_STATS:
            if record[stat] is not None:
                normals[(record["metric"], stat)] = record[stat]
    return out


def system_attributes(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, str]]:
    """Each system's inventory values by the attribute names peer features use."""
    frame = con.sql("SELECT * FROM systems").pl()
    names = {c: re.sub(r"[^A-Za-z0-9_]", "_", c) for c in frame.columns}
    out = {}
    for record in frame.iter_rows(named=True):
        out[record["system_id"]] = {names[c]: str(v) for c, v in record.items()
                                    if v is not None and not isinstance(v, list)}
    return out
