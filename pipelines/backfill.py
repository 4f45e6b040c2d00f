"""``failcast backfill``: a source's history (ingest and features), trading days in parallel.

Every piece of work is a Dagster run of ``features_job`` recorded in the instance (the UI lists
them, tagged ``failcast/backfill``), executed by one of ``workers`` processes:

1. the trading calendar and the source tables, once;
2. metric samples and their day statistics, in runs of up to ``PARTITIONS_PER_RUN`` trading
   days, small enough that every worker gets at least two;
3. features, in runs of the same days, each as soon as the day statistics of its days and of the
   ``LOOKBACK_SESSIONS`` before them are built.

Partition steps write only the lake (``features.lake``), so the processes never wait for one
another or for the warehouse file; at the end one short writer brings the file's views up to
date. The Dagster UI's backfill of the same assets runs the same way: its runs hold
``PARTITIONS_PER_RUN`` days each and execute side by side up to the instance's run concurrency.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import multiprocessing
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field

from features.errors import FailcastError, UsageError
from pipelines.partitions import PARTITIONS_PER_RUN
from pipelines.settings import Settings, load_settings, settings_as_text

JOB = "features_job"
STOP_WAIT_S = 10  # a stopped worker's grace before SIGKILL
BACKFILL_TAG = "failcast/backfill"
SOURCE_ASSETS = ("trading_calendar", "systems", "incidents", "changes")
METRIC_ASSETS = ("metrics", "metric_day_stats")
FEATURE_ASSETS = ("system_day_features",)


class BackfillBug(RuntimeError):
    """An unexpected error in a worker's run, carried to the parent as text (a bug: exit 1)."""


@dataclass(frozen=True)
class Task:
    """One Dagster run of the backfill: some assets over some days, after the tasks it needs."""

    label: str
    assets: tuple[str, ...]
    first: dt.date | None = None
    last: dt.date | None = None
    needs: tuple[int, ...] = ()

    def __str__(self) -> str:
        days = f" {self.first}..{self.last}" if self.first else ""
        return f"{self.label}{days}"


@dataclass
class BackfillResult:
    backfill_id: str
    sessions: int
    runs: list[tuple[Task, str, float]] = field(default_factory=list)  # task, run id, seconds
    seconds: float = 0.0


def plan(calendar, first: dt.date, last: dt.date, per_run: int = PARTITIONS_PER_RUN) -> list[Task]:
    """The runs of a backfill of ``first..last`` and what each must wait for."""
    from features.metric_features import LOOKBACK_SESSIONS

    sessions = calendar.sessions(first, last)
    chunks = [sessions[i:i + per_run] for i in range(0, len(sessions), per_run)]
    tasks = [Task("source tables", SOURCE_ASSETS)]
    metric_tasks = []
    for chunk in chunks:
        metric_tasks.append(len(tasks))
        tasks.append(Task("metrics", METRIC_ASSETS, chunk[0], chunk[-1], needs=(0,)))
    for chunk in chunks:
        # Baselines look back LOOKBACK_SESSIONS sessions: those days' statistics come first.
        since = calendar.sessions_back(chunk[0], LOOKBACK_SESSIONS)
        needs = tuple(i for i in metric_tasks
                      if tasks[i].last >= since and tasks[i].first <= chunk[-1])
        tasks.append(Task("features", FEATURE_ASSETS, chunk[0], chunk[-1], needs=(0, *needs)))
    return tasks


