"""The catalogue of reasons: every feature family in words, with its unit, format and reference.

A reason says what the system shows tonight and what is normal for it, in the units of the
data: "disk_pct 93% at the close, 71% is usual; full in about 4 days at the current trend",
"a high-risk change is scheduled in the window". Each family of features (the names the
``features`` library writes) has one entry here:

    metric statistics   <metric>__<stat>           level, spread, trend, limit, gaps; unit from the
                                                    metric's name; reference: the system's own
                                                    20-session normal (``Context.usual``)
    incident history    inc_*, days_since_*, mtbf5_days
    dependencies        up_*
    peers               peer_<attribute>_inc_<n>d
    changes             chg_*
    change actions      act_*                      what scheduled changes do (restart, clean-up,
                                                    upgrade ...), when, and what they relieve
    calendar            days_to_target, target_* ... (the same for every system: estate-wide)
    inventory           tier, age_days, n_upstream, n_downstream, inv_*

Every number carries a unit or a reference (its normal, or the estate's median that day).
Reasons of the calendar family are estate-wide: the page states them once, not per system.
A feature's ``mechanism`` is the failure mechanism it points at ("disk filling"), with the words
an on-call engineer would use for it; similar-incident retrieval searches the case library for
those words.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

SYSTEM, ESTATE = "system", "estate"
# Aspects of a metric, in the order a combined reason states them.
ASPECTS = ("level", "spread", "trend", "limit", "gaps")


@dataclass(frozen=True)
class Mechanism:
    """A failure mechanism a reason points at, and the words a case library uses for it."""

    name: str
    words: str


HARDWARE = Mechanism("hardware signs", "hardware host crashed controller memory error dimm ecc fan "
                                      "overheated node failover standby replaced unresponsive agent")
# Metric names are open: a metric's mechanism is found from the words in its name.
METRIC_MECHANISMS: tuple[tuple[str, Mechanism], ...] = (
    (r"disk|filesystem|_fs|volume|inode|storage",
     Mechanism("disk filling", "disk full filesystem volume space archive journal purge "
                               "logrotate log rotation capacity exhausted core dumps")),
    (r"mem|heap|swap|gc_|fd_|oom",
     Mechanism("memory pressure", "memory leak heap oom exhausted swap gc garbage collection "
                                  "cache file descriptor restart")),
    (r"latency|response|p99|rtt|lock",
     Mechanism("latency rising", "latency slow response timeout timing out sla spikes query "
                                 "plan index contention overran")),
    (r"error|reject|fail|exception|5xx",
     Mechanism("error burst", "error errors storm rejects retry retries reconnect loop parse "
                              "malformed flapping")),
    (r"queue|lag|backlog|pending",
     Mechanism("queue backlog", "queue backlog lag consumer drain stalled")),
    (r"io_wait|iowait|temp|ecc|fan", HARDWARE),
    (r"retrans|packet|net_|tcp|drop",
     Mechanism("network trouble", "network packet loss retransmits uplink connectivity "
                                  "partition switch acl")),
    (r"cpu|load|thread|conn",
     Mechanism("load rising", "cpu load threads connections overload saturated slow")),
)
GAPS = HARDWARE  # an agent that stops reporting is often a host in trouble
CHANGE = Mechanism("failed change", "change release rolled back rollback deployment patch config "
                                    "maintenance migration")
DEPENDENCY = Mechanism("dependency failing", "upstream dependency impacted outage unavailable "
                                             "backlog failure cascade")
RECURRENCE = Mechanism("recent incidents", "")
REOPEN = Mechanism("first session after a break", "holiday resume open session closure "
                                                  "sequence calendar certificate expired")
MECHANISMS: dict[str, Mechanism] = {m.name: m for m in (
    *(m for _, m in METRIC_MECHANISMS), CHANGE, DEPENDENCY, RECURRENCE, REOPEN)}

STAT_WORDS = {
    "mean": "over the day",
    "std": "variability over the day",
    "p95": "at the 95th percentile",
    "max": "at its peak",
    "last": "at the cutoff",
    "after_close_mean": "at the close",
    "null_share": "share of samples missing",
    "coverage": "share of minutes with a sample",
    "longest_gap_min": "longest gap between samples",
    "mean_z20": "over the day against its 20-day normal",
    "p95_z20": "95th percentile against its 20-day normal",
    "after_close_z20": "at the close against its 20-day normal",
    "mean_slope5": "trend over the last 5 sessions",
    "days_to_limit": "days until it reaches 100% at the current trend",
}
# Which statistic of metric_day_stats a feature's normal is the average of.
NORMAL_OF = {"mean": "mean", "std": "std", "p95": "p95", "max": "max", "last": "last",
             "after_close_mean": "after_close_mean", "null_share": "null_share",
             "coverage": "coverage", "longest_gap_min": "longest_gap_min",
             "mean_z20": "mean", "p95_z20": "p95", "after_close_z20": "after_close_mean",
             "mean_slope5": "mean", "days_to_limit": "last"}
# The level a z-score is about: the feature of the same metric holding today's value.
Z_LEVEL = {"mean_z20": "mean", "p95_z20": "p95", "after_close_z20": "after_close_mean"}
ASPECT_OF_STAT = {"mean": "level", "p95": "level", "max": "level", "last": "level",
                  "after_close_mean": "level", "mean_z20": "level", "p95_z20": "level",
                  "after_close_z20": "level", "std": "spread", "mean_slope5": "trend",
                  "days_to_limit": "limit", "null_share": "gaps", "coverage": "gaps",
                  "longest_gap_min": "gaps"}

# Units by the end of a metric's name: (pattern, unit, joined without a space).
UNITS: tuple[tuple[str, str, bool], ...] = (
    (r"(_pct|_percent|_util|_utilization)$", "%", True),
    (r"_ms$", "ms", False),
    (r"(_s|_sec|_seconds)$", "s", False),
    (r"_min$", "min", False),
    (r"_mbps$", "Mbps", False),
    (r"_gbps$", "Gbps", False),
    (r"(_mb)$", "MB", False),
    (r"(_gb)$", "GB", False),
    (r"(_bytes)$", "bytes", False),
    (r"(_c|_celsius|_temp)$", "°C", False),
)

WEEKDAYS = ("", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass
class Context:
    """What a system's reasons are compared with.

    ``usual``: the system's own normal of a metric statistic, ``(metric, stat) -> value``
    (the average over its last 20 sessions before the as-of day). ``estate``: the median of a
    feature over the estate's systems that day. ``attributes``: the system's inventory values
    (datacenter, owner, ...), by the attribute's name as features spell it.
    """

    usual: Mapping[tuple[str, str], float] = field(default_factory=dict)
    estate: Mapping[str, float] = field(default_factory=dict)
    attributes: Mapping[str, str] = field(default_factory=dict)
    row: Mapping[str, float | None] = field(default_factory=dict)


# ------------------------------------------------------------------------------ numbers


def number(value: float) -> str:
    """A number with the digits a reader needs: 93, 4.2, 0.37, 1,250."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "?"
    size = abs(value)
    if size >= 1000:
        return f"{value:,.0f}"
    if size >= 20:
        return f"{value:.0f}"
    if size >= 1:
        text = f"{value:.1f}"
        return text[:-2] if text.endswith(".0") else text
    if size == 0:
        return "0"
    return f"{value:.2g}"


