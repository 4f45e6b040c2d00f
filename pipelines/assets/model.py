"""Model assets: the training set, the retrained model behind the gate, and the backtest.

All three run ``models.lifecycle.RetrainPolicy``: ``failure_model`` against MLflow, ``backtest``
against an in-memory registry over a range of days.
"""

import datetime as dt
from collections.abc import Iterator

import dagster as dg
import polars as pl
from pydantic import Field

from features.errors import DataError
from models.backtest import MODEL_SCORER, evaluate_scores, walk_forward, with_labels
from models.backtest_run import log_backtest
from models.evaluate import HEADLINE
from models.lifecycle import (
    CHAMPION,
    FALLBACK,
    RetrainPolicy,
    TrainingSet,
    champion_age,
    with_model,
)
from pipelines.metadata import markdown_table
from pipelines.mlflow_resource import MlflowResource
from pipelines.resources import FailcastResource

GROUP = "model"
GATE_CHECK = "champion_beats_baselines"


class ModelConfig(dg.Config):
    """An experiment from the launchpad: the model configuration to try. Every field left at
    its default keeps the policy's configuration (docs/model.md); a run that changes any of
    them, or names an experiment, is an experiment: its MLflow runs are tagged
    ``experiment=<name>``, and it moves the alias ``champion`` only by passing the gate."""

    experiment: str = Field(default="", description=(
        "a name for this experiment (tag 'experiment' in MLflow); empty with no other change: "
        "the production configuration"))
    num_leaves: int | None = Field(default=None, ge=2, description="leaves per tree (default 31)")
    learning_rate: float | None = Field(default=None, gt=0, le=1,
                                        description="boosting learning rate (default 0.05)")
    max_rounds: int | None = Field(default=None, ge=1,
                                   description="boosting rounds before early stopping (default 400)")
    min_child_samples: int | None = Field(default=None, ge=1,
                                          description="rows a leaf needs at least (default 40)")
    lambda_l2: float | None = Field(default=None, ge=0, description="L2 regularisation (default 5)")
    feature_fraction: float | None = Field(default=None, gt=0, le=1,
                                           description="share of features per tree (default 0.7)")
    quiet_per_failure: int | None = Field(default=None, ge=1, description=(
        "quiet rows kept per failure in the tree period (default 20; a training set built "
        "with more is thinned further at fit time)"))
    max_tree_rows: int | None = Field(default=None, ge=100, description=(
        "rows a bag's trees learn from at most: beyond, fewer quiet rows per failure "
        "(default 160,000; binds from about 7,600 failures in the tree period)"))
    leave_out_families: list[str] = Field(default=[], description=(
        "feature families the model does not use: metric, incidents, dependencies, peers, "
        "changes, change actions, calendar, inventory"))
    search: bool | None = Field(default=None, description=(
        "the model search inside the training window on or off (default: the setting "
        "[model] search, off unless set)"))
    blend_recent_rate: bool | None = Field(default=None, description=(
        "weigh the trees against the recent incident rate on the calibration period when it "
        "holds 400 failures (default true; false calibrates the trees' margin alone)"))
    case_library_mode: bool | None = Field(default=None, description=(
        "without metric features: at most 15 leaves, 100 rows a leaf, L2 20 and the long "
        "incident memory and 5 bags; with them: none of these (default true; false: all "
        "features, the trees as set)"))
    bags: int | None = Field(default=None, ge=1, le=20, description=(
        "grow the trees this many times from consecutive seeds, calibrate each on its own and "
        "average their probabilities "
        "(default 1; at least 5 without metric features in case-library mode)"))

    def train_settings(self) -> dict:
        return {k: getattr(self, k) for k in ("num_leaves", "learning_rate", "max_rounds",
                                              "min_child_samples", "lambda_l2",
                                              "feature_fraction", "quiet_per_failure",
                                              "max_tree_rows", "blend_recent_rate",
                                              "case_library_mode", "bags")}

    @property
    def changed(self) -> dict:
        """What this run changes in the policy's configuration (empty: nothing)."""
        out = {k: v for k, v in self.train_settings().items() if v is not None}
        if self.leave_out_families:
            out["leave_out_families"] = sorted(self.leave_out_families)
        if self.search is not None:
            out["search"] = self.search
        return out

    @property
    def experiment_name(self) -> str | None:
        """The experiment's name; None for the production configuration."""
        return self.experiment or ("unnamed" if self.changed else None)

    def policy(self, settings) -> RetrainPolicy:
        return RetrainPolicy(with_model(settings.policy().config, train=self.train_settings(),
                                        leave_out=self.leave_out_families, search_on=self.search))

    def tags(self) -> dict[str, str]:
        import json

        name = self.experiment_name
        return {"experiment": name, "experiment.changes": json.dumps(self.changed, sort_keys=True)} \
            if name else {}


