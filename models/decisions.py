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
"""

from __future__ import annotations

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
