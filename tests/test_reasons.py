"""The catalogue of reasons: every feature kind said in words, with a unit or a reference."""

import pytest

from models.reasons import ESTATE, SYSTEM, Context, estate_effects, lines, say

DISK = Context(usual={("disk_pct", "after_close_mean"): 71.0, ("disk_pct", "mean"): 70.2,
                      ("disk_pct", "last"): 70.0},
               row={"disk_pct__last": 93.14, "disk_pct__mean": 92.0})


def test_a_level_is_a_number_with_its_unit_against_the_systems_normal():
    assert say("disk_pct__after_close_mean", 93.0091, DISK).text == "disk_pct 93% at the close, 71% is usual"
    latency = Context(usual={("latency_ms", "p95"): 5.9}, row={"latency_ms__p95": 10.8})
    assert say("latency_ms__p95_z20", 4.4, latency).text == \
        "latency_ms 10.8 ms at the 95th percentile, 5.9 ms is usual (+4.4 sd)"


def test_a_metric_without_a_unit_is_said_with_its_normal():
    errors = Context(usual={("error_rate", "mean"): 0.5}, row={"error_rate__mean": 0.74})
    assert say("error_rate__mean_z20", 2.77, errors).text == \
        "error_rate 0.74 over the day, 0.5 is usual (+2.8 sd)"


@pytest.mark.parametrize(("feature", "value", "text"), [
    ("chg_window_high", 1.0, "a high-risk change is scheduled in the window"),
    ("chg_window_high", 0.0, "no high-risk change is scheduled in the window"),
    ("chg_window_high", 2.0, "2 high-risk changes are scheduled in the window"),
    ("inc_open_at_cutoff", 1.0, "an incident was still open at the cutoff"),
    ("target_month_end", 1.0, "the target day is the last trading day of the month"),
])
def test_flags_and_counts_read_as_words(feature, value, text):
    assert say(feature, value).text == text


def test_a_trend_says_its_direction_per_day_in_the_metrics_unit():
    assert say("disk_pct__mean_slope5", 1.8, DISK).text == \
        "disk_pct rising 1.8 points a day over the last 5 sessions (70% is usual)"
    latency = Context(usual={("latency_ms", "mean"): 8.0})
    assert say("latency_ms__mean_slope5", -0.4, latency).text == \
        "latency_ms falling 0.4 ms a day over the last 5 sessions (8 ms is usual)"


@pytest.mark.parametrize(("days", "text"), [
    (4.1733, "disk_pct full in about 4 days at the current trend (93% at the cutoff)"),
    (0.0, "disk_pct at 100% now (93% at the cutoff)"),
    (365.0, "disk_pct not heading for 100% at the current trend (93% at the cutoff)"),
])
def test_days_to_full(days, text):
    assert say("disk_pct__days_to_limit", days, DISK).text == text


def test_the_calendar_is_estate_wide_and_said_once_for_the_whole_day():
    window = say("days_to_target", 4.0)
    assert window.scope == ESTATE and window.text == "the window runs 4 calendar days (cutoff to cutoff)"
    assert say("target_after_long_break", 1.0).text == \
        "the target day is the first trading day after a long break"
    assert say("disk_pct__last", 93.0, DISK).scope == SYSTEM
    factors = [[{"feature": "days_to_target", "value": 4.0, "contribution": c, "scope": ESTATE,
                 "text": window.text}] for c in (0.5, 0.7)] + [[]]
    shared = estate_effects(factors)
    assert shared["reasons"] == [window.text]
    assert shared["log_odds"] == pytest.approx(0.4)  # a system where it did not count adds zero


@pytest.mark.parametrize(("feature", "context", "text"), [
    ("error_rate__mean_z20", Context(), "error_rate has fewer than 5 days of history for its normal"),
    ("disk_pct__after_close_mean", DISK, "disk_pct had no samples before the cutoff"),
    ("disk_pct__days_to_limit", Context(), "disk_pct has no trend toward 100% yet"),
    ("disk_pct__mean_slope5", Context(), "disk_pct has no trend yet (fewer than two sessions)"),
    ("days_since_incident", Context(), "no incident on record"),
    ("up_days_since_incident", Context(), "no incident on its dependencies in the last 30 days"),
    ("chg_followed_by_incident_share", Context(), "no past change on record to learn from"),
    ("age_days", Context(), "in service since an unknown date"),
])
def test_a_missing_value_is_said_as_missing(feature, context, text):
    assert say(feature, None, context).text == text


def test_counts_are_compared_with_the_systems_rate_or_the_estates_median():
    history = Context(row={"inc_365d": 18.0}, estate={"up_inc_3d": 0.0, "peer_datacenter_inc_7d": 0.05},
                      attributes={"datacenter": "SH-DC1"})
    assert say("inc_7d", 3.0, history).text == \
        "3 incidents in the last 7 days, 0.35 is usual at its rate over the last year"
    assert say("up_inc_3d", 2.0, history).text == \
        "2 incidents on its dependencies in the last 3 days (estate median 0)"
    assert say("peer_datacenter_inc_7d", 0.12, history).text == \
        "systems in its datacenter SH-DC1 had 0.12 incidents each in the last 7 days (estate median 0.05)"
    assert say("days_since_incident", 2.3, Context(row={"mtbf5_days": 12.0})).text == \
        "last incident 2.3 days ago, one every 12 days lately"


def test_statistics_of_one_metric_make_one_line_with_the_level_first():
    factors = []
    for feature, value, contribution in (("disk_pct__days_to_limit", 4.17, 0.54),
                                         ("disk_pct__after_close_mean", 93.0, 0.63),
                                         ("disk_pct__last", 93.1, 0.57),
                                         ("chg_window_high", 1.0, -0.2),
                                         ("days_to_target", 4.0, 0.6)):
        said = say(feature, value, DISK)
        factors.append({"feature": feature, "value": value, "contribution": contribution,
                        "scope": said.scope, "text": said.text, "clause": said.clause,
                        "subject": said.subject, "aspect": said.aspect})
    assert lines(factors) == [
        {"text": "disk_pct 93% at the close, 71% is usual; full in about 4 days at the current trend",
         "contribution": 1.74, "direction": "raises"},
        {"text": "a high-risk change is scheduled in the window", "contribution": -0.2,
         "direction": "lowers"},
    ]


@pytest.mark.parametrize(("feature", "value", "text"), [
    ("act_restart_window", 1.0, "a restart is scheduled in the window"),
    ("act_upgrade_window", 2.0, "2 upgrades or releases are scheduled in the window"),
    ("act_relief_before_open", 1.0, "a restart, clean-up or maintenance ends before the target day's open"),
    ("act_risky_hours_to_open", -1.5, "an upgrade, configuration change or patch runs 1.5 hours into "
                                      "the target day's session"),
    ("act_days_to_cleanup", None, "no clean-up is scheduled in the next 30 days"),
    ("act_days_since_restart", 4.0, "last restarted 4 days ago"),
    ("act_disk_days_unrelieved", 3.0, "a disk fills in about 3 days and no clean-up is scheduled before then"),
    ("act_disk_days_unrelieved", 365.0, "a disk will not fill before a clean-up is due"),
])
def test_change_actions_read_as_words(feature, value, text):
    assert say(feature, value).text == text
    assert say(feature, value).subject == "change actions"
