"""Case-library features: each system's incident history, its dependencies', its peers'.

Every query joins the ``feature_base`` table (one row per active system and as-of day, with
that day's cutoff) to incidents opened strictly before the cutoff. Nothing here reads an
incident's resolution text or anything else filed after the fact. An incident counts as open
at the cutoff when it has no ``resolved_at`` or one after the cutoff: on the night itself an
open incident has no resolution time yet, and later, in the history a model learns from, the
same incident has one after the cutoff; both count it, so the night's features are the
features the model learned from.
"""

from __future__ import annotations

import duckdb
import polars as pl

from features.warehouse import quote_ident

HISTORY = """
SELECT b.system_id, b.as_of,
    count(i.incident_id) FILTER (WHERE i.opened_at >= b.cutoff_utc - INTERVAL 1 DAY) AS inc_1d,
    count(i.incident_id) FILTER (WHERE i.opened_at >= b.cutoff_utc - INTERVAL 3 DAY) AS inc_3d,
    count(i.incident_id) FILTER (WHERE i.opened_at >= b.cutoff_utc - INTERVAL 7 DAY) AS inc_7d,
    count(i.incident_id) FILTER (WHERE i.opened_at >= b.cutoff_utc - INTERVAL 30 DAY) AS inc_30d,
    count(i.incident_id) FILTER (WHERE i.opened_at >= b.cutoff_utc - INTERVAL 90 DAY) AS inc_90d,
    count(i.incident_id) AS inc_365d,
    count(i.incident_id) FILTER (
        WHERE i.severity <= 2 AND i.opened_at >= b.cutoff_utc - INTERVAL 30 DAY) AS inc_sev12_30d,
    count(i.incident_id) FILTER (
        WHERE i.severity <= 2 AND i.opened_at >= b.cutoff_utc - INTERVAL 90 DAY) AS inc_sev12_90d,
    count(i.incident_id) FILTER (
        WHERE i.severity = 1 AND i.opened_at >= b.cutoff_utc - INTERVAL 365 DAY) AS inc_sev1_365d,
    count(DISTINCT i.category) FILTER (
        WHERE i.opened_at >= b.cutoff_utc - INTERVAL 90 DAY) AS inc_categories_90d,
    count(i.incident_id) FILTER (
        WHERE i.resolved_at IS NULL OR i.resolved_at > b.cutoff_utc) AS inc_open_at_cutoff
FROM feature_base b
LEFT JOIN incidents i
  ON i.system_id = b.system_id
 AND i.opened_at < b.cutoff_utc
 AND i.opened_at >= b.cutoff_utc - INTERVAL 365 DAY
GROUP BY b.system_id, b.as_of
"""

# A system's proneness to fail is mostly a lasting trait (on the LANL records the best single
# predictors are its counts over a year and its lifetime rate), so the whole history counts, with
# weights that fade: exp(-age / memory) for memories of 7, 30, 180 and 730 days. Only incidents
# opened before the cutoff count, and their weights depend on nothing filed later.
DECAYED = """
SELECT b.system_id, b.as_of,
    count(i.incident_id) FILTER (WHERE i.opened_at >= b.cutoff_utc - INTERVAL 730 DAY) AS inc_730d,
    {decayed}
FROM feature_base b
LEFT JOIN incidents i ON i.system_id = b.system_id AND i.opened_at < b.cutoff_utc
GROUP BY b.system_id, b.as_of
"""
MEMORIES = (7, 30, 180, 730)  # days
_AGE_DAYS = "date_diff('minute', i.opened_at, b.cutoff_utc) / 1440.0"


def _decayed_sql() -> str:
    columns = ", ".join(
        f"coalesce(sum(exp(-{_AGE_DAYS} / {m})), 0) AS inc_decayed_{m}d" for m in MEMORIES)
    return DECAYED.format(decayed=columns)


