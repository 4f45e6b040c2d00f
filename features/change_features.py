"""Change features: what CAB will review in the label window, and the change history.

A change counts only once it is known: ``created_at`` before the cutoff. Changes scheduled
inside the label window ``(cutoff, target cutoff]`` are known features (they are what the
board reviews). A change's ``status`` tells its outcome, so it is used only for changes that
ended more than a day before the cutoff.
"""

from __future__ import annotations

import duckdb
import polars as pl

CHANGES = """
WITH known AS (
    SELECT c.*, coalesce(c.scheduled_end, c.scheduled_start + INTERVAL 1 HOUR) AS ends
    FROM changes c
)
SELECT b.system_id, b.as_of,
    count(c.change_id) FILTER (WHERE c.scheduled_start > b.cutoff_utc) AS chg_window,
    count(c.change_id) FILTER (
        WHERE c.scheduled_start > b.cutoff_utc AND c.risk_level = 'high') AS chg_window_high,
    count(c.change_id) FILTER (
        WHERE c.scheduled_start > b.cutoff_utc AND c.risk_level = 'medium') AS chg_window_medium,
    count(c.change_id) FILTER (
        WHERE c.scheduled_start > b.cutoff_utc AND c.risk_level = 'low') AS chg_window_low,
    count(DISTINCT c.change_type) FILTER (
        WHERE c.scheduled_start > b.cutoff_utc) AS chg_window_types,
    coalesce(sum(date_diff('minute', c.scheduled_start, c.ends)) FILTER (
        WHERE c.scheduled_start > b.cutoff_utc), 0) / 60.0 AS chg_window_hours,
    count(c.change_id) FILTER (
        WHERE c.scheduled_start > b.cutoff_utc
          AND c.created_at >= b.cutoff_utc - INTERVAL 2 DAY) AS chg_window_short_notice,
    count(c.change_id) FILTER (
        WHERE c.scheduled_start <= b.cutoff_utc
          AND c.scheduled_start > b.cutoff_utc - INTERVAL 7 DAY) AS chg_recent_7d,
    count(c.change_id) FILTER (
        WHERE c.ends < b.cutoff_utc - INTERVAL 1 DAY
          AND c.status IN ('failed', 'rolled_back')) AS chg_failed_30d
FROM feature_base b
LEFT JOIN known c
  ON c.system_id = b.system_id
 AND c.created_at < b.cutoff_utc
 AND c.scheduled_start > b.cutoff_utc - INTERVAL 30 DAY
 AND c.scheduled_start <= b.target_cutoff_utc
GROUP BY b.system_id, b.as_of
"""

# How often this system's past changes were followed by an incident within a day. Only changes
# that started more than a day before the cutoff count, so their follow-up day is in the past.
FOLLOWED = """
WITH outcome AS (
    SELECT c.change_id, c.system_id, c.scheduled_start, c.created_at,
           EXISTS (SELECT 1 FROM incidents i
                   WHERE i.system_id = c.system_id AND i.opened_at >= c.scheduled_start
                     AND i.opened_at < c.scheduled_start + INTERVAL 1 DAY) AS followed
    FROM changes c
)
SELECT b.system_id, b.as_of,
    count(o.change_id) AS chg_history_365d,
    avg(CASE WHEN o.followed THEN 1.0 ELSE 0.0 END) AS chg_followed_by_incident_share
FROM feature_base b
LEFT JOIN outcome o
  ON o.system_id = b.system_id AND o.created_at < b.cutoff_utc
 AND o.scheduled_start < b.cutoff_utc - INTERVAL 1 DAY
 AND o.scheduled_start >= b.cutoff_utc - INTERVAL 365 DAY
GROUP BY b.system_id, b.as_of
"""

UPSTREAM_CHANGES = """
WITH deps AS (SELECT system_id, unnest(depends_on) AS upstream FROM systems)
SELECT b.system_id, b.as_of,
    count(c.change_id) AS up_chg_window,
    count(c.change_id) FILTER (WHERE c.risk_level = 'high') AS up_chg_window_high
FROM feature_base b
JOIN deps d ON d.system_id = b.system_id
LEFT JOIN changes c
  ON c.system_id = d.upstream AND c.created_at < b.cutoff_utc
 AND c.scheduled_start > b.cutoff_utc AND c.scheduled_start <= b.target_cutoff_utc
GROUP BY b.system_id, b.as_of
"""


def change_features(con: duckdb.DuckDBPyConnection) -> list[pl.DataFrame]:
    """Frames keyed by (system_id, as_of), to be joined onto ``feature_base``."""
    return [con.sql(CHANGES).pl(), con.sql(FOLLOWED).pl(), con.sql(UPSTREAM_CHANGES).pl()]
