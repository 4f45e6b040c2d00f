"""The MLflow registry: whole models, aliases resolved once, the runs a data scientist reads."""

from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.exceptions import MlflowException

from models.lifecycle import CHALLENGER, CHAMPION, FALLBACK
from models.model import TrainConfig
from models.registry import EXPERIMENT_KIND, ModelRegistry, scoring_requirements
from tests.test_lifecycle import GOOD, WEAK, policy, synthetic, training_set

# The module's MLflow store with a registered retrain is built by one worker.
pytestmark = pytest.mark.xdist_group("registry_store")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow")
    registry = ModelRegistry(f"sqlite:///{root / 'mlflow.db'}", (root / "artifacts").as_uri(),
                             "failcast-risk", timeout=10)
    frame, dates = synthetic()
    outcome = policy().retrain(training_set(frame, dates), registry)
    return registry, frame, dates, outcome


def test_no_alias_is_none_only_when_mlflow_says_it_does_not_exist(tmp_path):
    registry = ModelRegistry(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path.as_uri(), "m")
    assert registry.resolve(CHAMPION) is None  # no registered model: RESOURCE_DOES_NOT_EXIST
    registry.client().create_registered_model("m")
    # MLflow answers an alias missing from an existing model with INVALID_PARAMETER_VALUE; the
    # registry reads the model's alias list instead of guessing from the error.
    assert registry.resolve(CHAMPION) is None


def test_the_registered_model_is_the_whole_model(store):
    registry, frame, dates, outcome = store
    served = registry.served(CHAMPION)
    rows = frame.filter(frame["as_of"] == dates[140])
    loaded = mlflow.pyfunc.load_model(f"models:/{registry.model_name}@{CHAMPION}")
    pandas = rows.with_columns(comment=rows["system_id"] + " extra").to_pandas()  # extra column
    risk = loaded.predict(pandas)
    assert np.array_equal(np.asarray(risk), np.clip(served.scorer.predict(rows), 0, 1))
    assert np.array_equal(np.asarray(risk), outcome.served.scorer.predict(rows))
    assert served.trained_through == dates[129]
    with pytest.raises(MlflowException, match="missing inputs"):
        loaded.predict(pandas.drop(columns=[served.scorer.features[0]]))


def test_the_registered_model_names_what_it_needs_to_score(store):
    """Pinned to the versions that trained it, not inferred by loading it in a subprocess."""
    registry, *_ = store
    path = mlflow.pyfunc.get_model_dependencies(f"models:/{registry.model_name}@{CHAMPION}")
    needs = set(Path(path).read_text().split())
    assert set(scoring_requirements()) <= needs
    assert f"mlflow=={mlflow.__version__}" in needs
    # The tests run in the repository, a uv project: its lock file is not the model's.
    model = Path(mlflow.artifacts.download_artifacts(f"models:/{registry.model_name}@{CHAMPION}"))
    files = {f.name for f in model.iterdir()}
    assert "requirements.txt" in files and not {"uv.lock", "pyproject.toml"} & files


def test_the_run_reads_like_a_model_training_run(store):
    registry, _, _, outcome = store
    client = registry.client()
    experiment = client.get_experiment_by_name(registry.experiment)
    assert experiment.tags["mlflow.experimentKind"] == EXPERIMENT_KIND["mlflow.experimentKind"]
    version = registry.resolve(CHAMPION)
    run = client.get_run(version.run_id)
    assert run.info.run_name == f"retrain {outcome.as_of} · v{version.version}"
    assert run.data.tags["gate.action"] == "promote"
    assert "interval" in run.data.tags["gate.reason"]
    assert {"candidate_pr_auc", "recent_incident_rate_pr_auc", "operator_rule_brier",
            "gate_candidate_vs_recent_incident_rate_low"} <= set(run.data.metrics)
    assert run.data.params["cadence"] == "weekly" and run.data.params["holdout"]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert {"plots/pr_curve.png", "plots/calibration.png"} <= artifacts
    assert version.tags["evaluation.run_id"] == run.info.run_id


def test_a_challenger_and_a_fallback_are_registered_whole_too(store, tmp_path):
    registry, frame, dates, _ = store
    fresh = ModelRegistry(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path.as_uri(), "m", timeout=10)
    outcome = policy(WEAK, min_improvement=0.9).retrain(training_set(frame, dates), fresh)
    assert outcome.action == "fallback"
    rows = frame.filter(frame["as_of"] == dates[140]).with_columns(
        inc_90d=(frame["x"].head(60) > 1).cast(float), days_to_target=1.0)  # the baseline's inputs
    for alias in (CHALLENGER, FALLBACK):
        served = fresh.served(alias)
        loaded = mlflow.pyfunc.load_model(f"models:/m@{alias}")
        assert np.array_equal(np.asarray(loaded.predict(rows.to_pandas())),
                              np.clip(served.scorer.predict(rows), 0, 1))
    assert fresh.served(FALLBACK).registered.name.startswith("baseline:")
    assert fresh.served(CHALLENGER).config == WEAK
    assert fresh.resolve(CHAMPION) is None
    assert TrainConfig.from_dict(GOOD.to_dict()) == GOOD


def test_a_champion_registered_before_models_were_whole_still_scores(store, tmp_path):
    """failcast 0.1 registered the bare booster (MLflow's LightGBM flavour) with the calibration
    and the feature list as JSON files of its run; such a champion keeps scoring."""
    from dataclasses import replace

    import mlflow.lightgbm

    _, frame, dates, outcome = store
    model = replace(outcome.candidate, bags=(), bag_calibrations=())  # that format held one booster
    old = ModelRegistry(f"sqlite:///{tmp_path / 'old.db'}", tmp_path.as_uri(), "m", timeout=10)
    mlflow.set_tracking_uri(old.tracking_uri)
    with mlflow.start_run(experiment_id=old.experiment_id()):
        mlflow.log_dict(model.calibrator.to_dict(), "calibration.json")
        mlflow.log_dict({"features": model.features, "info": model.info}, "features.json")
        info = mlflow.lightgbm.log_model(model.booster, name="model", registered_model_name="m")
    old.set_alias(CHAMPION, str(info.registered_model_version))
    rows = frame.filter(frame["as_of"] == dates[140])
    served = old.served(CHAMPION)
    assert np.array_equal(served.scorer.predict(rows), model.predict(rows))
