"""The CAB's question about one change: approve, extra review or defer, and why.

``review_change`` finds the change, the as-of day whose label window holds its start, and the
published risk of its system for that day, and returns a ``ChangeReview``: the decision
(``models.decisions``), every reason in words, and what a reviewer reads beside it (the
system's reasons, similar incidents, the model that scored it). A change on a system that is
unknown, out of service on the change's day or never scored gets at least extra review with
that fact as its reason (``score`` is then None). ``failcast review-change`` only formats it;
the same function serves any other caller.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field

import duckdb

from features.errors import DataError
from features.trading_time import TradingCalendar
from features.warehouse import table_exists
from models.decisions import decide, service_gap
from models.scoring import PUBLISHED


@dataclass(frozen=True)
class ChangeReview:
    change: dict
    as_of: dt.date
    action: str
    reasons: list[str]
    score: dict | None  # None: the system has no published risk that day
    systems_scored: int
    raised_after_cutoff: bool
    factors: list[dict] = field(default_factory=list)
    similar: list[dict] = field(default_factory=list)


def review_change(con: duckdb.DuckDBPyConnection, calendar: TradingCalendar,
                  change_id: str) -> ChangeReview:
    """The decision for ``change_id`` from its system's published risk."""
    found = con.sql("SELECT * FROM changes WHERE change_id = ?", params=[change_id]).pl()
    if found.is_empty():
        raise DataError(f"unknown change {change_id!r}: it is not in changes.csv "
                        "(or has not been ingested yet)")
    change = found.row(0, named=True)
    start = change["scheduled_start"].replace(tzinfo=dt.UTC)
    as_of = calendar.as_of_for_instant(start)
    published = table_exists(con, PUBLISHED)
    score = con.sql(f"SELECT * FROM {PUBLISHED} WHERE as_of = ? AND system_id = ?",  # noqa: S608
                    params=[as_of, change["system_id"]]).pl() if published else None
    row = None if score is None or score.is_empty() else score.row(0, named=True)
    inventory = con.sql("SELECT active_from, active_to FROM systems WHERE system_id = ?",
                        params=[change["system_id"]]).pl()
    system = inventory.row(0, named=True) if inventory.height else None
    day = start.astimezone(calendar.tz).date()
    gap = service_gap(change["system_id"], system, day, as_of, scored=row is not None)
    if row is None and _in_service(system, as_of) and _in_service(system, day):
        # The system should have a score that day: the day is not published (yet).
        raise DataError(
            f"no published risk for {change['system_id']} as of {as_of}, the day whose window "
            f"holds {change_id}: run `failcast nightly --date {as_of}`")
    systems = con.execute(f"SELECT count(*) FROM {PUBLISHED} WHERE as_of = ?",  # noqa: S608
                          [as_of]).fetchall()[0][0] if published else 0
    action, reasons = decide(row["tier"] if row else None, change["risk_level"], gap,
                             row.get("data_status") if row else "ok",
                             row.get("data_notes") if row else None)
    return ChangeReview(
        change=change,
        as_of=as_of,
        action=action,
        reasons=reasons,
        score=row,
        systems_scored=systems,
        raised_after_cutoff=change["created_at"] >= calendar.cutoff_utc(as_of),
        factors=json.loads(row["top_factors"] or "[]") if row else [],
        similar=json.loads(row["similar_incidents"] or "[]") if row else [],
    )


def _in_service(system: dict | None, day: dt.date) -> bool:
    return system is not None and (
        (system["active_from"] is None or system["active_from"] <= day)
        and (system["active_to"] is None or day <= system["active_to"]))
