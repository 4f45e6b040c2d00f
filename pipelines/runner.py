"""Run failcast's Dagster jobs from the command line, recorded in the local Dagster instance.

Runs go through a persistent instance (``DAGSTER_HOME``, by default ``<home>/dagster``), so
``make ui`` shows every run the CLI made, with its materializations and checks. The console
shows one line per step instead of Dagster's debug log. A step that fails with a problem
failcast understands (``features.errors``: a locked warehouse, a full disk, bad data) ends the
command with that problem's one line and exit code; runs an earlier, killed command left
STARTED are marked failed first (``pipelines.run_health``).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import dagster as dg
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from features.errors import EXIT_BUG, EXIT_USAGE, FailcastError, ResourceError, disk_fault
from pipelines.run_health import fail_abandoned_runs, process_tags
from pipelines.settings import Settings

DAGSTER_YAML = """\
# Written by failcast: local storage under this folder, no telemetry, no welcome dialog.
telemetry:
  enabled: false
nux:
  enabled: false
# A backfill's runs (up to a quarter of trading days each) execute two at a time; other runs are not
# held back by it.
concurrency:
  runs:
    tag_concurrency_limits:
      - key: dagster/backfill
        limit: 2
"""


FRESHNESS = "freshness_check"  # the name Dagster gives its freshness checks


class RunFailed(FailcastError):
    """A Dagster run failed; the message names the step or check and the reason.

    Its exit code is the failure's: 2 when a blocking check refused the data (or a step raised a
    usage or data error), 3 when a step found a resource unavailable, 1 for anything else."""

    def __init__(self, message: str, exit_code: int = EXIT_BUG) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# What SQLite (Dagster's run and event storage) says when it cannot write its file.
SQLITE_WRITE_FAULTS = ("disk I/O error", "database or disk is full", "readonly database",
                       "unable to open database file")
PROBE_BYTES = 1 << 16


def ensure_dagster_home(settings: Settings) -> Path:
    """Point DAGSTER_HOME at the settings' home unless the environment chose one, and make sure
    Dagster can write there (a full or read-only disk is one line, not a SQLAlchemy report)."""
    home = Path(os.environ.get("DAGSTER_HOME") or settings.dagster_home)
    probe = home / f".failcast-probe-{os.getpid()}"
    try:
        home.mkdir(parents=True, exist_ok=True)
        config = home / "dagster.yaml"
        if not config.exists():
            config.write_text(DAGSTER_YAML)
        probe.write_bytes(bytes(PROBE_BYTES))
    except OSError as exc:
        raise disk_fault(exc, f"the Dagster instance {home}") or exc from None
    finally:
        probe.unlink(missing_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def _storage_fault(exc: BaseException, home: Path) -> ResourceError | None:
    """The one line for Dagster's storage failing to write, or None."""
    fault = disk_fault(exc, f"the Dagster instance {home}")
    if fault is None and any(marker in str(exc) for marker in SQLITE_WRITE_FAULTS):
        cause = next(m for m in SQLITE_WRITE_FAULTS if m in str(exc))
        fault = ResourceError(f"cannot write the Dagster instance {home} ({cause}): its disk is "
                              "full or read-only; free space or make it writable, then run the "
                              "command again")
    return fault


class _StepPrinter(logging.Handler):
    """Prints a line when a step starts, succeeds or fails, and check failures."""

    def __init__(self, stream) -> None:
        super().__init__()
        self.stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        meta = getattr(record, "dagster_meta", None) or {}
        event = meta.get("dagster_event")
        if event is None:
            return
        kind, step = event.event_type_value, event.step_key
        data = event.event_specific_data
        if kind == "STEP_START":
            print(f"  … {step}", file=self.stream, flush=True)
        elif kind == "STEP_SUCCESS":
            seconds = (getattr(data, "duration_ms", 0) or 0) / 1000
            print(f"  ✓ {step} ({seconds:.1f} s)", file=self.stream, flush=True)
        elif kind == "STEP_FAILURE":
            error = getattr(getattr(data, "error", None), "cause", None) or getattr(data, "error", None)
            message = getattr(error, "message", "") or ""
            if getattr(error, "cls_name", "") == "DagsterAssetCheckFailedError":
                message = "stopped by a blocking check"
            print(f"  ✗ {step}: {message.strip().splitlines()[-1] if message else 'failed'}",
                  file=self.stream, flush=True)
        elif kind == "ASSET_CHECK_EVALUATION" and not data.passed and data.check_name != FRESHNESS:
            # The freshness check asks whether today's partition is published; a run of another
            # day (a backfill, a replay) says nothing about that, so it is not news here.
            severity = getattr(data, "severity", None)
            label = "warning" if severity and severity.value == "WARN" else "check failed"
            print(f"  ! {label}: {data.asset_key.to_user_string()} {data.check_name}",
                  file=self.stream, flush=True)


