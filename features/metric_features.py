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

from features.warehouse import quote_ident

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


NUMBERED = "SELECT dense_rank() OVER (ORDER BY metric) AS metric_number, * FROM ({history})"
HISTORY_TABLE = "CREATE OR REPLACE TEMP TABLE metric_history AS " + NUMBERED.format(history=HISTORY_SQL)

# Present (metric, feature) pairs: a feature that has no value on any row of the range (a
# baseline before 5 sessions of history, a limit of an unbounded metric) is not a column.
PRESENT = """
SELECT metric_number, metric, {counts} FROM metric_history
GROUP BY metric_number, metric ORDER BY metric
"""

# The pivot in DuckDB, one narrow slice per metric joined on the keys: the long table never
# reaches Python (a Polars unpivot/pivot of a 60-session chunk of 1,000 systems x 20 metrics
# held 16.8M rows of strings and peaked above 2 GB), and slices joined on keys are about 20x
# faster than one conditional aggregate per column.
WIDE = """
SELECT k.as_of, k.system_id, {columns}
FROM (SELECT DISTINCT as_of, system_id FROM metric_history) k
{joins}
"""
# Two metrics whose names reduce to the same one ("cpu.pct", "cpu_pct") share a slice: any value.
SLICE = ("LEFT JOIN (SELECT as_of, system_id, {stats} FROM metric_history "
         "WHERE metric_number = {number} GROUP BY as_of, system_id) m{number} "
         "USING (as_of, system_id)")


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
    con.execute(HISTORY_TABLE, [BOUNDED_METRIC, lookback_start, last, first, last])
    try:
        counts = ", ".join(f"count({stat}) AS {stat}" for stat in FEATURES_PER_METRIC)
        present = con.sql(PRESENT.format(counts=counts)).fetchall()  # noqa: S608 - constants
        columns, joins = [], []
        for number, metric, *counted in present:
            stats = [stat for stat, count in zip(FEATURES_PER_METRIC, counted, strict=True) if count]
            # Metric names reach SQL only as quoted identifiers (reduced to letters, digits and
            # underscores); a metric's rows are picked by its number.
            columns += [f"m{number}.{stat} AS {quote_ident(f'{metric}__{stat}')}" for stat in stats]
            joins.append(SLICE.format(
                number=int(number), stats=", ".join(f"any_value(CAST({stat} AS DOUBLE)) AS {stat}" for stat in stats)))
        if not columns:
            return pl.DataFrame(schema={"as_of": pl.Date, "system_id": pl.String})
        return con.sql(WIDE.format(columns=", ".join(columns), joins="\n".join(joins))).pl()  # noqa: S608
    finally:
        con.execute("DROP TABLE IF EXISTS metric_history")
