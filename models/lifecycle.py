"""The retraining policy: one object that production and the backtest both run.

``RetrainPolicy`` (configured by ``PolicyConfig``) decides everything about a model's life:

- **cadence**: retraining days are the last trading day of each week (or month); a model
  trained as of ``R`` learns the labels known at ``R``'s cutoff (as-of days up to the session
  before ``R``) and scores the days after ``R`` until the next retraining day;
- **hold-out**: the newest ``holdout_sessions`` labelled days are held out; the candidate
  configuration (and the champion's configuration, when it differs) is fitted on the
  ``train_sessions`` days before them, and both baselines too;
- **gate** (``models.gate.decide``): promote, refresh, keep or fall back, beyond noise;
- **refit**: the configuration that serves is refitted on the ``train_sessions`` days that end
  at the latest labelled day (early stopping's rounds, calibration on the newest days), and
  that refit is what the alias ``champion`` points at, tagged with its lineage;
- **fallback**: while no champion exists, the best baseline (refitted the same way) gets the
  alias ``fallback`` and scores, labelled ``baseline:<name>``.

The registry is MLflow in production (``models.registry``) and an in-memory stand-in in the
backtest (``models.memory_registry``); the policy cannot tell them apart. Aliases move last,
after everything is recorded, so a retrain that fails part-way leaves them where they were.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import duckdb
import polars as pl

from features.errors import UsageError
from features.trading_time import TradingCalendar
from models.baselines import fitted_baselines
from models.dataset import Window, feature_names, labelled_window, training_set_frames
from models.evaluate import compare, plots
from models.freed_memory import give_back_freed_memory
from models.gate import FALLBACK as FALL_BACK
from models.gate import KEEP, PROMOTE, REFRESH, GateConfig, GateDecision, decide
from models.model import FailureModel, NotEnoughData, TrainConfig
from models.search import SearchConfig, SearchResult, search
from models.served import RegisteredModel, Served

CHAMPION, CHALLENGER, FALLBACK = "champion", "challenger", "fallback"
CANDIDATE, CHAMPION_CONFIG = "candidate", "champion_config"
CADENCES = {"weekly": 5, "monthly": 21}  # trading days a period holds, about


@dataclass(frozen=True)
class PolicyConfig:
    """Everything the policy decides with, in one explicit place."""

    cadence: str = "weekly"
    train_sessions: int = 500
    holdout_sessions: int = 40
    max_severity: int = 4
    gate: GateConfig = field(default_factory=GateConfig)
    candidate: TrainConfig = field(default_factory=TrainConfig)
    search: SearchConfig = field(default_factory=SearchConfig)  # model selection (models.search)

    def __post_init__(self) -> None:
        if self.cadence not in CADENCES:
            raise UsageError(f"the retraining cadence must be one of {', '.join(CADENCES)}, "
                             f"got {self.cadence!r}")

    def params(self) -> dict[str, Any]:
        """Flat, for MLflow."""
        return {"cadence": self.cadence, "train_sessions": self.train_sessions,
                "holdout_sessions": self.holdout_sessions, "max_severity": self.max_severity,
                **{f"gate_{k}": v for k, v in self.gate.__dict__.items()},
                **self.search.params(),
                **{k: (",".join(v) if k == "leave_out" else v)
                   for k, v in self.candidate.to_dict().items()}}


def with_model(config: PolicyConfig, *, train: dict[str, Any] | None = None,
               leave_out: list[str] | tuple[str, ...] | None = None,
               search_on: bool | None = None) -> PolicyConfig:
    """``config`` with another candidate configuration: LightGBM settings from ``train``
    (``TrainConfig`` field names), feature families to leave out, the search on or off. An
    unknown field or family is a usage error that names it."""
    from dataclasses import replace

    from models.reasons import FAMILIES

    train = {k: v for k, v in (train or {}).items() if v is not None}
    unknown = set(train) - set(TrainConfig.__dataclass_fields__) - {"leave_out"}
    if unknown:
        raise UsageError(f"unknown model setting {', '.join(sorted(unknown))} (known: "
                         f"{', '.join(k for k in TrainConfig.__dataclass_fields__ if k != 'leave_out')})")
    wrong = [f for f in (leave_out or ()) if f not in FAMILIES]
    if wrong:
        raise UsageError(f"unknown feature family {', '.join(map(repr, wrong))} to leave out "
                         f"(known: {', '.join(FAMILIES)})")
    candidate = replace(config.candidate, **train,
                        leave_out=(*config.candidate.leave_out, *(leave_out or ())))
    search = config.search if search_on is None else replace(config.search, enabled=search_on)
    return replace(config, candidate=candidate, search=search)


# ---------------------------------------------------------------------------- the registry


class RetrainRecord(Protocol):
    """Where one retrain writes: an MLflow run, or nothing but versions in memory."""

    url: str | None

    def log_evaluation(self, *, params: dict, metrics: dict[str, float],
                       tables: dict[str, pl.DataFrame],
                       draw: Callable[[Path], dict[str, Path]] | None,
                       tags: dict[str, str]) -> None: ...

    def register(self, scorer: Any, *, name: str, tags: dict[str, str]) -> RegisteredModel: ...

    def name(self, text: str) -> None: ...


class Registry(Protocol):
    def served(self, alias: str) -> Served | None: ...

    def resolve(self, alias: str) -> Any: ...

    def retrain_run(self, as_of: dt.date, *, tags: dict[str, str]
                    ) -> contextlib.AbstractContextManager[RetrainRecord]: ...

    def set_alias(self, alias: str, version: str) -> None: ...

    def delete_alias(self, alias: str) -> None: ...

    def tag_version(self, version: str, tags: dict[str, str]) -> None: ...


# ---------------------------------------------------------------------------- training sets


@dataclass
class TrainingSet:
    """The rows one retrain needs, all with labels known at ``as_of``'s cutoff."""

    as_of: dt.date
    train: pl.DataFrame  # the gated fit's days
    holdout: pl.DataFrame  # the newest labelled days, whole
    refit: pl.DataFrame  # the refit's days: the same length, ending at the latest labelled day
    train_window: Window
    holdout_window: Window
    refit_window: Window
    origin: str = ""  # where it was stored, when it was (the model's tag ``training_set``)

    def summary(self) -> pl.DataFrame:
        rows = []
        for name, frame, window in (("train", self.train, self.train_window),
                                    ("holdout", self.holdout, self.holdout_window),
                                    ("refit", self.refit, self.refit_window)):
            rows.append({"period": name, "as_of_from": str(window.first),
                         "as_of_to": str(window.last), "rows": frame.height,
                         "failures": int(frame["label"].sum()) if frame.height else 0})
        return pl.DataFrame(rows)

    def describe(self) -> dict[str, str]:
        return {"as_of": str(self.as_of), "train": str(self.train_window),
                "holdout": str(self.holdout_window), "refit": str(self.refit_window)}


