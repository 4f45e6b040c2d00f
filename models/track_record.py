"""The forecast's track record: every score against what happened in its window.

``forecast_outcomes`` (declared here, and only here) holds one row per published score: the
risk, tier and rank as they were published, and, once the label window has closed, whether an
incident (severity <= ``max_severity``) opened in it, which ones, and what became of the
changes the CAB was told to approve, review or defer. A window counts as closed when the
warehouse holds data through its target day.

``summarize`` turns outcomes into the figures an operations manager reports: incidents foreseen
(their system was on the watch list, the top ``watch_list`` systems, the night before) and
missed, by category and severity; the precision of the watch list; the calibration of the
risks; the outcome of the changes by recommended action; and the model's headline metrics
(``models.evaluate``, the same as ``failcast backtest`` prints). The same code reads the
published scores of production, or a backtest's scores (``scores_from_backtest``), which a
new site can read before its first night; the page says which it is.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import polars as pl

from features.errors import DataError
from features.trading_time import TradingCalendar
from features.warehouse import table_exists, transaction
from models.decisions import TIERS, recommend, tier_of
from models.evaluate import score_metrics

OUTCOMES = "forecast_outcomes"
OUTCOMES_TABLE = f"""
CREATE TABLE IF NOT EXISTS {OUTCOMES} (
    as_of DATE NOT NULL,
    target_date DATE NOT NULL,
    system_id VARCHAR NOT NULL,
    risk DOUBLE NOT NULL,
    tier VARCHAR NOT NULL,
    rank INTEGER NOT NULL,
    model_version VARCHAR,
    outcome_known BOOLEAN NOT NULL,   -- the window had closed when the record was built
    incident BOOLEAN,                 -- an incident opened in the window (NULL while unknown)
    incidents INTEGER,
    worst_severity INTEGER,
    incident_ids VARCHAR[],
    categories VARCHAR[],
    changes JSON,                     -- [{{change_id, action, risk_level, status, followed_by_incident}}]
    recorded_at TIMESTAMP NOT NULL
)
"""
# Reliability bins of published risk (the tier thresholds fall on these edges by default).
BINS = (0.0, 0.01, 0.02, 0.05, 0.10, 0.15, 0.25, 0.35, 0.50, 1.0)
ACTION_ORDER = ("approve", "extra review", "defer")

SCORE_OUTCOMES = """
WITH joined AS (
    SELECT s.as_of, s.target_date, s.system_id, s.risk, s.tier, s.rank, s.model_version,
           count(i.incident_id) AS found,
           min(i.severity) AS worst_severity,
           list(i.incident_id ORDER BY i.opened_at) FILTER (WHERE i.incident_id IS NOT NULL)
               AS incident_ids,
           list(DISTINCT i.category) FILTER (WHERE i.category IS NOT NULL) AS categories
    FROM outcome_scores s
    JOIN outcome_sessions k ON k.as_of = s.as_of
    LEFT JOIN incidents i
      ON i.system_id = s.system_id AND i.severity <= ?
     AND i.opened_at > k.cutoff_utc AND i.opened_at <= k.target_cutoff_utc
    GROUP BY ALL
)
SELECT as_of, target_date, system_id, risk, tier, rank, model_version,
       target_date <= ? AS outcome_known,
       CASE WHEN target_date <= ? THEN found > 0 END AS incident,
       CASE WHEN target_date <= ? THEN found END AS incidents,
       CASE WHEN target_date <= ? THEN worst_severity END AS worst_severity,
       CASE WHEN target_date <= ? THEN coalesce(incident_ids, []) END AS incident_ids,
       CASE WHEN target_date <= ? THEN coalesce(categories, []) END AS categories
FROM joined
ORDER BY as_of, rank
"""

# Every incident of a closed window of a scored night, with its system's score that night
# (NULL: the system was not scored, e.g. not in service by the inventory).
WINDOW_INCIDENTS = """
SELECT i.incident_id, i.system_id, k.as_of, k.target_date, i.severity,
       coalesce(i.category, '(none)') AS category, s.rank, s.risk
