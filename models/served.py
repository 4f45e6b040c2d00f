"""The whole model: what a registered version holds, and what scores with it.

A served scorer is a calibrated ``FailureModel`` or, until a model passes the gate, a fitted
baseline. Either one is stored as a folder of plain files (the LightGBM booster as text, the
calibration and the feature list as JSON, one more booster file a bag, whose own calibration
is in ``model.json``; a baseline's rates as JSON), and MLflow registers it
as a pyfunc model over that folder (``WholeModel``), so

    mlflow.pyfunc.load_model("models:/<name>@champion").predict(rows)

returns the published ``risk`` for rows of ``system_day_features``: extra columns are ignored,
a missing feature column is an error (the input schema lists every feature as required).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from models.baselines import baseline_from_dict
from models.blend import RecentRateBlend
from models.calibration import Calibrator
from models.model import BagCalibration, FailureModel, TimeSplit, TrainConfig

BOOSTER, CALIBRATION, DESCRIPTION = "booster.txt", "calibration.json", "model.json"
BAG = "booster_bag{number}.txt"  # the other bags' trees (TrainConfig.bags), beside BOOSTER
MODEL_KIND, BASELINE_KIND = "lightgbm", "baseline"


def save_scorer(scorer: Any, folder: Path) -> Path:
    """Write ``scorer`` (a FailureModel or a fitted baseline) as plain files into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(scorer, FailureModel):
        scorer.booster.save_model(str(folder / BOOSTER))  # the rounds in use, no more
        for number, bag in enumerate(scorer.bags, start=1):
            bag.save_model(str(folder / BAG.format(number=number)))
        (folder / CALIBRATION).write_text(json.dumps(scorer.calibrator.to_dict()))
        description = {
            "kind": MODEL_KIND,
            "features": scorer.features,
            "info": scorer.info,
            "split": scorer.split.to_dict() if scorer.split else None,
            "config": scorer.config.to_dict(),
            "blend": scorer.blend.to_dict() if scorer.blend else None,
            "bags": len(scorer.boosters),
            "bag_calibrations": [c.to_dict() for c in scorer.bag_calibrations],
        }
    else:
        description = scorer.to_dict()
    (folder / DESCRIPTION).write_text(json.dumps(description, indent=1, default=str))
    return folder


def load_scorer(folder: Path) -> Any:
    """The scorer ``save_scorer`` wrote; OSError or ValueError when the files are damaged."""
    import lightgbm as lgb

    description = json.loads((folder / DESCRIPTION).read_text())
    if description["kind"] == BASELINE_KIND:
        return baseline_from_dict(description)
    booster = lgb.Booster(model_file=str(folder / BOOSTER))
    bags = tuple(lgb.Booster(model_file=str(folder / BAG.format(number=number)))
                 for number in range(1, description.get("bags", 1)))
    calibrator = Calibrator.from_dict(json.loads((folder / CALIBRATION).read_text()))
    # A model stored before bags were calibrated one by one has none: its bags' mean is.
    bag_calibrations = tuple(BagCalibration.from_dict(c)
                             for c in description.get("bag_calibrations", []))
    return FailureModel(booster, description["features"], calibrator,
                        TimeSplit.from_dict(description.get("split")), description.get("info", {}),
                        TrainConfig.from_dict(description.get("config", {})),
                        RecentRateBlend.from_dict(description.get("blend")), bags,
                        bag_calibrations)


def input_features(scorer: Any) -> list[str]:
    """The columns the scorer reads (a blended model's rate inputs too)."""
    return list(getattr(scorer, "inputs", scorer.features))


def trained_through(scorer: Any) -> dt.date | None:
    return getattr(scorer, "trained_through", None)


def published_name(scorer: Any, model_name: str) -> str:
    """``model_name`` in ``risk_scores`` and on the CAB page: the registered model's name, or
    ``baseline:<name>`` when a baseline scores."""
    return model_name if isinstance(scorer, FailureModel) else scorer.published_name


@dataclass(frozen=True)
class RegisteredModel:
    """A registered version as the published rows name it."""

    name: str
    version: str
    run_id: str
    alias: str | None = None


@dataclass
class Served:
    """The scorer behind an alias, resolved once to a version."""

    scorer: Any
    registered: RegisteredModel
    tags: dict[str, str] = field(default_factory=dict)
    trained_through: dt.date | None = None

    @property
    def is_model(self) -> bool:
        return isinstance(self.scorer, FailureModel)

    @property
    def config(self) -> TrainConfig | None:
        return self.scorer.config if self.is_model else None


def signature(scorer: Any):
    """Every feature a required double column; the output one double, the risk."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec("double", name) for name in input_features(scorer)]),
        outputs=Schema([ColSpec("double", "risk")]),
    )


def _whole_model_class():
    from mlflow.pyfunc import PythonModel

    class WholeModel(PythonModel):
        """failcast's registered model: the calibrated risk of each row."""

        # The explicit signature validates the input; no type-hint validation on top.
        _skip_type_hint_validation = True

        def load_context(self, context) -> None:
            self.scorer = load_scorer(Path(context.artifacts["model"]))

        def predict(self, context, model_input, params=None) -> np.ndarray:
            frame = pl.from_pandas(model_input) if not isinstance(model_input, pl.DataFrame) \
                else model_input
            return np.clip(self.scorer.predict(frame), 0.0, 1.0)

    return WholeModel


def whole_model():
    """A fresh pyfunc instance (``mlflow`` imported only when a model is logged or loaded)."""
    return _whole_model_class()()
