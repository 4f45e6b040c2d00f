"""The retraining policy on its own: cadence, gate, refit, aliases, fallback (in-memory registry)."""

import datetime as dt

import numpy as np
import polars as pl
import pytest

from features.errors import UsageError
from features.trading_time import TradingCalendar
from models.dataset import Window
from models.lifecycle import (
    CHALLENGER,
    CHAMPION,
    FALLBACK,
    PolicyConfig,
    RetrainPolicy,
    TrainingSet,
    champion_age,
)
from models.memory_registry import InMemoryRegistry
from models.model import TrainConfig

CAL = TradingCalendar("XSHG", "Asia/Shanghai")
GOOD = TrainConfig(min_failures=10)
WEAK = TrainConfig(num_leaves=2, max_rounds=1, min_failures=10)  # one stump


def synthetic(days: int = 170, systems: int = 60, seed: int = 0, signal: float = 1.2):
    """Failures driven by x (and by z when x is high): trees find both, a stump one of them."""
    rng = np.random.default_rng(seed)
    rows = days * systems
    x, z = rng.normal(size=rows), rng.normal(size=rows)
    p = 1 / (1 + np.exp(-(-3.6 + signal * x + 0.9 * z * (x > 0))))
    dates = [dt.date(2025, 1, 1) + dt.timedelta(days=d) for d in range(days)]
    frame = pl.DataFrame({
        "system_id": np.tile([f"S{i}" for i in range(systems)], days),
        "as_of": pl.Series(dates).gather(np.repeat(np.arange(days), systems)),
        "x": x.astype(np.float32), "z": z.astype(np.float32),
        "noise": rng.normal(size=rows).astype(np.float32),
        "label": rng.random(rows) < p,
    })
    return frame, dates


def training_set(frame, dates, offset: int = 0, train: int = 100, hold: int = 30) -> TrainingSet:
    days = dates[offset:offset + train + hold]
    windows = (Window(days[0], days[train - 1]), Window(days[train], days[-1]),
               Window(days[hold], days[-1]))
    rows = [frame.filter(pl.col("as_of").is_between(w.first, w.last)) for w in windows]
    return TrainingSet(days[-1] + dt.timedelta(days=1), *rows, *windows)


def policy(candidate: TrainConfig = GOOD, **gate) -> RetrainPolicy:
    from models.gate import GateConfig

    return RetrainPolicy(PolicyConfig(candidate=candidate, gate=GateConfig(**gate)))


@pytest.fixture(scope="module")
def data():
    return synthetic()


def test_the_refit_learns_through_the_latest_labelled_day_and_names_its_evaluation(data):
    frame, dates = data
    registry = InMemoryRegistry()
    training = training_set(frame, dates)
    outcome = policy().retrain(training, registry)
    assert outcome.action == "promote"
    champion = registry.served(CHAMPION)
    assert champion.trained_through == training.refit_window.last == dates[129]
    assert champion.trained_through == training.as_of - dt.timedelta(days=1)
    tags = champion.tags
    assert tags["role"] == CHAMPION and tags["fit"] == "refit"
    assert tags["evaluation.holdout_window"] == str(training.holdout_window)
    assert tags["gate.beats_baselines"] == "True"
    assert int(tags["rounds"]) == outcome.candidate.rounds  # early stopping's choice
    assert champion.scorer.split.calibrate[1] == dates[129]  # calibrated on the newest days
    assert champion.scorer.split.fit[1] < champion.scorer.split.calibrate[0]
    assert registry.served(FALLBACK) is None


def test_a_routine_retrain_refreshes_the_champion_even_when_the_gain_is_within_noise(data):
    frame, dates = data
    registry = InMemoryRegistry()
    policy().retrain(training_set(frame, dates), registry)
    outcome = policy(min_improvement=0.9).retrain(training_set(frame, dates, offset=5), registry)
    assert outcome.action == "refresh" and not outcome.decision.candidate_beats_baselines


def test_a_routine_retrain_refreshes_the_champion(data):
    frame, dates = data
    registry = InMemoryRegistry()
    policy().retrain(training_set(frame, dates), registry)
    first = registry.served(CHAMPION)
    outcome = policy().retrain(training_set(frame, dates, offset=5), registry)
    assert outcome.action == "refresh"
    now = registry.served(CHAMPION)
    assert now.registered.version != first.registered.version
    assert now.trained_through == first.trained_through + dt.timedelta(days=5)
    assert CHALLENGER not in outcome.registered  # the same configuration: nothing to challenge


@pytest.mark.parametrize("challenger", [WEAK, TrainConfig(min_failures=5)], ids=["weaker", "tied"])
def test_a_weaker_or_tied_challenger_never_replaces_the_champions_configuration(data, challenger):
    frame, dates = data
    registry = InMemoryRegistry()
    policy(GOOD).retrain(training_set(frame, dates), registry)
    outcome = policy(challenger).retrain(training_set(frame, dates, offset=5), registry)
    assert outcome.action == "refresh" and outcome.decision.candidate_beats_champion is False
    assert registry.served(CHAMPION).config == GOOD
    assert registry.served(CHALLENGER).config == challenger


