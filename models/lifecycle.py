"""Train, evaluate against baselines and the champion, register, and decide the alias.

The latest ``holdout_sessions`` labelled days are held out. The new model is trained on the
days before them; the new model, the baselines and the current champion are all scored on the
held-out days, and:

- the first model becomes ``champion`` only if it beats the baselines;
- a later model becomes ``champion`` only if it beats the baselines and the current champion
  on those same days; otherwise it is registered as ``challenger``, with the reason.

"Beats" (``models.evaluate.beats``): a higher PR-AUC, and a Brier score no more than 2% worse.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import polars as pl

from features.labels import labels
from features.trading_time import TradingCalendar
from models.baselines import fitted_baselines
from models.dataset import Window, feature_names, labelled_window, read_features, training_frame
from models.evaluate import beats, compare, plots
from models.model import FailureModel, TrainConfig
from models.registry import CHALLENGER, CHAMPION, ModelRegistry, RegisteredModel

MODEL = "failcast model"


@dataclass
class TrainingSet:
    as_of: dt.date
    train: pl.DataFrame
    holdout: pl.DataFrame
    train_window: Window
    holdout_window: Window

    def summary(self) -> pl.DataFrame:
        rows = []
        for name, frame, window in (("train", self.train, self.train_window),
                                    ("holdout", self.holdout, self.holdout_window)):
            rows.append({"period": name, "as_of_from": str(window.first),
                         "as_of_to": str(window.last), "rows": frame.height,
                         "failures": int(frame["label"].sum()) if frame.height else 0})
        return pl.DataFrame(rows)


def build_training_set(
    con: duckdb.DuckDBPyConnection,
    calendar: TradingCalendar,
    as_of: dt.date,
    *,
    max_severity: int,
    train_sessions: int,
    holdout_sessions: int,
    config: TrainConfig | None = None,
) -> TrainingSet:
    """Labels known at ``as_of``: the training days, then the held-out days after them."""
    whole = labelled_window(calendar, as_of, train_sessions + holdout_sessions)
    holdout_first = calendar.sessions_back(whole.last, holdout_sessions - 1)
    train_window = Window(whole.first, calendar.previous_session(holdout_first))
    holdout_window = Window(holdout_first, whole.last)
    train = training_frame(con, calendar, train_window, max_severity, known_at=as_of,
                           config=config)
    rows = read_features(con, holdout_window.first, holdout_window.last)
    known = labels(con, calendar, rows.select("system_id", "as_of"), max_severity, as_of)
    holdout = rows.join(known.select("system_id", "as_of", "label"), on=["system_id", "as_of"])
    return TrainingSet(as_of, train, holdout, train_window, holdout_window)


@dataclass
class TrainingOutcome:
    model: FailureModel
    registered: RegisteredModel
    role: str
    reason: str
    evaluation: pl.DataFrame
    run_url: str
    plots: dict[str, Path] = field(default_factory=dict)

    @property
    def metrics(self) -> dict:
        return self.evaluation.filter(pl.col("scorer") == MODEL).row(0, named=True)


def train_and_gate(
    training: TrainingSet,
    registry: ModelRegistry,
    *,
    config: TrainConfig | None = None,
    params: dict | None = None,
    tags: dict[str, str] | None = None,
    plots_dir: Path | None = None,
) -> TrainingOutcome:
    """Fit, compare on the held-out days, log to MLflow, register, and set the alias.

    The evaluation plots are kept in ``plots_dir`` when given (they are in MLflow either way).
    """
    config = config or TrainConfig()
    model = FailureModel.fit(training.train, feature_names(training.train), config)
    holdout = training.holdout
    whole = training.train.filter(~pl.col("thinned")) if "thinned" in training.train.columns \
        else training.train
    scores = {MODEL: model.predict(holdout)}
    for baseline in fitted_baselines(whole):
        scores[baseline.name] = baseline.predict(holdout)
    champion_version = registry.version_by_alias(CHAMPION)
    if champion_version is not None:
        champion, _ = registry.load(CHAMPION)
        scores[f"champion v{champion_version.version}"] = champion.predict(holdout)
    evaluation = compare(holdout, scores)
    by_name = {row["scorer"]: row for row in evaluation.iter_rows(named=True)}

    role, reasons = CHAMPION, []
    for name in ("recent_incident_rate", "operator_rule"):
        ok, why = beats(by_name[MODEL], by_name[name])
        if not ok:
            role = CHALLENGER
            reasons.append(f"does not beat {name}: {why}")
    if champion_version is not None:
        ok, why = beats(by_name[MODEL], by_name[f"champion v{champion_version.version}"])
        if not ok:
            role = CHALLENGER
            reasons.append(f"does not beat champion v{champion_version.version}: {why}")
        trained_through = champion_version.tags.get("trained_through", "")
        if trained_through and trained_through >= str(training.holdout_window.first):
            reasons.append(f"note: the champion was trained through {trained_through}, inside "
                           "this hold-out, which flatters it")
    reason = "; ".join(reasons) or "beats the baselines" + (
        " and the champion" if champion_version is not None else "") + " on the hold-out"

    with tempfile.TemporaryDirectory() as tmp:
        figures = plots(holdout, scores, model.importance(), plots_dir or Path(tmp))
        metrics = {f"holdout_{k}": v for k, v in by_name[MODEL].items() if isinstance(v, float)}
        for name, row in by_name.items():
            if name != MODEL:
                key = name.replace(" ", "_")
                metrics[f"{key}_pr_auc"], metrics[f"{key}_brier"] = row["pr_auc"], row["brier"]
        registered = registry.log_training(
            model,
            params={**config.__dict__, **(params or {}),
                    "train_window": str(training.train_window),
                    "holdout_window": str(training.holdout_window),
                    "features": len(model.features), **model.info},
            metrics=metrics,
            tables={"holdout_evaluation": evaluation, "feature_importance": model.importance()},
            plots=figures,
            tags={"as_of": str(training.as_of), "trained_through": str(training.train_window.last),
                  "role": role, "decision": reason, "engine": model.info.get("engine", "local"),
                  **(tags or {})},
            sample=holdout,
        )
    registry.tag_version(registered.version, {
        "role": role, "decision": reason, "trained_through": str(training.train_window.last),
        "holdout_pr_auc": f"{by_name[MODEL]['pr_auc']:.6f}",
        "holdout_brier": f"{by_name[MODEL]['brier']:.6f}",
        "beats_baselines": str(not any("does not beat recent" in r or "does not beat operator" in r
                                       for r in reasons)),
    })
    registry.set_alias(registered.version, role)
    url = registry.run_url(registered.run_id, registry.experiment_id())
    return TrainingOutcome(model, registered, role, reason, evaluation, url,
                           figures if plots_dir else {})
