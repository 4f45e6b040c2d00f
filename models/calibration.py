"""Turn raw LightGBM margins into probabilities a reviewer can read literally.

Fitted on a later period than the trees (see ``models.model``), with scikit-learn's logistic
regression on the margin (Platt scaling) when positives are few, and isotonic regression when
there are enough of them to trust a step function. Stored as plain numbers (JSON), so a
published score can always be traced to the exact mapping that produced it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

ISOTONIC_MIN_POSITIVES = 400
# No day is certain either way: a step of the isotonic fit may hold no failure at all, and a
# published 0 would make one surprise an infinite log loss.
FLOOR, CEILING = 1e-4, 1 - 1e-4


@dataclass
class Calibrator:
    method: str  # "sigmoid" or "isotonic"
    coef: float = 1.0
    intercept: float = 0.0
    x: list[float] | None = None  # isotonic thresholds (margins)
    y: list[float] | None = None  # isotonic probabilities

    @classmethod
    def fit(cls, margin: np.ndarray, label: np.ndarray, method: str = "auto") -> Calibrator:
        label = np.asarray(label, dtype=int)
        positives = int(label.sum())
        if positives == 0 or positives == len(label):
            raise ValueError("calibration needs both failures and quiet days in its period")
        if method == "auto":
            method = "isotonic" if positives >= ISOTONIC_MIN_POSITIVES else "sigmoid"
        if method == "isotonic":
            iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0)
            iso.fit(margin, label)
            return cls("isotonic", x=iso.X_thresholds_.tolist(), y=iso.y_thresholds_.tolist())
        platt = LogisticRegression(C=1e6, max_iter=1000)
        platt.fit(np.asarray(margin).reshape(-1, 1), label)
        return cls("sigmoid", coef=float(platt.coef_[0, 0]), intercept=float(platt.intercept_[0]))

    def __call__(self, margin: np.ndarray) -> np.ndarray:
        margin = np.asarray(margin, dtype=float)
        if self.method == "isotonic":
            risk = np.interp(margin, self.x, self.y)
        else:
            risk = 1.0 / (1.0 + np.exp(-(self.coef * margin + self.intercept)))
        return np.clip(risk, FLOOR, CEILING)

    def to_dict(self) -> dict:
        return {"method": self.method, "coef": self.coef, "intercept": self.intercept,
                "x": self.x, "y": self.y}

    @classmethod
    def from_dict(cls, data: dict) -> Calibrator:
        return cls(**data)
