"""failcast's benchmarks: ``make bench`` (all) or ``python -m benchmarks.run NAME ...``.

Scenarios (estates are generated once under ``$FAILCAST_HOME/bench`` and reused):

- ``features``: the firm-scale day, 1,000 systems x 20 metrics x 1-minute samples (28.8M rows),
  with 21 earlier sessions of metrics for the baselines and a year of case library. Times the
  day's partition (ingest, day statistics, features) against one hand-written DuckDB query
  computing the same day statistics over the same files (the floor) and against pandas.
- ``scaling``: one day of 100, 1,000 and 3,000 systems: ingest + statistics + features.
- ``backfill``: 250 trading days of 100 systems (20 metrics, 5-minute samples) in one batch.
- ``training``: 500 trading days x 1,000 systems (20 metrics every 4 hours): read + fit, and the
  whole retrain job (training set, fit, evaluation, MLflow, gate).
- ``nightly``: the nightly job (ingest, features, score, publish) on the firm-scale day, scored
  by the champion of the training scenario (same 1,000 systems and metrics), and the part of it
  that judges whether the night's data can be trusted (feeds, data status, features check).
- ``dask``: on the demo (``make demo`` first), the retrain job's training set fitted locally and
  on a two-process Dask LocalCluster: fit times and PR-AUC on the held-out days.

Each step runs in a process of its own: wall time, compute time inside the process (imports and
the trading calendar excluded) and that process's peak resident memory. Results are printed as
markdown and written to ``$FAILCAST_HOME/bench/results.json``. The first run needs about 25
minutes and 21 GB of disk for the estates and warehouses; later runs reuse them.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

DAY = dt.date(2025, 6, 10)
HOME = Path(os.environ.get("FAILCAST_HOME", "data")).resolve() / "bench"
RESULTS: list[dict] = []


def measure(scenario: str, label: str, step: str, **arguments) -> dict:
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.steps", step, json.dumps(arguments, default=str)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    out, err = process.stdout.read(), process.stderr.read()
    if status != 0:
        raise SystemExit(f"{step} failed:\n{err[-3000:]}")
    produced = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
    row = {"scenario": scenario, "step": label, "seconds": round(seconds, 2),
           "peak_mb": round(usage.ru_maxrss / 1024), **produced}
    RESULTS.append(row)
    print(f"  {label:<48} {seconds:7.1f} s (compute {produced.get('compute_s', '-')} s) "
          f"{row['peak_mb']:6d} MB  {produced}", flush=True)
    return row


def estate(name: str, **spec) -> Path:
    """Generate an estate once; reuse it while its spec is unchanged."""
    out = HOME / name
    marker = out / ".spec.json"
    wanted = json.dumps(spec, sort_keys=True, default=str)
    if marker.exists() and marker.read_text() == wanted:
        return out
    shutil.rmtree(out, ignore_errors=True)
    measure(name, f"generate {name}", "generate", out=str(out), **spec)
    marker.write_text(wanted)
    return out


def fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def sessions_before(day: dt.date, count: int) -> dt.date:
    from features.trading_time import TradingCalendar

    return TradingCalendar().sessions_back(day, count)


def features() -> None:
    print("features: the firm-scale day (1,000 x 20 x 1-minute)")
    first = sessions_before(DAY, 21)
    source = estate("firm_day", systems=1000, start=DAY - dt.timedelta(days=365), end=DAY,
                    minutes=1, metrics=20, metric_sessions=22)
    home = HOME / "firm_day_home"
    before = sessions_before(DAY, 1)
    args = {"source": str(source), "home": str(home)}
    marker = home / ".history"
    if not marker.exists():  # the earlier sessions are set-up, measured once
        fresh(home)
        measure("features", "setup: ingest 21 earlier sessions", "ingest", **args, first=first,
                last=before)
        measure("features", "setup: their day statistics", "day_stats", **args, first=first,
                last=before)
        marker.write_text(f"{first}..{before}")
    floor = measure("features", "floor: one DuckDB GROUP BY over the files", "floor",
                    source=str(source), as_of=DAY)
    parts = [measure("features", "partition: ingest the day", "ingest", **args, first=DAY, last=DAY),
             measure("features", "partition: day statistics", "day_stats", **args, first=DAY, last=DAY),
             measure("features", "partition: features (with history)", "features", **args,
                     first=DAY, last=DAY)]
    measure("features", "pandas: read and group the day", "pandas_stats", source=str(source), as_of=DAY)
    total = sum(p["compute_s"] for p in parts)
    warehouse = parts[1]["compute_s"] + parts[2]["compute_s"]
    base = floor["compute_s"]
    RESULTS.append({"scenario": "features", "step": "partition total (files to features), compute",
                    "seconds": round(total, 2), "peak_mb": max(p["peak_mb"] for p in parts),
                    "x_floor": round(total / base, 2)})
    RESULTS.append({"scenario": "features", "step": "features from the warehouse (stats + features), compute",
                    "seconds": round(warehouse, 2), "x_floor": round(warehouse / base, 2)})
    print(f"  compute: partition {total:.1f} s = {total / base:.1f}x the floor ({base:.1f} s); "
          f"from the warehouse {warehouse:.1f} s = {warehouse / base:.1f}x")


def scaling() -> None:
    print("scaling: one day, 100 / 1,000 / 3,000 systems")
    for systems in (100, 1000, 3000):
        source = estate(f"day_{systems}", systems=systems, start=DAY - dt.timedelta(days=365),
                        end=DAY, minutes=1, metrics=20, metric_sessions=1)
        home = fresh(HOME / f"day_{systems}_home")
        args = {"source": str(source), "home": str(home), "first": DAY, "last": DAY}
        steps = [measure("scaling", f"{systems} systems: ingest", "ingest", **args),
                 measure("scaling", f"{systems} systems: day statistics", "day_stats", **args),
                 measure("scaling", f"{systems} systems: features", "features", **args)]
        RESULTS.append({"scenario": "scaling", "step": f"{systems} systems: total",
                        "seconds": round(sum(s["seconds"] for s in steps), 2),
                        "peak_mb": max(s["peak_mb"] for s in steps), "systems": systems})


def backfill() -> None:
    print("backfill: 250 trading days x 100 systems (20 metrics, 5-minute samples)")
    first = sessions_before(DAY, 249)
    source = estate("backfill_100", systems=100, start=first, end=DAY, minutes=5, metrics=20)
    home = fresh(HOME / "backfill_100_home")
    args = {"source": str(source), "home": str(home), "first": first, "last": DAY}
    steps = [measure("backfill", "ingest 250 sessions", "ingest", **args),
             measure("backfill", "day statistics 250 sessions", "day_stats", **args),
             measure("backfill", "features 250 sessions", "features", **args)]
    RESULTS.append({"scenario": "backfill", "step": "backfill total",
                    "seconds": round(sum(s["seconds"] for s in steps), 2),
                    "peak_mb": max(s["peak_mb"] for s in steps)})


def training() -> None:
    print("training: 500 trading days x 1,000 systems")
    first = sessions_before(DAY, 520)
    source = estate("train_1000", systems=1000, start=first, end=DAY, minutes=240, metrics=20)
    home = HOME / "train_1000_home"
    args = {"source": str(source), "home": str(home)}
    ready = home / ".ready"
    if not ready.exists():
        fresh(home)
        measure("training", "setup: ingest 521 sessions", "ingest", **args, first=first, last=DAY)
        measure("training", "setup: day statistics", "day_stats", **args, first=first, last=DAY)
        measure("training", "setup: features 521 x 1,000 (backfill)", "features", **args,
                first=first, last=DAY)
        ready.write_text(f"{first}..{DAY}")
    measure("training", "fit: read 500 days + LightGBM + calibration", "train", **args,
            as_of=DAY, sessions=500)
    measure("training", "retrain job: set, fit, evaluate, MLflow, gate", "retrain", **args, as_of=DAY)


def nightly() -> None:
    print("nightly: the firm-scale day, scored by the training scenario's champion")
    source = HOME / "firm_day"
    home = HOME / "firm_day_home"
    if not (home / ".history").exists() or not (HOME / "train_1000_home" / ".ready").exists():
        raise SystemExit("run the features and training scenarios first")
    models = HOME / "train_1000_home"
    for name in ("mlflow.db",):
        shutil.copy(models / name, home / name)
    measure("nightly", "nightly job: ingest, features, score, publish", "nightly",
            source=str(source), home=str(home), as_of=DAY)
    measure("nightly", "of which: data-trust checks (feeds, status, families)", "trust_checks",
            source=str(source), home=str(home), as_of=DAY)


def dask() -> None:
    print("dask: local training vs a two-process Dask LocalCluster, on the demo (make demo)")
    home = HOME.parent
    source = home / "demo"
    if not (home / "warehouse.duckdb").exists():
        raise SystemExit(f"run `make demo` first (no warehouse in {home})")
    measure("dask", "demo training set: local vs Dask (2 workers x 1 thread)", "train_engines",
            source=str(source), home=str(home))


SCENARIOS = {"features": features, "scaling": scaling, "backfill": backfill,
             "training": training, "nightly": nightly, "dask": dask}


def main(argv: list[str]) -> None:
    names = argv or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise SystemExit(f"unknown benchmark {unknown}; choose from {', '.join(SCENARIOS)}")
    HOME.mkdir(parents=True, exist_ok=True)
    for name in names:
        SCENARIOS[name]()
    results = HOME / "results.json"
    previous = json.loads(results.read_text()) if results.exists() else []
    kept = [r for r in previous if r["scenario"] not in names]
    results.write_text(json.dumps(kept + RESULTS, indent=1, default=str))
    print("\n| scenario | step | wall s | compute s | peak MB |\n|---|---|---:|---:|---:|")
    for row in kept + RESULTS:
        print(f"| {row['scenario']} | {row['step']} | {row['seconds']} | "
              f"{row.get('compute_s', '')} | {row.get('peak_mb', '')} |")


if __name__ == "__main__":
    main(sys.argv[1:])
