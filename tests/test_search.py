"""The model search inside each retraining (models/search.py), on synthetic rows."""

import datetime as dt
from dataclasses import replace

import numpy as np
import polars as pl
import pytest

from features.errors import UsageError
from models import search as search_module
from models.lifecycle import CHAMPION, PolicyConfig, RetrainPolicy, with_model
from models.memory_registry import InMemoryRegistry
from models.model import FailureModel, TrainConfig, thin_tree_rows
from models.reasons import family
from models.search import BASE, FAMILIES, SearchConfig, choose, grid, search
from tests.test_lifecycle import GOOD, synthetic, training_set

ON = SearchConfig(enabled=True)


def searching(candidate: TrainConfig = GOOD, **search) -> RetrainPolicy:
    return RetrainPolicy(PolicyConfig(candidate=candidate,
                                      search=SearchConfig(enabled=True, **search)))


def estate(days: int = 170, systems: int = 60, seed: int = 1, noise: int = 12):
    """Failures driven by the system's recent incidents (``inc_7d``) only; ``noise`` metric
    statistics (``m<i>__mean``) carry nothing."""
    rng = np.random.default_rng(seed)
    rows = days * systems
    recent = rng.poisson(0.4, rows).astype(np.float32)
    p = 1 / (1 + np.exp(-(-3.8 + 1.3 * recent)))
    dates = [dt.date(2025, 1, 1) + dt.timedelta(days=d) for d in range(days)]
    frame = pl.DataFrame({
        "system_id": np.tile([f"S{i}" for i in range(systems)], days),
        "as_of": pl.Series(dates).gather(np.repeat(np.arange(days), systems)),
        "inc_7d": recent,
        **{f"m{i}__mean": rng.normal(size=rows).astype(np.float32) for i in range(noise)},
        "label": rng.random(rows) < p,
    })
    return frame, dates


@pytest.fixture(scope="module")
def data():
    return synthetic()


@pytest.mark.parametrize(("failures", "sizes"), [
    (60, ["regularised", "stumps"]), (600, ["smaller"]), (5000, ["larger"])])
def test_the_grid_suits_the_amount_of_history(failures, sizes):
    named = grid(TrainConfig(), failures, SearchConfig(max_configurations=10))
    assert list(named)[0] == BASE and named[BASE] == TrainConfig()
    assert [n for n in named if n in ("regularised", "stumps", "smaller", "larger")] == sizes
    leaves = {named[n].num_leaves for n in sizes}
    assert (max(leaves) < 31) if failures < 2000 else (min(leaves) > 31)
    assert named["thinner"].quiet_per_failure == 8
    assert named["without metric, peers"].leave_out == ("metric", "peers")


def test_the_grid_is_bounded_and_skips_families_the_data_does_not_have():
    assert len(grid(TrainConfig(), 60, SearchConfig(max_configurations=2))) == 2
    named = grid(TrainConfig(), 600, SearchConfig(), features=["inc_7d", "chg_window_high"])
    assert not any(n.startswith("without") for n in named)


def test_a_configuration_leaves_its_families_out_and_keeps_them_out_when_stored():
    frame, _ = estate()
    config = TrainConfig(min_failures=10, leave_out=("metric",))
    model = FailureModel.fit(frame, ["inc_7d", *(f"m{i}__mean" for i in range(12))], config)
    assert model.features == ["inc_7d"]
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert config.recipe() != TrainConfig(min_failures=10).recipe()


def test_every_family_the_reasons_know_can_be_left_out():
    names = ["cpu_pct__mean", "inc_7d", "up_inc_1d", "peer_category_inc_7d", "chg_window_high",
             "act_restart_window", "days_to_target", "tier"]
    assert sorted({family(n) for n in names}) == sorted(FAMILIES)


def test_a_thinner_configuration_keeps_every_failure_and_fewer_quiet_rows(data):
    frame, _ = data
    thinned = thin_tree_rows(frame, 5, seed=7)
    failures = int(frame["label"].sum())
    assert int(thinned["label"].sum()) == failures
    quiet = thinned.height - failures
    assert 4 * failures < quiet < 6 * failures
    assert thin_tree_rows(thinned, 5, seed=7).height == thinned.height  # already thin enough