def build_training_set(con: duckdb.DuckDBPyConnection, calendar: TradingCalendar, as_of: dt.date,
                       config: PolicyConfig) -> TrainingSet:
    """The training, hold-out and refit rows of a retrain as of ``as_of``."""
    whole = labelled_window(calendar, as_of, config.train_sessions + config.holdout_sessions)
    holdout_first = calendar.sessions_back(whole.last, config.holdout_sessions - 1)
    train_window = Window(whole.first, calendar.previous_session(holdout_first))
    holdout_window = Window(holdout_first, whole.last)
    refit_window = labelled_window(calendar, as_of, config.train_sessions)
    candidate, severity = config.candidate, config.max_severity
    train, holdout, refit = training_set_frames(con, calendar, train_window, holdout_window,
                                                refit_window, severity, as_of, candidate)
    give_back_freed_memory()  # the reads' transient buffers, before the trees are grown
    return TrainingSet(as_of, train, holdout, refit, train_window, holdout_window, refit_window)


def whole_rows(frame: pl.DataFrame) -> pl.DataFrame:
    """Rows not thinned: rates estimated from data must see every quiet day."""
    return frame.filter(~pl.col("thinned")) if "thinned" in frame.columns else frame


# ---------------------------------------------------------------------------- outcomes


@dataclass
class RetrainOutcome:
    as_of: dt.date
    decision: GateDecision
    action: str  # the decision's action, unless the refit could not be made (then keep/fallback)
    reason: str
    served: Served  # what scores after this retrain: the champion, or the fallback baseline
    registered: dict[str, RegisteredModel]  # by role: champion, challenger, fallback
    evaluation: pl.DataFrame  # the hold-out metrics of every scorer
    previous_champion: str | None
    run_url: str | None = None
    candidate: FailureModel | None = None
    searched: SearchResult | None = None  # the model search's configurations and scores

    @property
    def metrics(self) -> dict:
        found = self.evaluation.filter(pl.col("scorer") == CANDIDATE)
        return found.row(0, named=True) if found.height else {}


