"""Similar past incidents: what happened before, when the same signs showed.

For each system scored on an as-of day, the case library's incidents of the last two years
(opened before the cutoff; their text as stored) are ranked by what drives tonight's risk:

- **mechanism**: each reason that raises the system's risk points at a failure mechanism
  (``models.reasons``: a filling disk, memory pressure, an error burst, a change in the
  window ...). The incidents' titles, root causes, remediations and categories are indexed with
  scikit-learn's TF-IDF; each mechanism's words are a query, weighted by the reason's share of
  the raised risk.
- **signal**: how the incident's system looked on the as-of day before it failed, on the
  features behind tonight's reasons (each value placed in tonight's estate distribution: the
  same extreme means the same signal).
- **place**: the same system, a system it depends on, one that depends on it, or a peer (the
  same category of system).

``similarity = 0.45 * mechanism + 0.25 * signal + 0.30 * place`` (each in [0, 1]); ties go to
the newer incident. A category already shown costs a later pick 0.15, so the three shown are
the leading kinds of past failure rather than three copies of one. Each match is explained in a
few words: "same system, disk filling, 2025-08-02".
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
from models import reasons

LOOKBACK_DAYS = 730
WEIGHTS = {"mechanism": 0.45, "signal": 0.25, "place": 0.30}
PLACES = (("same system", 1.0), ("a system it depends on", 0.7), ("a system that depends on it", 0.5),
          ("a peer system", 0.3))
# A mechanism is named in a match's explanation when the incident's text answers its query this well.
NAMED_MATCH = 0.15
SIGNAL_FEATURES = 5
ROWS_PER_BLOCK = 256  # rows x candidates are scored a block of rows at a time (memory)
SHORTLIST, REPEAT_PENALTY = 30, 0.15

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
    factors: list[list[dict]],
    k: int = 3,
) -> list[list[dict]]:
    """For each row of ``today`` (one as-of day), its ``k`` most similar past incidents.

    ``factors`` are the rows' reasons (``models.explain.explain_day``), in the same order.
    """
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
    info = today.select("system_id").join(systems, on="system_id", how="left", maintain_order="left")
    names = list(reasons.MECHANISMS)
    text = _text_match(candidates, [reasons.MECHANISMS[n] for n in names])
    weights = _mechanism_weights(factors, names)
    signal_features = _signal_features(factors, today.columns)
    wanted = sorted({f for fs in signal_features for f, _ in fs})
    profiles = _profiles(con, candidates, wanted)
    estates = {f: np.sort(today[f].cast(pl.Float64).drop_nulls().drop_nans().to_numpy()) for f in wanted}

    tz = ZoneInfo(calendar.timezone)
    records = candidates.to_dicts()
    recency = candidates["opened_at"].rank("ordinal", descending=True).to_numpy().astype(np.int64)
    categories = candidates["category"].fill_null("").to_list()
    out: list[list[dict]] = []
    for start in range(0, today.height, ROWS_PER_BLOCK):
        block = range(start, min(start + ROWS_PER_BLOCK, today.height))
        mechanism = weights[block.start:block.stop] @ text
        place, place_kind = _place(info.slice(block.start, len(block)), systems, candidates)
        signal = np.vstack([_signal(today, row, signal_features[row], profiles, estates)
                            for row in block])
        score = (WEIGHTS["mechanism"] * mechanism + WEIGHTS["signal"] * signal
                 + WEIGHTS["place"] * place)
        for offset, row in enumerate(block):
            picked = []
            for j in _diverse(score[offset], recency, categories, k):
                c = records[j]
                strongest = int(np.argmax(weights[row] * text[:, j]))
                named = names[strongest] if text[strongest, j] >= NAMED_MATCH and \
                    weights[row, strongest] > 0 else None
                opened = c["opened_at"].replace(tzinfo=dt.UTC).astimezone(tz)
                why = [_place_words(int(place_kind[offset, j]), c["system_id"]), named,
                       opened.strftime("%Y-%m-%d")]
                picked.append({
                    "incident_id": c["incident_id"],
                    "system_id": c["system_id"],
                    "opened_at": opened.strftime("%Y-%m-%d %H:%M"),
                    "severity": c["severity"],
                    "category": c["category"],
                    "similarity": round(float(score[offset, j]), 3),
                    "match": ", ".join(w for w in why if w),
                    "title": c["title"],
                    "root_cause": c["root_cause"],
                    "remediation": c["remediation"],
                })
            out.append(picked)
    return out


def _diverse(score: np.ndarray, recency: np.ndarray, categories: list[str], k: int) -> list[int]:
    """The ``k`` best candidates, each category repeated only when it still wins after a
    penalty: three kinds of past failure that match tonight tell a reviewer more than three
    copies of one."""
    shortlist = list(np.lexsort((recency, -score))[:SHORTLIST])
    picked: list[int] = []
    shown: dict[str, int] = {}
    while shortlist and len(picked) < k:
        best = max(shortlist, key=lambda j: (score[j] - REPEAT_PENALTY * shown.get(categories[j], 0),
                                             -recency[j]))
        picked.append(best)
        shortlist.remove(best)
        shown[categories[best]] = shown.get(categories[best], 0) + 1
    return picked


def _place(info: pl.DataFrame, systems: pl.DataFrame, candidates: pl.DataFrame,
           ) -> tuple[np.ndarray, np.ndarray]:
    """How close each candidate's system is to each row's system: (score, index into PLACES,
    or -1 for elsewhere in the estate)."""
    depends: dict[str, list[str]] = {}
    dependents: dict[str, list[str]] = {}
    for record in systems.iter_rows(named=True):
        depends[record["system_id"]] = list(record["depends_on"] or [])
        for upstream in depends[record["system_id"]]:
            dependents.setdefault(upstream, []).append(record["system_id"])
    their_ids = candidates["system_id"].to_numpy()
    their_categories = candidates["system_category"].to_numpy()
    kind = np.full((info.height, candidates.height), -1, dtype=np.int8)
    for row, (system, category) in enumerate(zip(info["system_id"].to_list(),
                                                 info["category"].to_list(), strict=True)):
        same = their_ids == system
        peer = (their_categories == category) if category is not None else np.zeros_like(same)
        kind[row] = np.select(
            [same, np.isin(their_ids, depends.get(system, [])),
             np.isin(their_ids, dependents.get(system, [])), peer], [0, 1, 2, 3], -1)
    values = np.array([value for _, value in PLACES] + [0.0])
    return values[kind], kind


def _place_words(kind: int, other: str) -> str:
    if kind < 0:
        return f"on {other}"
    name = PLACES[kind][0]
    return name if kind == 0 else f"{name} ({other})"


def _text_match(candidates: pl.DataFrame, mechanisms: list[reasons.Mechanism]) -> np.ndarray:
    """(mechanisms, candidates): cosine of each mechanism's words with each incident's text."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    documents = candidates.select(pl.concat_str(
        [pl.col(c).fill_null("") for c in ("category", "title", "root_cause", "remediation")],
        separator=" ")).to_series().to_list()
    vectorizer = TfidfVectorizer(sublinear_tf=True, token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z0-9]+\b",
                                 stop_words="english")
    try:
        library = vectorizer.fit_transform(documents)
    except ValueError:  # no word at all in the library's text
        return np.zeros((len(mechanisms), candidates.height))
    queries = vectorizer.transform([m.words for m in mechanisms])
    return (queries @ library.T).toarray()


