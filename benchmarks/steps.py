"""The measured steps of the benchmarks, each run in a process of its own.

``python -m benchmarks.steps NAME '{"json": "arguments"}'`` runs one step and prints a JSON
line with what it produced; ``benchmarks.run`` times the process and reads its peak memory.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from functools import cache
from pathlib import Path


@cache
def _settings(source: str, home: str):
    from pipelines.settings import load_settings

    return load_settings(source, home, env={})


def generate(out: str, systems: int, start: str, end: str, minutes: int, metrics: int,
             metric_sessions: int | None = None, seed: int = 7, profile: str = "demo",
             exchange: str = "XSHG", timezone: str = "Asia/Shanghai") -> dict:
    from features.demo_estate.generate import generate_estate

    summary = generate_estate(out, systems=systems, start=dt.date.fromisoformat(start),
                              end=dt.date.fromisoformat(end), minutes_per_sample=minutes,
                              metrics=metrics, metric_sessions=metric_sessions, overwrite=True,
                              progress=False, seed=seed, profile=profile, exchange=exchange,
                              timezone=timezone)
    return {"metric_rows": summary.metric_rows, "sessions": summary.sessions,
            "incidents": summary.incidents}


def floor(source: str, as_of: str) -> dict:
    """One hand-written DuckDB query: the same per-(system, metric) day statistics."""
    import duckdb

    settings = _settings(source, "/tmp")
    calendar = settings.calendar
    lo, hi = calendar.metrics_window(as_of)
    after = calendar.after_close_start(as_of)
    files = sorted(str(p) for p in Path(source, "metrics").rglob("*.parquet"))
    con = duckdb.connect(config={"threads": 2})
    rows = con.execute(
        """
        SELECT system_id, metric, avg(value), stddev_samp(value), min(value), max(value),
               quantile_cont(value, 0.95), arg_max(value, ts), count(*),
               avg(value) FILTER (WHERE ts >= ?)
        FROM read_parquet(?) WHERE ts >= ? AND ts < ? GROUP BY ALL
        """,
        [after.replace(tzinfo=None), files, lo.replace(tzinfo=None), hi.replace(tzinfo=None)],
    ).fetchall()
    return {"groups": len(rows)}


def pandas_stats(source: str, as_of: str) -> dict:
    """The same statistics with pandas: read the window's samples, group, aggregate."""
    import pandas as pd

    settings = _settings(source, "/tmp")
    calendar = settings.calendar
    lo, hi = (t.replace(tzinfo=None) for t in calendar.metrics_window(as_of))
    after = calendar.after_close_start(as_of).replace(tzinfo=None)
    files = [str(f) for f in sorted(Path(source, "metrics").rglob("*.parquet"))]
    # pyarrow skips the row groups outside the window, as DuckDB does for the floor query.
    frame = pd.read_parquet(files, filters=[("ts", ">=", lo), ("ts", "<", hi)])
    frame = frame.sort_values("ts")
    grouped = frame.groupby(["system_id", "metric"], observed=True)["value"]
    stats = grouped.agg(["mean", "std", "min", "max", "last", "count"])
    stats["p95"] = grouped.quantile(0.95)
    late = frame[frame["ts"] >= after].groupby(["system_id", "metric"], observed=True)["value"].mean()
    stats["after_close_mean"] = late
    return {"groups": len(stats)}


def ingest(source: str, home: str, first: str, last: str) -> dict:
    from features.ingest import load_metrics, load_source_tables
    from features.source import Source

    settings = _settings(source, home)
    warehouse = settings.warehouse()
    with warehouse.lake_writer() as con:
        load_source_tables(con, warehouse.lake, Source.open(source))
        result = load_metrics(con, warehouse.lake, Source.open(source), settings.calendar,
                              dt.date.fromisoformat(first), dt.date.fromisoformat(last))
    return {"rows": result.rows_loaded}


def day_stats(source: str, home: str, first: str, last: str) -> dict:
    from features.metric_stats import build_metric_day_stats

    settings = _settings(source, home)
    warehouse = settings.warehouse()
    with warehouse.lake_writer() as con:
        rows = build_metric_day_stats(con, warehouse.lake, settings.calendar.session_table(first, last))
    return {"rows": rows}


def features(source: str, home: str, first: str, last: str) -> dict:
    from features.build import build_and_write_features

    settings = _settings(source, home)
    warehouse = settings.warehouse()
    with warehouse.lake_writer() as con:
        summary = build_and_write_features(con, warehouse.lake, settings.calendar,
                                           dt.date.fromisoformat(first), dt.date.fromisoformat(last))
    return {"rows": summary.rows, "features": len(summary.features)}


def train(source: str, home: str, as_of: str, sessions: int) -> dict:
    import time

    from models.dataset import feature_names, labelled_window, training_frame
    from models.model import FailureModel

    settings = _settings(source, home)
    calendar = settings.calendar
    started = time.perf_counter()
    with settings.warehouse().reader() as con:
        window = labelled_window(calendar, dt.date.fromisoformat(as_of), sessions)
        frame = training_frame(con, calendar, window, settings.max_severity,
                               dt.date.fromisoformat(as_of))
    read = time.perf_counter() - started
    model = FailureModel.fit(frame, feature_names(frame))
    return {"rows_read": frame.height, "window": str(window), "read_s": round(read, 1),
            "fit_s": round(time.perf_counter() - started - read, 1), **model.info}