def champion_age(calendar: TradingCalendar, trained_through: dt.date, as_of: dt.date) -> int:
    """Trading days from the newest labelled day a model learned from to ``as_of``."""
    return max(0, len(calendar.sessions(trained_through, as_of)) - 1)


# ---------------------------------------------------------------------------- the policy


class RetrainPolicy:
    def __init__(self, config: PolicyConfig | None = None) -> None:
        self.config = config or PolicyConfig()

    # ------------------------------------------------------------------ when
    def _period(self, day: dt.date) -> tuple[int, int]:
        return (day.year, day.month) if self.config.cadence == "monthly" else day.isocalendar()[:2]

    def is_retraining_day(self, calendar: TradingCalendar, day: dt.date) -> bool:
        """The last trading day of its week (or month)."""
        return calendar.is_session(day) and \
            self._period(calendar.next_session(day)) != self._period(day)

    def retraining_days(self, calendar: TradingCalendar, start: dt.date,
                        end: dt.date) -> list[dt.date]:
        return [d for d in calendar.sessions(start, end) if self.is_retraining_day(calendar, d)]

    def last_retraining_day_before(self, calendar: TradingCalendar, day: dt.date) -> dt.date:
        """The retraining day whose model scores ``day``."""
        candidate = calendar.previous_session(day)
        while not self.is_retraining_day(calendar, candidate):
            candidate = calendar.previous_session(candidate)
        return candidate

    def default_warn_age(self) -> int:
        """Two retraining periods: one retrain missed."""
        return 2 * CADENCES[self.config.cadence]

    def default_max_age(self) -> int:
        """Four retraining periods: something is wrong with retraining."""
        return 4 * CADENCES[self.config.cadence]

    # ------------------------------------------------------------------ what
    def build_training_set(self, con: duckdb.DuckDBPyConnection, calendar: TradingCalendar,
                           as_of: dt.date) -> TrainingSet:
        return build_training_set(con, calendar, as_of, self.config)

    def retrain(self, training: TrainingSet, registry: Registry, *,
                tags: dict[str, str] | None = None,
                log: Callable[[str], None] | None = None,
                experiment: str | None = None) -> RetrainOutcome:
        """Judge the candidate on the hold-out, refit what serves, register, move aliases.

        An ``experiment`` (a configuration tried by hand) moves the champion only by passing
        the gate: when the gate would merely refresh the champion, an experiment keeps it (the
        scheduled retrain refreshes it)."""
        incumbent = registry.served(CHAMPION)
        previous = incumbent.registered.version if incumbent else None
        judged = self._judge(training, incumbent, log)
        if log:
            log(f"gate: {judged.decision.action} ({judged.decision.reason[:200]})")
        action, reason, refit, baseline = self._what_serves(training, judged, incumbent,
                                                            experiment)
        lineage = {
            "as_of": str(training.as_of),
            "evaluation.train_window": str(training.train_window),
            "evaluation.holdout_window": str(training.holdout_window),
            "previous_champion": f"v{previous}" if previous else "none",
            **judged.decision.tags(),
            "gate.action": action,
            "gate.reason": reason[:5000],
            **(tags or {}),
        }
        with registry.retrain_run(training.as_of,
                                  tags={**(tags or {}), "as_of": str(training.as_of)}) as run:
            lineage["evaluation.run_id"] = getattr(run, "run_id", "")
            self._log_evaluation(run, training, judged, lineage)
            registered = _register(run, training, judged, action, refit, baseline, lineage)
            run.name(_run_name(training.as_of, action, registered, previous, experiment))
        # Aliases last: nothing above moved them, so a failure left them where they were.
        action, reason = _move_aliases(registry, registered, previous, action, reason)
        served = registry.served(CHAMPION) if action in (PROMOTE, REFRESH, KEEP) else None
        return RetrainOutcome(training.as_of, judged.decision, action, reason,
                              served or registry.served(FALLBACK), registered, judged.evaluation,
                              previous, getattr(run, "url", None), judged.candidate,
                              judged.searched)

    def _judge(self, training: TrainingSet, incumbent: Served | None,
               log: Callable[[str], None] | None = None) -> _Judged:
        """Fit the candidate (chosen by the search inside the training window, when it is on)
        and the champion's configuration, when it differs, before the hold-out; score every
        scorer on it, and let the gate decide."""
        config, holdout = self.config, training.holdout
        baselines = fitted_baselines(whole_rows(training.train))
        scores = {b.name: b.predict(holdout) for b in baselines}
        features = feature_names(training.train)
        searched = None
        if config.search.enabled:
            searched = search(training.train, features, config.candidate, config.search)
            candidate, candidate_config, notes = searched.model, searched.config, []
            if candidate is None:
                notes = [f"the candidate could not be fitted: {'; '.join(searched.notes)}"]
                candidate_config = config.candidate
            if log:
                log(f"search: {searched.chosen or 'nothing'} chosen of "
                    f"{', '.join(searched.configs)} (inner PR-AUC on "
                    f"the training window's newest days)")
        else:
            candidate_config = config.candidate
            candidate, notes = _fit(training.train, features, candidate_config, "the candidate")
        if candidate is not None:
            scores[CANDIDATE] = candidate.predict(holdout)
        champion_config = incumbent.config if incumbent is not None else None
        same = champion_config is not None and champion_config.recipe() == candidate_config.recipe()
        champion_fit = None
        if champion_config is not None and not same:
            champion_config = champion_config.with_data_plan_of(candidate_config)
            champion_fit = searched.fitted_with(champion_config) if searched else None
            if champion_fit is None:
                champion_fit, more = _fit(
                    training.train, features, champion_config,
                    f"the champion's configuration (v{incumbent.registered.version})")
                notes += more
            if champion_fit is not None:
                scores[CHAMPION_CONFIG] = champion_fit.predict(holdout)
        decision = decide(
            holdout["as_of"].to_numpy() if holdout.height else [],
            holdout["label"].to_numpy() if holdout.height else [],
            scores, baselines=[b.name for b in baselines],
            candidate=CANDIDATE if candidate is not None else None,
            champion=CHAMPION_CONFIG if champion_fit is not None else None,
            has_champion=incumbent is not None, same_configuration=same, config=config.gate)
        evaluation = compare(holdout, scores) if holdout.height else pl.DataFrame()
        return _Judged(decision, scores, evaluation, features, candidate, champion_config,
                       champion_fit, same, notes, candidate_config, searched)

    def _what_serves(self, training: TrainingSet, judged: _Judged, incumbent: Served | None,
                     experiment: str | None = None):
        """(action, reason, refit, baseline): the gate's action, unless the refit cannot be
        made (or an experiment would only refresh the champion)."""
        decision = judged.decision
        action = decision.action
        reason = decision.reason + "".join(f"; {note}" for note in judged.notes)
        refit = baseline = None
        if experiment and action == REFRESH:
            action = KEEP
            reason += (f"; experiment {experiment!r} did not pass the gate: the champion stays "
                       "as it is (the scheduled retrain refreshes it)")
        elif decision.serves_model:
            serving, gated = ((judged.candidate_config, judged.candidate)
                              if action == PROMOTE or judged.same
                              else (judged.champion_config, judged.champion_fit))
            try:
                refit = FailureModel.refit(training.refit, feature_names(training.refit), serving,
                                           gated.rounds)
            except NotEnoughData as exc:
                action = KEEP if incumbent is not None else FALL_BACK
                reason += f"; the refit could not be made ({exc}): {action}"
        if action == FALL_BACK:
            baseline = next(b for b in fitted_baselines(whole_rows(training.refit))
                            if b.name == decision.best_baseline)
        return action, reason, refit, baseline

    def _log_evaluation(self, run: RetrainRecord, training: TrainingSet, judged: _Judged,
                        lineage: dict[str, str]) -> None:
        candidate, evaluation, searched = judged.candidate, judged.evaluation, judged.searched
        importance = candidate.importance() if candidate else None
        run.log_evaluation(
            params={**self.config.params(), **training.describe(), "features": len(judged.features),
                    **{f"candidate_{k}": v for k, v in (candidate.info if candidate else {}).items()},
                    **(searched.params() if searched else {})},
            metrics={**_scorer_metrics(evaluation), **judged.decision.metrics(),
                     **(searched.metrics() if searched else {})},
            tables={"holdout_evaluation": evaluation, "training_set": training.summary(),
                    **({"feature_importance": importance} if candidate else {}),
                    **({"model_search": searched.table} if searched else {})},
            draw=(lambda folder: plots(training.holdout, judged.scores, importance, folder))
            if evaluation.height else None,
            tags={**lineage, "engine": candidate.info.get("engine", "local") if candidate else "",
                  **({"search.chosen": searched.chosen or "none"} if searched else {})},
        )