# The latest incident before each cutoff, and how many came before it in the system's life.
RECENCY = """
WITH numbered AS (
    SELECT system_id, opened_at, severity, category,
           row_number() OVER w AS lifetime,
           lag(opened_at, 1) OVER w AS previous_opened_at,
           lag(opened_at, 2) OVER w AS third_last_opened_at
    FROM incidents WINDOW w AS (PARTITION BY system_id ORDER BY opened_at, incident_id)
),
serious AS (SELECT system_id, opened_at FROM incidents WHERE severity <= 2),
gaps AS (
    -- mean time between the last five incidents, known at the time of the fifth
    SELECT system_id, opened_at,
           date_diff('minute', lag(opened_at, 4) OVER w, opened_at) / 4 / 1440.0 AS mtbf5_days
    FROM incidents WINDOW w AS (PARTITION BY system_id ORDER BY opened_at, incident_id)
),
library AS (SELECT min(opened_at) AS first_opened FROM incidents)
SELECT b.system_id, b.as_of,
    date_diff('minute', n.opened_at, b.cutoff_utc) / 1440.0 AS days_since_incident,
    date_diff('minute', n.previous_opened_at, b.cutoff_utc) / 1440.0 AS days_since_2nd_incident,
    date_diff('minute', n.third_last_opened_at, b.cutoff_utc) / 1440.0 AS days_since_3rd_incident,
    date_diff('minute', s.opened_at, b.cutoff_utc) / 1440.0 AS days_since_sev12,
    g.mtbf5_days,
    coalesce(n.lifetime, 0) AS inc_lifetime,
    coalesce(n.lifetime, 0) / greatest(30.0, date_diff('day',
        greatest(coalesce(b.active_from, DATE '1900-01-01'), CAST(l.first_opened AS DATE)),
        b.as_of)) AS inc_lifetime_rate,
    n.category AS last_category
FROM feature_base b
CROSS JOIN library l
ASOF LEFT JOIN numbered n ON n.system_id = b.system_id AND b.cutoff_utc > n.opened_at
ASOF LEFT JOIN serious s ON s.system_id = b.system_id AND b.cutoff_utc > s.opened_at
ASOF LEFT JOIN gaps g ON g.system_id = b.system_id AND b.cutoff_utc > g.opened_at
"""

RECURRENCE = """
SELECT r.system_id, r.as_of,
    count(i.incident_id) AS inc_same_category_90d
FROM recency r
LEFT JOIN incidents i
  ON i.system_id = r.system_id AND i.category = r.last_category
 AND i.opened_at < r.cutoff_utc AND i.opened_at >= r.cutoff_utc - INTERVAL 90 DAY
GROUP BY r.system_id, r.as_of
"""

UPSTREAM = """
WITH deps AS (SELECT system_id, unnest(depends_on) AS upstream FROM systems)
SELECT b.system_id, b.as_of,
    count(i.incident_id) FILTER (WHERE i.opened_at >= b.cutoff_utc - INTERVAL 1 DAY) AS up_inc_1d,
    count(i.incident_id) FILTER (WHERE i.opened_at >= b.cutoff_utc - INTERVAL 3 DAY) AS up_inc_3d,
    count(i.incident_id) FILTER (WHERE i.opened_at >= b.cutoff_utc - INTERVAL 7 DAY) AS up_inc_7d,
    count(i.incident_id) AS up_inc_30d,
    count(i.incident_id) FILTER (
        WHERE i.severity <= 2 AND i.opened_at >= b.cutoff_utc - INTERVAL 3 DAY) AS up_sev12_3d,
    min(date_diff('minute', i.opened_at, b.cutoff_utc)) / 1440.0 AS up_days_since_incident
FROM feature_base b
JOIN deps d ON d.system_id = b.system_id
LEFT JOIN incidents i
  ON i.system_id = d.upstream
 AND i.opened_at < b.cutoff_utc AND i.opened_at >= b.cutoff_utc - INTERVAL 30 DAY
GROUP BY b.system_id, b.as_of
"""

# Inventory attributes shared by several systems (category, owner, extra columns such as a
# datacenter or a cluster) define peer groups; a group's recent incidents say something about
# the shared hardware, software or team. Attribute names come from the data: they travel as
# values through UNPIVOT, never into SQL text.
PEER_ATTRIBUTES = """
CREATE OR REPLACE TEMP TABLE peer_attributes AS
WITH long AS (
    UNPIVOT (SELECT * EXCLUDE (name, tier, depends_on, active_from, active_to) FROM systems)
    ON COLUMNS(* EXCLUDE (system_id)) INTO NAME attribute VALUE val
),
usable AS (
    SELECT attribute FROM long GROUP BY attribute
    HAVING count(DISTINCT val) BETWEEN 2 AND 200
       AND count(DISTINCT val) <= greatest(2, 0.5 * count(DISTINCT system_id))
)
SELECT system_id, regexp_replace(attribute, '[^A-Za-z0-9_]', '_', 'g') AS attribute, val
FROM long WHERE attribute IN (SELECT attribute FROM usable) AND val IS NOT NULL
"""

