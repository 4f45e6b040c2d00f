"""Model assets: the training set, the gated failure model, and the walk-forward backtest."""

import datetime as dt
import json
from collections.abc import Iterator

import dagster as dg
import polars as pl

from features.errors import DataError
from models.backtest import evaluate_scores, walk_forward, with_labels
from models.evaluate import HEADLINE
from models.lifecycle import MODEL, TrainingSet, build_training_set, train_and_gate
from models.model import TrainConfig
from models.registry import CHAMPION
from pipelines.metadata import markdown_table
from pipelines.mlflow_resource import MlflowResource
from pipelines.resources import FailcastResource

GROUP = "model"
GATE_CHECK = "champion_beats_baselines"


class TrainingConfig(dg.Config):
    as_of: str | None = None  # default: the latest as-of day with features


class BacktestConfig(dg.Config):
    start: str | None = None  # default: 120 sessions before the end
    end: str | None = None  # default: the latest as-of day whose labels are known
    retrain: str = "monthly"


def latest_features_day(con) -> dt.date:
    found = con.execute("SELECT max(as_of) FROM system_day_features").fetchall()[0][0]
    if found is None:
        raise DataError("no features in the warehouse yet: run the features job first")
    return found


def _evaluation_metadata(table: pl.DataFrame) -> dg.MetadataValue:
    columns = ["scorer", *HEADLINE, "mean_risk", "base_rate"]
    return markdown_table(table.select([c for c in columns if c in table.columns]))


def _training_paths(failcast: FailcastResource):
    folder = failcast.settings.home / "training"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / "train.parquet", folder / "holdout.parquet", folder / "training_set.json"


@dg.asset(
    group_name=GROUP,
    kinds={"polars", "parquet"},
    deps=["system_day_features"],
    description=(
        "Feature rows with the labels known at the training day: the training days (quiet "
        "rows of the tree period thinned) and the held-out days after them, as Parquet."
    ),
)
def training_set(config: TrainingConfig, failcast: FailcastResource) -> dg.MaterializeResult:
    settings = failcast.settings
    with settings.warehouse().reader() as con:
        as_of = dt.date.fromisoformat(config.as_of) if config.as_of else latest_features_day(con)
        training = build_training_set(con, settings.calendar, as_of,
                                      max_severity=settings.max_severity,
                                      train_sessions=settings.train_window_days,
                                      holdout_sessions=settings.holdout_days)
    train_path, holdout_path, meta_path = _training_paths(failcast)
    training.train.write_parquet(train_path)
    training.holdout.write_parquet(holdout_path)
    meta_path.write_text(json.dumps({
        "as_of": str(as_of),
        "train": [str(training.train_window.first), str(training.train_window.last)],
        "holdout": [str(training.holdout_window.first), str(training.holdout_window.last)],
    }))
    return dg.MaterializeResult(metadata={
        "as_of": str(as_of),
        "periods": markdown_table(training.summary()),
        "dagster/row_count": training.train.height + training.holdout.height,
        "path": dg.MetadataValue.path(str(train_path.parent)),
    })


def _load_training_set(failcast: FailcastResource) -> TrainingSet:
    from models.dataset import Window

    train_path, holdout_path, meta_path = _training_paths(failcast)
    if not meta_path.exists():
        raise DataError("no training set yet: materialize training_set first")
    meta = json.loads(meta_path.read_text())

    def window(pair):
        return Window(dt.date.fromisoformat(pair[0]), dt.date.fromisoformat(pair[1]))

    return TrainingSet(dt.date.fromisoformat(meta["as_of"]), pl.read_parquet(train_path),
                       pl.read_parquet(holdout_path), window(meta["train"]), window(meta["holdout"]))