FROM outcome_sessions k
JOIN incidents i ON i.opened_at > k.cutoff_utc AND i.opened_at <= k.target_cutoff_utc
LEFT JOIN outcome_scores s ON s.as_of = k.as_of AND s.system_id = i.system_id
WHERE i.severity <= ? AND k.target_date <= ?
  AND k.as_of IN (SELECT DISTINCT as_of FROM outcome_scores)
ORDER BY i.opened_at, i.incident_id
"""

# Changes in each scored night's window known before its cutoff (what a backtest's CAB
# would have been shown; published nights carry their own list).
KNOWN_CHANGES = """
SELECT k.as_of, c.change_id, c.system_id, c.risk_level
FROM outcome_sessions k
JOIN changes c ON c.created_at < k.cutoff_utc AND c.scheduled_start > k.cutoff_utc
              AND c.scheduled_start <= k.target_cutoff_utc
ORDER BY k.as_of, c.scheduled_start, c.change_id
"""

CHANGE_OUTCOMES = """
SELECT r.as_of, r.system_id, r.change_id, r.action, c.risk_level, c.status,
       EXISTS (SELECT 1 FROM incidents i
               WHERE i.system_id = c.system_id AND i.severity <= ?
                 AND i.opened_at >= c.scheduled_start AND i.opened_at <= k.target_cutoff_utc
              ) AS followed_by_incident
