"""Similar past incidents: what happened before, when a system looked like this.

For each system scored on an as-of day, the case library's incidents from the last two years
(opened before the cutoff) are candidates when they struck the same system, one of its
dependencies, or a system of the same category. Each candidate is compared on two counts:

- how close it is in the estate (same system 1.0, a dependency 0.7, same category 0.4);
- how much the failed system's features on the day before that incident resemble this
  system's features today (cosine similarity of the standardised top model features).

``similarity = 0.6 * closeness + 0.4 * resemblance``; the ``k`` best are returned with their
root causes and remediations, which is what a reviewer wants to read.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import duckdb
import numpy as np
import polars as pl

from features.build import TABLE
from features.trading_time import TradingCalendar
from features.warehouse import quote_ident

LOOKBACK_DAYS = 730
PROFILE_FEATURES = 12
SAME_SYSTEM, UPSTREAM, SAME_CATEGORY = 1.0, 0.7, 0.4

CANDIDATES = """
SELECT i.incident_id, i.system_id, i.opened_at, i.severity, i.category, i.title,
       i.root_cause, i.remediation, s.category AS system_category, p.as_of AS profile_day
FROM incidents i
JOIN systems s ON s.system_id = i.system_id
ASOF LEFT JOIN similar_sessions p ON i.opened_at > p.cutoff_utc
WHERE i.opened_at < ? AND i.opened_at >= ?
"""


def similar_incidents(
    con: duckdb.DuckDBPyConnection,
    calendar: TradingCalendar,
    as_of: dt.date,
    today: pl.DataFrame,
    profile_features: list[str],
    k: int = 3,
) -> list[list[dict]]:
    """For each row of ``today`` (one as-of day), its ``k`` most similar past incidents."""
    cutoff = calendar.cutoff_utc(as_of)
    since = cutoff - dt.timedelta(days=LOOKBACK_DAYS)
    first = max(calendar.first_day + dt.timedelta(days=1), since.date() - dt.timedelta(days=10))
    con.register("similar_sessions",
                 calendar.session_table(first, as_of).select("as_of", "cutoff_utc"))
    try:
        candidates = con.sql(CANDIDATES, params=[cutoff, since]).pl()
    finally:
        con.unregister("similar_sessions")
    if candidates.is_empty() or today.is_empty():
        return [[] for _ in range(today.height)]

    systems = con.sql("SELECT system_id, category, depends_on FROM systems").pl()
    info = today.select("system_id").join(systems, on="system_id", how="left")
    closeness = _closeness(info, candidates)

    features = [f for f in profile_features[:PROFILE_FEATURES] if f in today.columns]
    resemblance = np.zeros_like(closeness)
    if features:
        profiles = _profiles(con, candidates, features)
        resemblance = _resemblance(today.select(features).to_numpy(), profiles)
    score = np.where(closeness > 0, 0.6 * closeness + 0.4 * resemblance, -1.0)

    tz = ZoneInfo(calendar.timezone)
    records = candidates.to_dicts()
    recency = candidates["opened_at"].rank("ordinal", descending=True).to_numpy()
    out = []
    for row in range(today.height):
        order = np.lexsort((recency, -score[row]))[:k]
        picked = []
        for j in order:
            if score[row, j] < 0:
                break
            c = records[j]
            picked.append({
                "incident_id": c["incident_id"],
                "system_id": c["system_id"],
                "opened_at": c["opened_at"].replace(tzinfo=dt.UTC).astimezone(tz)
                .strftime("%Y-%m-%d %H:%M"),
                "severity": c["severity"],
                "category": c["category"],
                "similarity": round(float(score[row, j]), 3),
                "title": c["title"],
                "root_cause": c["root_cause"],
                "remediation": c["remediation"],
            })
        out.append(picked)
    return out


def _closeness(info: pl.DataFrame, candidates: pl.DataFrame) -> np.ndarray:
    ids = info["system_id"].to_list()
    categories = info["category"].to_list()
    upstream = [set(d or []) for d in info["depends_on"].to_list()]
    their_ids = candidates["system_id"].to_numpy()
    their_categories = candidates["system_category"].to_numpy()
    out = np.zeros((len(ids), candidates.height))
    for row, (system, category, ups) in enumerate(zip(ids, categories, upstream, strict=True)):
        same_category = (their_categories == category) if category is not None else False
        out[row] = np.where(their_ids == system, SAME_SYSTEM,
                            np.where(np.isin(their_ids, list(ups)), UPSTREAM,
                                     np.where(same_category, SAME_CATEGORY, 0.0)))
    return out


def _profiles(con: duckdb.DuckDBPyConnection, candidates: pl.DataFrame,
              features: list[str]) -> np.ndarray:
    """Each candidate's system's features on the as-of day before its incident."""
    keys = candidates.select("incident_id", "system_id", pl.col("profile_day").alias("as_of"))
    con.register("similar_keys", keys)
    try:
        columns = ", ".join(f"f.{quote_ident(c)}" for c in features)
        rows = con.sql(
            f"SELECT k.incident_id, {columns} FROM similar_keys k "  # noqa: S608
            f"LEFT JOIN {TABLE} f ON f.system_id = k.system_id AND f.as_of = k.as_of"
        ).pl()
    finally:
        con.unregister("similar_keys")
    ordered = candidates.select("incident_id").join(rows, on="incident_id", how="left",
                                                     maintain_order="left")
    return ordered.select(features).cast(pl.Float64).to_numpy()


def _resemblance(today: np.ndarray, profiles: np.ndarray) -> np.ndarray:
    """Cosine similarity of standardised feature vectors, mapped to [0, 1]."""
    today = today.astype(float)
    mean = np.nanmean(np.vstack([today, profiles]), axis=0)
    std = np.nanstd(np.vstack([today, profiles]), axis=0)
    std[~np.isfinite(std) | (std == 0)] = 1.0
    mean[~np.isfinite(mean)] = 0.0

    def norm(x: np.ndarray) -> np.ndarray:
        z = np.nan_to_num((x - mean) / std)
        length = np.linalg.norm(z, axis=1, keepdims=True)
        return z / np.where(length == 0, 1.0, length)

    return (1.0 + norm(today) @ norm(profiles).T) / 2.0
