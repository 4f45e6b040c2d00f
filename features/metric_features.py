"""Metric features: the day's level and tails, the system's own baseline, trends, limits.

Works on ``metric_day_stats`` (a few rows per system and day), so baselines over 20 sessions
and trends over 5-10 sessions cost a window function over small data, not a rescan of the
samples. The set of metrics is open: every metric present becomes ``<metric>__<feature>``
columns, with the metric's name reduced to letters, digits and underscores.
"""

from __future__ import annotations

import datetime as dt

import duckdb
import polars as pl

# Sessions of history the baselines and trends look back over.
LOOKBACK_SESSIONS = 21

# A metric whose name says it is a percentage heads toward a limit of 100.
BOUNDED_METRIC = "(pct|percent|util)"

_HISTORY = """
WITH stats AS (
    SELECT *, date_diff('day', DATE '2000-01-01', as_of) AS day_number,
           regexp_matches(metric, ?, 'i') AS bounded
    FROM metric_day_stats WHERE as_of BETWEEN ? AND ?
),
history AS (
    SELECT *,
        avg(mean) OVER w20 AS base_mean, stddev_samp(mean) OVER w20 AS base_mean_sd,
        avg(p95) OVER w20 AS base_p95, stddev_samp(p95) OVER w20 AS base_p95_sd,
        avg(after_close_mean) OVER w20 AS base_after,
        stddev_samp(after_close_mean) OVER w20 AS base_after_sd,
        count(*) OVER w20 AS baseline_days,
        regr_slope(mean, day_number) OVER w5 AS mean_slope5,
        regr_slope(max, day_number) OVER w10 AS max_slope10
    FROM stats
    WINDOW w20 AS (PARTITION BY system_id, metric ORDER BY as_of
                   ROWS BETWEEN 20 PRECEDING AND 1 PRECEDING),
           w5 AS (PARTITION BY system_id, metric ORDER BY as_of
                  ROWS BETWEEN 4 PRECEDING AND CURRENT ROW),
           w10 AS (PARTITION BY system_id, metric ORDER BY as_of
                   ROWS BETWEEN 9 PRECEDING AND CURRENT ROW)
)
SELECT as_of, system_id,
       regexp_replace(metric, '[^A-Za-z0-9_]', '_', 'g') AS metric,
       mean, std, p95, max, last, null_share, coverage, longest_gap_min, after_close_mean,
       {z_mean} AS mean_z20, {z_p95} AS p95_z20, {z_after} AS after_close_z20,
       mean_slope5,
       CASE WHEN bounded THEN
           CASE WHEN max >= 100 THEN 0.0
                WHEN max_slope10 > 0.01 THEN least((100 - max) / max_slope10, 365.0)
                ELSE 365.0 END
       END AS days_to_limit
FROM history WHERE as_of BETWEEN ? AND ?
"""


def _z(value: str, base: str, spread: str) -> str:
    # A flat baseline would make any wobble infinite: the spread has a floor of 1% of the level,
    # and the score is clipped, so one quiet metric cannot dominate.
    return (
        f"CASE WHEN baseline_days >= 5 THEN greatest(-50.0, least(50.0, ({value} - {base}) / "
        f"nullif(greatest(coalesce({spread}, 0), 0.01 * abs({base})), 0))) END"
    )


HISTORY_SQL = _HISTORY.format(
    z_mean=_z("mean", "base_mean", "base_mean_sd"),
    z_p95=_z("p95", "base_p95", "base_p95_sd"),
    z_after=_z("after_close_mean", "base_after", "base_after_sd"),
)
FEATURES_PER_METRIC = (
    "mean", "std", "p95", "max", "last", "null_share", "coverage", "longest_gap_min",
    "after_close_mean", "mean_z20", "p95_z20", "after_close_z20", "mean_slope5", "days_to_limit",
)


def metric_features(
    con: duckdb.DuckDBPyConnection,
    first: dt.date,
    last: dt.date,
    lookback_start: dt.date,
) -> pl.DataFrame:
    """Wide metric features, one row per (as_of, system_id) that has metrics in ``first..last``.

    ``lookback_start`` is the session ``LOOKBACK_SESSIONS`` before ``first``: the baselines of
    the first day need the days before it.
    """
    long = con.sql(HISTORY_SQL, params=[BOUNDED_METRIC, lookback_start, last, first, last]).pl()
    if long.is_empty():
        return pl.DataFrame(schema={"as_of": pl.Date, "system_id": pl.String})
    melted = long.unpivot(
        index=["as_of", "system_id", "metric"], on=list(FEATURES_PER_METRIC), variable_name="stat"
    ).drop_nulls("value")
    melted = melted.with_columns(
        feature=pl.col("metric") + "__" + pl.col("stat"),
        value=pl.col("value").cast(pl.Float64),
    )
    wide = melted.pivot(
        on="feature", index=["as_of", "system_id"], values="value", aggregate_function="first"
    )
    # Columns in a stable order (metric, then feature) whatever order the rows came in.
    rank = {stat: i for i, stat in enumerate(FEATURES_PER_METRIC)}
    features = sorted(wide.columns[2:], key=lambda c: (c.rsplit("__", 1)[0], rank[c.rsplit("__", 1)[1]]))
    return wide.select("as_of", "system_id", *features)