def test_the_search_never_reads_the_holdout(data):
    """Scramble the hold-out's labels and features: the search's table and choice stay."""
    frame, dates = data
    training = training_set(frame, dates)
    first = searching().retrain(training, InMemoryRegistry()).searched
    rng = np.random.default_rng(5)
    scrambled = training.holdout.with_columns(
        label=pl.Series(rng.random(training.holdout.height) < 0.5),
        x=pl.Series(rng.normal(size=training.holdout.height).astype(np.float32)))
    training.holdout = scrambled
    second = searching().retrain(training, InMemoryRegistry()).searched
    assert first.chosen == second.chosen
    assert first.table.drop("seconds").equals(second.table.drop("seconds"))


def test_the_search_scores_on_the_training_windows_newest_days(data):
    frame, dates = data
    training = training_set(frame, dates)
    searched = search(training.train, ["x", "z", "noise"], GOOD, ON)
    train_days = sorted(training.train["as_of"].unique())
    newest = train_days[int(len(train_days) * 0.85):]
    inner = training.train.filter(pl.col("as_of").is_in(newest))
    assert set(searched.table["inner_rows"].to_list()) == {inner.height}
    assert newest[-1] < training.holdout_window.first
    assert "thinner" in searched.configs  # 8 quiet rows a failure: fewer than half of 20


def test_configurations_fitted_side_by_side_are_those_fitted_one_by_one(data):
    frame, dates = data
    training = training_set(frame, dates)
    quick = replace(GOOD, max_rounds=30)
    one, two = (search(training.train, ["x", "z", "noise"], quick, replace(ON, at_once=n))
                for n in (1, 2))
    assert one.table.drop("seconds").equals(two.table.drop("seconds"))
    assert {n: [b.model_to_string() for b in m.boosters] for n, m in one.fitted.items()} == \
        {n: [b.model_to_string() for b in m.boosters] for n, m in two.fitted.items()}


def test_a_search_on_a_dask_cluster_fits_one_configuration_at_a_time(data, monkeypatch):
    """LightGBM trains on a Dask worker through one network per process: two configurations at
    once would share it."""
    pools = []
    pool = search_module.ThreadPoolExecutor
    monkeypatch.setattr(search_module, "ThreadPoolExecutor",
                        lambda max_workers: pools.append(max_workers) or pool(max_workers))
    monkeypatch.setattr(search_module, "_fit_and_score",
                        lambda *_: search_module._Fitted(None, 0.0, "not fitted here"))
    frame, _ = data
    search(frame, ["x"], replace(GOOD, dask_scheduler="tcp://127.0.0.1:1"), ON)
    search(frame, ["x"], GOOD, ON)
    assert pools == [1, 2]


def test_no_thinner_ratio_is_tried_where_the_row_budget_thins_bases_trees_already(data):
    """With the budget binding, base's trees learn from fewer quiet rows a failure than asked;
    a ratio above half of those would fit base again on most of its rows."""
    frame, dates = data
    training = training_set(frame, dates)
    budgeted = replace(GOOD, max_tree_rows=2_000, max_rounds=30)
    searched = search(training.train, ["x", "z", "noise"], budgeted, ON)
    assert list(searched.configs) == [BASE, "smaller"]
    # the same decision from the grid: 15,000 failures in the tree period leave base 9.7 quiet
    # rows a failure within 160,000 rows; 3,500 leave it its 20
    assert "thinner" not in grid(TrainConfig(), 21_000, ON, tree_failures=15_000)
    assert "thinner" in grid(TrainConfig(), 5_000, ON, tree_failures=3_500)


