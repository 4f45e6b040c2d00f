"""The CAB's page: what every system shares is said once; each row gives its own reasons."""

import datetime as dt
import json

import polars as pl

from models.reasons import Context, say
from models.report import render_change_review


def factor(feature: str, value: float, contribution: float, context: Context | None = None) -> dict:
    said = say(feature, value, context)
    return {"feature": feature, "value": value, "contribution": contribution, "scope": said.scope,
            "text": said.text, "clause": said.clause, "subject": said.subject, "aspect": said.aspect}


def test_estate_wide_effects_appear_once_and_system_reasons_lead_each_row():
    disk = Context(usual={("disk_pct", "after_close_mean"): 71.0})
    own = {
        "DB-05": [factor("disk_pct__after_close_mean", 93.0, 0.6, disk)],
        "CLR-03": [factor("chg_window_high", 1.0, 0.4)],
        "WEB-01": [factor("inc_3d", 2.0, 0.3)],
    }
    calendar = [factor("days_to_target", 4.0, 0.6), factor("target_after_long_break", 1.0, 0.3)]
    systems = list(own)
    scores = pl.DataFrame({
        "as_of": [dt.date(2026, 9, 24)] * 3, "target_date": [dt.date(2026, 9, 28)] * 3,
        "system_id": systems, "risk": [0.4, 0.3, 0.2], "tier": ["critical", "high", "high"],
        "rank": [1, 2, 3], "top_factors": [json.dumps(own[s] + calendar) for s in systems],
        "similar_incidents": ["[]"] * 3, "scheduled_changes": ["[]"] * 3, "model_name": ["m"] * 3,
        "model_version": ["1"] * 3, "mlflow_run_id": ["r"] * 3,
        "scored_at": [dt.datetime(2026, 9, 24, 10, 31)] * 3,
    })
    html = render_change_review(scores, pl.DataFrame({"system_id": systems}), cutoff="c",
                                target_cutoff="t", timezone="Asia/Shanghai",
                                thresholds=(0.05, 0.15, 0.35))
    page = html.lower()
    assert page.count("the window runs 4 calendar days") == 1
    assert page.count("first trading day after a long break") == 1
    assert "odds of an incident" in page and "2.5 times" in page  # exp(0.9): the same for all
    assert "disk_pct 93% at the close, 71% is usual" in html
    assert "a high-risk change is scheduled in the window" in html
    rows = html.split("Riskiest systems")[1]
    assert "calendar days" not in rows and "long break" not in rows