def train_engines(source: str, home: str, as_of: str | None = None) -> dict:
    """Local training and training on a two-process Dask LocalCluster, on the same training
    set as the retrain job's, both scored on its held-out days."""
    import time

    from distributed import LocalCluster
    from sklearn.metrics import average_precision_score

    from models.dataset import feature_names
    from models.model import FailureModel, TrainConfig

    settings = _settings(source, home)
    with settings.warehouse().reader() as con:
        day = dt.date.fromisoformat(as_of) if as_of else \
            con.execute("SELECT max(as_of) FROM system_day_features").fetchall()[0][0]
        training = settings.policy().build_training_set(con, settings.calendar, day)
    features, label = feature_names(training.train), training.holdout["label"].to_numpy()
    out = {"as_of": str(day), "train_rows": training.train.height,
           "holdout_rows": training.holdout.height, "holdout_failures": int(label.sum())}
    started = time.perf_counter()
    local = FailureModel.fit(training.train, features, TrainConfig())
    out["local_fit_s"] = round(time.perf_counter() - started, 2)
    out["local_pr_auc"] = round(average_precision_score(label, local.predict(training.holdout)), 4)
    out["local_best_iteration"] = local.info["best_iteration"]
    started = time.perf_counter()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        out["cluster_start_s"] = round(time.perf_counter() - started, 2)
        started = time.perf_counter()
        dask = FailureModel.fit(training.train, features,
                                TrainConfig(dask_scheduler=cluster.scheduler_address))
        out["dask_fit_s"] = round(time.perf_counter() - started, 2)
    out["dask_pr_auc"] = round(average_precision_score(label, dask.predict(training.holdout)), 4)
    out["dask_best_iteration"] = dask.info["best_iteration"]
    out["compute_s"] = out["local_fit_s"] + out["dask_fit_s"]
    return out


def retrain(source: str, home: str, as_of: str) -> dict:
    from pipelines.definitions import build_definitions
    from pipelines.runner import run_job

    settings = _settings(source, home)
    run_job(build_definitions(settings), "retrain_job", settings,
            run_config={"ops": {"training_set": {"config": {"as_of": as_of}}}})
    return {}


def nightly(source: str, home: str, as_of: str) -> dict:
    from pipelines.definitions import build_definitions
    from pipelines.runner import run_job

    settings = _settings(source, home)
    day = dt.date.fromisoformat(as_of)
    result = run_job(build_definitions(settings), "nightly_job", settings, day, day)
    return {"steps": len(result.get_step_success_events())}


def trust_checks(source: str, home: str, as_of: str) -> dict:
    """The night's data-trust work on a built warehouse, each part timed alone: the feeds'
    watermarks (normal night, and a stale night whose watermark comes from the source files),
    every system's data status, and the features check for families gone empty."""
    from features.build import families_gone_empty
    from features.data_status import data_status
    from features.feeds import feed_status
    from features.ingest import newest_sample
    from features.source import Source

    settings = _settings(source, home)
    calendar, day = settings.calendar, dt.date.fromisoformat(as_of)
    files = Source.open(settings.source)
    out: dict = {}
    with settings.warehouse().reader() as con:
        started = time.perf_counter()
        feed_status(con, calendar, day, settings.max_feed_age_days)
        out["feeds_s"] = round(time.perf_counter() - started, 3)
        window_start = calendar.metrics_window(day)[0]
        started = time.perf_counter()  # a stale night looks back a month in the source files
        newest_sample(con, files, window_start - dt.timedelta(days=30), window_start)
        out["source_watermark_s"] = round(time.perf_counter() - started, 3)
        started = time.perf_counter()
        status = data_status(con, calendar, day)
        out["data_status_s"] = round(time.perf_counter() - started, 3)
        out["systems"] = status.height
        started = time.perf_counter()
        families_gone_empty(con, calendar, day, day)
        out["families_check_s"] = round(time.perf_counter() - started, 3)
    return out


STEPS = {f.__name__: f for f in (generate, floor, pandas_stats, ingest, day_stats, features,
                                 train, train_engines, retrain, nightly,
                                 trust_checks)}

if __name__ == "__main__":
    name, arguments = sys.argv[1], json.loads(sys.argv[2])
    # Imports and the trading calendar are set-up, not the work measured: do them first.
    import duckdb  # noqa: F401
    import polars  # noqa: F401

    if name == "pandas_stats":
        import pandas  # noqa: F401
    if "source" in arguments and name != "generate":
        _ = _settings(arguments["source"], arguments.get("home", "/tmp")).calendar
    started = time.perf_counter()
    produced = STEPS[name](**arguments)
    produced["compute_s"] = round(time.perf_counter() - started, 2)
    print(json.dumps(produced), flush=True)
