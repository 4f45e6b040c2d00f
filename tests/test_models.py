"""The models library on its own: calibration, training, metrics, decisions, drift."""

import datetime as dt

import numpy as np
import polars as pl
import pytest

from models.calibration import Calibrator
from models.decisions import APPROVE, DEFER, EXIT_CODES, REVIEW, recommend, tier_of
from models.drift import psi
from models.evaluate import budget_metrics, compare
from models.model import FailureModel, NotEnoughData, TimeSplit, TrainConfig, tree_period


def synthetic(days: int = 120, systems: int = 40, seed: int = 0) -> pl.DataFrame:
    """A risk driver x with a known effect, and a useless feature."""
    rng = np.random.default_rng(seed)
    start = dt.date(2025, 1, 1)
    rows = days * systems
    x = rng.normal(size=rows)
    p = 1 / (1 + np.exp(-(-3.2 + 1.4 * x)))
    return pl.DataFrame({
        "system_id": np.tile([f"S{i}" for i in range(systems)], days),
        "as_of": pl.Series([start + dt.timedelta(days=d) for d in range(days)]).gather(
            np.repeat(np.arange(days), systems)),
        "x": x.astype(np.float32),
        "noise": rng.normal(size=rows).astype(np.float32),
        "label": rng.random(rows) < p,
    })


def test_calibrators_are_monotone_probabilities_and_round_trip():
    rng = np.random.default_rng(1)
    margin = rng.normal(size=5000)
    label = rng.random(5000) < 1 / (1 + np.exp(-(2 * margin - 2)))
    for method in ("sigmoid", "isotonic"):
        calibrator = Calibrator.fit(margin, label, method)
        grid = np.linspace(-4, 4, 50)
        out = calibrator(grid)
        assert ((out >= 0) & (out <= 1)).all() and (np.diff(out) >= -1e-12).all()
        assert np.allclose(Calibrator.from_dict(calibrator.to_dict())(grid), out)
    assert Calibrator.fit(margin[:200], label[:200]).method == "sigmoid"  # few positives


def test_time_split_never_looks_back():
    days = [dt.date(2025, 1, 1) + dt.timedelta(days=i) for i in range(100)]
    split = TimeSplit.of(days, 0.7, 0.15)
    assert split.fit[1] < split.stop[0] <= split.stop[1] < split.calibrate[0]
    assert split.calibrate[1] == days[-1]


def test_model_learns_the_driver_and_is_calibrated():
    frame = synthetic()
    model = FailureModel.fit(frame, ["x", "noise"], TrainConfig(min_failures=20))
    probe = pl.DataFrame({"x": [-2.0, 0.0, 2.0], "noise": [0.0, 0.0, 0.0]})
    risk = model.predict(probe)
    assert risk[0] < risk[1] < risk[2]
    later = synthetic(seed=5)  # fresh data from the same process
    assert abs(model.predict(later).mean() - later["label"].mean()) < 0.02
    assert model.importance()["feature"][0] == "x"
    contributions = model.contributions(probe)
    assert np.allclose(contributions.sum(axis=1), model.margin(probe), atol=1e-5)


def test_too_few_failures_is_a_clear_error():
    frame = synthetic().with_columns(label=pl.lit(False))
    with pytest.raises(NotEnoughData, match="0 failures"):
        FailureModel.fit(frame, ["x"])


def test_budget_metrics_flag_the_top_share_of_each_day():
    as_of = np.array(["d1"] * 10 + ["d2"] * 10)
    label = np.array([1, 0, 0, 0, 0, 0, 0, 0, 0, 0] + [0, 0, 0, 0, 0, 0, 0, 0, 0, 1])
    score = np.array([0.9] + [0.1] * 9 + [0.9] + [0.1] * 8 + [0.2])
    precision, recall = budget_metrics(as_of, label, score, 0.10)  # one system a day
    assert (precision, recall) == (0.5, 0.5)


def test_metrics_come_from_scikit_learn_and_compare_scorers():
    frame = pl.DataFrame({"as_of": ["d"] * 4, "label": [True, False, True, False]})
    table = compare(frame, {"perfect": np.array([0.9, 0.1, 0.8, 0.2]),
                            "inverse": np.array([0.1, 0.9, 0.2, 0.8])})
    perfect, inverse = table.row(0, named=True), table.row(1, named=True)
    assert perfect["pr_auc"] == 1.0 and perfect["roc_auc"] == 1.0
    assert inverse["pr_auc"] < perfect["pr_auc"]
    assert perfect["brier"] == pytest.approx((0.01 + 0.01 + 0.04 + 0.04) / 4)


