"""The trees weighed against the recent incident rate (models.blend)."""

import datetime as dt

import numpy as np
import polars as pl
from sklearn.metrics import average_precision_score

from models.baselines import RecentRate
from models.blend import MIN_FAILURES
from models.model import FailureModel, TrainConfig


def prone_systems(days: int = 200, systems: int = 300, seed: int = 0) -> pl.DataFrame:
    """Failures come from a lasting trait of each system, visible only in its incident count
    (``inc_90d``), and a weak driver ``x`` the trees can see; ``noise`` is useless."""
    rng = np.random.default_rng(seed)
    rows = days * systems
    trait = np.tile(rng.gamma(0.6, 1.0, size=systems), days)
    x = rng.normal(size=rows)
    prone = -2.4 + 0.9 * np.log(trait + 0.05)
    p = 1 / (1 + np.exp(-(prone + 0.8 * x)))
    start = dt.date(2025, 1, 1)
    return pl.DataFrame({
        "system_id": np.tile([f"S{i}" for i in range(systems)], days),
        "as_of": pl.Series([start + dt.timedelta(days=d) for d in range(days)]).gather(
            np.repeat(np.arange(days), systems)),
        "inc_90d": rng.poisson(90 / (1 + np.exp(-prone))).astype(np.float32),
        "days_to_target": np.ones(rows, dtype=np.float32),
        "x": x.astype(np.float32),
        "noise": rng.normal(size=rows).astype(np.float32),
        "label": rng.random(rows) < p,
    })


def test_trees_that_cannot_see_the_rate_lean_on_it_and_rank_better():
    train, later = prone_systems(), prone_systems(seed=1)
    blind = TrainConfig(min_failures=20, leave_out=("incidents",))  # trees see only x and noise
    features = ["inc_90d", "x", "noise"]
    alone = FailureModel.fit(train, features, TrainConfig(**{**blind.to_dict(), "blend_recent_rate": False}))
    blended = FailureModel.fit(train, features, blind)
    assert "inc_90d" not in blended.features and blended.inputs[-1] == "days_to_target"
    assert blended.blend.rate_weight > 0.5
    labels = later["label"].to_numpy()
    ap_alone = average_precision_score(labels, alone.predict(later))
    ap_blended = average_precision_score(labels, blended.predict(later))
    ap_rate = average_precision_score(labels, RecentRate().fit(train).predict(later))
    assert ap_blended > max(ap_alone, ap_rate)


def test_a_blended_model_explains_its_whole_margin():
    frame = prone_systems()
    model = FailureModel.fit(frame, ["inc_90d", "x", "noise"], TrainConfig(min_failures=20))
    rows = frame.tail(300)
    assert model.blend is not None
    contributions = model.contributions(rows)
    assert contributions.shape == (300, len(model.features) + 1)
    assert np.allclose(contributions.sum(axis=1), model.margin(rows), atol=1e-6)


def test_the_blend_is_a_setting_and_survives_storage(tmp_path):
    from models.served import input_features, load_scorer, save_scorer

    frame = prone_systems()
    model = FailureModel.fit(frame, ["inc_90d", "x", "noise"], TrainConfig(min_failures=20))
    loaded = load_scorer(save_scorer(model, tmp_path / "model"))
    assert loaded.blend == model.blend
    assert np.array_equal(loaded.predict(frame), model.predict(frame))
    assert input_features(loaded) == ["inc_90d", "x", "noise", "days_to_target"]
    off = FailureModel.fit(frame, ["inc_90d", "x", "noise"],
                           TrainConfig(min_failures=20, blend_recent_rate=False))
    assert off.blend is None and load_scorer(save_scorer(off, tmp_path / "off")).blend is None


def test_a_calibration_period_with_few_failures_calibrates_the_trees_alone():
    frame = prone_systems(days=120, systems=40)
    calibration_days = sorted(frame["as_of"].unique())[int(120 * 0.85):]
    assert frame.filter(pl.col("as_of").is_in(calibration_days))["label"].sum() < MIN_FAILURES
    model = FailureModel.fit(frame, ["inc_90d", "x", "noise"], TrainConfig(min_failures=20))
    assert model.blend is None and model.inputs == model.features