@dg.asset(
    group_name=GROUP,
    kinds={"lightgbm", "mlflow"},
    deps=["training_set"],
    description=(
        "LightGBM failure model, calibrated on a later period, compared with the baselines and "
        "the champion on the held-out days, logged and registered in MLflow; the alias "
        "'champion' moves only to a model that beats both."
    ),
    check_specs=[dg.AssetCheckSpec(GATE_CHECK, asset="failure_model", blocking=True)],
)
def failure_model(context: dg.AssetExecutionContext, failcast: FailcastResource,
                  mlflow: MlflowResource) -> Iterator:
    training = _load_training_set(failcast)
    registry = mlflow.registry()
    plots_dir = failcast.settings.home / "training" / "plots"
    scheduler = failcast.settings.dask_scheduler
    outcome = train_and_gate(training, registry, plots_dir=plots_dir,
                             config=TrainConfig(dask_scheduler=scheduler),
                             tags={"dagster_run_id": context.run.run_id,
                                   "run_name": f"train {training.as_of}"})
    context.log.info(f"model v{outcome.registered.version}: {outcome.role} ({outcome.reason})")
    yield dg.MaterializeResult(metadata={
        "model_version": outcome.registered.version,
        "alias": outcome.role,
        "decision": outcome.reason,
        "mlflow_run": dg.MetadataValue.url(outcome.run_url),
        "holdout_evaluation": _evaluation_metadata(outcome.evaluation),
        "pr_auc": outcome.metrics["pr_auc"],
        "brier": outcome.metrics["brier"],
        "features": len(outcome.model.features),
        "plots": dg.MetadataValue.path(str(plots_dir)),
        "top_features": markdown_table(outcome.model.importance().head(15)),
    })
    champion = registry.version_tags(CHAMPION)
    yield dg.AssetCheckResult(
        check_name=GATE_CHECK,
        passed=champion.get("beats_baselines") == "True",
        metadata={"champion_holdout_pr_auc": champion.get("holdout_pr_auc", ""),
                  "champion_decision": champion.get("decision", "no champion")},
        description="The model that scores beat the baselines on its held-out days.",
    )


@dg.asset(
    group_name=GROUP,
    kinds={"lightgbm", "mlflow", "duckdb"},
    deps=["system_day_features"],
    description=(
        "Walk-forward backtest on the warehouse: every as-of day in the range scored by a model "
        "retrained monthly on the labels known at the time (table backtest_scores)."
    ),
)
def backtest(context: dg.AssetExecutionContext, config: BacktestConfig,
             failcast: FailcastResource, mlflow: MlflowResource) -> dg.MaterializeResult:
    settings = failcast.settings
    calendar = settings.calendar
    with settings.warehouse().reader() as con:
        latest = latest_features_day(con)
        end = dt.date.fromisoformat(config.end) if config.end else calendar.previous_session(latest)
        start = (dt.date.fromisoformat(config.start) if config.start
                 else calendar.sessions_back(calendar.last_session_on_or_before(end), 120))
        scores, steps = walk_forward(
            con, calendar, start, end, max_severity=settings.max_severity,
            train_sessions=settings.train_window_days, retrain=config.retrain,
            on_step=lambda step, done, total: context.log.info(
                f"backtest {done}/{total}: {step.retrained_on} {step.scorer} {step.note}"),
        )
        scores = with_labels(con, calendar, scores, settings.max_severity, latest)
    table = evaluate_scores(scores)
    with settings.warehouse().writer() as con:
        con.register("backtest_frame", scores)
        con.execute("CREATE OR REPLACE TABLE backtest_scores AS SELECT * FROM backtest_frame")
        con.unregister("backtest_frame")
    metadata = {"as_of_range": f"{start}..{end}", "dagster/row_count": scores.height,
                "retrainings": len(steps), "evaluation": _evaluation_metadata(table)}
    if table.height:
        model_row = table.filter(pl.col("scorer") == MODEL).row(0, named=True)
        run_id, experiment_id = mlflow.registry().log_backtest(
            params={"start": start, "end": end, "retrain": config.retrain,
                    "train_sessions": settings.train_window_days, "source": settings.source},
            metrics={f"{row['scorer'].replace(' ', '_')}_{k}": row[k]
                     for row in table.iter_rows(named=True) for k in HEADLINE},
            table=table, tags={"dagster_run_id": context.run.run_id,
                               "run_name": f"backtest {start}..{end}"})
        metadata["mlflow_run"] = dg.MetadataValue.url(mlflow.registry().run_url(run_id, experiment_id))
        metadata["pr_auc"] = model_row["pr_auc"]
    return dg.MaterializeResult(metadata=metadata)


model_assets = [training_set, failure_model, backtest]
