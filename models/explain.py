"""Reasons a reviewer can read: LightGBM's own SHAP values, in words.

``pred_contrib`` splits each row's raw log-odds into one contribution per feature plus a bias;
the largest ones, up or down, are the system's reasons. Feature names follow the features
library's scheme, so each can be said in plain words.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from models.model import FailureModel

METRIC_STATS = {
    "mean": "average {m} over the day",
    "std": "variability of {m} over the day",
    "p95": "95th percentile of {m}",
    "max": "peak {m}",
    "last": "latest {m} before the cutoff",
    "null_share": "share of {m} samples missing",
    "coverage": "share of minutes with a {m} sample",
    "longest_gap_min": "longest gap in {m} samples (minutes)",
    "after_close_mean": "{m} after the market close",
    "mean_z20": "{m} against its own 20-day baseline (z-score)",
    "p95_z20": "95th percentile of {m} against its 20-day baseline (z-score)",
    "after_close_z20": "post-close {m} against its 20-day baseline (z-score)",
    "mean_slope5": "{m} trend over the last 5 sessions (per day)",
    "days_to_limit": "days until {m} reaches 100% at its current trend",
}
NAMED = {
    "tier": "system tier (1 = most critical)",
    "age_days": "days in service",
    "n_upstream": "systems it depends on",
    "n_downstream": "systems that depend on it",
    "days_to_target": "calendar days until the target day",
    "days_since_previous": "calendar days since the previous trading day",
    "target_after_long_break": "target day is the first after a long break",
    "as_of_after_long_break": "today was the first trading day after a long break",
    "target_weekday": "weekday of the target day",
    "target_month_end": "target day is the last trading day of the month",
    "target_quarter_end": "target day is the last trading day of the quarter",
    "inc_1d": "incidents in the last day",
    "inc_3d": "incidents in the last 3 days",
    "inc_7d": "incidents in the last 7 days",
    "inc_30d": "incidents in the last 30 days",
    "inc_90d": "incidents in the last 90 days",
    "inc_365d": "incidents in the last year",
    "inc_sev12_30d": "severity 1-2 incidents in the last 30 days",
    "inc_sev12_90d": "severity 1-2 incidents in the last 90 days",
    "inc_sev1_365d": "severity 1 incidents in the last year",
    "inc_categories_90d": "different incident categories in 90 days",
    "inc_open_at_cutoff": "incidents still open at the cutoff",
    "days_since_incident": "days since the last incident",
    "days_since_sev12": "days since the last severity 1-2 incident",
    "mtbf5_days": "mean days between its last five incidents",
    "inc_lifetime": "incidents since it entered service",
    "inc_lifetime_rate": "incidents per day over its life",
    "inc_same_category_90d": "repeats of its last incident's category in 90 days",
    "up_inc_1d": "incidents of its dependencies in the last day",
    "up_inc_3d": "incidents of its dependencies in the last 3 days",
    "up_inc_7d": "incidents of its dependencies in the last 7 days",
    "up_inc_30d": "incidents of its dependencies in the last 30 days",
    "up_sev12_3d": "severity 1-2 incidents of its dependencies in 3 days",
    "up_days_since_incident": "days since a dependency last failed",
    "chg_window": "changes scheduled before the target day's cutoff",
    "chg_window_high": "high-risk changes scheduled in the window",
    "chg_window_medium": "medium-risk changes scheduled in the window",
    "chg_window_low": "low-risk changes scheduled in the window",
    "chg_window_types": "kinds of change scheduled in the window",
    "chg_window_hours": "hours of scheduled change work in the window",
    "chg_window_short_notice": "changes in the window raised within 2 days",
    "chg_recent_7d": "changes carried out in the last 7 days",
    "chg_failed_30d": "failed or rolled-back changes in the last 30 days",
    "chg_history_365d": "changes in the last year",
    "chg_followed_by_incident_share": "share of its past changes followed by an incident",
    "up_chg_window": "changes scheduled on its dependencies in the window",
    "up_chg_window_high": "high-risk changes on its dependencies in the window",
}


def describe(feature: str) -> str:
    """A feature's name in words a reviewer understands."""
    if feature in NAMED:
        return NAMED[feature]
    if "__" in feature:
        metric, stat = feature.rsplit("__", 1)
        if stat in METRIC_STATS:
            return METRIC_STATS[stat].format(m=metric)
    if feature.startswith("peer_"):
        attribute, _, span = feature[5:].rpartition("_inc_")
        days = span.rstrip("d")
        period = "day" if days == "1" else f"{days} days"
        return f"incidents per system sharing its {attribute} in the last {period}"
    if feature.startswith("inv_"):
        return f"inventory: {feature[4:]}"
    return feature.replace("_", " ")


def top_factors(model: FailureModel, frame: pl.DataFrame, k: int = 5) -> list[list[dict]]:
    """For each row, the ``k`` features that moved its risk most, up or down."""
    if frame.is_empty():
        return []
    contributions = model.contributions(frame)[:, :-1]  # the last column is the bias
    values = frame.select([pl.col(f) if f in frame.columns else pl.lit(None).alias(f)
                           for f in model.features]).to_numpy()
    order = np.argsort(-np.abs(contributions), axis=1)[:, :k]
    out = []
    for row, picks in enumerate(order):
        factors = []
        for j in picks:
            contribution = float(contributions[row, j])
            if contribution == 0.0:
                continue
            value = values[row, j]
            factors.append({
                "feature": model.features[j],
                "description": describe(model.features[j]),
                "value": None if value is None or value != value else round(float(value), 4),
                "contribution": round(contribution, 4),
                "direction": "raises" if contribution > 0 else "lowers",
            })
        out.append(factors)
    return out
