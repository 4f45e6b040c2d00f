"""Shrink the trees toward the recent incident rate, as much as the newest days say to.

Where incidents carry little warning (the LANL records: no telemetry, failures that mostly
reflect how failure-prone a node is), the trees can learn less than a system's own recent rate
already says, and in some training windows early stopping keeps one or two trees whose coarse
ranking is worse than that rate. ``RecentRateBlend`` weighs the trees' margin against the log-odds
of the recent incident rate (``models.baselines.RecentRate``) by a logistic regression on the
calibration period, the newest days of the training window, which the trees never saw: a model
with nothing to add leans on the rate, one with more to say keeps its own ranking. The blended
log-odds are then calibrated as the margin alone was.

Only with ``MIN_FAILURES`` failures in the calibration period: the weights are fitted on the same
rows as the calibration after them, and with a few dozen failures they move with every one of
them (on the quality benchmark's five-month estate, short-history, whose calibration periods
hold fewer than a hundred failures, the blend lowered the deployed policy's PR-AUC from 0.222
to 0.205). A calibration period that holds fewer calibrates the trees' margin alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
from sklearn.linear_model import LogisticRegression

from models.baselines import RecentRate, logit
from models.calibration import ISOTONIC_MIN_POSITIVES

# As many failures as the isotonic calibration asks before it trusts a fitted function.
MIN_FAILURES = ISOTONIC_MIN_POSITIVES


@dataclass(frozen=True)
class RecentRateBlend:
    rate: RecentRate
    model_weight: float
    rate_weight: float
    intercept: float

    @classmethod
    def fit(cls, margin: np.ndarray, rows: pl.DataFrame, history: pl.DataFrame) -> RecentRateBlend:
        """Weights from ``rows`` (the calibration period, its trees' ``margin`` and labels); the
        rate's estate-wide prior from ``history`` (the training window's unthinned rows)."""
        rate = RecentRate().fit(history)
        inputs = np.column_stack([margin, logit(rate.predict(rows))])
        # Mild L2 (C=1): two weights from thousands of rows; it only keeps a window with a handful
        # of failures from putting an extreme weight on either input.
        fitted = LogisticRegression(C=1.0, max_iter=1000).fit(inputs, rows["label"].to_numpy())
        return cls(rate, float(fitted.coef_[0, 0]), float(fitted.coef_[0, 1]),
                   float(fitted.intercept_[0]))

    def __call__(self, margin: np.ndarray, frame: pl.DataFrame) -> np.ndarray:
        """The blended log-odds of each row."""
        return (self.model_weight * np.asarray(margin, dtype=float)
                + self.rate_weight * logit(self.rate.predict(frame)) + self.intercept)

    def contributions(self, tree_contributions: np.ndarray, frame: pl.DataFrame,
                      features: list[str]) -> np.ndarray:
        """``tree_contributions`` (``pred_contrib``: features then the bias) of the blend: the
        trees' share scaled by their weight, the rate's inputs added to those features (to the
        bias when the model does not use them); the rows still sum to the blended log-odds."""
        out = self.model_weight * np.asarray(tree_contributions, dtype=float)
        rate_parts = self.rate_weight * self.rate.contributions(frame)  # inputs..., bias
        for column, feature in enumerate(self.rate.features):
            target = features.index(feature) if feature in features else -1
            out[:, target] += rate_parts[:, column]
        out[:, -1] += rate_parts[:, -1] + self.intercept
        return out

    def to_dict(self) -> dict:
        return {"rate": self.rate.to_dict(), "model_weight": self.model_weight,
                "rate_weight": self.rate_weight, "intercept": self.intercept}

    @classmethod
    def from_dict(cls, data: dict | None) -> RecentRateBlend | None:
        if not data:
            return None
        rate = {k: v for k, v in data["rate"].items() if k != "kind"}
        return cls(RecentRate(**rate), data["model_weight"], data["rate_weight"], data["intercept"])
