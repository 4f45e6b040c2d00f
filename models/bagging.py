"""Put bagged trees on one scale before they are averaged.

Bagged trees (``TrainConfig.bags``) are grown from consecutive seeds, and each stops early at
its own round: on LANL one month's five bags kept 4, 7, 72, 103 and 164 rounds. The spread of a
booster's log-odds grows with its rounds, so a plain mean of the bags' raw margins is ruled by
the longest bag: in the monthly what-if it ranked no better than one bag (PR-AUC 0.0171 against
0.0172), while the mean of the five bags each calibrated on its own reached 0.0177
(docs/model.md, "Bagged trees").

``BagScales`` is the linear part of that: each bag's margin is mapped to log-odds by its own
logistic regression on the calibration period (Platt scaling: a slope and an intercept, fitted
on rows the trees never saw), and the model's margin is the mean of those log-odds. Being
linear, the map keeps SHAP values additive: a bag's contributions times its slope, its
intercept added to the bias. The blend with the recent rate and the calibration follow on the
averaged margin as they would on one booster's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.calibration import Calibrator


@dataclass(frozen=True)
class BagScales:
    slopes: tuple[float, ...]
    intercepts: tuple[float, ...]

    @classmethod
    def fit(cls, margins: list[np.ndarray], labels: np.ndarray) -> BagScales:
        """One Platt scaling a bag, from its raw ``margins`` on the calibration rows."""
        fitted = [Calibrator.fit(m, labels, method="sigmoid") for m in margins]
        return cls(tuple(c.coef for c in fitted), tuple(c.intercept for c in fitted))

    def mean(self, parts: list[np.ndarray], contributions: bool = False) -> np.ndarray:
        """The mean of the bags' log-odds, from their raw margins (one array a bag) or, with
        ``contributions``, from their SHAP values (rows x features + 1, the bias last)."""
        total = np.zeros_like(parts[0], dtype=float)
        for part, slope, intercept in zip(parts, self.slopes, self.intercepts, strict=True):
            total += slope * part
            if contributions:
                total[:, -1] += intercept
            else:
                total += intercept
        return total / len(parts)

    def to_dict(self) -> dict:
        return {"slopes": list(self.slopes), "intercepts": list(self.intercepts)}

    @classmethod
    def from_dict(cls, data: dict | None) -> BagScales | None:
        return cls(tuple(data["slopes"]), tuple(data["intercepts"])) if data else None
