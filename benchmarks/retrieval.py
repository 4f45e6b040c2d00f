"""How often the similar incidents shown the night before match what then happened.

For every as-of day in the range and every system that had an incident in that day's label
window, the incidents shown the night before (the top 3 of ``similar_incidents``) are compared
with each incident that happened: a hit when one of them has the same category. The models
that drive the reasons are trained walk-forward (monthly, on the labels known at the time),
exactly as a backtest does, so no night sees its own outcome.

    python -m benchmarks.retrieval --home data --start 2025-10-09 --end 2026-09-23 [--before main]

``--before REF`` also measures the retrieval of ``models/similar.py`` at git revision REF (the
method before this one: estate closeness and profile resemblance on the model's most important
features), on the same nights, with the same models.
"""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
import types
from collections import defaultdict

from models.backtest import scoring_periods
from models.dataset import feature_names, labelled_window, read_features, training_frame
from models.explain import explain_day
from models.lifecycle import PolicyConfig, RetrainPolicy
from models.model import FailureModel
from models.similar import similar_incidents
from pipelines.settings import load_settings

WINDOW_INCIDENTS = """
SELECT i.system_id, i.incident_id, i.category
FROM incidents i
WHERE i.severity <= ? AND i.opened_at > ? AND i.opened_at <= ?
"""


def reference_method(ref: str) -> types.ModuleType:
    """``models/similar.py`` as it was at git revision ``ref``."""
    code = subprocess.run(["git", "show", f"{ref}:models/similar.py"], capture_output=True,
                          text=True, check=True).stdout
    module = types.ModuleType(f"similar_at_{ref}")
    exec(compile(code, f"{ref}:models/similar.py", "exec"), module.__dict__)  # noqa: S102
    return module


def measure(settings, start: dt.date, end: dt.date, before: str | None, k: int = 3) -> dict:
    calendar = settings.calendar
    old = reference_method(before) if before else None
    hits: dict[str, dict[str, list[int]]] = {"after": defaultdict(lambda: [0, 0])}
    if old:
        hits["before"] = defaultdict(lambda: [0, 0])
    monthly = RetrainPolicy(PolicyConfig(cadence="monthly"))
    with settings.warehouse().reader() as con:
        for day, period in scoring_periods(monthly, calendar, calendar.sessions(start, end)):
            window = labelled_window(calendar, day, settings.train_window_days)
            train = training_frame(con, calendar, window, settings.max_severity, known_at=day)
            model = FailureModel.fit(train, feature_names(train))
            ranked = model.importance()["feature"].to_list()
            for as_of in period:
                happened = con.sql(WINDOW_INCIDENTS, params=[
                    settings.max_severity, calendar.cutoff_utc(as_of),
                    calendar.cutoff_utc(calendar.next_session(as_of))]).pl()
                if happened.is_empty():
                    continue
                rows = read_features(con, as_of, as_of)
                factors = explain_day(con, calendar, as_of, model, rows, 5)
                shown = {"after": similar_incidents(con, calendar, as_of, rows, factors, k)}
                if old:
                    shown["before"] = old.similar_incidents(con, calendar, as_of, rows, ranked, k)
                position = {s: i for i, s in enumerate(rows["system_id"].to_list())}
                for incident in happened.iter_rows(named=True):
                    row = position.get(incident["system_id"])
                    if row is None:
                        continue
                    for method, lists in shown.items():
                        categories = {s["category"] for s in lists[row]}
                        for key in ("all", incident["category"] or "(none)"):
                            hits[method][key][1] += 1
                            hits[method][key][0] += incident["category"] in categories
            print(f"  {day}: {len(period)} nights scored", flush=True)
    return hits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", default="data")
    parser.add_argument("--source")
    parser.add_argument("--start", type=dt.date.fromisoformat, required=True)
    parser.add_argument("--end", type=dt.date.fromisoformat, required=True)
    parser.add_argument("--before", help="git revision of the method to compare with")
    args = parser.parse_args()
    settings = load_settings(args.source, args.home)
    hits = measure(settings, args.start, args.end, args.before)
    methods = list(hits)
    keys = sorted(hits["after"], key=lambda key: (key != "all", -hits["after"][key][1]))
    print("| incidents of category | count | " + " | ".join(
        f"same category in top 3, {m}" for m in methods) + " |")
    print("|---|---:|" + "---:|" * len(methods))
    for key in keys:
        total = hits["after"][key][1]
        cells = " | ".join(f"{hits[m][key][0] / total:.1%} ({hits[m][key][0]})" for m in methods)
        print(f"| {key} | {total} | {cells} |")


if __name__ == "__main__":
    main()