@dataclass
class _Judged:
    decision: GateDecision
    scores: dict
    evaluation: pl.DataFrame
    features: list[str]
    candidate: FailureModel | None
    champion_config: TrainConfig | None
    champion_fit: FailureModel | None
    same: bool  # the candidate is the champion's configuration
    notes: list[str]
    candidate_config: TrainConfig  # the policy's, or the one the search chose
    searched: SearchResult | None = None


def _register(run: RetrainRecord, training: TrainingSet, judged: _Judged, action: str,
              refit: FailureModel | None, baseline: Any, lineage: dict[str, str]
              ) -> dict[str, RegisteredModel]:
    """The versions this retrain adds: the refit that will serve, the candidate that did not
    win (the challenger), the fallback baseline."""
    registered: dict[str, RegisteredModel] = {}
    candidate = judged.candidate
    if candidate is not None and not (action == PROMOTE or (action == REFRESH and judged.same)):
        registered[CHALLENGER] = run.register(candidate, name="challenger", tags={
            **lineage, "role": CHALLENGER, **_model_tags(candidate, "early stopping")})
    if refit is not None:
        registered[CHAMPION] = run.register(refit, name="model", tags={
            **lineage, "role": CHAMPION, **_model_tags(refit, "refit"),
            "refit_rounds_from": f"early stopping on {training.train_window}"})
    if baseline is not None:
        registered[FALLBACK] = run.register(baseline, name="fallback", tags={
            **lineage, "role": FALLBACK, "trained_through": str(training.refit_window.last),
            "baseline": baseline.name})
    return registered