@dg.logger(description="One line per step on the terminal.")
def step_printer(_init_context) -> logging.Logger:
    log = logging.Logger("failcast.steps", level=logging.DEBUG)
    log.addHandler(_StepPrinter(sys.stderr))
    return log


def run_job(
    defs: dg.Definitions,
    job_name: str,
    settings: Settings,
    first: dt.date | None = None,
    last: dt.date | None = None,
    run_config: dict | None = None,
    run_tags: Mapping[str, str] | None = None,
    *,
    assets: Sequence[str] | None = None,
    quiet: bool = False,
) -> dg.ExecuteInProcessResult:
    """Execute ``job_name`` in this process for one as-of day or a range of them.

    ``run_tags`` are added to the run's; ``assets`` runs only those assets of the job;
    ``quiet`` prints nothing per step (a caller that reports progress itself)."""
    home = ensure_dagster_home(settings)
    tags: dict[str, str] = dict(run_tags or {})
    partition_key = None
    if first is not None:
        last = last or first
        if first == last:
            partition_key = first.isoformat()
        else:
            tags |= {
                ASSET_PARTITION_RANGE_START_TAG: first.isoformat(),
                ASSET_PARTITION_RANGE_END_TAG: last.isoformat(),
            }
    loggers = {"console": {"config": {"log_level": "CRITICAL"}}} if quiet else {"steps": {}}
    config = {**(run_config or {}), "loggers": loggers}
    job = defs.resolve_job_def(job_name)
    try:
        with dg.DagsterInstance.get() as instance:
            for run_id in fail_abandoned_runs(instance):
                print(f"  ! run {run_id} was left STARTED by a process that died: marked failed",
                      file=sys.stderr, flush=True)
            result = job.execute_in_process(
                instance=instance,
                partition_key=partition_key,
                tags={**tags, **process_tags()},
                run_config=config,
                asset_selection=[dg.AssetKey(a) for a in assets] if assets else None,
                raise_on_error=False,
            )
    except FailcastError:
        raise
    except Exception as exc:
        fault = _storage_fault(exc, home)
        if fault is None:
            raise
        raise fault from None
    if not result.success:
        raise run_failure(job_name, result)
    return result


def run_failure(job_name: str, result: dg.ExecuteInProcessResult) -> RunFailed:
    """The one line that says why a run failed: the refusing check and its reason, or the
    failed step and its error, with the exit code that failure deserves."""
    refused = [e.event_specific_data for e in result.all_events
               if e.event_type_value == "ASSET_CHECK_EVALUATION"
               and not e.event_specific_data.passed and e.event_specific_data.blocking
               and e.event_specific_data.severity == dg.AssetCheckSeverity.ERROR]
    if refused:
        check = refused[0]
        more = f" (and {len(refused) - 1} more failed check(s))" if len(refused) > 1 else ""
        return RunFailed(f"{job_name} refused by the check {check.check_name} of "
                         f"{check.asset_key.to_user_string()}: {check.description}{more}",
                         EXIT_USAGE)
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    if not failures:
        return RunFailed(f"{job_name} failed; see the run {result.run_id} in the Dagster UI")
    step, error = failures[0].step_key, failures[0].event_specific_data.error
    known = _failcast_errors()
    while error is not None:
        if error.cls_name in known:
            message = error.message.strip().split(": ", 1)[-1]
            return RunFailed(f"{job_name} failed at {step}: {message}", known[error.cls_name])
        if error.cause is None:
            break
        error = error.cause
    message = (error.message if error else "").strip().splitlines()
    return RunFailed(f"{job_name} failed at {step}: {message[-1] if message else 'unknown error'} "
                     f"(a bug: see the run {result.run_id} in the Dagster UI)")


def _failcast_errors() -> dict[str, int]:
    """Every FailcastError class by name, with its exit code (steps run in this process, so
    every class a step can raise is imported by now)."""
    found, todo = {}, [FailcastError]
    while todo:
        cls = todo.pop()
        found[cls.__name__] = cls.exit_code if isinstance(cls.exit_code, int) else EXIT_BUG
        todo.extend(cls.__subclasses__())
    return found
