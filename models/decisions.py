"""Risk tiers and the CAB's recommended action for a change, by a rule anyone can read.

Tier of a system, from its calibrated risk and the thresholds (default 0.05 / 0.15 / 0.35):

    low  < elevated threshold <= elevated < high threshold <= high < critical threshold <= critical

Action for a change, from its system's tier and the change's own risk level (a missing or
unknown risk level counts as medium), never "approve" when the system's data for the night is
not ``ok`` (``features.data_status``): a risk computed from missing data is no reason to wave a
change through, so such a change gets at least "extra review", with the data's state as reason:

    system tier \\ change risk   low            medium         high
    low                         approve        approve        extra review
    elevated                    approve        extra review   extra review
    high                        extra review   extra review   defer
    critical                    extra review   defer          defer

A change whose system is not in service on the change's day (unknown to the inventory, not yet
in service, retired) or has no published risk gets at least extra review, with that fact as
its first reason: nobody has scored the system the change touches.
"""

from __future__ import annotations

import datetime as dt

TIERS = ("low", "elevated", "high", "critical")
APPROVE, REVIEW, DEFER = "approve", "extra review", "defer"
EXIT_CODES = {APPROVE: 0, REVIEW: 10, DEFER: 20}

ACTIONS: dict[tuple[str, str], str] = {
    ("low", "low"): APPROVE, ("low", "medium"): APPROVE, ("low", "high"): REVIEW,
    ("elevated", "low"): APPROVE, ("elevated", "medium"): REVIEW, ("elevated", "high"): REVIEW,
    ("high", "low"): REVIEW, ("high", "medium"): REVIEW, ("high", "high"): DEFER,
    ("critical", "low"): REVIEW, ("critical", "medium"): DEFER, ("critical", "high"): DEFER,
}


def tier_of(risk: float, thresholds: tuple[float, float, float]) -> str:
    elevated, high, critical = thresholds
    if risk >= critical:
        return "critical"
    if risk >= high:
        return "high"
    if risk >= elevated:
        return "elevated"
    return "low"


def recommend(system_tier: str, change_risk: str | None, data_status: str | None = "ok",
              data_notes: str | None = None) -> tuple[str, str]:
    """The action for a change and the sentence that explains it."""
    level = change_risk if change_risk in ("low", "medium", "high") else "medium"
    action = ACTIONS[(system_tier, level)]
    stated = change_risk if level == change_risk else f"{change_risk or 'unstated'} (taken as medium)"
    reason = f"system risk tier {system_tier}, change risk {stated}"
    if data_status != "ok":
        if action == APPROVE:
            action = REVIEW
        state = (data_status or "not judged").replace("_", " ")
        reason += f"; the system's data is {state}" + (f" ({data_notes})" if data_notes else "") \
            + ": its risk may be understated"
    return action, reason


STRICTNESS = {APPROVE: 0, REVIEW: 1, DEFER: 2}


def service_gap(system_id: str, system: dict | None, day: dt.date, as_of: dt.date,
                scored: bool) -> str | None:
    """Why the system of a change on ``day`` cannot be judged by its risk as of ``as_of``.

    ``system`` holds the inventory's ``active_from`` and ``active_to`` (None: not in the
    inventory). None when the system is in service that day and was scored.
    """
    if system is None:
        return f"system {system_id} is not in the inventory (systems.csv): its risk is unknown"
    first, last = system.get("active_from"), system.get("active_to")
    if last is not None and day > last:
        return (f"system {system_id} is out of service since {last + dt.timedelta(days=1)} "
                f"(active_to {last}): retired")
    if first is not None and day < first:
        return f"system {system_id} enters service on {first} (active_from), after this change"
    if not scored:
        if first is not None and as_of < first:
            return (f"system {system_id} has no published risk: it enters service on {first} "
                    "(active_from)")
        return f"system {system_id} has no published risk as of {as_of}"
    return None


def decide(system_tier: str | None, change_risk: str | None, gap: str | None,
           data_status: str | None = "ok", data_notes: str | None = None) -> tuple[str, list[str]]:
    """The action for a change and its reasons: the matrix above, raised to at least extra
    review when ``gap`` says the system is out of service or not scored, or when its data for
    the night is not ``ok``."""
    action, reasons = APPROVE, []
    if gap:
        action, reasons = REVIEW, [gap]
    if system_tier is not None:
        matrix, reason = recommend(system_tier, change_risk, data_status, data_notes)
        action = max(action, matrix, key=STRICTNESS.__getitem__)
        reasons.append(reason)
    return action, reasons