def unit_of(metric: str) -> tuple[str, bool]:
    """The unit a metric's name announces (``disk_pct`` -> %), and whether it joins the number."""
    for pattern, unit, joined in UNITS:
        if re.search(pattern, metric, re.IGNORECASE):
            return unit, joined
    return "", False


def with_unit(value: float, unit: str, joined: bool) -> str:
    text = number(value)
    if not unit:
        return text
    return f"{text}{unit}" if joined else f"{text} {unit}"


def share(value: float) -> str:
    return f"{number(100 * value)}%"


def days(value: float) -> str:
    """A span of days as a reader says it: 5 hours, 1.5 days, 4 days, 2.3 years."""
    if value >= 730:
        return f"{number(value / 365.25)} years"
    if value < 1:
        hours = value * 24
        return "under an hour" if hours < 1 else f"{number(hours)} hours"
    text = number(value) if value < 3 else f"{round(value):,}"
    return f"{text} day{'' if text == '1' else 's'}"


def count(n: float, one: str, many: str | None = None) -> str:
    """"a high-risk change", "3 high-risk changes", "no high-risk change"."""
    many = many or one + "s"
    n = int(round(n))
    if n == 0:
        return f"no {one}"
    if n == 1:
        return f"{'an' if one[0] in 'aeiou' else 'a'} {one}"
    return f"{n} {many}"