def days_per_run(sessions: int, workers: int) -> int:
    """Trading days per run: each run costs a few seconds of Dagster bookkeeping, so as few runs
    as keep every worker busy (two each, so one worker's long run does not idle the others)."""
    if workers == 1:
        return PARTITIONS_PER_RUN
    return max(1, min(PARTITIONS_PER_RUN, -(-sessions // (2 * workers))))


def run_backfill(
    settings: Settings,
    first: dt.date,
    last: dt.date,
    workers: int = 1,
    on_run: Callable[[int, int, Task, float], None] | None = None,
    per_run: int | None = None,
) -> BackfillResult:
    """Ingest and build the features of the sessions ``first..last`` with ``workers`` processes.

    The configured DuckDB threads are shared among the workers. Stops at the first failed run
    (its error is raised once the runs under way have finished)."""
    from pipelines.runner import ensure_dagster_home

    calendar = settings.calendar
    sessions = calendar.sessions(first, last)
    if not sessions:
        raise UsageError(f"no trading day between {first} and {last}")
    values = settings_as_text(settings)
    values["threads"] = str(max(1, settings.threads // workers))
    job = (str(settings.source), str(settings.home), values)
    partitions = _definitions(*job).resolve_assets_def("metrics").partitions_def
    earliest = dt.date.fromisoformat(partitions.get_first_partition_key())
    latest = dt.date.fromisoformat(partitions.get_last_partition_key())
    if sessions[0] < earliest:
        raise UsageError(
            f"--start {sessions[0]} is before the first trading-day partition, {earliest}: set "
            "[pipeline] start in the source's failcast.toml (or FAILCAST_START) to an earlier day")
    if sessions[-1] > latest:
        raise UsageError(f"--end {sessions[-1]} is after the latest partition, {latest} (today's)")
    ensure_dagster_home(settings)
    result = BackfillResult(uuid.uuid4().hex[:8], len(sessions))
    per_run = per_run or days_per_run(len(sessions), workers)
    tasks = plan(calendar, sessions[0], sessions[-1], per_run)
    started = time.perf_counter()
    if workers == 1:
        for task in tasks:  # in plan order, which respects every task's needs
            run_id, seconds = run_task(*job, task, result.backfill_id)
            _done(result, task, run_id, seconds, len(tasks), on_run)
    else:
        _run_parallel(job, tasks, workers, result, on_run)
    settings.warehouse().publish_views()
    result.seconds = time.perf_counter() - started
    return result


def _run_parallel(job, tasks: list[Task], workers: int, result: BackfillResult,
                  on_run) -> None:
    pending = dict(enumerate(tasks))
    done: set[int] = set()
    running: dict[Future, int] = {}
    failure: BaseException | None = None
    context = multiprocessing.get_context("spawn")  # no forked DuckDB or Dagster state
    others = set(multiprocessing.active_children())
    with (ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool,
          _terminate_as_interrupt()):
        try:
            while pending or running:
                ready = [i for i, t in pending.items() if set(t.needs) <= done]
                while failure is None and ready and len(running) < workers:
                    index = ready.pop(0)
                    running[pool.submit(run_task, *job, pending.pop(index), result.backfill_id)] = index
                if not running:
                    break
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    index = running.pop(future)
                    try:
                        run_id, seconds = future.result()
                    except BaseException as exc:  # noqa: BLE001 - re-raised once the others finish
                        failure = failure or exc
                        continue
                    done.add(index)
                    _done(result, tasks[index], run_id, seconds, len(tasks), on_run)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            # A worker would finish its run, and on a signal the parent's end would leave it
            # running with nobody to report to: stop the pool's processes now.
            workers = set(multiprocessing.active_children()) - others
            for worker in workers:
                worker.terminate()
            for worker in workers:  # a run may take a while to act on SIGTERM: then SIGKILL
                worker.join(STOP_WAIT_S)
                if worker.is_alive():
                    worker.kill()
            raise
    if failure is not None:
        raise failure


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (a scheduler's stop, ``kill``) reaches only this process, not its workers as
    Ctrl-C does: raise it as an interrupt here, so the workers are stopped with it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _done(result: BackfillResult, task: Task, run_id: str, seconds: float, total: int,
          on_run) -> None:
    result.runs.append((task, run_id, seconds))
    if on_run:
        on_run(len(result.runs), total, task, seconds)


_DEFINITIONS: dict = {}


def _definitions(source: str, home: str, values: dict[str, str]):
    """One definitions object per process for the backfill's settings."""
    from pipelines.definitions import build_definitions

    key = (source, home, tuple(sorted(values.items())))
    if key not in _DEFINITIONS:
        _DEFINITIONS[key] = build_definitions(load_settings(source, home, env={}, **values))
    return _DEFINITIONS[key]


def run_task(source: str, home: str, values: dict[str, str], task: Task,
             backfill_id: str) -> tuple[str, float]:
    """Execute one run of the backfill (in a worker process); returns its run id and seconds."""
    from pipelines.runner import run_job

    defs = _definitions(source, home, values)
    settings = load_settings(source, home, env={}, **values)
    started = time.perf_counter()
    try:
        outcome = run_job(defs, JOB, settings, task.first, task.last,
                          run_tags={BACKFILL_TAG: backfill_id}, assets=task.assets, quiet=True)
    except FailcastError:
        raise
    except Exception as exc:
        # Sent back to the parent by pickling: many library errors (Dagster's) cannot be
        # rebuilt there and would break the whole pool instead of naming the failure.
        raise BackfillBug(f"{task}: {type(exc).__name__}: {exc}") from None
    return outcome.run_id, time.perf_counter() - started
