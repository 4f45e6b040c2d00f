"""A backtest of any source directory, start to finish, in a warehouse of its own.

This is how failcast is judged on estates it has never seen: ingest the source, build the
features of every as-of day the walk-forward needs (the test range and the training history
before it), replay the deployed retraining policy over the range, attach the outcomes that are
known, and compare what served with the baselines.
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from features.build import build_and_write_features
from features.errors import DataError, UsageError
from features.ingest import load_metrics, load_source_tables
from features.metric_features import LOOKBACK_SESSIONS
from features.metric_stats import build_metric_day_stats
from features.source import Source
from features.trading_time import TradingCalendar
from features.warehouse import Warehouse
from models.backtest import Step, evaluate_scores, retraining_points, walk_forward, with_labels
from models.lifecycle import RetrainPolicy


@dataclass
class BacktestResult:
    scores: pl.DataFrame
    steps: list[Step]
    metrics: pl.DataFrame
    out: Path | None
    history_first: dt.date
    seconds: dict[str, float] = field(default_factory=dict)


def _data_span(con) -> tuple[dt.date | None, dt.date | None]:
    """First and last day the loaded data holds any record (incidents, changes, metrics)."""
    row = con.execute(
        """
        SELECT least(min(a), min(b), min(c)), greatest(max(x), max(y), max(z)) FROM
            (SELECT min(opened_at) a, max(opened_at) x FROM incidents),
            (SELECT min(scheduled_start) b, max(least(scheduled_start, created_at)) y FROM changes),
            (SELECT min(ts) c, max(ts) z FROM metrics)
        """
    ).fetchall()[0]
    return tuple(v.date() if v is not None else None for v in row)  # type: ignore[return-value]


def backtest_source(
    source_dir: str | Path,
    calendar: TradingCalendar,
    start: dt.date,
    end: dt.date,
    work: Path,
    *,
    policy: RetrainPolicy | None = None,
    out: Path | None = None,
    model_name: str = "failcast-risk",
    threads: int = 2,
    memory_limit: str = "1500MB",
    progress: bool = True,
) -> BacktestResult:
    from tqdm import tqdm

    policy = policy or RetrainPolicy()
    config = policy.config
    source = Source.open(source_dir)
    sessions = calendar.sessions(start, end)
    if not sessions:
        raise DataError(f"no trading day between {start} and {end} on the {calendar.exchange} calendar")
    start, end = sessions[0], sessions[-1]
    warehouse = Warehouse(work / "warehouse.duckdb", timezone=calendar.timezone, threads=threads,
                          memory_limit=memory_limit)
    # Everything is rebuilt from the source: no partition of an earlier run in --work may leak in.
    shutil.rmtree(warehouse.lake.root, ignore_errors=True)
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[name] = round(now - clock, 2)
        clock = now

    def bar(total: int, label: str):
        return tqdm(total=total, desc=label, disable=not progress, leave=False)

    lake = warehouse.lake
    with warehouse.lake_writer() as con:
        load_source_tables(con, lake, source)
        data_first, _ = _data_span(con)  # before metrics are loaded: the case library's span
        first_retrain = retraining_points(policy, calendar, sessions)[0]
        wanted = calendar.sessions_back(
            first_retrain, config.train_sessions + config.holdout_sessions + LOOKBACK_SESSIONS + 1)
        if data_first and data_first > wanted:
            wanted = data_first
        history_first = calendar.sessions(max(wanted, calendar.first_day + dt.timedelta(days=1)),
                                          end)[0]
        lap("ingest tables")
        if source.has_metrics:
            chunks = bar(1, "loading metrics")
            load_metrics(con, lake, source, calendar, history_first, end,
                         on_chunk=lambda done, total: _tick(chunks, done, total))
            chunks.close()
            build_metric_day_stats(con, lake, calendar.session_table(history_first, end))
            lap("ingest metrics and day statistics")
        chunks = bar(1, "building features")
        build_and_write_features(con, lake, calendar, history_first, end,
                                 on_chunk=lambda done, total: _tick(chunks, done, total))
        chunks.close()
        lap("features")
        _, data_last = _data_span(con)

    with warehouse.reader() as con:
        steps_bar = bar(1, f"walk-forward ({config.cadence} retraining)")
        scores, steps = walk_forward(
            con, calendar, start, end, policy, model_name=model_name,
            on_step=lambda step, done, total: _tick(steps_bar, done, total),
        )
        steps_bar.close()
        known_at = calendar.last_session_on_or_before(data_last) if data_last else end
        scores = with_labels(con, calendar, scores, config.max_severity, known_at)
        lap("walk-forward")

    scores = scores.sort("as_of", "system_id")
    if out is not None:
        write_scores(scores, out)
    return BacktestResult(scores, steps, evaluate_scores(scores), out, history_first, seconds)


def _tick(progress_bar, done: int, total: int) -> None:
    progress_bar.total = total
    progress_bar.n = done
    progress_bar.refresh()


def write_scores(scores: pl.DataFrame, out: Path) -> None:
    """Parquet or CSV (spreadsheet-safe), by the file's extension, written whole or not at all."""
    from models.publish import write_atomically
    from models.spreadsheet import write_safe_csv

    suffix = out.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise UsageError(f"--out must end in .parquet or .csv, got {out.name}")
    out.parent.mkdir(parents=True, exist_ok=True)
    write = scores.write_parquet if suffix == ".parquet" else (lambda p: write_safe_csv(scores, p))
    write_atomically(out, write, what="the backtest file")


def log_backtest(registry, scores: pl.DataFrame, table: pl.DataFrame, steps, policy,
                 params: dict, tags: dict) -> tuple[str, str]:
    """The backtest as an MLflow run named for its range (``backtest 2025-10..2026-09``)."""
    import tempfile

    from models.evaluate import HEADLINE, plots

    known = scores.filter(pl.col("label").is_not_null())
    first, last = scores["as_of"].min(), scores["as_of"].max()
    steps_table = pl.DataFrame([{"retrained_on": s.retrained_on, "action": s.action,
                                 "serving": f"{s.scorer} v{s.version}",
                                 "trained_through": s.trained_through, "rows": s.rows}
                                for s in steps])
    with tempfile.TemporaryDirectory() as tmp:
        figures = plots(known, {name: known[name].to_numpy() for name in
                                ("risk", "recent_incident_rate", "operator_rule")}, None, Path(tmp),
                        title="the backtest's days")
        return registry.log_backtest(
            params={**policy.config.params(), **params},
            metrics={f"{row['scorer'].replace(' ', '_')}_{k}": row[k]
                     for row in table.iter_rows(named=True) for k in HEADLINE},
            tables={"backtest_metrics": table, "retrainings": steps_table},
            plots=figures,
            tags={**tags, "run_name": f"backtest {first:%Y-%m}..{last:%Y-%m}",
                  "retrainings": str(len(steps)),
                  "served_by_fallback": str(sum(1 for s in steps if s.scorer.startswith("baseline:")))},
        )
