"""A quick what-if: one model configuration walked forward month by month against the recent rate.

The deployed policy's backtest (``failcast backtest``) is the measurement that counts; on LANL it
takes about an hour. This is the data scientist's quicker loop for trying a setting or leaving
features out first: one ``FailureModel.fit`` per month on the 500 days before it (labels as known
then, the backtest's monthly periods), scored on that month, beside the ``recent_incident_rate``
baseline fitted on the same days. No hold-out, gate or refit, so its ratios run a little below the backtest's (LANL, the
configuration before issue 12: 1.10x here, 1.15x in the backtest).

    python -m benchmarks.walk_monthly --source ../shared/data/lanl --warehouse WORK/warehouse.duckdb \\
        --start 2004-01-01 --end 2005-08-31 [--set num_leaves=31 --set blend_recent_rate=false] \\
        [--drop inc_decayed_ --drop inc_730d] [--label NAME]

``WORK`` is a backtest's ``--work`` directory (its warehouse and lake of features).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from dataclasses import fields

import polars as pl
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from features.labels import labels
from features.warehouse import Warehouse
from models.backtest import scoring_periods
from models.baselines import RecentRate
from models.dataset import feature_names, labelled_window, read_features
from models.lifecycle import PolicyConfig, RetrainPolicy
from models.model import FailureModel, TrainConfig
from pipelines.settings import load_settings

TRAIN_SESSIONS = 500  # as the deployed policy's training window
MONTHLY = RetrainPolicy(PolicyConfig(cadence="monthly"))


def labelled_rows(warehouse: Warehouse, calendar, first: dt.date, last: dt.date,
                  max_severity: int) -> pl.DataFrame:
    with warehouse.reader() as con:
        rows = read_features(con, first, last)
        known = labels(con, calendar, rows.select("system_id", "as_of"), max_severity)
    return rows.join(known.select("system_id", "as_of", "label"), on=["system_id", "as_of"])


def walk(rows: pl.DataFrame, features: list[str], config: TrainConfig, calendar,
         start: dt.date, end: dt.date) -> pl.DataFrame:
    """Scores of ``start..end``, each month's by a model fitted on the last retraining day
    before it (the backtest's monthly periods), on the labels known that day."""
    scored = []
    for day, period in scoring_periods(MONTHLY, calendar, calendar.sessions(start, end)):
        window = labelled_window(calendar, day, TRAIN_SESSIONS)
        train = rows.filter(pl.col("as_of").is_between(window.first, window.last))
        month = rows.filter(pl.col("as_of").is_in(period))
        model = FailureModel.fit(train, features, config)
        rate = RecentRate().fit(train)
        scored.append(month.select("as_of", "label").with_columns(
            risk=pl.Series(model.predict(month)), recent=pl.Series(rate.predict(month))))
        print(f"  {day}: {model.info['best_iteration']} rounds, scores {period[0]}..{period[-1]}",
              flush=True)
    return pl.concat(scored)


def summary(scores: pl.DataFrame) -> dict:
    y = scores["label"].to_numpy()
    out = {}
    for name in ("risk", "recent"):
        p = scores[name].to_numpy()
        out[name] = {"pr_auc": average_precision_score(y, p), "roc_auc": roc_auc_score(y, p),
                     "brier": brier_score_loss(y, p)}
    out["ratio"] = out["risk"]["pr_auc"] / out["recent"]["pr_auc"]
    return out


def _setting(text: str) -> tuple[str, object]:
    key, _, value = text.partition("=")
    types = {f.name: f.type for f in fields(TrainConfig)}
    if key not in types:
        raise argparse.ArgumentTypeError(f"unknown setting {key!r} (known: {', '.join(types)})")
    parsed = json.loads(value) if value not in ("true", "false") else value == "true"
    return key, parsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, help="the estate's source (its failcast.toml)")
    parser.add_argument("--warehouse", required=True, help="a backtest's warehouse.duckdb")
    parser.add_argument("--start", type=dt.date.fromisoformat, required=True)
    parser.add_argument("--end", type=dt.date.fromisoformat, required=True)
    parser.add_argument("--set", type=_setting, action="append", default=[], metavar="KEY=VALUE",
                        help="a TrainConfig setting (num_leaves=31, blend_recent_rate=false, ...)")
    parser.add_argument("--drop", action="append", default=[], metavar="PREFIX",
                        help="leave out the features whose names start with PREFIX")
    parser.add_argument("--label", default="", help="a name for this line of output")
    args = parser.parse_args()
    settings = load_settings(args.source, env={})
    warehouse = Warehouse(args.warehouse, timezone=settings.calendar.timezone, threads=2,
                          memory_limit="2GB")
    started = time.perf_counter()
    calendar = settings.calendar
    sessions = calendar.sessions(args.start, args.end)
    if not sessions:
        raise SystemExit(f"no trading day between {args.start} and {args.end}")
    first_retrain = MONTHLY.last_retraining_day_before(calendar, sessions[0])
    first = labelled_window(calendar, first_retrain, TRAIN_SESSIONS).first
    rows = labelled_rows(warehouse, calendar, first, args.end, settings.max_severity)
    features = [f for f in feature_names(rows) if not f.startswith(tuple(args.drop))]
    config = TrainConfig(**dict(args.set))
    result = summary(walk(rows, features, config, calendar, args.start, args.end))
    model, recent = result["risk"], result["recent"]
    print(f"{args.label or 'model'}: PR-AUC {model['pr_auc']:.4f} (recent rate {recent['pr_auc']:.4f}, "
          f"x{result['ratio']:.3f}), ROC-AUC {model['roc_auc']:.3f}, Brier {model['brier']:.5f} "
          f"(recent {recent['brier']:.5f}); {len(features)} features; "
          f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