def forms(n: float, zero: str, one: str, many: str) -> str:
    """The sentence for no, one or several things; ``{n}`` is the count."""
    n = int(round(n))
    return (zero if n == 0 else one if n == 1 else many).format(n=n)


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


# ------------------------------------------------------------------------------ families


@dataclass(frozen=True)
class Said:
    """One feature's reason: the sentence, its parts for combining, and what it points at."""

    text: str
    subject: str
    clause: str
    aspect: str
    scope: str = SYSTEM
    mechanism: Mechanism | None = None
    usual: float | None = None


def parse_metric(feature: str) -> tuple[str, str] | None:
    if "__" not in feature:
        return None
    metric, stat = feature.rsplit("__", 1)
    return (metric, stat) if stat in STAT_WORDS else None


def metric_mechanism(metric: str) -> Mechanism | None:
    for pattern, mechanism in METRIC_MECHANISMS:
        if re.search(pattern, metric, re.IGNORECASE):
            return mechanism
    return None


def _metric_reason(metric: str, stat: str, value, context: Context) -> Said:
    unit, joined = unit_of(metric)
    usual = context.usual.get((metric, NORMAL_OF[stat]))
    aspect = ASPECT_OF_STAT[stat]
    mechanism = GAPS if aspect == "gaps" else metric_mechanism(metric)

    def said(clause: str, aside: str = "") -> Said:
        # The aside (today's level) is said when the reason stands alone, not in a combined line.
        return Said(f"{metric} {clause}{aside}", metric, clause, aspect, mechanism=mechanism,
                    usual=usual)

    def normal(level: float) -> str:
        return f"{with_unit(level, unit, joined)} is usual"

    if stat in Z_LEVEL:
        if _missing(value):
            return said("has fewer than 5 days of history for its normal")
        level = context.row.get(f"{metric}__{Z_LEVEL[stat]}")
        where = STAT_WORDS[Z_LEVEL[stat]]
        sd = f"{'+' if value >= 0 else '−'}{number(abs(value))} sd"
        if _missing(level) or usual is None:
            above = "above" if value >= 0 else "below"
            return said(f"{where} {number(abs(value))} standard deviations {above} its 20-day normal")
        return said(f"{with_unit(level, unit, joined)} {where}, {normal(usual)} ({sd})")
    if stat == "mean_slope5":
        if _missing(value):
            return said("has no trend yet (fewer than two sessions)")
        way = "rising" if value > 0 else "falling" if value < 0 else "flat"
        rate = f"{with_unit(abs(value), unit, joined)} a day" if unit != "%" else \
            f"{number(abs(value))} points a day"
        reference = f" ({normal(usual)})" if usual is not None else ""
        clause = f"{way} {rate} over the last 5 sessions" if way != "flat" else \
            "flat over the last 5 sessions"
        return said(clause, reference)
    if stat == "days_to_limit":
        level = context.row.get(f"{metric}__last")
        now = f" ({with_unit(level, unit, joined)} at the cutoff)" if not _missing(level) else ""
        if _missing(value):
            return said("has no trend toward 100% yet")
        if value <= 0:
            return said("at 100% now", now)
        if value >= 365:
            return said("not heading for 100% at the current trend", now)
        return said(f"full in about {days(value)} at the current trend", now)
    if stat == "null_share":
        if _missing(value):
            return said("had no samples before the cutoff")
        ref = f", {share(usual)} is usual" if usual is not None else ""
        return said(f"{share(value)} of samples missing{ref}")
    if stat == "coverage":
        if _missing(value):
            return said("had no samples before the cutoff")
        ref = f", {share(usual)} is usual" if usual is not None else ""
        return said(f"samples in {share(value)} of minutes{ref}")
    if stat == "longest_gap_min":
        if _missing(value):
            return said("had no samples before the cutoff")
        ref = f", {number(usual)} min is usual" if usual is not None else ""
        return said(f"went {number(value)} min without a sample{ref}")
    # Levels and spread in the metric's own unit, against the system's normal.
    if _missing(value):
        return said("had no samples before the cutoff")
    words = STAT_WORDS[stat]
    if stat == "std":
        ref = f", {with_unit(usual, unit, joined)} is usual" if usual is not None else ""
        return said(f"varied by {with_unit(value, unit, joined)} (standard deviation){ref}")
    ref = f", {normal(usual)}" if usual is not None else ""
    return said(f"{with_unit(value, unit, joined)} {words}{ref}")


