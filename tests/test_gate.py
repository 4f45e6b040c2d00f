"""The champion gate: one pure function from hold-out scores to a typed decision."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from models.gate import FALLBACK, KEEP, PROMOTE, REFRESH, GateConfig, average_precision, decide

BASELINES = ["recent_incident_rate", "operator_rule"]


def holdout(days: int = 40, systems: int = 60, seed: int = 0):
    """Hold-out rows with a risk driver: a good scorer sees it, a baseline barely."""
    rng = np.random.default_rng(seed)
    day = np.repeat(np.arange(days), systems)
    driver = rng.normal(size=day.size)
    label = rng.random(day.size) < 1 / (1 + np.exp(-(-3.3 + 1.5 * driver)))
    good = 1 / (1 + np.exp(-(-3.3 + 1.5 * driver)))
    weak = 1 / (1 + np.exp(-(-3.3 + 0.3 * driver + rng.normal(size=day.size))))
    flat = np.full(day.size, label.mean())
    return day, label, {"good": good, "weak": weak, "flat": flat}


def baselines(scores, first="weak", second="flat"):
    return {BASELINES[0]: scores[first], BASELINES[1]: scores[second]}


def test_average_precision_is_scikit_learns_including_ties():
    rng = np.random.default_rng(3)
    day = np.repeat(np.arange(25), 80)
    label = rng.random(day.size) < 0.05
    for score in (rng.random(day.size) + label * 0.4, np.round(rng.random(day.size), 1)):
        assert average_precision(day, label, score) == pytest.approx(
            average_precision_score(label, score), abs=1e-12)


def test_a_clearly_better_first_model_is_promoted_with_its_interval():
    day, label, s = holdout()
    decision = decide(day, label, {"candidate": s["good"], **baselines(s)}, baselines=BASELINES,
                      candidate="candidate", champion=None, has_champion=False)
    assert decision.action == PROMOTE and decision.candidate_beats_baselines
    vs = decision.comparison("candidate", "recent_incident_rate")
    assert vs.low > 0 and vs.low <= vs.difference <= vs.high
    assert decision.tags()["gate.beats_baselines"] == "True"
    assert decision.tags()["gate.candidate_vs_recent_incident_rate"].startswith("beats: +")
    assert "interval" in decision.reason


def test_a_tied_challenger_keeps_the_champions_configuration():
    day, label, s = holdout()
    decision = decide(day, label, {"candidate": s["good"], "champion_config": s["good"].copy(),
                                   **baselines(s)}, baselines=BASELINES, candidate="candidate",
                      champion="champion_config", has_champion=True)
    tie = decision.comparison("candidate", "champion_config")
    assert tie.difference == 0 and not tie.beats
    assert decision.action == REFRESH and decision.candidate_beats_champion is False


def test_a_weaker_challenger_never_replaces_the_champion():
    day, label, s = holdout()
    decision = decide(day, label, {"candidate": s["weak"], "champion_config": s["good"],
                                   **baselines(s, "flat", "flat")}, baselines=BASELINES,
                      candidate="candidate", champion="champion_config", has_champion=True)
    assert decision.action == REFRESH and decision.candidate_beats_champion is False


def test_a_clearly_better_challenger_replaces_the_champion():
    day, label, s = holdout()
    decision = decide(day, label, {"candidate": s["good"], "champion_config": s["weak"],
                                   **baselines(s, "flat", "flat")}, baselines=BASELINES,
                      candidate="candidate", champion="champion_config", has_champion=True)
    assert decision.action == PROMOTE and decision.candidate_beats_champion is True


def test_a_gain_within_noise_does_not_beat():
    """One failure ranked a little higher: the point estimate rises, the interval spans 0."""
    day, label, s = holdout(days=15)
    reference = s["weak"]
    nudged = reference.copy()
    first_failure = int(np.flatnonzero(label)[0])
    nudged[first_failure] += 0.05
    decision = decide(day, label, {"candidate": nudged, "champion_config": reference,
                                   **baselines(s, "flat", "flat")}, baselines=BASELINES,
                      candidate="candidate", champion="champion_config", has_champion=True)
    vs = decision.comparison("candidate", "champion_config")
    assert vs.difference > 0 and vs.low <= 0 and not vs.beats
    assert decision.action == REFRESH


def test_the_minimum_improvement_is_required_beyond_noise():
    day, label, s = holdout()
    scores = {"candidate": s["good"], **baselines(s)}
    gain = decide(day, label, scores, baselines=BASELINES, candidate="candidate", champion=None,
                  has_champion=False).comparison("candidate", "recent_incident_rate")
    strict = decide(day, label, scores, baselines=BASELINES, candidate="candidate", champion=None,
                    has_champion=False, config=GateConfig(min_improvement=gain.low + 0.01))
    assert strict.action == FALLBACK and not strict.candidate_beats_baselines


def test_worse_calibration_beyond_noise_does_not_beat():
    day, label, s = holdout()
    overconfident = np.clip(s["good"] * 6, 0, 1)  # same ranking, far too high
    decision = decide(day, label, {"candidate": overconfident, **baselines(s)},
                      baselines=BASELINES, candidate="candidate", champion=None,
                      has_champion=False)
    vs = decision.comparison("candidate", "recent_incident_rate")
    assert vs.pr_auc_beats and not vs.brier_ok and decision.action == FALLBACK
    assert "Brier" in decision.reason


def test_no_champion_and_no_better_candidate_falls_back_to_the_best_baseline():
    day, label, s = holdout()
    decision = decide(day, label, {"candidate": s["flat"], "recent_incident_rate": s["flat"],
                                   "operator_rule": s["weak"]}, baselines=BASELINES,
                      candidate="candidate", champion=None, has_champion=False)
    assert decision.action == FALLBACK and decision.best_baseline == "operator_rule"
    assert decision.tags()["gate.beats_baselines"] == "False"


def test_a_champion_stays_when_nothing_beats_the_baselines():
    day, label, s = holdout()
    decision = decide(day, label, {"candidate": s["flat"], **baselines(s, "good", "good")},
                      baselines=BASELINES, candidate="candidate", champion=None,
                      has_champion=True, same_configuration=True)
    assert decision.action == KEEP and decision.champion_holds is False
    assert "loses to" in decision.reason


def test_the_champions_configuration_needs_only_to_hold_its_ground():
    """Within noise of the best baseline: not enough to become champion, enough to be refreshed."""
    day, label, s = holdout()
    scores = {"candidate": s["weak"], **baselines(s)}  # ties recent_incident_rate
    args = dict(baselines=BASELINES, candidate="candidate", champion=None)
    first = decide(day, label, scores, has_champion=False, **args)
    routine = decide(day, label, scores, has_champion=True, same_configuration=True, **args)
    assert first.action == FALLBACK and not first.candidate_beats_baselines
    assert routine.action == REFRESH and routine.champion_holds
    assert "within noise" in routine.reason


def test_a_hold_out_without_failures_judges_nothing():
    day, _, s = holdout()
    quiet = np.zeros(day.size, dtype=bool)
    decision = decide(day, quiet, {"candidate": s["good"], **baselines(s)}, baselines=BASELINES,
                      candidate="candidate", champion=None, has_champion=False)
    assert decision.action == FALLBACK and decision.comparisons == ()
    assert "nothing to judge" in decision.reason


def test_the_decision_is_reproducible():
    day, label, s = holdout()
    args = dict(baselines=BASELINES, candidate="candidate", champion=None, has_champion=False)
    first = decide(day, label, {"candidate": s["good"], **baselines(s)}, **args)
    again = decide(day, label, {"candidate": s["good"], **baselines(s)}, **args)
    assert first == again