def _mechanism_weights(factors: list[list[dict]], names: list[str]) -> np.ndarray:
    """(rows, mechanisms): each mechanism's share of the risk the row's reasons raise."""
    index = {n: i for i, n in enumerate(names)}
    weights = np.zeros((len(factors), len(names)))
    for row, row_factors in enumerate(factors):
        for factor in row_factors:
            mechanism = factor.get("mechanism")
            if mechanism in index and factor["contribution"] > 0:
                weights[row, index[mechanism]] += factor["contribution"]
        total = weights[row].sum()
        if total > 0:
            weights[row] /= total
    return weights


def _signal_features(factors: list[list[dict]], columns: list[str]) -> list[list[tuple[str, float]]]:
    """Each row's system-specific features that raise its risk, with their contributions."""
    present = set(columns)
    out = []
    for row_factors in factors:
        raising = [(f["feature"], f["contribution"]) for f in row_factors
                   if f.get("scope", reasons.SYSTEM) == reasons.SYSTEM and f["contribution"] > 0
                   and f["feature"] in present]
        out.append(raising[:SIGNAL_FEATURES])
    return out


def _profiles(con: duckdb.DuckDBPyConnection, candidates: pl.DataFrame,
              features: list[str]) -> pl.DataFrame:
    """Each candidate's system's features on the as-of day before its incident."""
    keys = candidates.select("incident_id", "system_id", pl.col("profile_day").alias("as_of"))
    if not features:
        return keys.select("incident_id")
    con.register("similar_keys", keys)
    try:
        columns = ", ".join(f"f.{quote_ident(c)}" for c in features)
        rows = con.sql(
            f"SELECT k.incident_id, {columns} FROM similar_keys k "  # noqa: S608
            f"LEFT JOIN {TABLE} f ON f.system_id = k.system_id AND f.as_of = k.as_of"
        ).pl()
    finally:
        con.unregister("similar_keys")
    return candidates.select("incident_id").join(rows, on="incident_id", how="left",
                                                 maintain_order="left")


def _signal(today: pl.DataFrame, row: int, features: list[tuple[str, float]],
            profiles: pl.DataFrame, estates: dict[str, np.ndarray]) -> np.ndarray:
    """How much each candidate's system showed the row's signal before it failed, in [0, 1].

    A value is placed in tonight's estate distribution of the feature (its percentile); the
    candidate agrees as much as its percentile is close to the row's.
    """
    agreement = np.zeros(profiles.height)
    total = sum(c for _, c in features)
    for feature, contribution in features:
        estate = estates[feature]  # tonight's values of the feature, sorted
        mine = today[feature][row]
        if mine is None or not len(estate) or np.isnan(mine):
            continue
        theirs = profiles[feature].cast(pl.Float64).to_numpy()
        known = ~np.isnan(theirs)
        mine_pct = np.searchsorted(estate, mine, side="right") / len(estate)
        their_pct = np.searchsorted(estate, np.where(known, theirs, 0.0), side="right") / len(estate)
        close = np.clip(1.0 - 2.0 * np.abs(their_pct - mine_pct), 0.0, 1.0)
        agreement += np.where(known, close, 0.0) * contribution / total
    return agreement
