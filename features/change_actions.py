"""Change actions: what a change does, and when, against the signals it acts on.

The ``chg_*`` features describe changes by risk level, hours and notice. A change's effect
depends on what it does: a restart resets a leaking process, a clean-up purges a filling disk,
maintenance (index rebuilds, hardware repairs) ends a slow degradation, while upgrades,
releases and configuration changes bring new failure modes. The kind of a change is read from
its ``change_type`` and the words of its ``description`` (a firm's change types are free
text): a change can be of several kinds ("Monthly OS patching with reboot" is a patch and a
restart). Features of this family are named ``act_*``:

    act_<kind>_window          changes of that kind scheduled in the label window
    act_relief_before_open     restarts, clean-ups, maintenance and patches in the window that
                               end before the target day's open (the risk is gone by trading)
    act_risky_hours_to_open    hours from the end of the latest-ending upgrade, configuration
                               change or patch in the window to the target day's open (negative:
                               it runs into the session; small: little time to find a fault)
    act_days_to_restart        days from the cutoff to the next known restart-like change
                               (restart, patch, upgrade: anything that restarts the process)
    act_days_to_cleanup        days from the cutoff to the next known clean-up
    act_days_since_restart     days since the latest restart-like change started
    act_days_since_cleanup     days since the latest clean-up started
    act_days_since_upgrade     days since the latest upgrade or release started
    act_disk_days_unrelieved   days until a disk-like metric reaches 100% at its trend, unless a
                               clean-up is scheduled before then (365: relieved in time)
    act_mem_days_unrelieved    the same for memory-like metrics and restart-like changes

Point in time: a change counts once it is known (``created_at`` before the cutoff); its type
and description are known from then on. Its ``status`` (an outcome, filled in later) is not
read here. Upcoming changes are looked for up to ``HORIZON_DAYS`` ahead, past ones
``LOOKBACK_DAYS`` back.
"""

from __future__ import annotations

import re

import duckdb
import polars as pl

FAMILY = "change actions"
PREFIX = "act_"
HORIZON_DAYS = 30
LOOKBACK_DAYS = 90
RELIEVED_DAYS = 365.0  # days_to_limit's own "never"

# Words (after lower-casing and turning punctuation into spaces) that say what a change does.
KINDS: dict[str, str] = {
    "restart": r" (restart|reboot|bounce|recycl|power cycle|failover|switchover)",
    "cleanup": r" (clean|purg|archiv|housekeep|log rotat|rotat|truncat|compact|vacuum|prun"
               r"|free up|retention|disk space)",
    "maintenance": r" (maint|index|reindex|rebuild|statistic|defrag|tun(e|ing) |repair|replac"
                   r"|hardware|optimi)",
    "patch": r" (patch|hotfix|firmware|security update|os update)",
    "upgrade": r" (releas|upgrad|deploy|rollout|roll out|migrat|install|version|new build)",
    "config": r" (config|parameter|setting|acl|firewall|network|dns|rout(e|ing) )",
}

CHANGE_KINDS = """
CREATE OR REPLACE TEMP TABLE change_kinds AS
WITH worded AS (
    SELECT change_id, system_id, scheduled_start, created_at,
           coalesce(scheduled_end, scheduled_start + INTERVAL 1 HOUR) AS ends,
           ' ' || lower(regexp_replace(coalesce(change_type, '') || ' ' || coalesce(description, ''),
                                       '[^A-Za-z0-9]+', ' ', 'g')) || ' ' AS words
    FROM changes
),
kinds AS (
    SELECT *, regexp_matches(words, $restart) AS is_restart,
              regexp_matches(words, $cleanup) AS is_cleanup,
              regexp_matches(words, $maintenance) AS is_maintenance,
              regexp_matches(words, $patch) AS is_patch,
              regexp_matches(words, $upgrade) AS is_upgrade,
              regexp_matches(words, $config) AS is_config
    FROM worded
)
SELECT *, is_restart OR is_patch OR is_upgrade AS restarts_process,
          is_restart OR is_cleanup OR is_maintenance OR is_patch AS relieves,
          is_upgrade OR is_config OR is_patch AS brings_new
FROM kinds
"""

