"""The failure model: LightGBM trees on the oldest days, calibrated on the newest.

``FailureModel.fit`` splits the labelled as-of days by time, never at random:

    oldest 70%  -> the trees (quiet rows thinned by ``models.dataset``: failures are rare, and
                   the calibration below puts the probabilities back where they belong)
    next   15%  -> early stopping (all rows)
    newest 15%  -> probability calibration (all rows)

so the calibration is fitted on a later period than the trees, and a published 0.2 means
about one failure in five.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import lightgbm as lgb
import numpy as np
import polars as pl

from features.errors import DataError
from models.calibration import Calibrator


class NotEnoughData(DataError):
    """Too few failures (or days) in the training window to fit a model."""


@dataclass(frozen=True)
class TrainConfig:
    num_leaves: int = 31
    learning_rate: float = 0.05
    max_rounds: int = 400
    early_stopping_rounds: int = 40
    min_child_samples: int = 40
    feature_fraction: float = 0.7
    bagging_fraction: float = 0.8
    lambda_l2: float = 5.0
    quiet_per_failure: int = 20  # quiet rows kept per failure in the tree period (dataset)
    fit_share: float = 0.70
    stop_share: float = 0.15
    min_failures: int = 20
    threads: int = 2
    seed: int = 7
    dask_scheduler: str | None = None  # a Dask scheduler address: the trees grow on that cluster

    def lightgbm_params(self) -> dict:
        return {
            "objective": "binary",
            "metric": ["average_precision", "binary_logloss"],
            "first_metric_only": True,
            "num_leaves": self.num_leaves,
            "learning_rate": self.learning_rate,
            "min_child_samples": self.min_child_samples,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": 1,
            "lambda_l2": self.lambda_l2,
            "num_threads": self.threads,
            "seed": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "verbose": -1,
        }


@dataclass
class TimeSplit:
    fit: tuple[dt.date, dt.date]
    stop: tuple[dt.date, dt.date]
    calibrate: tuple[dt.date, dt.date]

    @classmethod
    def of(cls, days: list[dt.date], fit_share: float, stop_share: float) -> TimeSplit:
        if len(days) < 10:
            raise NotEnoughData(f"{len(days)} labelled days; a model needs at least 10")
        a = max(1, int(len(days) * fit_share))
        b = max(a + 1, int(len(days) * (fit_share + stop_share)))
        b = min(b, len(days) - 1)
        return cls((days[0], days[a - 1]), (days[a], days[b - 1]), (days[b], days[-1]))

    def to_dict(self) -> dict:
        return {k: [str(v[0]), str(v[1])] for k, v in
                (("fit", self.fit), ("stop", self.stop), ("calibrate", self.calibrate))}


def _between(frame: pl.DataFrame, span: tuple[dt.date, dt.date]) -> pl.DataFrame:
    return frame.filter(pl.col("as_of").is_between(span[0], span[1]))


def matrix(frame: pl.DataFrame, features: list[str]) -> np.ndarray:
    """The frame's features as float32, in the model's order; absent columns are missing."""
    present = [pl.col(c) if c in frame.columns else pl.lit(None).alias(c) for c in features]
    return frame.select(present).cast(pl.Float32).to_numpy()


@dataclass
class FailureModel:
    booster: lgb.Booster
    features: list[str]
    calibrator: Calibrator
    split: TimeSplit | None = None
    info: dict = field(default_factory=dict)

    # ------------------------------------------------------------------ training
    @classmethod
    def fit(cls, frame: pl.DataFrame, features: list[str], config: TrainConfig | None = None,
            ) -> FailureModel:
        """Train on a frame with ``as_of``, ``label`` and the ``features`` columns."""
        config = config or TrainConfig()
        failures = int(frame["label"].sum())
        if failures < config.min_failures:
            raise NotEnoughData(
                f"{failures} failures in the training window; a model needs {config.min_failures}")
        days = sorted(frame["as_of"].unique().to_list())
        split = TimeSplit.of(days, config.fit_share, config.stop_share)
        fit = _between(frame, split.fit)
        stop, calibrate = _between(frame, split.stop), _between(frame, split.calibrate)
        if stop["label"].sum() == 0 or calibrate["label"].sum() == 0:
            # Few failures late in the window: stop and calibrate on the same later period
            # rather than fail; it is still later than the trees.
            later = pl.concat([stop, calibrate])
            stop = calibrate = later
            if later["label"].sum() == 0:
                raise NotEnoughData("no failure after the tree period to calibrate on")
        useful = [c for c in features if fit[c].null_count() < fit.height]
        engine = {"engine": "local"}
        if config.dask_scheduler:
            from models.dask_training import train_trees

            booster, engine = train_trees(config.dask_scheduler, fit, stop, useful, config)
        else:
            train_set = lgb.Dataset(matrix(fit, useful), fit["label"].to_numpy(),
                                    feature_name=useful, free_raw_data=True)
            stop_set = lgb.Dataset(matrix(stop, useful), stop["label"].to_numpy(),
                                   reference=train_set)
            booster = lgb.train(
                config.lightgbm_params(),
                train_set,
                num_boost_round=config.max_rounds,
                valid_sets=[stop_set],
                callbacks=[lgb.early_stopping(config.early_stopping_rounds, verbose=False)],
            )
        margin = booster.predict(matrix(calibrate, useful), raw_score=True,
                                 num_iteration=booster.best_iteration)
        calibrator = Calibrator.fit(margin, calibrate["label"].to_numpy())
        info = {
            "rows": frame.height,
            "failures": failures,
            "tree_rows": fit.height,
            "best_iteration": booster.best_iteration,
            "features_used": len(useful),
            "calibration": calibrator.method,
            **engine,
        }
        return cls(booster, useful, calibrator, split, info)

    # ------------------------------------------------------------------ scoring
    def margin(self, frame: pl.DataFrame) -> np.ndarray:
        return self.booster.predict(matrix(frame, self.features), raw_score=True,
                                    num_iteration=self.booster.best_iteration or None)

    def predict(self, frame: pl.DataFrame) -> np.ndarray:
        """Calibrated probability of a failure in each row's label window."""
        return self.calibrator(self.margin(frame))

    def contributions(self, frame: pl.DataFrame) -> np.ndarray:
        """LightGBM's own SHAP values: (rows, features + 1); the last column is the bias."""
        return self.booster.predict(matrix(frame, self.features), pred_contrib=True,
                                    num_iteration=self.booster.best_iteration or None)

    def importance(self) -> pl.DataFrame:
        return pl.DataFrame({
            "feature": self.features,
            "gain": self.booster.feature_importance("gain").astype(float),
        }).sort("gain", descending=True)
