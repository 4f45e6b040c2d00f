"""Training on a Dask cluster (models.dask_training) against local training.

The cluster is real: ``distributed.LocalCluster`` with two worker processes of one thread each.
"""

from __future__ import annotations

import datetime as dt

import lightgbm as lgb
import numpy as np
import polars as pl
import pytest
from sklearn.metrics import average_precision_score

from features.errors import ResourceError
from models.dask_training import _partitions, best_iteration, connect
from models.dataset import Window
from models.lifecycle import PolicyConfig, RetrainPolicy, TrainingSet
from models.model import FailureModel, TrainConfig, matrix
from models.registry import ModelRegistry
from tests.production_servers import free_port

pytestmark = [pytest.mark.production, pytest.mark.xdist_group("dask")]
FEATURES = ["x", "y", "z", "noise1", "noise2"]


def estate_like(days: int, systems: int = 60, seed: int = 0, start=dt.date(2025, 1, 1)):
    """Rare failures driven by a main effect, an interaction and a threshold, plus noise."""
    rng = np.random.default_rng(seed)
    rows = days * systems
    x, y, z = rng.normal(size=rows), rng.normal(size=rows), rng.normal(size=rows)
    logit = -3.4 + 1.1 * x + 0.8 * x * y + 1.2 * (z > 1.0)
    day = np.repeat(np.arange(days), systems)
    return pl.DataFrame({
        "system_id": np.tile([f"S{i}" for i in range(systems)], days),
        "as_of": pl.Series([start + dt.timedelta(days=int(d)) for d in range(days)]).gather(day),
        "x": x.astype(np.float32), "y": y.astype(np.float32), "z": z.astype(np.float32),
        "noise1": rng.normal(size=rows).astype(np.float32),
        "noise2": rng.normal(size=rows).astype(np.float32),
        "label": rng.random(rows) < 1 / (1 + np.exp(-logit)),
    })


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as local:
        yield local.scheduler_address


def bootstrap_se(label: np.ndarray, score: np.ndarray, rounds: int = 200, seed: int = 0) -> float:
    """Standard error of the average precision over resampled hold-out rows."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(rounds):
        pick = rng.integers(0, len(label), len(label))
        if label[pick].any():
            values.append(average_precision_score(label[pick], score[pick]))
    return float(np.std(values))


def test_dask_model_pr_auc_is_within_noise_of_local_training(cluster):
    train, holdout = estate_like(240, seed=1), estate_like(60, seed=2, start=dt.date(2025, 9, 1))
    local = FailureModel.fit(train, FEATURES, TrainConfig())
    dask = FailureModel.fit(train, FEATURES, TrainConfig(dask_scheduler=cluster))
    label = holdout["label"].to_numpy()
    local_risk, dask_risk = local.predict(holdout), dask.predict(holdout)
    local_ap = average_precision_score(label, local_risk)
    dask_ap = average_precision_score(label, dask_risk)
    assert local_ap > 3 * label.mean()  # both learned something real ...
    assert abs(dask_ap - local_ap) < 2 * bootstrap_se(label, local_risk)  # ... and the same
    assert dask.info["engine"] == "dask" and dask.info["dask_workers"] == 2
    assert local.info["engine"] == "local"
    # the same kind of model: trees cut at their best iteration, then the calibration
    assert dask.booster.current_iteration() == dask.booster.best_iteration
    assert dask.split == local.split and dask.features == local.features
    assert ((dask_risk > 0) & (dask_risk < 1)).all()
    contributions = dask.contributions(holdout.head(20))
    assert np.allclose(contributions.sum(axis=1), dask.margin(holdout.head(20)), atol=1e-5)


def test_a_dask_training_run_is_tagged_engine_dask_in_mlflow(cluster, tmp_path):
    from mlflow import MlflowClient

    rows = estate_like(160, seed=3)
    train = rows.filter(pl.col("as_of") < dt.date(2025, 5, 1))
    holdout = rows.filter(pl.col("as_of") >= dt.date(2025, 5, 1))
    days = sorted(rows["as_of"].unique().to_list())
    refit = rows.filter(pl.col("as_of") >= days[len(days) - train["as_of"].n_unique()])
    training = TrainingSet(days[-1], train, holdout, refit, Window(days[0], train["as_of"].max()),
                           Window(holdout["as_of"].min(), days[-1]),
                           Window(refit["as_of"].min(), days[-1]))
    registry = ModelRegistry(f"sqlite:///{tmp_path / 'mlflow.db'}",
                             (tmp_path / "artifacts").as_uri(), "dask-test")
    policy = RetrainPolicy(PolicyConfig(candidate=TrainConfig(dask_scheduler=cluster)))
    outcome = policy.retrain(training, registry)
    version = next(iter(outcome.registered.values()))
    run = MlflowClient(registry.tracking_uri).get_run(version.run_id)
    assert run.data.tags["engine"] == "dask"
    assert run.data.params["candidate_dask_workers"] == "2"
    assert registry.version_tags(version.version)["engine"] == "dask"  # the refit's too


def test_partitions_hold_whole_days_dealt_in_turn():
    frame = estate_like(10, systems=4)
    parts = _partitions(frame.with_columns(pl.col("as_of")), FEATURES, 3)
    assert len(parts) == 3
    assert sum(len(X) for X, _ in parts) == frame.height
    assert sum(int(y.sum()) for _, y in parts) == int(frame["label"].sum())
    assert [len(X) for X, _ in parts] == [16, 12, 12]  # days 0,3,6,9 / 1,4,7 / 2,5,8
    assert list(parts[0][0].columns) == FEATURES
    assert len(_partitions(frame.head(8), FEATURES, 5)) == 2  # never more parts than days


def test_best_iteration_is_the_one_lightgbm_early_stopping_keeps():
    frame = estate_like(200, seed=4)
    fit, stop = frame.filter(pl.col("as_of") < dt.date(2025, 6, 1)), \
        frame.filter(pl.col("as_of") >= dt.date(2025, 6, 1))
    params = TrainConfig().lightgbm_params()
    X, Xs = matrix(fit, FEATURES), matrix(stop, FEATURES)
    stopped = lgb.train(params, lgb.Dataset(X, fit["label"].to_numpy()), num_boost_round=300,
                        valid_sets=[lgb.Dataset(Xs, stop["label"].to_numpy())],
                        callbacks=[lgb.early_stopping(20, verbose=False)])
    grown = lgb.train(params, lgb.Dataset(X, fit["label"].to_numpy()), num_boost_round=300)
    assert 1 < stopped.best_iteration < 300
    assert best_iteration(grown, Xs, stop["label"].to_numpy(), 20) == stopped.best_iteration


def test_an_unreachable_scheduler_is_one_clear_line():
    address = f"tcp://127.0.0.1:{free_port()}"
    with pytest.raises(ResourceError, match=f"Dask scheduler at {address} is unreachable"):
        connect(address, timeout="2s")