IN_WINDOW = "k.scheduled_start > b.cutoff_utc AND k.scheduled_start <= b.target_cutoff_utc"
AHEAD, PAST = "k.scheduled_start > b.cutoff_utc", "k.scheduled_start <= b.cutoff_utc"

ACTIONS = """
SELECT b.system_id, b.as_of,
    {window_counts},
    count(k.change_id) FILTER (WHERE {in_window} AND k.relieves AND k.ends <= b.target_open_utc)
        AS act_relief_before_open,
    min(date_diff('minute', k.ends, b.target_open_utc)) FILTER (WHERE {in_window} AND k.brings_new)
        / 60.0 AS act_risky_hours_to_open,
    min(date_diff('minute', b.cutoff_utc, k.scheduled_start)) FILTER (
        WHERE {ahead} AND k.restarts_process) / 1440.0 AS act_days_to_restart,
    min(date_diff('minute', b.cutoff_utc, k.scheduled_start)) FILTER (
        WHERE {ahead} AND k.is_cleanup) / 1440.0 AS act_days_to_cleanup,
    min(date_diff('minute', k.scheduled_start, b.cutoff_utc)) FILTER (
        WHERE {past} AND k.restarts_process) / 1440.0 AS act_days_since_restart,
    min(date_diff('minute', k.scheduled_start, b.cutoff_utc)) FILTER (
        WHERE {past} AND k.is_cleanup) / 1440.0 AS act_days_since_cleanup,
    min(date_diff('minute', k.scheduled_start, b.cutoff_utc)) FILTER (
        WHERE {past} AND k.is_upgrade) / 1440.0 AS act_days_since_upgrade
FROM feature_base b
LEFT JOIN change_kinds k
  ON k.system_id = b.system_id
 AND k.created_at < b.cutoff_utc
 AND k.scheduled_start > b.cutoff_utc - to_days(CAST(? AS INTEGER))
 AND k.scheduled_start <= b.cutoff_utc + to_days(CAST(? AS INTEGER))
GROUP BY b.system_id, b.as_of
"""
ACTIONS_SQL = ACTIONS.format(
    window_counts=",\n    ".join(
        f"count(k.change_id) FILTER (WHERE {IN_WINDOW} AND k.is_{kind}) AS act_{kind}_window"
        for kind in KINDS),
    in_window=IN_WINDOW, ahead=AHEAD, past=PAST)

# Metric names are open: what a metric measures is read from its name.
DISK_METRIC = r"(disk|filesystem|volume|storage|inode|_fs)"
MEMORY_METRIC = r"(mem|heap|swap|fd_|oom)"


def change_actions(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """``act_*`` features of the changes, keyed by (system_id, as_of) of ``feature_base``."""
    con.execute(CHANGE_KINDS, dict(KINDS))
    try:
        return con.sql(ACTIONS_SQL, params=[LOOKBACK_DAYS, HORIZON_DAYS]).pl()
    finally:
        con.execute("DROP TABLE IF EXISTS change_kinds")


def with_signal_interactions(frame: pl.DataFrame) -> pl.DataFrame:
    """Add ``act_disk_days_unrelieved`` and ``act_mem_days_unrelieved`` to a frame holding the
    metric features and the ``act_*`` horizons: a filling disk (or a leak) is a risk until the
    clean-up (or restart) scheduled before it would fill."""
    pairs = (("act_disk_days_unrelieved", DISK_METRIC, "act_days_to_cleanup"),
             ("act_mem_days_unrelieved", MEMORY_METRIC, "act_days_to_restart"))
    added = []
    for name, pattern, relief in pairs:
        limits = [c for c in frame.columns if c.endswith("__days_to_limit")
                  and re.search(pattern, c.rsplit("__", 1)[0], re.IGNORECASE)]
        if not limits or relief not in frame.columns:
            continue
        soonest = pl.min_horizontal(limits)
        added.append(pl.when(pl.col(relief) <= soonest).then(pl.lit(RELIEVED_DAYS))
                     .otherwise(soonest).alias(name))
    return frame.with_columns(added) if added else frame


def feature_names(columns: list[str]) -> list[str]:
    """The columns of this family."""
    return [c for c in columns if c.startswith(PREFIX)]
