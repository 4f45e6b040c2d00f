"""Walk-forward backtests of the deployed policy: every as-of day scored by what would have served.

``walk_forward`` replays ``models.lifecycle.RetrainPolicy`` day by day, exactly as production
runs it, against an in-memory registry: on each retraining day ``R`` (the last trading day of a
week or month, and the one before the range) the policy retrains as of ``R`` (hold-out, gate,
refit, aliases, fallback), and whatever then serves (the champion, or the fallback baseline
while no model has passed) scores the as-of days after ``R`` up to the next retraining day. No
score ever comes from a model that saw its own label window, or anything after its cutoff.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import duckdb
import numpy as np
import polars as pl

from features.errors import DataError
from features.trading_time import TradingCalendar
from models.baselines import fitted_baselines
from models.dataset import read_features
from models.evaluate import compare
from models.freed_memory import give_back_freed_memory
from models.lifecycle import RetrainOutcome, RetrainPolicy, whole_rows
from models.memory_registry import InMemoryRegistry

MODEL_SCORER = "failcast model"


@dataclass
class Step:
    retrained_on: dt.date
    trained_through: dt.date | None
    action: str
    scorer: str  # the published model name: the model's, or baseline:<name>
    version: str
    rows: int
    note: str = ""


def retraining_points(policy: RetrainPolicy, calendar: TradingCalendar,
                      sessions: list[dt.date]) -> list[dt.date]:
    """The retraining days whose models score ``sessions``: the one before the first session,
    then every retraining day before the last."""
    first = policy.last_retraining_day_before(calendar, sessions[0])
    return [first, *(d for d in policy.retraining_days(calendar, sessions[0], sessions[-1])
                     if d < sessions[-1])]


def scoring_periods(policy: RetrainPolicy, calendar: TradingCalendar,
                    sessions: list[dt.date]) -> list[tuple[dt.date, list[dt.date]]]:
    """Each retraining day with the sessions its model scores: those after it, through the
    next retraining day (the last: through the last session)."""
    points = retraining_points(policy, calendar, sessions)
    periods = []
    for index, day in enumerate(points):
        until = points[index + 1] if index + 1 < len(points) else sessions[-1]
        periods.append((day, [d for d in sessions if day < d <= until]))
    return periods


def walk_forward(
    con: duckdb.DuckDBPyConnection,
    calendar: TradingCalendar,
    start: dt.date,
    end: dt.date,
    policy: RetrainPolicy,
    *,
    model_name: str = "failcast-risk",
    on_step: Callable[[Step, int, int], None] | None = None,
) -> tuple[pl.DataFrame, list[Step]]:
    """Scores of every system in service on each as-of day ``start..end``.

    Columns: system_id, as_of, target_date, risk, recent_incident_rate, operator_rule (both
    refitted at each retraining day, on the same labels the served model saw), retrained_on,
    trained_through, scorer (``model_name`` or ``baseline:<name>``), model_version, action.
    """
    sessions = calendar.sessions(start, end)
    if not sessions:
        raise DataError(f"no trading day between {start} and {end}")
    periods = scoring_periods(policy, calendar, sessions)
    registry = InMemoryRegistry(model_name)
    frames, steps = [], []
    for index, (day, period) in enumerate(periods):
        training = policy.build_training_set(con, calendar, day)
        outcome = policy.retrain(training, registry)
        rows = read_features(con, period[0], period[-1])
        frames.append(_scored(rows, outcome, training))
        served = outcome.served
        step = Step(day, served.trained_through, outcome.action, served.registered.name,
                    served.registered.version, rows.height, outcome.reason)
        steps.append(step)
        if on_step:
            on_step(step, index + 1, len(periods))
        del training, outcome, rows  # before the next training set is read: one at a time
        give_back_freed_memory()
    return pl.concat(frames, how="diagonal_relaxed"), steps


def _scored(rows: pl.DataFrame, outcome: RetrainOutcome, training) -> pl.DataFrame:
    served = outcome.served
    baselines = fitted_baselines(whole_rows(training.refit))
    return _copy(rows.select("system_id", "as_of", "target_date")).with_columns(
        risk=pl.Series(np.clip(np.asarray(served.scorer.predict(rows), dtype=float), 0.0, 1.0)),
        **{b.name: pl.Series(np.asarray(b.predict(rows), dtype=float)) for b in baselines},
        retrained_on=pl.lit(outcome.as_of),
        trained_through=pl.lit(served.trained_through),
        scorer=pl.lit(served.registered.name),
        model_version=pl.lit(served.registered.version),
        action=pl.lit(outcome.action),
    )


def _copy(frame: pl.DataFrame) -> pl.DataFrame:
    """A copy that shares no memory with ``frame``. The key columns of a period's feature rows
    keep the whole DuckDB result they were read from alive (Polars imports it without a copy):
    kept for every week of a LANL backtest, that was 20 MB a week, 1.8 GB by the end."""
    return pl.DataFrame({c: frame[c].to_list() for c in frame.columns}, schema=frame.schema)


def with_labels(con: duckdb.DuckDBPyConnection, calendar: TradingCalendar, scores: pl.DataFrame,
                max_severity: int, known_at: dt.date) -> pl.DataFrame:
    """Scores with their outcome where it is known at ``known_at`` (else ``label`` is null)."""
    from features.labels import labels

    known = labels(con, calendar, scores.select("system_id", "as_of"), max_severity, known_at)
    return scores.join(known.select("system_id", "as_of", "label"), on=["system_id", "as_of"],
                       how="left")


def evaluate_scores(scores: pl.DataFrame) -> pl.DataFrame:
    """The deployed policy against the baselines on every backtest row whose label is known."""
    known = scores.filter(pl.col("label").is_not_null())
    if known.is_empty() or known["label"].sum() == 0:
        return pl.DataFrame()
    names = [c for c in ("risk", "recent_incident_rate", "operator_rule") if c in known.columns]
    table = compare(known, {name: known[name].fill_null(0).to_numpy() for name in names})
    return table.with_columns(pl.col("scorer").replace({"risk": MODEL_SCORER}))