FROM reviewed_changes r
JOIN changes c ON c.change_id = r.change_id
JOIN outcome_sessions k ON k.as_of = r.as_of
WHERE k.target_date <= ?
"""


@dataclass
class Outcomes:
    """What happened after each score: per score, per incident, per reviewed change."""

    scores: pl.DataFrame
    incidents: pl.DataFrame
    changes: pl.DataFrame
    known_through: dt.date | None


def data_through(con: duckdb.DuckDBPyConnection) -> dt.date | None:
    """The latest as-of day the warehouse holds: windows ending by then have closed."""
    if not table_exists(con, "system_day_features"):
        return None
    return con.execute("SELECT max(as_of) FROM system_day_features").fetchall()[0][0]


def published_scores(con: duckdb.DuckDBPyConnection, first: dt.date | None = None,
                     last: dt.date | None = None) -> pl.DataFrame:
    """The published scores of as-of days ``first..last``, as they were published."""
    if not table_exists(con, "risk_scores"):
        raise DataError("nothing published yet: the track record starts with the first "
                        "published night (or use --backtest FILE)")
    return con.sql(
        "SELECT as_of, target_date, system_id, risk, tier, rank, model_version, scheduled_changes "
        "FROM risk_scores WHERE as_of BETWEEN ? AND ? ORDER BY as_of, rank",
        params=[first or dt.date.min, last or dt.date.max]).pl()


def scores_from_backtest(frame: pl.DataFrame, thresholds: tuple[float, float, float],
                         first: dt.date | None = None, last: dt.date | None = None,
                         ) -> pl.DataFrame:
    """A backtest's scores (``failcast backtest``) as if each night had been published:
    rank within the night by risk, tier by the thresholds."""
    missing = [c for c in ("system_id", "as_of", "target_date", "risk") if c not in frame.columns]
    if missing:
        raise DataError(f"not a backtest's scores: column(s) {', '.join(missing)} missing "
                        "(write one with `failcast backtest --out FILE`)")
    frame = frame.with_columns(pl.col("as_of").cast(pl.Date), pl.col("target_date").cast(pl.Date),
                               pl.col("risk").cast(pl.Float64), pl.col("system_id").cast(pl.String))
    frame = frame.filter(pl.col("as_of").is_between(first or dt.date.min, last or dt.date.max))
    if frame.is_empty():
        raise DataError("the backtest has no scores in the range asked for")
    elevated, high, critical = thresholds
    return frame.sort(["as_of", "risk", "system_id"], descending=[False, True, False]).select(
        "as_of", "target_date", "system_id", "risk",
        tier=pl.when(pl.col("risk") >= critical).then(pl.lit("critical"))
        .when(pl.col("risk") >= high).then(pl.lit("high"))
        .when(pl.col("risk") >= elevated).then(pl.lit("elevated")).otherwise(pl.lit("low")),
        rank=pl.int_range(1, pl.len() + 1, dtype=pl.Int32).over("as_of"),
        model_version=pl.lit("backtest"),
        scheduled_changes=pl.lit(None, pl.String),
    )


def build_outcomes(
    con: duckdb.DuckDBPyConnection,
    calendar: TradingCalendar,
    scores: pl.DataFrame,
    max_severity: int,
    known_through: dt.date | None,
    thresholds: tuple[float, float, float],
) -> Outcomes:
    """Join ``scores`` with the incidents and changes of their windows (closed ones only)."""
    if scores.is_empty():
        raise DataError("no scores in the range asked for")
    days = sorted(scores["as_of"].unique().to_list())
    through = known_through or dt.date.min
    sessions = calendar.session_table(days[0], days[-1]).filter(pl.col("as_of").is_in(days))
    con.register("outcome_sessions", sessions)
    con.register("outcome_scores", scores.drop("scheduled_changes"))
    try:
        rows = con.sql(SCORE_OUTCOMES, params=[max_severity, *[through] * 6]).pl()
        incidents = con.sql(WINDOW_INCIDENTS, params=[max_severity, through]).pl()
        reviewed = _reviewed_changes(con, scores, thresholds)
        changes = _change_outcomes(con, reviewed, max_severity, through)
    finally:
        con.unregister("outcome_sessions")
        con.unregister("outcome_scores")
    per_score: dict[tuple, list[dict]] = {}
    for change in changes.iter_rows(named=True):
        key = (change.pop("as_of"), change.pop("system_id"))
        per_score.setdefault(key, []).append(change)
    rows = rows.with_columns(changes=pl.Series(
        [json.dumps(per_score[key]) if key in per_score else None
         for key in zip(rows["as_of"].to_list(), rows["system_id"].to_list(), strict=True)],
        dtype=pl.String))
    return Outcomes(rows, incidents, changes, known_through)


def _reviewed_changes(con: duckdb.DuckDBPyConnection, scores: pl.DataFrame,
                      thresholds: tuple[float, float, float]) -> pl.DataFrame:
    """(as_of, system_id, change_id, action) of every change a night put before the CAB."""
    schema = {"as_of": pl.Date, "system_id": pl.String, "change_id": pl.String, "action": pl.String}
    published = scores.filter(pl.col("scheduled_changes").is_not_null())
    if published.height:
        records = [(row["as_of"], row["system_id"], change["change_id"], change.get("action"))
                   for row in published.iter_rows(named=True)
                   for change in json.loads(row["scheduled_changes"] or "[]")]
        return pl.DataFrame(records, schema=schema, orient="row")
    if not table_exists(con, "changes"):
        return pl.DataFrame(schema=schema)
    known = con.sql(KNOWN_CHANGES).pl()
    tiers = scores.select("as_of", "system_id", "risk")
    known = known.join(tiers, on=["as_of", "system_id"], how="inner")
    actions = [recommend(tier_of(risk, thresholds), level)[0]
               for risk, level in zip(known["risk"].to_list(), known["risk_level"].to_list(), strict=True)]
    return known.select("as_of", "system_id", "change_id").with_columns(
        action=pl.Series(actions, dtype=pl.String))


def _change_outcomes(con: duckdb.DuckDBPyConnection, reviewed: pl.DataFrame, max_severity: int,
                     through: dt.date) -> pl.DataFrame:
    schema = {"as_of": pl.Date, "system_id": pl.String, "change_id": pl.String, "action": pl.String,
              "risk_level": pl.String, "status": pl.String, "followed_by_incident": pl.Boolean}
    if reviewed.is_empty() or not table_exists(con, "changes"):
        return pl.DataFrame(schema=schema)
    con.register("reviewed_changes", reviewed)
    try:
        return con.sql(CHANGE_OUTCOMES, params=[max_severity, through]).pl().cast(schema)
    finally:
        con.unregister("reviewed_changes")


def save_outcomes(con: duckdb.DuckDBPyConnection, outcomes: Outcomes,
                  now: dt.datetime | None = None) -> int:
    """Replace the nights of ``outcomes`` in ``forecast_outcomes``, in one transaction."""
    rows = outcomes.scores.with_columns(
        recorded_at=pl.lit(now or dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)))
    days = rows["as_of"].unique().to_list()
    con.execute(OUTCOMES_TABLE)
    con.register("outcome_rows", rows)
    try:
        with transaction(con):
            con.execute(f"DELETE FROM {OUTCOMES} WHERE list_contains(?, as_of)", [days])  # noqa: S608
            con.execute(f"INSERT INTO {OUTCOMES} BY NAME SELECT * FROM outcome_rows")  # noqa: S608
    finally:
        con.unregister("outcome_rows")
    return rows.height


# ------------------------------------------------------------------------------ the figures


@dataclass
class TrackRecord:
    """The figures of a track record, each a small table or a number."""

    kind: str  # "published" or "backtest"
    label: str  # where the scores came from, in words
    watch_list: int
    first: dt.date
    last: dt.date
    nights: int
    nights_known: int
    known_through: dt.date | None
    headline: dict = field(default_factory=dict)
    watch: dict = field(default_factory=dict)
    incidents: dict = field(default_factory=dict)
    by_category: pl.DataFrame = field(default_factory=pl.DataFrame)
    by_severity: pl.DataFrame = field(default_factory=pl.DataFrame)
    calibration: pl.DataFrame = field(default_factory=pl.DataFrame)
    by_tier: pl.DataFrame = field(default_factory=pl.DataFrame)
    changes: pl.DataFrame = field(default_factory=pl.DataFrame)


def summarize(outcomes: Outcomes, watch_list: int, *, kind: str = "published",
              label: str = "published scores") -> TrackRecord:
    scores = outcomes.scores
    known = scores.filter(pl.col("outcome_known"))
    record = TrackRecord(
        kind=kind, label=label, watch_list=watch_list,
        first=scores["as_of"].min(), last=scores["as_of"].max(),
        nights=scores["as_of"].n_unique(), nights_known=known["as_of"].n_unique(),
        known_through=outcomes.known_through)
    if known.is_empty():
        return record
    label_ = known["incident"].to_numpy().astype(bool)
    record.headline = score_metrics(known["as_of"].to_numpy(), label_, known["risk"].to_numpy())
    watched = known.filter(pl.col("rank") <= watch_list)
    failures = int(label_.sum())
    hits = int(watched["incident"].sum())
    record.watch = {
        "system_nights": watched.height,
        "with_incident": hits,
        "precision": hits / watched.height if watched.height else float("nan"),
        "failing_system_nights": failures,
        "caught_share": hits / failures if failures else float("nan"),
        "base_rate": failures / known.height,
        "lift": (hits / watched.height) / (failures / known.height) if watched.height and failures
        else float("nan"),
    }
    incidents = outcomes.incidents.with_columns(
        outcome=pl.when(pl.col("rank").is_null()).then(pl.lit("not scored"))
        .when(pl.col("rank") <= watch_list).then(pl.lit("foreseen")).otherwise(pl.lit("missed")))
    counts = {o: int((incidents["outcome"] == o).sum()) for o in ("foreseen", "missed", "not scored")}
    record.incidents = {"total": incidents.height, **counts,
                        "foreseen_share": _share(counts["foreseen"], counts["foreseen"] + counts["missed"])}
    record.by_category = _outcome_table(incidents, "category")
    record.by_severity = _outcome_table(incidents.with_columns(
        pl.format("P{}", pl.col("severity")).alias("severity")), "severity").sort("severity")
    record.calibration = calibration_bins(known["risk"].to_numpy(), label_)
    record.by_tier = (known.group_by("tier").agg(
        systems_nights=pl.len(), mean_risk=pl.col("risk").mean(),
        observed_rate=pl.col("incident").cast(pl.Float64).mean())
        .with_columns(order=pl.col("tier").replace_strict({t: i for i, t in enumerate(TIERS)},
                                                          default=len(TIERS)))
        .sort("order").drop("order"))
    record.changes = _change_table(outcomes.changes)
    return record


def _share(part: int, whole: int) -> float:
    return part / whole if whole else float("nan")


def _outcome_table(incidents: pl.DataFrame, by: str) -> pl.DataFrame:
    return (incidents.group_by(by).agg(
        incidents=pl.len(),
        foreseen=(pl.col("outcome") == "foreseen").sum(),
        missed=(pl.col("outcome") == "missed").sum(),
        not_scored=(pl.col("outcome") == "not scored").sum())
        .with_columns(foreseen_share=pl.col("foreseen") / (pl.col("foreseen") + pl.col("missed")))
        .sort(["incidents", by], descending=[True, False]))


def _change_table(changes: pl.DataFrame) -> pl.DataFrame:
    frame = changes.group_by("action").agg(
        changes=pl.len(),
        followed_by_incident=pl.col("followed_by_incident").sum(),
        failed_or_rolled_back=pl.col("status").is_in(["failed", "rolled_back"]).sum(),
        cancelled=(pl.col("status") == "cancelled").sum(),
    ).with_columns(incident_share=pl.col("followed_by_incident") / pl.col("changes"))
    order = {a: i for i, a in enumerate(ACTION_ORDER)}
    return frame.sort(pl.col("action").replace_strict(order, default=len(order)))


def calibration_bins(risk: np.ndarray, label: np.ndarray, edges: tuple[float, ...] = BINS,
                     ) -> pl.DataFrame:
    """Published risk against what happened, in fixed bins: count, mean risk, observed rate and
    its 95% Wilson interval."""
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        inside = (risk >= lo) & ((risk < hi) | ((hi == edges[-1]) & (risk <= hi)))
        n = int(inside.sum())
        if not n:
            continue
        k = int(label[inside].sum())
        low, high = wilson(k, n)
        rows.append({"bin": f"{lo:.0%}-{hi:.0%}", "system_nights": n, "incidents": k,
                     "mean_risk": float(risk[inside].mean()), "observed_rate": k / n,
                     "low": low, "high": high})
    return pl.DataFrame(rows, schema={"bin": pl.String, "system_nights": pl.Int64,
                                      "incidents": pl.Int64, "mean_risk": pl.Float64,
                                      "observed_rate": pl.Float64, "low": pl.Float64,
                                      "high": pl.Float64})


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a rate of ``k`` in ``n``."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def summary_rows(record: TrackRecord) -> pl.DataFrame:
    """The record as long rows (section, group, measure, value) for a CSV."""
    rows: list[tuple[str, str, str, float | str | None]] = [
        ("period", "", "first_as_of", str(record.first)), ("period", "", "last_as_of", str(record.last)),
        ("period", "", "nights", record.nights), ("period", "", "nights_with_outcome", record.nights_known),
        ("period", "", "source", record.label), ("period", "", "watch_list_size", record.watch_list),
    ]
    rows += [("model", "", k, v) for k, v in record.headline.items()]
    rows += [("watch_list", "", k, v) for k, v in record.watch.items()]
    rows += [("incidents", "all", k, v) for k, v in record.incidents.items()]
    for section, table, key in (("incidents_by_category", record.by_category, "category"),
                                ("incidents_by_severity", record.by_severity, "severity"),
                                ("calibration", record.calibration, "bin"),
                                ("tiers", record.by_tier, "tier"),
                                ("changes_by_action", record.changes, "action")):
        for row in table.iter_rows(named=True):
            rows += [(section, str(row[key]), k, v) for k, v in row.items() if k != key]
    return pl.DataFrame({
        "section": [r[0] for r in rows], "group": [r[1] for r in rows],
        "measure": [r[2] for r in rows],
        "value": [None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
                  for *_, v in rows],
    })


# ------------------------------------------------------------------------------ the page


def reliability_svg(calibration: pl.DataFrame, size: int = 300, pad: int = 40) -> dict:
    """Coordinates of the reliability plot (an inline SVG drawn from numbers only)."""
    if calibration.is_empty():
        return {}
    top = max(calibration["mean_risk"].max(), calibration["high"].max(), 0.05)
    top = next(t for t in (0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0) if top <= t)

    def x(v: float) -> float:
        return round(pad + size * v / top, 1)

    def y(v: float) -> float:
        return round(pad + size - size * min(v, top) / top, 1)

    biggest = calibration["system_nights"].max()
    points = [{"x": x(r["mean_risk"]), "y": y(r["observed_rate"]), "low": y(r["low"]),
               "high": y(r["high"]), "r": round(3 + 9 * math.sqrt(r["system_nights"] / biggest), 1),
               "title": f"{r['bin']}: {r['system_nights']} system-nights, mean risk "
                        f"{r['mean_risk']:.1%}, observed {r['observed_rate']:.1%}"}
              for r in calibration.iter_rows(named=True)]
    ticks = [{"value": f"{t * top:.0%}", "x": x(t * top), "y": y(t * top)} for t in (0, 0.25, 0.5, 0.75, 1)]
    return {"width": size + 2 * pad, "height": size + 2 * pad, "left": pad, "right": pad + size,
            "top": pad, "bottom": pad + size, "points": points, "ticks": ticks}


def render_track_record(record: TrackRecord) -> str:
    from jinja2 import Environment, PackageLoader, select_autoescape

    environment = Environment(loader=PackageLoader("models", "templates"),
                              autoescape=select_autoescape(["html"]))
    return environment.get_template("track_record.html").render(
        r=record, plot=reliability_svg(record.calibration))


def write_report(folder: Path, prefix: str, record: TrackRecord, outcomes: Outcomes) -> dict[str, Path]:
    """``<prefix>.html``, ``<prefix>.csv`` (the figures) and ``<prefix>_outcomes.csv`` (one row
    per score), each written whole or not at all."""
    from models.publish import write_atomically
    from models.spreadsheet import write_safe_csv

    folder.mkdir(parents=True, exist_ok=True)
    files = {"html": folder / f"{prefix}.html", "csv": folder / f"{prefix}.csv",
             "outcomes": folder / f"{prefix}_outcomes.csv"}
    html = render_track_record(record)
    write_atomically(files["html"], lambda p: p.write_text(html, encoding="utf-8"), "the track record")
    write_atomically(files["csv"], lambda p: write_safe_csv(summary_rows(record), p), "the track record")
    flat = outcomes.scores.with_columns(
        pl.col("incident_ids").list.join(" "), pl.col("categories").list.join("; "),
        on_watch_list=pl.col("rank") <= record.watch_list)
    write_atomically(files["outcomes"], lambda p: write_safe_csv(flat, p), "the track record")
    return files


# ------------------------------------------------------------------------------ whole records


def track_record(
    con: duckdb.DuckDBPyConnection,
    calendar: TradingCalendar,
    scores: pl.DataFrame,
    *,
    max_severity: int,
    thresholds: tuple[float, float, float],
    watch_list: int,
    known_through: dt.date | None,
    kind: str,
    label: str,
) -> tuple[TrackRecord, Outcomes]:
    """The record of ``scores`` against the incidents and changes ``con`` holds."""
    outcomes = build_outcomes(con, calendar, scores, max_severity, known_through, thresholds)
    return summarize(outcomes, watch_list, kind=kind, label=label), outcomes


def read_backtest(path: Path) -> pl.DataFrame:
    """A backtest's scores as ``failcast backtest --out`` wrote them (.parquet or .csv)."""
    if not path.is_file():
        raise DataError(f"no backtest at {path}: write one with `failcast backtest --out {path.name}`")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return pl.read_parquet(path)
    if suffix == ".csv":
        return pl.read_csv(path, try_parse_dates=True)
    raise DataError(f"{path.name}: a backtest is a .parquet or .csv file")


