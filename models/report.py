"""The CAB's page: one self-contained HTML file per target day.

Rendered by Jinja2 with autoescaping on, so every piece of text that came from the inputs (a
title, a root cause, a system id) is escaped: an incident titled ``<script>`` shows as text.
The chart is an inline SVG drawn from numbers only.
"""

from __future__ import annotations

import json

import polars as pl
from jinja2 import Environment, PackageLoader, select_autoescape

from models import reasons
from models.decisions import ACTIONS, TIERS

TIER_COLORS = {"low": "#4caf6a", "elevated": "#e0b400", "high": "#e07b00", "critical": "#c62828"}
BUCKETS = (0.0, 0.01, 0.02, 0.05, 0.10, 0.15, 0.25, 0.35, 0.50, 1.0)
RISKIEST = 15


def _environment() -> Environment:
    return Environment(loader=PackageLoader("models", "templates"),
                       autoescape=select_autoescape(["html"]))


def _css(action: str | None) -> str:
    return (action or "").replace(" ", "-")


def _histogram(risk: list[float], thresholds: tuple[float, float, float]) -> list[dict]:
    from models.decisions import tier_of

    counts = [sum(1 for r in risk if lo <= r < hi or (hi == 1.0 and r == 1.0))
              for lo, hi in zip(BUCKETS[:-1], BUCKETS[1:], strict=True)]
    top = max(counts) or 1
    width, gap, left = 58, 8, 10
    bars = []
    for i, (count, lo, hi) in enumerate(zip(counts, BUCKETS[:-1], BUCKETS[1:], strict=True)):
        height = round(110 * count / top)
        bars.append({
            "x": left + i * (width + gap), "y": 125 - height, "width": width, "height": height,
            "count": count, "label": f"{lo:.0%}-{hi:.0%}",
            "color": TIER_COLORS[tier_of(lo, thresholds)],
        })
    return bars


def _data_banner(rows: list[dict], feeds: list) -> dict:
    """What the page says first: how many systems' data is ok, which are not and why, and the
    feeds' watermarks."""
    flagged = [{"system_id": r["system_id"], "status": r.get("data_status"),
                "notes": r.get("data_notes"), "risk": r["risk"]}
               for r in rows if r.get("data_status") != "ok"]
    counts: dict[str, int] = {}
    for r in rows:
        status = r.get("data_status") or "not_judged"
        counts[status] = counts.get(status, 0) + 1
    return {
        "total": len(rows), "ok": counts.get("ok", 0), "flagged": flagged,
        "counts": [{"status": k, "count": v} for k, v in sorted(counts.items())],
        "feeds": [{"feed": f.feed, "message": f.message, "stale": f.stale} for f in feeds],
        "stale": any(f.stale for f in feeds),
    }


def render_change_review(
    scores: pl.DataFrame,
    systems: pl.DataFrame,
    *,
    cutoff: str,
    target_cutoff: str,
    timezone: str,
    thresholds: tuple[float, float, float],
    drift: pl.DataFrame | None = None,
    mlflow_url: str | None = None,
    feeds: list | None = None,
    unscored_changes: list[dict] | None = None,
    trained_through: str | None = None,
    model_age: int | None = None,
    age_warn: int | None = None,
) -> str:
    """The HTML page for one as-of day's published scores.

    ``feeds`` (``features.feeds.FeedStatus``) are the source's watermarks at the cutoff; with
    the rows' ``data_status`` they make the banner that opens the page. ``unscored_changes``
    are the window's changes on systems without a score that day
    (``models.scoring.change_entries``): unknown, not yet or no longer in service. They are
    listed with the others, their reason saying why. ``model_age``: trading days from the
    newest label the model learned (``trained_through``) to the as-of day.
    """
    info = {row["system_id"]: row for row in systems.iter_rows(named=True)}
    rows = []
    for row in scores.sort("rank").iter_rows(named=True):
        meta = info.get(row["system_id"], {})
        rows.append({
            **row,
            "name": meta.get("name"), "category": meta.get("category"), "owner": meta.get("owner"),
            "factors": json.loads(row["top_factors"] or "[]"),
            "reasons": reasons.lines(json.loads(row["top_factors"] or "[]")),
            "similar": json.loads(row["similar_incidents"] or "[]"),
            "changes": json.loads(row["scheduled_changes"] or "[]"),
        })
    changes = []
    for row in rows:
        for change in row["changes"]:
            changes.append({**change, "system_id": row["system_id"], "system_name": row["name"],
                            "system_risk": row["risk"], "system_tier": row["tier"],
                            "system_data_status": row.get("data_status"),
                            "system_data_notes": row.get("data_notes"),
                            "action_css": _css(change["action"]), "reasons": row["reasons"][:3],
                            "similar": row["similar"][:1]})
    for change in unscored_changes or []:
        changes.append({**change, "system_name": None, "system_risk": None, "system_tier": None,
                        "system_data_status": "ok", "system_data_notes": None,
                        "action_css": _css(change["action"]), "reasons": [], "similar": []})
    changes.sort(key=lambda c: ({"defer": 0, "extra review": 1}.get(c["action"], 2),
                                c["scheduled_start"] or ""))
    first = scores.row(0, named=True) if scores.height else {}
    action_names = ("approve", "extra review", "defer")
    context = {
        "as_of": first.get("as_of"), "target_date": first.get("target_date"),
        "cutoff": cutoff, "target_cutoff": target_cutoff, "timezone": timezone,
        "model_name": first.get("model_name"), "model_version": first.get("model_version"),
        "scored_at": first.get("scored_at"), "mlflow_url": mlflow_url,
        "baseline": str(first.get("model_name") or "").startswith("baseline:"),
        "trained_through": trained_through, "model_age": model_age,
        "model_stale": model_age is not None and age_warn is not None and model_age > age_warn,
        "systems_scored": scores.height,
        "tiers": [{"name": t, "count": sum(1 for r in rows if r["tier"] == t)} for t in TIERS],
        "actions": [{"name": a, "css": _css(a), "count": sum(1 for c in changes if c["action"] == a)}
                    for a in action_names],
        "histogram": _histogram([r["risk"] for r in rows], thresholds),
        "shared": reasons.estate_effects([r["factors"] for r in rows]),
        "changes": changes,
        "riskiest": rows[:RISKIEST],
        "drifted": (drift.filter(pl.col("status") == "heavy").to_dicts()
                    if drift is not None and drift.height else []),
        "data": _data_banner(rows, feeds or []),
        "thresholds": thresholds,
        "matrix": [{"tier": t, "actions": [{"name": ACTIONS[(t, lvl)], "css": _css(ACTIONS[(t, lvl)])}
                                           for lvl in ("low", "medium", "high")]} for t in TIERS],
    }
    return _environment().get_template("change_review.html").render(**context)