@pytest.mark.parametrize(("risk", "tier"), [(0.01, "low"), (0.05, "elevated"), (0.2, "high"),
                                            (0.35, "critical")])
def test_tiers(risk, tier):
    assert tier_of(risk, (0.05, 0.15, 0.35)) == tier


def test_actions_follow_the_documented_matrix():
    assert recommend("low", "medium")[0] == APPROVE
    assert recommend("low", "high")[0] == REVIEW
    assert recommend("high", "high")[0] == DEFER
    assert recommend("critical", None)[0] == DEFER  # unstated risk counts as medium
    assert "taken as medium" in recommend("elevated", None)[1]
    assert EXIT_CODES == {APPROVE: 0, REVIEW: 10, DEFER: 20}


def test_psi_is_small_for_the_same_distribution_and_large_for_a_shift():
    rng = np.random.default_rng(2)
    reference = rng.normal(size=5000)
    assert psi(reference, rng.normal(size=2000)) < 0.05
    assert psi(reference, rng.normal(1.5, 1, size=2000)) > 0.25


def test_trees_without_telemetry_are_small_and_regularised_unless_switched_off():
    from models.model import CASE_LIBRARY_TREES

    config = TrainConfig()
    assert config.suited_to(["inc_7d", "cpu__mean", "tier"]) is config  # a metric: as configured
    small = config.suited_to(["inc_7d", "days_since_incident", "peer_cluster_inc_7d"])
    assert (small.num_leaves, small.min_child_samples, small.lambda_l2, small.bags) == \
        (15, 100, 20.0, 5)
    tighter = TrainConfig(num_leaves=4, min_child_samples=300).suited_to(["inc_7d"])
    assert (tighter.num_leaves, tighter.min_child_samples) == (4, 300)  # only ever tightened
    off = TrainConfig(case_library_mode=False)
    assert off.suited_to(["inc_7d"]) is off
    assert set(CASE_LIBRARY_TREES) <= set(TrainConfig.__dataclass_fields__)


def test_a_model_without_metrics_grows_the_small_trees_and_says_so():
    frame = synthetic().rename({"x": "inc_7d"})
    model = FailureModel.fit(frame, ["inc_7d", "noise"], TrainConfig(min_failures=20))
    assert model.info["trees"] == "case library" and model.info["num_leaves_used"] == 15
    assert model.info["bags_used"] == 5 and len(model.boosters) == 5
    assert model.config == TrainConfig(min_failures=20)  # what was asked is what is stored
    assert max(len(t["tree_structure"]) and _leaves(t["tree_structure"])
               for t in model.booster.dump_model()["tree_info"]) <= 15
    with_metric = FailureModel.fit(synthetic().rename({"x": "cpu__mean"}), ["cpu__mean", "noise"],
                                   TrainConfig(min_failures=20))
    assert "trees" not in with_metric.info and with_metric.bags == ()


def _leaves(node: dict) -> int:
    if "leaf_value" in node:
        return 1
    return _leaves(node["left_child"]) + _leaves(node["right_child"])


def test_the_long_incident_memory_is_an_input_only_without_telemetry():
    long_memory = ["inc_730d", "inc_decayed_30d", "days_since_2nd_incident"]
    case_library = ["inc_7d", "days_since_incident", *long_memory]
    assert TrainConfig().inputs(case_library) == case_library
    with_metrics = TrainConfig().inputs([*case_library, "cpu__mean"])
    assert with_metrics == ["inc_7d", "days_since_incident", "cpu__mean"]
    assert TrainConfig(case_library_mode=False).inputs([*case_library, "cpu__mean"]) == \
        [*case_library, "cpu__mean"]
    # Leaving the metrics out makes the configuration a case-library one again.
    assert TrainConfig(leave_out=("metric",)).inputs([*case_library, "cpu__mean"]) == case_library


def test_a_period_is_its_days_rows_in_the_frames_order_whether_or_not_the_frame_is_in_day_order():
    """A frame in day order is sliced (no copy), any other filtered: the same rows either way."""
    frame = synthetic()
    config = TrainConfig()
    days = sorted(frame["as_of"].unique().to_list())
    last = days[int(len(days) * config.fit_share) - 1]
    shuffled = frame.sample(fraction=1.0, shuffle=True, seed=3)
    for rows in (frame.sort("as_of", maintain_order=True), shuffled):
        expected = rows.filter(pl.col("as_of") <= last)
        assert expected.height < rows.height
        assert tree_period(rows, config).equals(expected)