def backtest_known_through(frame: pl.DataFrame) -> dt.date | None:
    """The latest target day whose outcome the backtest knew (its ``label`` column)."""
    if "label" not in frame.columns:
        return None
    known = frame.filter(pl.col("label").is_not_null())
    return known["target_date"].cast(pl.Date).max() if known.height else dt.date.min


def backtest_record(
    path: Path,
    source_dir: Path,
    calendar: TradingCalendar,
    *,
    max_severity: int,
    thresholds: tuple[float, float, float],
    watch_list: int,
    first: dt.date | None = None,
    last: dt.date | None = None,
) -> tuple[TrackRecord, Outcomes]:
    """The record a backtest's scores would have earned, against the source's case library and
    change calendar (loaded into a scratch warehouse; the home warehouse is not touched)."""
    import tempfile

    from features.ingest import load_source_tables
    from features.source import Source
    from features.warehouse import Warehouse

    frame = read_backtest(path)
    scores = scores_from_backtest(frame, thresholds, first, last)
    source = Source.open(source_dir)
    with tempfile.TemporaryDirectory(prefix="failcast-record-") as scratch:
        warehouse = Warehouse(Path(scratch) / "record.duckdb", timezone=calendar.timezone)
        with warehouse.lake_writer() as con:
            load_source_tables(con, warehouse.lake, source)
        with warehouse.writer() as con:
            known = backtest_known_through(frame)
            if known is None:
                latest = con.execute("SELECT max(opened_at) FROM incidents").fetchall()[0][0]
                known = calendar.last_session_on_or_before(latest.date()) if latest else None
            return track_record(con, calendar, scores, max_severity=max_severity,
                                thresholds=thresholds, watch_list=watch_list, known_through=known,
                                kind="backtest", label=f"{path.name}, source {source_dir}")