def _median(context: Context, feature: str, render) -> str:
    median = context.estate.get(feature)
    return f" (estate median {render(median)})" if median is not None and not _missing(median) else ""


def _incident_reason(feature: str, value, context: Context) -> Said | None:
    def said(text: str, mechanism: Mechanism | None = RECURRENCE, usual: float | None = None) -> Said:
        return Said(text, "incidents", text, feature, mechanism=mechanism, usual=usual)

    spans = {"1d": "day", "3d": "3 days", "7d": "7 days", "30d": "30 days", "90d": "90 days",
             "365d": "year", "730d": "two years"}
    match = re.fullmatch(r"inc_(\d+d)", feature)
    if match:
        span = match.group(1)
        n = 0 if _missing(value) else value
        text = f"{count(n, 'incident')} in the last {spans[span]}"
        yearly = context.row.get("inc_365d")
        if span not in ("365d", "730d") and not _missing(yearly):
            expected = yearly * int(span[:-1]) / 365
            return said(f"{text}, {number(expected)} is usual at its rate over the last year",
                        usual=expected)
        return said(text + _median(context, feature, number))
    match = re.fullmatch(r"inc_decayed_(\d+)d", feature)
    if match:
        return said(f"{number(value or 0)} incidents counted with weights fading over "
                    f"{match.group(1)} days" + _median(context, feature, number))
    match = re.fullmatch(r"inc_sev(\d+)_(\d+d)", feature)
    if match:
        levels = "1-2" if match.group(1) == "12" else match.group(1)
        n = 0 if _missing(value) else value
        return said(f"{count(n, f'severity {levels} incident')} in the last {spans[match.group(2)]}"
                    + _median(context, feature, number))
    if feature == "inc_categories_90d":
        return said(f"incidents of {number(value or 0)} different categories in 90 days"
                    + _median(context, feature, number))
    if feature == "inc_open_at_cutoff":
        return said(forms(value or 0, "no incident was open at the cutoff",
                          "an incident was still open at the cutoff",
                          "{n} incidents were still open at the cutoff"))
    if feature == "days_since_incident":
        if _missing(value):
            return said("no incident on record", mechanism=None)
        mtbf = context.row.get("mtbf5_days")
        ref = f", one every {days(mtbf)} lately" if not _missing(mtbf) else \
            _median(context, feature, days)
        return said(f"last incident {days(value)} ago{ref}")
    match = re.fullmatch(r"days_since_(2nd|3rd)_incident", feature)
    if match:
        which = {"2nd": "second", "3rd": "third"}[match.group(1)]
        if _missing(value):
            return said(f"no {which}-last incident on record", mechanism=None)
        return said(f"{which}-last incident {days(value)} ago" + _median(context, feature, days))
    if feature == "days_since_sev12":
        if _missing(value):
            return said("no severity 1-2 incident on record", mechanism=None)
        return said(f"last severity 1-2 incident {days(value)} ago" + _median(context, feature, days))
    if feature == "mtbf5_days":
        if _missing(value):
            return said("fewer than five incidents on record", mechanism=None)
        return said(f"its last five incidents came {days(value)} apart on average"
                    + _median(context, feature, days))
    if feature == "inc_lifetime":
        return said(f"{count(value or 0, 'incident')} since it entered service"
                    + _median(context, feature, number))
    if feature == "inc_lifetime_rate":
        if _missing(value):
            return said("no incident rate yet", mechanism=None)
        return said(f"{number(30 * value)} incidents a month over its life"
                    + _median(context, feature, lambda m: number(30 * m)))
    if feature == "inc_same_category_90d":
        return said(f"its last incident's category came up {number(value or 0)} times in 90 days"
                    + _median(context, feature, number))
    return None