PEERS = """
WITH members AS (
    SELECT b.as_of, a.attribute, a.val, count(*) AS systems
    FROM feature_base b JOIN peer_attributes a ON a.system_id = b.system_id
    GROUP BY ALL
),
group_incidents AS (
    SELECT d.as_of, a.attribute, a.val,
        count(*) FILTER (WHERE i.opened_at >= d.cutoff_utc - INTERVAL 1 DAY) AS inc_1d,
        count(*) FILTER (WHERE i.opened_at >= d.cutoff_utc - INTERVAL 7 DAY) AS inc_7d,
        count(*) AS inc_30d
    FROM base_sessions d
    JOIN incidents i ON i.opened_at < d.cutoff_utc AND i.opened_at >= d.cutoff_utc - INTERVAL 30 DAY
    JOIN peer_attributes a ON a.system_id = i.system_id
    GROUP BY ALL
)
SELECT b.system_id, b.as_of, a.attribute,
       coalesce(g.inc_1d, 0) / m.systems AS peer_inc_1d,
       coalesce(g.inc_7d, 0) / m.systems AS peer_inc_7d,
       coalesce(g.inc_30d, 0) / m.systems AS peer_inc_30d
FROM feature_base b
JOIN peer_attributes a ON a.system_id = b.system_id
JOIN members m ON m.as_of = b.as_of AND m.attribute = a.attribute AND m.val = a.val
LEFT JOIN group_incidents g ON g.as_of = b.as_of AND g.attribute = a.attribute AND g.val = a.val
"""


PEER_COUNTS = ("inc_1d", "inc_7d", "inc_30d")
# Wide peer features (``peer_<attribute>_inc_<n>d``), pivoted in DuckDB one slice per attribute
# joined on the keys, so the long table (rows x attributes x 3) never reaches Python.
PEERS_WIDE = """
SELECT k.system_id, k.as_of, {columns}
FROM (SELECT DISTINCT system_id, as_of FROM peers_long) k
{joins}
"""
PEER_SLICE = ("LEFT JOIN (SELECT system_id, as_of, {counts} FROM peers_long "
              "WHERE attribute = ? GROUP BY system_id, as_of) a{number} USING (system_id, as_of)")


def _peers_wide(con: duckdb.DuckDBPyConnection) -> pl.DataFrame | None:
    con.execute(f"CREATE OR REPLACE TEMP TABLE peers_long AS {PEERS}")
    try:
        attributes = [a for (a,) in con.execute(
            "SELECT DISTINCT attribute FROM peers_long ORDER BY attribute").fetchall()]
        if not attributes:
            return None
        names = {(a, n): f"peer_{a}_{n}" for a in attributes for n in PEER_COUNTS}
        columns = ", ".join(f"a{i}.peer_{n} AS {quote_ident(names[a, n])}"
                            for a, n in sorted(names, key=names.get)
                            for i in [attributes.index(a)])
        joins = "\n".join(PEER_SLICE.format(
            number=i, counts=", ".join(f"any_value(peer_{n}) AS peer_{n}" for n in PEER_COUNTS))
            for i in range(len(attributes)))
        # Attribute names come from the data: they reach SQL as parameters and quoted identifiers.
        return con.sql(PEERS_WIDE.format(columns=columns, joins=joins),  # noqa: S608
                       params=attributes).pl()
    finally:
        con.execute("DROP TABLE IF EXISTS peers_long")


def case_features(con: duckdb.DuckDBPyConnection) -> list[pl.DataFrame]:
    """Frames keyed by (system_id, as_of), to be joined onto ``feature_base``."""
    history = con.sql(HISTORY).pl()
    con.execute(f"CREATE OR REPLACE TEMP TABLE recency AS SELECT r.*, b.cutoff_utc FROM ({RECENCY}) r "  # noqa: S608
                "JOIN feature_base b USING (system_id, as_of)")
    recency = con.sql(
        "SELECT system_id, as_of, days_since_incident, days_since_2nd_incident, "
        "days_since_3rd_incident, days_since_sev12, mtbf5_days, inc_lifetime, inc_lifetime_rate "
        "FROM recency"
    ).pl()
    recurrence = con.sql(RECURRENCE).pl()
    decayed = con.sql(_decayed_sql()).pl()
    upstream = con.sql(UPSTREAM).pl()
    con.execute(PEER_ATTRIBUTES)
    frames = [history, decayed, recency, recurrence, upstream]
    peers = _peers_wide(con)
    if peers is not None:
        frames.append(peers)
    return frames
