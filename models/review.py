"""The CAB's question about one change: approve, extra review or defer, and why.

``review_change`` finds the change, the as-of day whose label window holds its start, and the
published risk of its system for that day, and returns a ``ChangeReview``: the decision
(``models.decisions``), every reason in words, and what a reviewer reads beside it (the
system's reasons, similar incidents, the model that scored it). ``failcast review-change``
only formats it; the same function serves any other caller.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field

import duckdb

from features.errors import DataError
from features.trading_time import TradingCalendar
from features.warehouse import table_exists
from models.decisions import recommend
from models.scoring import PUBLISHED


@dataclass(frozen=True)
class ChangeReview:
    change: dict
    as_of: dt.date
    action: str
    reasons: list[str]
    score: dict
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
    as_of = calendar.as_of_for_instant(change["scheduled_start"].replace(tzinfo=dt.UTC))
    published = table_exists(con, PUBLISHED)
    score = con.sql(f"SELECT * FROM {PUBLISHED} WHERE as_of = ? AND system_id = ?",  # noqa: S608
                    params=[as_of, change["system_id"]]).pl() if published else None
    if score is None or score.is_empty():
        raise DataError(
            f"no published risk for {change['system_id']} as of {as_of}, the day whose window "
            f"holds {change_id}: run `failcast nightly --date {as_of}`")
    systems = con.execute(f"SELECT count(*) FROM {PUBLISHED} WHERE as_of = ?",  # noqa: S608
                          [as_of]).fetchall()[0][0]
    row = score.row(0, named=True)
    action, reason = recommend(row["tier"], change["risk_level"], row.get("data_status"),
                               row.get("data_notes"))
    return ChangeReview(
        change=change,
        as_of=as_of,
        action=action,
        reasons=[reason],
        score=row,
        systems_scored=systems,
        raised_after_cutoff=change["created_at"] >= calendar.cutoff_utc(as_of),
        factors=json.loads(row["top_factors"] or "[]"),
        similar=json.loads(row["similar_incidents"] or "[]"),
    )