class TrainingConfig(dg.Config):
    as_of: str | None = None  # default: the latest as-of day with features
    quiet_per_failure: int | None = Field(default=None, ge=1, description=(
        "quiet rows kept per failure in the tree period of the training set (default 20)"))
    max_tree_rows: int | None = Field(default=None, ge=100, description=(
        "rows of the tree period kept for a bag at most (default 160,000)"))


class RetrainConfig(ModelConfig):
    retire_broken_champion: bool = False  # take the alias off a champion whose files are gone


class BacktestConfig(ModelConfig):
    start: str | None = None  # default: 120 sessions before the end
    end: str | None = None  # default: the latest as-of day whose labels are known


def latest_features_day(con) -> dt.date:
    found = con.execute("SELECT max(as_of) FROM system_day_features").fetchall()[0][0]
    if found is None:
        raise DataError("no features in the warehouse yet: run the features job first")
    return found


def _evaluation_metadata(table: pl.DataFrame) -> dg.MetadataValue:
    columns = ["scorer", *HEADLINE, "mean_risk", "base_rate"]
    return markdown_table(table.select([c for c in columns if c in table.columns]))


def _gate_metadata(decision) -> dg.MetadataValue:
    return markdown_table(pl.DataFrame(
        [{"scorer": c.scorer, "reference": c.reference, "pr_auc": c.pr_auc,
          "reference_pr_auc": c.reference_pr_auc, "difference": c.difference,
          "interval": c.interval(), "brier_ok": c.brier_ok, "beats": c.beats}
         for c in decision.comparisons],
        schema={"scorer": pl.String, "reference": pl.String, "pr_auc": pl.Float64,
                "reference_pr_auc": pl.Float64, "difference": pl.Float64, "interval": pl.String,
                "brier_ok": pl.Boolean, "beats": pl.Boolean}))


@dg.asset(
    group_name=GROUP,
    kinds={"polars", "parquet"},
    deps=["system_day_features"],
    io_manager_key="training_set_io",
    description=(
        "Feature rows with the labels known at the training day: the gated fit's days (quiet "
        "rows of the tree period thinned), the held-out days after them, and the refit's days "
        "up to the latest labelled day; one folder per run under training_sets/."
    ),
)
def training_set(context: dg.AssetExecutionContext, config: TrainingConfig,
                 failcast: FailcastResource) -> TrainingSet:
    settings = failcast.settings
    with settings.warehouse().reader() as con:
        as_of = dt.date.fromisoformat(config.as_of) if config.as_of else latest_features_day(con)
        policy = settings.policy()
        thinning = {"quiet_per_failure": config.quiet_per_failure,
                    "max_tree_rows": config.max_tree_rows}
        if any(thinning.values()):
            policy = RetrainPolicy(with_model(policy.config, train=thinning))
        training = policy.build_training_set(con, settings.calendar, as_of)
    context.add_output_metadata({
        "as_of": str(as_of),
        "periods": markdown_table(training.summary()),
        "dagster/row_count": training.train.height + training.holdout.height
        + training.refit.height,
    })
    return training


