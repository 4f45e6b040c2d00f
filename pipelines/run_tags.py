"""Run tags failcast reads: how an operator changes one run's rules without changing settings.

``failcast/allow_stale = true`` (``failcast nightly --allow-stale``, or a tag added in the
Dagster launchpad) lets a night whose feeds are stale or whose telemetry is missing publish
anyway: the checks that would refuse it report a warning instead, and every published row and
the CAB page say what was missing.
"""

from __future__ import annotations

import dagster as dg

ALLOW_STALE = "failcast/allow_stale"


def allows_stale(context: dg.AssetExecutionContext) -> bool:
    return context.run.tags.get(ALLOW_STALE, "").lower() == "true"


def refusal_severity(context: dg.AssetExecutionContext) -> dg.AssetCheckSeverity:
    """ERROR (blocking) normally; WARN when the operator chose to publish stale data."""
    return dg.AssetCheckSeverity.WARN if allows_stale(context) else dg.AssetCheckSeverity.ERROR
