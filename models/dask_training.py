"""The trees of a ``FailureModel`` trained on a Dask cluster with LightGBM's own Dask support.

Chosen by ``TrainConfig.dask_scheduler`` (setting ``[engine] dask_scheduler``, env
``FAILCAST_DASK_SCHEDULER``): ``FailureModel.fit`` splits the days and fits the calibration as
always and hands only the boosting to ``train_trees``, so a model trained here scores exactly
like a local one.

- The tree period's rows go to the workers as partitions of whole as-of days, each partition
  straight to one worker (``Client.scatter``, partition ``i`` to worker ``i mod n``): no worker
  holds the whole tree period, and the scheduler never carries the data. Days are dealt to
  partitions in turn (day ``i`` to partition ``i mod n``), so every worker sees every season
  and LightGBM's histogram bins, found on the workers' data, describe the whole period.
- ``lightgbm.dask`` trains data-parallel (workers exchange histograms, not rows).
- ``lightgbm.dask`` has no early stopping, so the trees grow to ``max_rounds`` and the best
  iteration is chosen afterwards as ``lgb.early_stopping`` chooses it: the best average
  precision on the stopping period, up to the first ``early_stopping_rounds`` rounds without
  improvement.
- Two Dask fits of the same rows are not bit-identical (which worker ranks first, and so finds
  which features' histogram bins, varies from run to run); they differ about as much as two
  local fits with different seeds (docs/benchmarks.md).
"""

from __future__ import annotations

import warnings

import lightgbm as lgb
import numpy as np
import pandas as pd
import polars as pl
from sklearn.metrics import average_precision_score

from features.errors import ResourceError

# LightGBM's native parameter names (models.model.TrainConfig) and their scikit-learn names,
# which DaskLGBMClassifier takes without alias warnings.
_SKLEARN_NAMES = {"feature_fraction": "colsample_bytree", "bagging_fraction": "subsample",
                  "bagging_freq": "subsample_freq", "lambda_l2": "reg_lambda",
                  "seed": "random_state"}
# Not for a cluster: each worker uses its own threads; stopping is chosen afterwards (above).
_LOCAL_ONLY = {"num_threads", "metric", "first_metric_only"}


def connect(address: str, timeout: str = "30s"):
    """A client of the scheduler at ``address``, or one line saying it cannot be reached."""
    from distributed import Client

    try:
        return Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise ResourceError(
            f"the Dask scheduler at {address} is unreachable ({exc}); start it "
            "(`dask scheduler`, then `dask worker ADDRESS`) or unset FAILCAST_DASK_SCHEDULER"
        ) from None


def _partitions(frame: pl.DataFrame, features: list[str], count: int
                ) -> list[tuple[pd.DataFrame, pd.Series]]:
    from models.model import matrix

    days = frame["as_of"].unique().sort()
    count = max(1, min(count, days.len()))
    deal = pl.DataFrame({"as_of": days, "part": np.arange(days.len()) % count})
    dealt = frame.join(deal, on="as_of")
    parts = []
    for (_,), part in dealt.sort("part").group_by(["part"], maintain_order=True):
        X = pd.DataFrame(matrix(part, features), columns=features)
        parts.append((X, pd.Series(part["label"].cast(pl.Int8).to_numpy(), name="label")))
    return parts


def _on_cluster(client, parts: list[tuple[pd.DataFrame, pd.Series]], workers: list[str]):
    """Dask collections whose partitions already sit on the workers: part ``i`` and its labels
    on worker ``i mod n``, so every worker gets its share."""
    import dask.dataframe as dd

    xs, ys = [], []
    for i, (X, y) in enumerate(parts):
        where = [workers[i % len(workers)]]
        xs.append(client.scatter(X, workers=where))
        ys.append(client.scatter(y, workers=where))
    return (dd.from_delayed(xs, meta=parts[0][0].iloc[:0]),
            dd.from_delayed(ys, meta=parts[0][1].iloc[:0]))


def best_iteration(booster: lgb.Booster, X: np.ndarray, label: np.ndarray, patience: int) -> int:
    """The iteration ``lgb.early_stopping(patience)`` on average precision would keep."""
    margin = np.zeros(len(label))
    best_score, best = -np.inf, 1
    for i in range(booster.current_iteration()):
        margin += booster.predict(X, raw_score=True, start_iteration=i, num_iteration=1)
        score = average_precision_score(label, margin)
        if score > best_score:
            best_score, best = score, i + 1
        elif i + 1 - best >= patience:
            break
    return best


def train_trees(address: str, fit: pl.DataFrame, stop: pl.DataFrame | None, features: list[str],
                config) -> tuple[lgb.Booster, dict]:
    """Boosted trees on the cluster at ``address`` from the tree period ``fit``, stopped on
    ``stop`` (without it, all ``max_rounds``: a refit); returns the booster (cut at its best
    iteration) and facts for ``model.info``."""
    from lightgbm.dask import DaskLGBMClassifier

    from models.model import matrix

    params = {_SKLEARN_NAMES.get(k, k): v for k, v in config.lightgbm_params().items()
              if k not in _LOCAL_ONLY}
    client = connect(address)
    try:
        workers = sorted(client.scheduler_info(n_workers=-1)["workers"])
        if not workers:
            raise ResourceError(f"the Dask scheduler at {address} has no workers")
        X, y = _on_cluster(client, _partitions(fit, features, 2 * len(workers)), workers)
        estimator = DaskLGBMClassifier(client=client, n_estimators=config.max_rounds, **params)
        with client.as_current(), warnings.catch_warnings():
            # lightgbm.dask waits on its parts through the current client, and warns that the
            # scikit-learn default n_jobs gives way to each worker's own threads (as it should)
            warnings.filterwarnings("ignore", message="Parameter n_jobs will be ignored")
            estimator.fit(X, y)
        booster = estimator.booster_
    finally:
        client.close()
    if stop is None:
        return booster, {"engine": "dask", "dask_workers": len(workers),
                         "dask_partitions": X.npartitions}
    best = best_iteration(booster, matrix(stop, features), stop["label"].to_numpy(),
                          config.early_stopping_rounds)
    # Keep the trees up to the best iteration only, as a local early-stopped model is saved.
    kept = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
    kept.best_iteration = best
    return kept, {"engine": "dask", "dask_workers": len(workers),
                  "dask_partitions": X.npartitions}