def _dependency_reason(feature: str, value, context: Context) -> Said | None:
    def said(text: str, mechanism: Mechanism | None = DEPENDENCY) -> Said:
        return Said(text, "dependencies", text, feature, mechanism=mechanism)

    match = re.fullmatch(r"up_inc_(\d+)d", feature)
    if match:
        n = match.group(1)
        span = "day" if n == "1" else f"{n} days"
        return said(f"{count(value or 0, 'incident')} on its dependencies in the last {span}"
                    + _median(context, feature, number))
    if feature == "up_sev12_3d":
        return said(f"{count(value or 0, 'severity 1-2 incident')} on its dependencies in 3 days"
                    + _median(context, feature, number))
    if feature == "up_days_since_incident":
        if _missing(value):
            return said("no incident on its dependencies in the last 30 days", mechanism=None)
        return said(f"a dependency last failed {days(value)} ago" + _median(context, feature, days))
    if feature == "up_chg_window":
        return said(forms(value or 0, "no change is scheduled on its dependencies in the window",
                          "a change is scheduled on its dependencies in the window",
                          "{n} changes are scheduled on its dependencies in the window"),
                    mechanism=CHANGE)
    if feature == "up_chg_window_high":
        return said(forms(value or 0, "no high-risk change is scheduled on its dependencies in the window",
                          "a high-risk change is scheduled on its dependencies in the window",
                          "{n} high-risk changes are scheduled on its dependencies in the window"),
                    mechanism=CHANGE)
    return None


def _peer_reason(feature: str, value, context: Context) -> Said | None:
    match = re.fullmatch(r"peer_(.+)_inc_(\d+)d", feature)
    if not match:
        return None
    attribute, n = match.groups()
    span = "day" if n == "1" else f"{n} days"
    own = context.attributes.get(attribute)
    group = f"its {attribute.replace('_', ' ')}" + (f" {own}" if own else "")
    if _missing(value):
        text = f"systems in {group}: no incident count"
    else:
        text = (f"systems in {group} had {number(value)} incidents each in the last {span}"
                + _median(context, feature, number))
    return Said(text, f"peers:{attribute}", text, feature, mechanism=DEPENDENCY)


CHANGE_WORDS = {
    "chg_window": ("no change is scheduled in the window", "a change is scheduled in the window",
                   "{n} changes are scheduled in the window"),
    "chg_window_high": ("no high-risk change is scheduled in the window",
                        "a high-risk change is scheduled in the window",
                        "{n} high-risk changes are scheduled in the window"),
    "chg_window_medium": ("no medium-risk change is scheduled in the window",
                          "a medium-risk change is scheduled in the window",
                          "{n} medium-risk changes are scheduled in the window"),
    "chg_window_low": ("no low-risk change is scheduled in the window",
                       "a low-risk change is scheduled in the window",
                       "{n} low-risk changes are scheduled in the window"),
    "chg_window_types": ("no change is scheduled in the window",
                         "one kind of change is scheduled in the window",
                         "{n} kinds of change are scheduled in the window"),
    "chg_window_short_notice": ("no change in the window was raised at short notice",
                                "a change in the window was raised at short notice (within 2 days)",
                                "{n} changes in the window were raised at short notice (within 2 days)"),
    "chg_recent_7d": ("no change was carried out in the last 7 days",
                      "a change was carried out in the last 7 days",
                      "{n} changes were carried out in the last 7 days"),
    "chg_failed_30d": ("no change failed or was rolled back in the last 30 days",
                       "a change failed or was rolled back in the last 30 days",
                       "{n} changes failed or were rolled back in the last 30 days"),
    "chg_history_365d": ("no change in the last year", "a change in the last year",
                         "{n} changes in the last year"),
}


