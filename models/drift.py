"""Feature drift: is the scored day still like the days the champion learned from?

The population stability index (PSI) of each model feature, between a reference sample of
the champion's training period and the scored day, on deciles of the reference. PSI above
0.25 is heavy drift (the champion may be stale: a reason to retrain early), 0.1-0.25
moderate. Features with too few distinct values to cut into deciles use their values.

PSI of a small sample is large by chance alone (about bins/n), so a small estate's day is
pooled with the sessions just before it until it holds ``MIN_CURRENT_ROWS`` rows.

Watched: the measured features (``<metric>__*``: monitoring, workload, capacity) and the
inventory (``inv_*``), whose shift is what makes a champion stale. Not watched: counts of
incidents and changes, recency and peer rates, which are the news the model reads and swing
from week to week by nature, and calendar features.
"""

from __future__ import annotations

import numpy as np
import polars as pl

MODERATE, HEAVY = 0.10, 0.25
EPSILON = 1e-4
MIN_CURRENT_ROWS = 500


def watched(feature: str) -> bool:
    return "__" in feature or feature.startswith("inv_")


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    reference = reference[np.isfinite(reference)]
    current = current[np.isfinite(current)]
    if len(reference) < 20 or len(current) < 5:
        return float("nan")
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)))
    if len(edges) <= 2:
        values = np.unique(reference)
        ref = np.array([(reference == v).mean() for v in values])
        cur = np.array([(current == v).mean() for v in values])
        other_ref, other_cur = 1 - ref.sum(), 1 - cur.sum()
        ref, cur = np.append(ref, other_ref), np.append(cur, other_cur)
    else:
        edges[0], edges[-1] = -np.inf, np.inf
        ref = np.histogram(reference, edges)[0] / len(reference)
        cur = np.histogram(current, edges)[0] / len(current)
    ref, cur = np.clip(ref, EPSILON, None), np.clip(cur, EPSILON, None)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def drift_table(reference: pl.DataFrame, current: pl.DataFrame, features: list[str]) -> pl.DataFrame:
    """PSI and a verdict per feature, worst first."""
    rows = []
    for feature in features:
        if not watched(feature):
            continue
        if feature not in reference.columns or feature not in current.columns:
            continue
        value = psi(reference[feature].cast(pl.Float64).to_numpy(),
                    current[feature].cast(pl.Float64).to_numpy())
        status = ("heavy" if value > HEAVY else "moderate" if value > MODERATE else "stable") \
            if value == value else "not enough data"
        rows.append({"feature": feature, "psi": value, "status": status})
    table = pl.DataFrame(rows, schema={"feature": pl.String, "psi": pl.Float64, "status": pl.String})
    return table.sort("psi", descending=True, nulls_last=True)
