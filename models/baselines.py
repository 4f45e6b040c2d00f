"""Baselines a model has to beat: what a sensible operator would estimate without one.

- ``RecentRate``: each system's recent incident rate (its incidents in the last 90 days,
  shrunk toward the estate's rate), turned into the chance of at least one failure over the
  label window's calendar days.
- ``OperatorRule``: flag a system that had an incident in the last 7 days, whose dependency
  failed yesterday, or that has a high-risk change in the window; the probability of each
  group is its failure rate in the training period.

Until a model passes the gate, the best baseline is what the nightly publishes, so each one
can also explain itself like the model does: ``contributions`` splits the log-odds of its risk
into its inputs and a bias (the same shape as LightGBM's ``pred_contrib``).
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


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), 1e-9, 1 - 1e-9)
    return np.log(p / (1 - p))


class _Explained:
    """What a published scorer offers besides its risk: inputs, importance, a stored form."""

    name: str
    features: list[str]

    @property
    def published_name(self) -> str:
        return f"baseline:{self.name}"

    def importance(self) -> pl.DataFrame:
        return pl.DataFrame({"feature": self.features, "gain": [1.0] * len(self.features)})

    def to_dict(self) -> dict:
        return {"kind": "baseline", **self.__dict__}


@dataclass
class RecentRate(_Explained):
    name: str = "recent_incident_rate"
    daily_rate: float = DEFAULT_DAILY_RATE
    features = ["inc_90d", "days_to_target"]

    def fit(self, frame: pl.DataFrame) -> RecentRate:
        days = _column(frame, "days_to_target")
        failures = frame["label"].to_numpy().astype(float)
        # P(failure in window) ~ rate * days for small rates; solve for the estate's daily rate.
        if failures.sum() > 0:
            self.daily_rate = float(failures.sum() / max(days.sum(), 1.0))
        return self

    def _risk(self, recent: np.ndarray, days: np.ndarray) -> np.ndarray:
        rate = (recent + PRIOR_DAYS * self.daily_rate) / (90.0 + PRIOR_DAYS)
        return 1.0 - np.exp(-rate * np.maximum(days, 1.0))

    def predict(self, frame: pl.DataFrame) -> np.ndarray:
        return self._risk(_column(frame, "inc_90d"), _column(frame, "days_to_target"))

    def contributions(self, frame: pl.DataFrame) -> np.ndarray:
        """Log-odds: bias = a quiet system over one day; then the window's days; then its
        incidents."""
        recent, days = _column(frame, "inc_90d"), _column(frame, "days_to_target")
        quiet, one = np.zeros_like(recent), np.ones_like(recent)
        bias = logit(self._risk(quiet, one))
        window = logit(self._risk(quiet, days))
        whole = logit(self._risk(recent, days))
        return np.column_stack([whole - window, window - bias, bias])


@dataclass
class OperatorRule(_Explained):
    name: str = "operator_rule"
    flagged_rate: float = 0.0
    quiet_rate: float = 0.0
    features = ["inc_7d", "up_inc_1d", "chg_window_high"]

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

    def contributions(self, frame: pl.DataFrame) -> np.ndarray:
        """Log-odds: bias = the quiet group's rate; a flagged row's lift is shared equally
        among the rules that flagged it."""
        raised = np.column_stack([_column(frame, f) > 0 for f in self.features]).astype(float)
        count = raised.sum(axis=1, keepdims=True)
        lift = logit(np.array([self.flagged_rate]))[0] - logit(np.array([self.quiet_rate]))[0]
        shares = np.divide(raised * lift, count, out=np.zeros_like(raised), where=count > 0)
        bias = np.full((frame.height, 1), logit(np.array([self.quiet_rate]))[0])
        return np.hstack([shares, bias])


BASELINES = {"recent_incident_rate": RecentRate, "operator_rule": OperatorRule}


def fitted_baselines(frame: pl.DataFrame) -> list:
    return [RecentRate().fit(frame), OperatorRule().fit(frame)]


def baseline_from_dict(data: dict):
    """A fitted baseline from ``to_dict``'s output."""
    fields = {k: v for k, v in data.items() if k != "kind"}
    return BASELINES[fields["name"]](**fields)
