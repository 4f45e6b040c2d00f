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
from pathlib import Path

import dagster as dg
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from features.errors import EXIT_BUG, FailcastError, ResourceError, disk_fault
from pipelines.run_health import fail_abandoned_runs, process_tags
from pipelines.settings import Settings

DAGSTER_YAML = """\
# Written by failcast: local storage under this folder, no telemetry, no welcome dialog.
telemetry:
  enabled: false
nux:
  enabled: false
"""


class RunFailed(FailcastError):
    """A Dagster run failed; the message names the step and the reason."""

    exit_code = EXIT_BUG


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
            print(f"  ✗ {step}: {message.strip().splitlines()[-1] if message else 'failed'}",
                  file=self.stream, flush=True)
        elif kind == "ASSET_CHECK_EVALUATION" and not data.passed:
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
) -> dg.ExecuteInProcessResult:
    """Execute ``job_name`` in this process for one as-of day or a range of them."""
    home = ensure_dagster_home(settings)
    tags: dict[str, str] = {}
    partition_key = None
    if first is not None:
        last = last or first
        if first == last:
            partition_key = first.isoformat()
        else:
            tags = {
                ASSET_PARTITION_RANGE_START_TAG: first.isoformat(),
                ASSET_PARTITION_RANGE_END_TAG: last.isoformat(),
            }
    config = {**(run_config or {}), "loggers": {"steps": {}}}
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
        failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        known = _failcast_error(failures)
        if known is not None:
            raise known
        where = failures[0].step_key if failures else job_name
        raise RunFailed(
            f"{job_name} failed at {where}; see the run {result.run_id} in the Dagster UI "
            "(make ui)"
        )
    return result


def _failcast_errors() -> dict[str, type[FailcastError]]:
    """Every FailcastError class by its qualified name, as Dagster records it."""
    found, todo = {}, [FailcastError]
    while todo:
        cls = todo.pop()
        found[f"{cls.__module__}.{cls.__qualname__}"] = cls
        todo.extend(cls.__subclasses__())
    return found


def _failcast_error(failures: list) -> FailcastError | None:
    """The problem a failed step raised, rebuilt from the run's record, when failcast knows it.

    Dagster records a step's exception as text (``module.Class: message``); a known class
    comes back as itself, so the command ends with its one line and its exit code.
    """
    known = _failcast_errors()
    for event in failures:
        error = getattr(event.event_specific_data, "error", None)
        while error is not None:
            name, _, message = (error.message or "").partition(": ")
            if name in known:
                return known[name](message.strip())
            error = error.cause
    return None