def test_the_search_leaves_out_a_family_whose_signal_did_not_last():
    """A metric that tracked failures in the window's first half and turns against them later:
    the trees learn it, the newest days show it misleads, leaving the family out wins beyond
    noise."""
    frame, dates = estate()
    later = frame["as_of"].to_numpy() >= np.datetime64(dates[len(dates) // 2])
    drift = np.where(later, -1.5, 1.5) * frame["label"].to_numpy()
    frame = frame.with_columns(m0__mean=pl.Series(
        (drift + np.random.default_rng(3).normal(size=frame.height)).astype(np.float32)))
    training = training_set(frame, dates)
    searched = search(training.train, ["inc_7d", *(f"m{i}__mean" for i in range(12))],
                      TrainConfig(min_failures=10), SearchConfig(enabled=True, thin_to=20))
    assert list(searched.configs) == [BASE, "smaller", "without metric, peers"]
    assert searched.chosen == "without metric, peers"
    assert searched.model.features == ["inc_7d"]
    chosen = searched.table.filter(pl.col("chosen")).row(0, named=True)
    assert chosen["beats_base"] and chosen["vs_base_low"] > 0


def test_a_family_of_mere_noise_is_kept_when_leaving_it_out_gains_within_noise():
    frame, dates = estate()
    training = training_set(frame, dates)
    searched = search(training.train, ["inc_7d", *(f"m{i}__mean" for i in range(12))],
                      TrainConfig(min_failures=10), SearchConfig(enabled=True, thin_to=20))
    row = searched.table.filter(pl.col("name") == "without metric, peers").row(0, named=True)
    assert not row["beats_base"] and searched.chosen == BASE


def test_the_chosen_configuration_is_what_serves(data):
    frame, dates = data
    registry = InMemoryRegistry()
    outcome = searching().retrain(training_set(frame, dates), registry)
    assert outcome.action == "promote"
    chosen = outcome.searched.config
    assert outcome.searched.table.filter("chosen")["name"].to_list() == [outcome.searched.chosen]
    assert registry.served(CHAMPION).config.recipe() == chosen.recipe()


def test_the_champions_configuration_is_not_fitted_again_when_the_search_fitted_it(data,
                                                                                   monkeypatch):
    frame, dates = data
    registry = InMemoryRegistry()
    RetrainPolicy(PolicyConfig(candidate=GOOD)).retrain(training_set(frame, dates), registry)
    fits = []
    original = FailureModel.fit.__func__
    monkeypatch.setattr(FailureModel, "fit", classmethod(
        lambda cls, *a, **k: fits.append(a[2]) or original(cls, *a, **k)))
    outcome = searching().retrain(training_set(frame, dates, offset=5), registry)
    assert len(fits) == len(outcome.searched.configs)  # the champion's (GOOD) is the base
    assert outcome.searched.fitted_with(GOOD) is not None


def test_with_few_failures_the_model_is_strongly_regularised_not_the_baseline():
    frame, dates = estate(days=150, systems=25, seed=4)
    training = training_set(frame, dates)
    failures = int(training.train["label"].sum())
    assert failures < ON.few_failures
    outcome = searching(TrainConfig(min_failures=10)).retrain(training, InMemoryRegistry())
    assert set(outcome.searched.configs) >= {"regularised", "stumps"}
    assert outcome.candidate is not None


def test_a_model_setting_or_family_that_does_not_exist_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown feature family 'metrics'"):
        with_model(PolicyConfig(), leave_out=["metrics"])
    with pytest.raises(UsageError, match="unknown model setting leaves"):
        with_model(PolicyConfig(), train={"leaves": 4})
    changed = with_model(PolicyConfig(), train={"num_leaves": 7}, leave_out=["peers"],
                         search_on=True)
    assert changed.candidate.num_leaves == 7 and changed.candidate.leave_out == ("peers",)
    assert changed.search.enabled


def test_a_gain_within_noise_keeps_the_policys_configuration():
    scores = {BASE: 0.20, "smaller": 0.23, "thinner": 0.25}
    assert choose(scores, {"smaller": False, "thinner": False}) == BASE
    assert choose(scores, {"smaller": True, "thinner": False}) == "smaller"
    assert choose(scores, {"smaller": True, "thinner": True}) == "thinner"
    assert choose({BASE: None, "smaller": 0.1}, {}) == "smaller"  # base could not be scored
    assert choose({BASE: None}, {}) is None


def test_the_search_replaces_base_only_beyond_noise(data):
    frame, dates = data
    training = training_set(frame, dates)
    searched = search(training.train, ["x", "z", "noise"], GOOD, ON)
    table = searched.table
    others = table.filter(pl.col("name") != BASE)
    assert others["beats_base"].is_not_null().all() and others["vs_base_low"].is_not_null().all()
    chosen = table.filter(pl.col("chosen")).row(0, named=True)
    assert chosen["name"] == BASE or (chosen["beats_base"] and chosen["vs_base_low"] > 0)
    assert set(others.filter(~pl.col("beats_base"))["name"]).isdisjoint({searched.chosen})