def _move_aliases(registry: Registry, registered: dict[str, RegisteredModel],
                  previous: str | None, action: str, reason: str) -> tuple[str, str]:
    """Point the aliases at the new versions; a champion that another retrain moved meanwhile
    is left where it is (this refit becomes the challenger, and says why)."""
    if CHAMPION in registered:
        now = registry.resolve(CHAMPION)
        now_version = str(now.version) if now is not None else None
        if now_version != previous:
            reason += (f"; the champion moved to v{now_version} while this retrain ran: not "
                       "replaced (retrain again to compare with it)")
            action = KEEP
            registered[CHALLENGER] = registered.pop(CHAMPION)
            registry.tag_version(registered[CHALLENGER].version, {
                "role": CHALLENGER, "gate.action": action, "gate.reason": reason[:5000]})
        else:
            registry.set_alias(CHAMPION, registered[CHAMPION].version)
            registry.delete_alias(FALLBACK)
    for alias in (CHALLENGER, FALLBACK):
        if alias in registered:
            registry.set_alias(alias, registered[alias].version)
    return action, reason


def _fit(frame: pl.DataFrame, features: list[str], config: TrainConfig,
         what: str) -> tuple[FailureModel | None, list[str]]:
    try:
        return FailureModel.fit(frame, features, config), []
    except NotEnoughData as exc:
        return None, [f"{what} could not be fitted: {exc}"]


def _model_tags(model: FailureModel, how: str) -> dict[str, str]:
    split = model.split
    return {
        "trained_through": str(model.trained_through),
        "trained_from": str(split.fit[0]) if split else "",
        "fit": how,
        "rounds": str(model.rounds),
        "config": json.dumps(model.config.to_dict(), sort_keys=True),
        "calibration": model.calibrator.method,
        "features": str(len(model.features)),
        "engine": model.info.get("engine", "local"),
    }


def _scorer_metrics(evaluation: pl.DataFrame) -> dict[str, float]:
    out = {}
    for row in evaluation.iter_rows(named=True):
        for key, value in row.items():
            if key != "scorer" and isinstance(value, float):
                out[f"{row['scorer']}_{key}"] = value
    return out


def _run_name(as_of: dt.date, action: str, registered: dict[str, RegisteredModel],
              previous: str | None, experiment: str | None = None) -> str:
    if CHAMPION in registered:
        name = f"retrain {as_of} · v{registered[CHAMPION].version}"
    elif FALLBACK in registered:
        name = f"retrain {as_of} · fallback {registered[FALLBACK].name} v{registered[FALLBACK].version}"
    else:
        name = f"retrain {as_of} · keeps v{previous}"
    if CHALLENGER in registered:
        name += f" (challenger v{registered[CHALLENGER].version})"
    return f"experiment {experiment}: {name}" if experiment else name

