"""MLflow: every training run tracked, every model registered, one alias ``champion`` scores.

A thin layer over ``MlflowClient`` and MLflow's LightGBM flavour. The booster is logged with a
signature; the calibration and the feature list travel as JSON artifacts of the same run, so a
registered version is the whole model. ``mlflow`` is imported only when a method needs it.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from features.errors import DataError
from models.calibration import Calibrator
from models.model import FailureModel
from models.spreadsheet import neutralise_formulas

CHAMPION, CHALLENGER = "champion", "challenger"


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    version: str
    run_id: str
    alias: str | None = None


class ModelRegistry:
    def __init__(self, tracking_uri: str, artifact_location: str | None, model_name: str,
                 experiment: str = "failcast") -> None:
        self.tracking_uri = tracking_uri
        self.artifact_location = artifact_location
        self.model_name = model_name
        self.experiment = experiment

    # ------------------------------------------------------------------ plumbing
    def _mlflow(self):
        import os

        # Downloads of a model's JSON files should not draw progress bars on the console; the
        # tracking URI is always explicit here, never the working directory's default.
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        import mlflow

        mlflow.set_tracking_uri(self.tracking_uri)
        return mlflow

    def client(self):
        from mlflow import MlflowClient

        self._mlflow()
        return MlflowClient(tracking_uri=self.tracking_uri)

    def experiment_id(self, name: str | None = None) -> str:
        mlflow = self._mlflow()
        name = name or self.experiment
        found = mlflow.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        location = f"{self.artifact_location}/{name}" if self.artifact_location else None
        return mlflow.create_experiment(name, artifact_location=location)

    def run_url(self, run_id: str, experiment_id: str) -> str:
        base = self.tracking_uri if self.tracking_uri.startswith("http") else "http://127.0.0.1:5000"
        return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"

    # ------------------------------------------------------------------ writing
    def log_training(
        self,
        model: FailureModel,
        *,
        params: dict,
        metrics: dict[str, float],
        tables: dict[str, pl.DataFrame],
        plots: dict[str, Path],
        tags: dict[str, str],
        sample: pl.DataFrame,
    ) -> RegisteredModel:
        """Log one training run and register its model as a new version."""
        self._mlflow()
        import mlflow
        import mlflow.lightgbm
        from mlflow.models import infer_signature

        experiment_id = self.experiment_id()
        with mlflow.start_run(experiment_id=experiment_id, run_name=tags.get("run_name")) as run:
            mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
            mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v == v})  # skip NaN
            mlflow.set_tags(tags)
            mlflow.log_dict(model.calibrator.to_dict(), "calibration.json")
            mlflow.log_dict({"features": model.features, "info": model.info,
                             "split": model.split.to_dict() if model.split else None},
                            "features.json")
            for name, frame in tables.items():
                mlflow.log_text(neutralise_formulas(frame).write_csv(), f"tables/{name}.csv")
            for path in plots.values():
                mlflow.log_artifact(str(path), "plots")
            example = sample.select(model.features).head(5).to_pandas()
            signature = infer_signature(example, model.margin(sample.head(5)))
            info = mlflow.lightgbm.log_model(
                model.booster, name="model", signature=signature,
                registered_model_name=self.model_name,
            )
        version = str(info.registered_model_version)
        return RegisteredModel(self.model_name, version, run.info.run_id)

    def set_alias(self, version: str, alias: str) -> None:
        self.client().set_registered_model_alias(self.model_name, alias, version)

    def tag_version(self, version: str, tags: dict[str, str]) -> None:
        client = self.client()
        for key, value in tags.items():
            client.set_model_version_tag(self.model_name, version, key, str(value))

    # ------------------------------------------------------------------ reading
    def version_by_alias(self, alias: str = CHAMPION):
        """The model version behind an alias, or None when there is none yet."""
        from mlflow.exceptions import MlflowException

        try:
            return self.client().get_model_version_by_alias(self.model_name, alias)
        except MlflowException:
            return None

    def load(self, alias: str = CHAMPION) -> tuple[FailureModel, RegisteredModel]:
        """The whole model (trees, calibration, features) behind an alias."""
        version = self.version_by_alias(alias)
        if version is None:
            raise DataError(
                f"no model has the alias {alias!r} in {self.model_name!r} yet: train one "
                "(the retrain job, or `failcast demo`)"
            )
        self._mlflow()
        import mlflow
        import mlflow.lightgbm

        booster = mlflow.lightgbm.load_model(f"models:/{self.model_name}@{alias}")
        with tempfile.TemporaryDirectory() as tmp:
            calib = mlflow.artifacts.download_artifacts(
                run_id=version.run_id, artifact_path="calibration.json", dst_path=tmp)
            feats = mlflow.artifacts.download_artifacts(
                run_id=version.run_id, artifact_path="features.json", dst_path=tmp)
            calibrator = Calibrator.from_dict(json.loads(Path(calib).read_text()))
            described = json.loads(Path(feats).read_text())
        model = FailureModel(booster, described["features"], calibrator, None, described["info"])
        return model, RegisteredModel(self.model_name, str(version.version), version.run_id, alias)

    def version_tags(self, alias: str = CHAMPION) -> dict[str, str]:
        version = self.version_by_alias(alias)
        return dict(version.tags) if version is not None else {}

    def log_backtest(self, *, params: dict, metrics: dict[str, float], table: pl.DataFrame,
                     tags: dict[str, str]) -> tuple[str, str]:
        """A backtest as a run of its own experiment; returns (run id, experiment id)."""
        mlflow = self._mlflow()
        experiment_id = self.experiment_id(f"{self.experiment}-backtests")
        with mlflow.start_run(experiment_id=experiment_id, run_name=tags.get("run_name")) as run:
            mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
            mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v == v})
            mlflow.set_tags(tags)
            mlflow.log_text(neutralise_formulas(table).write_csv(), "backtest_metrics.csv")
        return run.info.run_id, experiment_id