def _change_reason(feature: str, value, context: Context) -> Said | None:
    def said(text: str) -> Said:
        return Said(text, "changes", text, feature, mechanism=CHANGE)

    if feature in CHANGE_WORDS:
        text = forms(0 if _missing(value) else value, *CHANGE_WORDS[feature])
        if feature in ("chg_recent_7d", "chg_history_365d"):
            text += _median(context, feature, number)
        return said(text)
    if feature == "chg_window_hours":
        return said(f"{number(value or 0)} hours of change work scheduled in the window")
    if feature == "chg_followed_by_incident_share":
        if _missing(value):
            return said("no past change on record to learn from")
        return said(f"{share(value)} of its past changes were followed by an incident within a day"
                    + _median(context, feature, share))
    return None


ACTION_KINDS = {"restart": ("restart", "restarts"), "cleanup": ("clean-up", "clean-ups"),
                "maintenance": ("maintenance change", "maintenance changes"),
                "patch": ("patch", "patches"), "upgrade": ("upgrade or release", "upgrades or releases"),
                "config": ("configuration change", "configuration changes")}
DISK_FILLING, MEMORY_PRESSURE = METRIC_MECHANISMS[0][1], METRIC_MECHANISMS[1][1]


def _action_reason(feature: str, value, context: Context) -> Said | None:
    def said(text: str, mechanism: Mechanism | None = CHANGE) -> Said:
        return Said(text, "change actions", text, feature, mechanism=mechanism)

    match = re.fullmatch(r"act_(\w+)_window", feature)
    if match and match.group(1) in ACTION_KINDS:
        one, many = ACTION_KINDS[match.group(1)]
        article = "an" if one[0] in "aeiou" else "a"
        return said(forms(value or 0, f"no {one} is scheduled in the window",
                          f"{article} {one} is scheduled in the window",
                          f"{{n}} {many} are scheduled in the window"))
    if feature == "act_relief_before_open":
        return said(forms(value or 0, "no restart, clean-up or maintenance ends before the target "
                                      "day's open",
                          "a restart, clean-up or maintenance ends before the target day's open",
                          "{n} restarts, clean-ups or maintenance changes end before the target "
                          "day's open"), mechanism=None)
    if feature == "act_risky_hours_to_open":
        if _missing(value):
            return said("no upgrade, configuration change or patch in the window", mechanism=None)
        if value < 0:
            return said(f"an upgrade, configuration change or patch runs {days(-value / 24)} into "
                        "the target day's session")
        return said(f"an upgrade, configuration change or patch ends {days(value / 24)} before "
                    "the target day's open")
    horizons = {"act_days_to_restart": ("restart", "the next restart is in {}", 30),
                "act_days_to_cleanup": ("clean-up", "the next clean-up is in {}", 30)}
    if feature in horizons:
        what, text, horizon = horizons[feature]
        if _missing(value):
            return said(f"no {what} is scheduled in the next {horizon} days", mechanism=None)
        return said(text.format(days(value)), mechanism=None)
    since = {"act_days_since_restart": ("restart", "last restarted {} ago"),
             "act_days_since_cleanup": ("clean-up", "last cleaned up {} ago"),
             "act_days_since_upgrade": ("upgrade or release", "last upgraded {} ago")}
    if feature in since:
        what, text = since[feature]
        if _missing(value):
            return said(f"no {what} in the last 90 days", mechanism=None)
        return said(text.format(days(value)) + _median(context, feature, days), mechanism=None)
    unrelieved = {"act_disk_days_unrelieved": ("a disk", "clean-up", DISK_FILLING),
                  "act_mem_days_unrelieved": ("memory", "restart", MEMORY_PRESSURE)}
    if feature in unrelieved:
        what, relief, mechanism = unrelieved[feature]
        if _missing(value):
            return said(f"{what}: no fill level to compare with the {relief}s", mechanism=None)
        if value >= 365:
            return said(f"{what} will not fill before a {relief} is due", mechanism=None)
        when = "is full now" if value <= 0 else f"fills in about {days(value)}"
        return said(f"{what} {when} and no {relief} is scheduled before then", mechanism=mechanism)
    return None


