"""Baselines a model has to beat: what a sensible operator would estimate without one.

- ``RecentRate``: each system's recent incident rate (its incidents in the last 90 days,
  shrunk toward the estate's rate), turned into the chance of at least one failure over the
  label window's calendar days.
- ``OperatorRule``: flag a system that had an incident in the last 7 days, whose dependency
  failed yesterday, or that has a high-risk change in the window; the probability of each
  group is its failure rate in the training period.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

PRIOR_DAYS = 30.0  # how many days of the estate's average rate a system's own history is mixed with
DEFAULT_DAILY_RATE = 1e-3  # before any label is known: about one failure per system in 3 years


def _column(frame: pl.DataFrame, name: str) -> np.ndarray:
    if name not in frame.columns:
        return np.zeros(frame.height)
    return frame[name].fill_null(0).to_numpy().astype(float)


@dataclass
class RecentRate:
    name: str = "recent_incident_rate"
    daily_rate: float = DEFAULT_DAILY_RATE

    def fit(self, frame: pl.DataFrame) -> RecentRate:
        days = _column(frame, "days_to_target")
        failures = frame["label"].to_numpy().astype(float)
        # P(failure in window) ~ rate * days for small rates; solve for the estate's daily rate.
        if failures.sum() > 0:
            self.daily_rate = float(failures.sum() / max(days.sum(), 1.0))
        return self

    def predict(self, frame: pl.DataFrame) -> np.ndarray:
        recent = _column(frame, "inc_90d")
        rate = (recent + PRIOR_DAYS * self.daily_rate) / (90.0 + PRIOR_DAYS)
        days = np.maximum(_column(frame, "days_to_target"), 1.0)
        return 1.0 - np.exp(-rate * days)


@dataclass
class OperatorRule:
    name: str = "operator_rule"
    flagged_rate: float = 0.0
    quiet_rate: float = 0.0

    @staticmethod
    def flags(frame: pl.DataFrame) -> np.ndarray:
        return (
            (_column(frame, "inc_7d") > 0)
            | (_column(frame, "up_inc_1d") > 0)
            | (_column(frame, "chg_window_high") > 0)
        )

    def fit(self, frame: pl.DataFrame) -> OperatorRule:
        flags, labels = self.flags(frame), frame["label"].to_numpy().astype(float)
        self.flagged_rate = float(labels[flags].mean()) if flags.any() else 0.0
        self.quiet_rate = float(labels[~flags].mean()) if (~flags).any() else 0.0
        return self

    def predict(self, frame: pl.DataFrame) -> np.ndarray:
        return np.where(self.flags(frame), self.flagged_rate, self.quiet_rate)


def fitted_baselines(frame: pl.DataFrame) -> list:
    return [RecentRate().fit(frame), OperatorRule().fit(frame)]