@dg.asset(
    group_name=GROUP,
    kinds={"lightgbm", "mlflow"},
    description=(
        "The retraining policy, run: the candidate (and the champion's configuration) judged "
        "on the held-out days against the baselines beyond noise, the configuration that "
        "serves refitted through the latest labelled day and registered whole in MLflow; the "
        "alias 'champion' moves only after that (the best baseline's 'fallback' while no model "
        "passes)."
    ),
    check_specs=[dg.AssetCheckSpec(GATE_CHECK, asset="failure_model", blocking=True)],
)
def failure_model(context: dg.AssetExecutionContext, config: RetrainConfig,
                  training_set: TrainingSet, failcast: FailcastResource,
                  mlflow: MlflowResource) -> Iterator:
    settings = failcast.settings
    registry = mlflow.registry()
    registry.check_available(write=True)  # before the training, not after it
    if config.retire_broken_champion:
        retired = registry.retire_broken_champion()
        context.log.warning(retired or "the champion is whole (or there is none): nothing retired")
    outcome = config.policy(settings).retrain(
        training_set, registry, log=context.log.info, experiment=config.experiment_name,
        tags={"dagster_run_id": context.run.run_id, "training_set": training_set.origin,
              **config.tags()})
    served = outcome.served
    age = (champion_age(settings.calendar, served.trained_through, training_set.as_of)
           if served.trained_through else None)
    context.log.info(f"{outcome.action}: {served.registered.name} v{served.registered.version} "
                     f"serves ({outcome.reason[:300]})")
    yield dg.MaterializeResult(metadata={
        "action": outcome.action,
        "serving": f"{served.registered.name} v{served.registered.version} "
                   f"({served.registered.alias})",
        "trained_through": str(served.trained_through),
        "champion_age_sessions": age,
        "registered": ", ".join(f"{role} v{m.version}" for role, m in outcome.registered.items())
        or "nothing",
        "decision": outcome.reason,
        "gate": _gate_metadata(outcome.decision),
        "mlflow_run": dg.MetadataValue.url(outcome.run_url or ""),
        "holdout_evaluation": _evaluation_metadata(outcome.evaluation),
        "training_set": training_set.origin,
        **({"top_features": markdown_table(outcome.candidate.importance().head(15))}
           if outcome.candidate is not None else {}),
        **({"model_search": markdown_table(outcome.searched.table.select(
            "name", "changes", "inner_pr_auc", "inner_failures", "rounds", "seconds", "chosen"))}
           if outcome.searched is not None else {}),
        **({"experiment": config.experiment_name, "experiment_changes": str(config.changed)}
           if config.experiment_name else {}),
    })
    model_serves = served.registered.alias == CHAMPION
    yield dg.AssetCheckResult(
        check_name=GATE_CHECK,
        passed=model_serves,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"serving": f"{served.registered.name} v{served.registered.version}",
                  "action": outcome.action},
        description=("A model that beat the baselines on its held-out days serves." if model_serves
                     else f"No model has passed the gate yet: {served.registered.name} scores "
                          f"(alias '{FALLBACK}') until one does."),
    )


@dg.asset(
    group_name=GROUP,
    kinds={"lightgbm", "mlflow", "duckdb"},
    deps=["system_day_features"],
    description=(
        "Walk-forward backtest of the deployed retraining policy on the warehouse: every as-of "
        "day in the range scored by what would have served then (table backtest_scores)."
    ),
)
def backtest(context: dg.AssetExecutionContext, config: BacktestConfig,
             failcast: FailcastResource, mlflow: MlflowResource) -> dg.MaterializeResult:
    settings = failcast.settings
    calendar = settings.calendar
    policy = config.policy(settings)
    with settings.warehouse().reader() as con:
        latest = latest_features_day(con)
        end = dt.date.fromisoformat(config.end) if config.end else calendar.previous_session(latest)
        start = (dt.date.fromisoformat(config.start) if config.start
                 else calendar.sessions_back(calendar.last_session_on_or_before(end), 120))
        scores, steps = walk_forward(
            con, calendar, start, end, policy, model_name=settings.model_name,
            on_step=lambda step, done, total: context.log.info(
                f"backtest {done}/{total}: {step.retrained_on} {step.action}, "
                f"{step.scorer} v{step.version}"),
        )
        scores = with_labels(con, calendar, scores, settings.max_severity, latest)
    table = evaluate_scores(scores)
    with settings.warehouse().writer() as con:
        con.register("backtest_frame", scores)
        con.execute("CREATE OR REPLACE TABLE backtest_scores AS SELECT * FROM backtest_frame")
        con.unregister("backtest_frame")
    actions = pl.DataFrame({"action": [s.action for s in steps]}).group_by("action").len()
    metadata = {"as_of_range": f"{start}..{end}", "dagster/row_count": scores.height,
                "retrainings": len(steps), "cadence": policy.config.cadence,
                "actions": markdown_table(actions.rename({"len": "retrainings"})),
                "evaluation": _evaluation_metadata(table)}
    if table.height:
        run_id, experiment_id = log_backtest(mlflow.registry(), scores, table, steps, policy, {
            "start": start, "end": end, "source": settings.source},
            {"dagster_run_id": context.run.run_id, **config.tags()})
        metadata["mlflow_run"] = dg.MetadataValue.url(mlflow.registry().run_url(run_id, experiment_id))
        metadata["pr_auc"] = table.filter(pl.col("scorer") == MODEL_SCORER).row(0, named=True)["pr_auc"]
    return dg.MaterializeResult(metadata=metadata)


model_assets = [training_set, failure_model, backtest]