def test_a_clearly_better_challenger_replaces_the_champion(data):
    frame, dates = data
    registry = InMemoryRegistry()
    assert policy(WEAK).retrain(training_set(frame, dates), registry).action == "promote"
    outcome = policy(GOOD).retrain(training_set(frame, dates, offset=5), registry)
    assert outcome.action == "promote" and outcome.decision.candidate_beats_champion is True
    assert registry.served(CHAMPION).config == GOOD
    assert outcome.previous_champion == "1"


def test_without_a_passing_model_the_best_baseline_serves_until_one_passes(data):
    frame, dates = data
    registry = InMemoryRegistry()
    outcome = policy(min_improvement=0.9).retrain(training_set(frame, dates), registry)
    assert outcome.action == "fallback"
    assert registry.served(CHAMPION) is None
    fallback = registry.served(FALLBACK)
    assert fallback.registered.name == f"baseline:{outcome.decision.best_baseline}"
    assert fallback.trained_through == dates[129]
    assert outcome.served.registered.version == fallback.registered.version
    assert registry.served(CHALLENGER) is not None  # the candidate that did not pass

    passed = policy().retrain(training_set(frame, dates, offset=5), registry)
    assert passed.action == "promote"
    assert registry.served(CHAMPION) is not None and registry.served(FALLBACK) is None


def test_a_champion_stays_as_it_is_when_a_baseline_beats_its_configuration(data):
    frame, dates = data
    registry = InMemoryRegistry()
    policy().retrain(training_set(frame, dates), registry)
    before = registry.served(CHAMPION).registered.version
    training = training_set(frame, dates, offset=5)
    reversed_, _ = synthetic(seed=4, signal=-1.2)  # on the held-out days, x now protects
    training.holdout = training.holdout.select("system_id", "as_of").join(
        reversed_, on=["system_id", "as_of"])
    outcome = policy().retrain(training, registry)
    assert outcome.action == "keep" and outcome.decision.champion_holds is False
    assert registry.served(CHAMPION).registered.version == before


def test_an_alias_moved_during_the_retrain_is_not_overwritten(data):
    frame, dates = data
    registry = InMemoryRegistry()
    policy().retrain(training_set(frame, dates), registry)

    class Racing(InMemoryRegistry):
        def retrain_run(self, as_of, *, tags):
            self.set_alias(CHAMPION, "1")  # another retrain finished meanwhile
            return super().retrain_run(as_of, tags=tags)

    racing = Racing()
    racing.versions, racing.aliases = registry.versions, registry.aliases
    policy().retrain(training_set(frame, dates, offset=5), racing)  # champion -> v2
    racing.aliases[CHAMPION] = "2"
    outcome = policy().retrain(training_set(frame, dates, offset=10), racing)
    assert racing.aliases[CHAMPION] == "1" and "moved" in outcome.reason
    assert outcome.action == "keep"


def test_an_experiment_that_does_not_pass_the_gate_leaves_the_champion_where_it_is(data):
    frame, dates = data
    registry = InMemoryRegistry()
    policy(GOOD).retrain(training_set(frame, dates), registry)
    before = registry.served(CHAMPION).registered.version
    outcome = policy(WEAK).retrain(training_set(frame, dates, offset=5), registry,
                                   experiment="one stump")
    assert outcome.decision.action == "refresh"  # what the scheduled retrain would do
    assert outcome.action == "keep" and "experiment 'one stump'" in outcome.reason
    assert registry.served(CHAMPION).registered.version == before
    assert registry.served(CHALLENGER).config == WEAK


def test_an_experiment_that_passes_the_gate_becomes_the_champion(data):
    frame, dates = data
    registry = InMemoryRegistry()
    policy(WEAK).retrain(training_set(frame, dates), registry)
    outcome = policy(GOOD).retrain(training_set(frame, dates, offset=5), registry,
                                   experiment="deeper")
    assert outcome.action == "promote"
    assert registry.served(CHAMPION).config == GOOD


@pytest.mark.parametrize(("day", "weekly", "monthly"), [
    (dt.date(2025, 9, 26), True, False),  # a Friday
    (dt.date(2025, 9, 25), False, False),
    (dt.date(2025, 9, 30), True, True),  # the National Day holidays start on Wednesday
    (dt.date(2025, 10, 31), True, True),
])
def test_retraining_days_are_the_last_trading_day_of_each_period(day, weekly, monthly):
    assert RetrainPolicy(PolicyConfig(cadence="weekly")).is_retraining_day(CAL, day) is weekly
    assert RetrainPolicy(PolicyConfig(cadence="monthly")).is_retraining_day(CAL, day) is monthly


def test_the_model_of_a_day_comes_from_the_retraining_day_before_it():
    weekly = RetrainPolicy(PolicyConfig(cadence="weekly"))
    assert weekly.last_retraining_day_before(CAL, dt.date(2025, 10, 9)) == dt.date(2025, 9, 30)
    assert weekly.last_retraining_day_before(CAL, dt.date(2025, 9, 29)) == dt.date(2025, 9, 26)


def test_champion_age_counts_trading_days():
    assert champion_age(CAL, dt.date(2025, 9, 25), dt.date(2025, 9, 26)) == 1
    assert champion_age(CAL, dt.date(2025, 9, 25), dt.date(2025, 10, 9)) == 4  # over the holidays


def test_an_unknown_cadence_is_a_usage_error():
    with pytest.raises(UsageError, match="weekly, monthly"):
        PolicyConfig(cadence="hourly")