def _calendar_reason(feature: str, value, context: Context) -> Said | None:
    def said(text: str, mechanism: Mechanism | None = None) -> Said:
        return Said(text, "calendar", text, feature, scope=ESTATE, mechanism=mechanism)

    flag = None if _missing(value) else bool(value)
    if feature == "days_to_target":
        if _missing(value):
            return said("the window's length is unknown")
        return said(f"the window runs {number(value)} calendar days (cutoff to cutoff)",
                    REOPEN if value >= 4 else None)
    if feature == "days_since_previous":
        return said(f"today came {days(value or 0)} after the previous trading day")
    if feature == "target_after_long_break":
        return said("the target day is the first trading day after a long break" if flag else
                    "the target day is not the first after a long break", REOPEN if flag else None)
    if feature == "as_of_after_long_break":
        return said("today was the first trading day after a long break" if flag else
                    "today was not the first trading day after a long break")
    if feature == "target_weekday":
        day = int(value) if not _missing(value) and 1 <= int(value) <= 7 else 0
        return said(f"the target day is a {WEEKDAYS[day]}" if day else "the target weekday is unknown")
    if feature == "target_month_end":
        return said("the target day is the last trading day of the month" if flag else
                    "the target day is not the month's last trading day")
    if feature == "target_quarter_end":
        return said("the target day is the last trading day of the quarter" if flag else
                    "the target day is not the quarter's last trading day")
    return None


def _inventory_reason(feature: str, value, context: Context) -> Said | None:
    def said(text: str) -> Said:
        return Said(text, "inventory", text, feature)

    if feature == "tier":
        if _missing(value):
            return said("tier not recorded")
        return said(f"a tier {number(value)} system (1 = most critical)")
    if feature == "age_days":
        if _missing(value):
            return said("in service since an unknown date")
        return said(f"in service for {days(value)}" + _median(context, feature, days))
    if feature == "n_upstream":
        return said(forms(value or 0, "depends on no other system", "depends on one other system",
                          "depends on {n} other systems") + _median(context, feature, number))
    if feature == "n_downstream":
        return said(forms(value or 0, "no system depends on it", "one system depends on it",
                          "{n} systems depend on it") + _median(context, feature, number))
    if feature.startswith("inv_"):
        name = feature[4:].replace("_", " ")
        if _missing(value):
            return said(f"{name} not recorded")
        return said(f"{name} {number(value)}" + _median(context, feature, number))
    return None


CALENDAR_FEATURES = ("days_to_target", "days_since_previous", "target_after_long_break",
                     "as_of_after_long_break", "target_weekday", "target_month_end",
                     "target_quarter_end")


# The families ``family`` names, in its docstring's order: what a model may leave out.
FAMILIES = ("metric", "incidents", "dependencies", "peers", "changes", "change actions",
            "calendar", "inventory")


def family(feature: str) -> str:
    """metric, incidents, dependencies, peers, changes, change actions, calendar or inventory."""
    if feature in CALENDAR_FEATURES:
        return "calendar"
    if parse_metric(feature):
        return "metric"
    if feature.startswith("peer_"):
        return "peers"
    if feature.startswith("up_"):
        return "dependencies"
    if feature.startswith("chg_"):
        return "changes"
    if feature.startswith("act_"):
        return "change actions"
    if feature.startswith(("inc_", "days_since_", "mtbf")):
        return "incidents"
    return "inventory"


