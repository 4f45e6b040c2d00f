"""Per (system, metric, as-of day) statistics of the samples: one pass over a day's metrics.

Everything the metric features need from the raw samples is computed here in a single
``GROUP BY`` per chunk of sessions: level, spread, tails, the last value, the post-market
hours, how much of the window had samples and the longest stretch without one. The trends
and baselines in ``features.metric_features`` then work on these few rows per day instead of
scanning the samples again.

Gaps are measured on a one-minute grid: ``bitstring_agg`` marks the minutes of the window that
hold a sample (one bit each, in the same pass), and the longest run of zeros is the longest
gap. A series sampled every 15 minutes has a baseline gap of 14 minutes; an agent that stops
reporting for an hour shows ~75.
"""

from __future__ import annotations

import duckdb
import polars as pl

from features.lake import Lake, LakeTable

METRIC_DAY_STATS_TABLE = LakeTable("metric_day_stats", (
    ("as_of", "DATE"), ("system_id", "VARCHAR"), ("metric", "VARCHAR"), ("samples", "BIGINT"),
    ("null_share", "DOUBLE"), ("mean", "DOUBLE"), ("std", "DOUBLE"), ("min", "DOUBLE"),
    ("max", "DOUBLE"), ("p95", "DOUBLE"), ("last", "DOUBLE"), ("after_close_mean", "DOUBLE"),
    ("after_close_max", "DOUBLE"),
    ("coverage", "DOUBLE"),         # share of the window's minutes that hold a sample
    ("longest_gap_min", "DOUBLE"),  # longest run of minutes without a sample
))

# One pass over the chunk's samples. `window_minutes` sizes the bit string; each session's own
# window length cuts it before the gap is measured.
_STATS = """
INSERT INTO day_stats_rows
WITH per_series AS (
    SELECT m.as_of, m.system_id, m.metric,
           count(*) AS samples,
           count(m.value) AS present,
           avg(m.value) AS mean,
           stddev_samp(m.value) AS std,
           min(m.value) AS min,
           max(m.value) AS max,
           quantile_cont(m.value, 0.95) AS p95,
           arg_max(m.value, m.ts) FILTER (WHERE m.value IS NOT NULL) AS last,
           avg(m.value) FILTER (WHERE m.ts >= s.after_close_utc) AS after_close_mean,
           max(m.value) FILTER (WHERE m.ts >= s.after_close_utc) AS after_close_max,
           bitstring_agg(datediff('minute', s.previous_cutoff_utc, m.ts)::INTEGER, 0, ?) AS minutes,
           datediff('minute', s.previous_cutoff_utc, s.cutoff_utc) AS window_minutes
    FROM metrics m JOIN stat_sessions s ON s.as_of = m.as_of
    WHERE m.as_of BETWEEN ? AND ? {slice}
    GROUP BY m.as_of, m.system_id, m.metric, s.after_close_utc, s.previous_cutoff_utc, s.cutoff_utc
)
SELECT as_of, system_id, metric, samples,
       1 - present / samples AS null_share,
       mean, std, min, max, p95, last, after_close_mean, after_close_max,
       bit_count(minutes) / window_minutes AS coverage,
       list_max(list_transform(
           string_split_regex(substring(minutes::VARCHAR, 1, window_minutes), '1+'),
           lambda run: length(run))) AS longest_gap_min
FROM per_series
"""


# One pass, or one pass per group of metrics when a session is too big for exact percentiles
# in memory (a metric filter is nearly free; hashing every row's system id is not).
STATS_ONE_PASS = _STATS.format(slice="")
STATS_SLICE = _STATS.format(slice="AND list_contains(?, m.metric)")


def build_metric_day_stats(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    sessions: pl.DataFrame,
    max_rows_per_chunk: int = 30_000_000,
    max_series_per_chunk: int = 150_000,
) -> int:
    """Replace the statistics of the sessions in ``sessions`` (from ``session_table``).

    Exact percentiles hold every value of a group in memory and the minute maps a couple of
    kilobytes per series, so sessions are taken in chunks of at most ``max_rows_per_chunk``
    samples (a firm-scale day is about 29M) and ``max_series_per_chunk`` series-days; a session
    larger than that (a weekend window holds three days) is split by metric into as many
    passes as it needs. Each chunk's days are replaced in the lake when the chunk is done.
    Returns the number of (system, metric, day) rows written.
    """
    if sessions.is_empty():
        return 0
    counts = dict(con.execute(
        "SELECT as_of, count(*) FROM metrics WHERE as_of BETWEEN ? AND ? GROUP BY as_of",
        [sessions["as_of"][0], sessions["as_of"][-1]]).fetchall())
    days = sessions["as_of"].to_list()
    written, offset, sessions_per_chunk = 0, 0, 1
    while offset < len(days):
        size = 1
        while (offset + size < len(days) and size < sessions_per_chunk
               and sum(counts.get(d, 0) for d in days[offset:offset + size + 1]) <= max_rows_per_chunk):
            size += 1
        chunk = sessions.slice(offset, size)
        rows = sum(counts.get(d, 0) for d in days[offset:offset + size])
        series = _write_chunk(con, lake, chunk, passes=max(1, -(-rows // max_rows_per_chunk)))
        written += series
        offset += size
        per_session = max(1, series // size)
        sessions_per_chunk = max(1, min(60, max_series_per_chunk // per_session))
    return written


def _write_chunk(con: duckdb.DuckDBPyConnection, lake: Lake, chunk: pl.DataFrame,
                 passes: int) -> int:
    first, last = chunk["as_of"][0], chunk["as_of"][-1]
    widest = int((chunk["cutoff_utc"] - chunk["previous_cutoff_utc"]).dt.total_minutes().max())
    con.execute(f"CREATE OR REPLACE TEMP TABLE day_stats_rows AS {METRIC_DAY_STATS_TABLE.empty_sql()}")
    con.register("stat_sessions", chunk)
    try:
        if passes == 1:
            con.execute(STATS_ONE_PASS, [widest, first, last])
        else:
            metrics = [m for (m,) in con.execute(
                "SELECT DISTINCT metric FROM metrics WHERE as_of BETWEEN ? AND ? ORDER BY 1",
                [first, last]).fetchall()]
            for part in range(passes):
                group = metrics[part::passes]
                if group:
                    con.execute(STATS_SLICE, [widest, first, last, group])
        return lake.write_partitions(con, METRIC_DAY_STATS_TABLE, "SELECT * FROM day_stats_rows",
                                     days=chunk["as_of"].to_list())
    finally:
        con.unregister("stat_sessions")
        con.execute("DROP TABLE IF EXISTS day_stats_rows")