def in_words(record: TrackRecord) -> list[str]:
    """The record's headline figures as a few lines of text (for the command line)."""
    nights = f"{record.nights} night{'s' if record.nights != 1 else ''}"
    lines = [f"track record ({'BACKTEST: ' if record.kind == 'backtest' else ''}{record.label}), "
             f"as-of {record.first}..{record.last}: {nights}, "
             f"{record.nights_known} with their window closed"]
    if not record.nights_known:
        return [*lines, "  no window has closed yet"]
    w, i, h = record.watch, record.incidents, record.headline
    lines.append(f"  watch list (top {record.watch_list}): precision {w['precision']:.1%} "
                 f"(base rate {w['base_rate']:.1%}, x{w['lift']:.1f}); "
                 f"{w['caught_share']:.0%} of failing system-nights were listed")
    lines.append(f"  incidents: {i['total']} in closed windows, {i['foreseen']} foreseen, "
                 f"{i['missed']} missed, {i['not scored']} on systems not scored")
    lines.append(f"  model: PR-AUC {h['pr_auc']:.3f}, ROC-AUC {h['roc_auc']:.3f}, Brier {h['brier']:.4f}, "
                 f"precision/recall at top 5% {h['precision_at_5pct']:.2f}/{h['recall_at_5pct']:.2f} "
                 f"({int(h['rows']):,} system-nights, {int(h['failures']):,} failures)")
    if record.changes.height:
        parts = [f"{row['action']} {row['changes']} ({row['incident_share']:.1%} followed by an incident)"
                 for row in record.changes.iter_rows(named=True)]
        lines.append("  changes: " + ", ".join(parts))
    return lines