def scope(feature: str) -> str:
    """``estate`` for what every system shares that day (the calendar), else ``system``."""
    return ESTATE if family(feature) == "calendar" else SYSTEM


def say(feature: str, value, context: Context | None = None) -> Said:
    """The reason a feature's value gives, compared with the system's normal or the estate."""
    context = context or Context()
    value = None if _missing(value) else float(value)
    parsed = parse_metric(feature)
    if parsed:
        return _metric_reason(*parsed, value, context)
    kind = family(feature)
    handlers = {"calendar": _calendar_reason, "peers": _peer_reason,
                "dependencies": _dependency_reason, "changes": _change_reason,
                "change actions": _action_reason,
                "incidents": _incident_reason, "inventory": _inventory_reason}
    said = handlers[kind](feature, value, context)
    if said is None:  # a feature this catalogue does not know yet: say it plainly
        text = (f"{feature.replace('_', ' ')} {number(value)}" if value is not None
                else f"{feature.replace('_', ' ')} unknown") + _median(context, feature, number)
        said = Said(text, feature, text, feature)
    return said


# ------------------------------------------------------------------------------ for readers


def lines(factors: list[dict]) -> list[dict]:
    """A system's factors as the lines a reader sees: one per subject, clauses joined.

    Several statistics of one metric ("disk_pct at the close", "days until full") make one
    line: "disk_pct 93% at the close, 71% is usual; full in about 4 days at the current
    trend". Estate-wide factors are left out (the page states them once). Lines come in the
    order of their summed contribution, largest first.
    """
    groups: dict[str, dict] = {}
    for factor in factors:
        if factor.get("scope", SYSTEM) != SYSTEM:
            continue
        subject = factor.get("subject") or factor["feature"]
        if factor.get("aspect") not in ASPECTS:  # not a metric: one line per feature
            subject = f"{subject}:{factor['feature']}"
        group = groups.setdefault(subject, {"subject": factor.get("subject"), "clauses": {},
                                            "contribution": 0.0, "text": None})
        group["contribution"] += factor["contribution"]
        aspect = factor.get("aspect") or factor["feature"]
        if aspect not in group["clauses"]:
            # Scores published before reasons had words carry a description only.
            group["clauses"][aspect] = (factor.get("clause") or factor.get("text")
                                        or factor.get("description") or factor["feature"])
        group["text"] = group["text"] or factor.get("text") or factor.get("description")
    out = []
    for group in groups.values():
        clauses = group["clauses"]
        if len(clauses) > 1:
            ordered = [clauses[a] for a in ASPECTS if a in clauses]
            text = f"{group['subject']} " + "; ".join(ordered)
        else:
            text = group["text"] or next(iter(clauses.values()))
        out.append({"text": text, "contribution": round(group["contribution"], 4),
                    "direction": "raises" if group["contribution"] > 0 else "lowers"})
    return sorted(out, key=lambda line: -abs(line["contribution"]))


def estate_effects(factor_lists: list[list[dict]]) -> dict:
    """What every system shares tonight (the calendar), stated once, with its average effect.

    Returns ``{"reasons": [text, ...], "log_odds": mean summed contribution, "odds": factor}``
    over all systems of the day (a system where a shared feature did not count adds zero).
    """
    systems = len(factor_lists)
    texts: dict[str, str] = {}
    total = 0.0
    for factors in factor_lists:
        for factor in factors:
            if factor.get("scope") == ESTATE:
                texts.setdefault(factor["feature"], factor.get("text") or factor["feature"])
                total += factor["contribution"]
    mean = total / systems if systems else 0.0
    ordered = [texts[f] for f in CALENDAR_FEATURES if f in texts] + \
        [t for f, t in texts.items() if f not in CALENDAR_FEATURES]
    return {"reasons": ordered, "log_odds": round(mean, 3), "odds": round(math.exp(mean), 2)}
