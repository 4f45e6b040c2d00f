"""Walk-forward backtests: every as-of day scored by a model trained only on what was known.

On each retraining day ``R`` (the first session of each month, or week) a model is fitted on
the labels known at ``R``'s cutoff (as-of days up to the session before ``R``) and scores the
as-of days from ``R`` to the next retraining day. No score ever comes from a model that saw
its own label window, or anything after its as-of day's cutoff.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import duckdb
import numpy as np
import polars as pl

from features.errors import DataError, UsageError
from features.trading_time import TradingCalendar
from models.baselines import RecentRate, fitted_baselines
from models.dataset import feature_names, labelled_window, read_features, training_frame
from models.evaluate import compare
from models.model import FailureModel, NotEnoughData, TrainConfig

RETRAIN_EVERY = ("monthly", "weekly")


def retraining_days(sessions: list[dt.date], every: str) -> list[dt.date]:
    """The first session of each month (or ISO week) among ``sessions``."""
    if every not in RETRAIN_EVERY:
        raise UsageError(f"retrain must be one of {', '.join(RETRAIN_EVERY)}, got {every!r}")
    key = (lambda d: (d.year, d.month)) if every == "monthly" else (lambda d: d.isocalendar()[:2])
    days, seen = [], set()
    for day in sessions:
        if key(day) not in seen:
            seen.add(key(day))
            days.append(day)
    return days


@dataclass
class Step:
    retrained_on: dt.date
    trained_through: dt.date | None
    scorer: str
    rows: int
    note: str = ""


def walk_forward(
    con: duckdb.DuckDBPyConnection,
    calendar: TradingCalendar,
    start: dt.date,
    end: dt.date,
    *,
    max_severity: int = 4,
    train_sessions: int = 500,
    retrain: str = "monthly",
    config: TrainConfig | None = None,
    on_step: Callable[[Step, int, int], None] | None = None,
) -> tuple[pl.DataFrame, list[Step]]:
    """Scores of every system in service on each as-of day ``start..end``.

    Columns: system_id, as_of, target_date, risk, recent_incident_rate, operator_rule,
    trained_through. When a window holds too few failures for a model, the recent incident
    rate scores that period (and the step says so).
    """
    sessions = calendar.sessions(start, end)
    if not sessions:
        raise DataError(f"no trading day between {start} and {end}")
    points = retraining_days(sessions, retrain)
    frames, steps = [], []
    for index, day in enumerate(points):
        until = points[index + 1] if index + 1 < len(points) else None
        period = [d for d in sessions if d >= day and (until is None or d < until)]
        window = labelled_window(calendar, day, train_sessions)
        train = training_frame(con, calendar, window, max_severity, known_at=day, config=config)
        rows = read_features(con, period[0], period[-1])
        whole = train.filter(~pl.col("thinned")) if "thinned" in train.columns else train
        baselines = fitted_baselines(whole) if whole.height else [RecentRate()]
        try:
            model = FailureModel.fit(train, feature_names(train), config)
            risk, scorer, note = model.predict(rows), "model", ""
        except NotEnoughData as exc:
            risk, scorer, note = baselines[0].predict(rows), "recent_incident_rate", str(exc)
        scored = rows.select("system_id", "as_of", "target_date").with_columns(
            risk=pl.Series(np.asarray(risk, dtype=float)),
            **{b.name: pl.Series(b.predict(rows)) for b in baselines},
            trained_through=pl.lit(window.last),
            scorer=pl.lit(scorer),
        )
        frames.append(scored)
        step = Step(day, window.last, scorer, rows.height, note)
        steps.append(step)
        if on_step:
            on_step(step, index + 1, len(points))
    return pl.concat(frames, how="diagonal_relaxed"), steps


def with_labels(con: duckdb.DuckDBPyConnection, calendar: TradingCalendar, scores: pl.DataFrame,
                max_severity: int, known_at: dt.date) -> pl.DataFrame:
    """Scores with their outcome where it is known at ``known_at`` (else ``label`` is null)."""
    from features.labels import labels

    known = labels(con, calendar, scores.select("system_id", "as_of"), max_severity, known_at)
    return scores.join(known.select("system_id", "as_of", "label"), on=["system_id", "as_of"],
                       how="left")


def evaluate_scores(scores: pl.DataFrame) -> pl.DataFrame:
    """The model against the baselines on every backtest row whose label is known."""
    known = scores.filter(pl.col("label").is_not_null())
    if known.is_empty() or known["label"].sum() == 0:
        return pl.DataFrame()
    names = [c for c in ("risk", "recent_incident_rate", "operator_rule") if c in known.columns]
    table = compare(known, {name: known[name].fill_null(0).to_numpy() for name in names})
    return table.with_columns(
        pl.col("scorer").replace({"risk": "failcast model"}))
