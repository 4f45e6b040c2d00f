"""Runs whose process died (kill -9, out of memory, power loss) end FAILED, not STARTED forever.

Dagster's run monitoring asks the run launcher whether a run's worker is alive; the default
launcher cannot tell, and runs the CLI executes in its own process have no launcher at all
(its other remedy, a maximum runtime, would also fail a long backfill that is alive). So
every failcast run records where it executes (``failcast/host`` on every job; ``failcast/pid``
on CLI runs, the RUN_START event's process id otherwise), and ``fail_abandoned_runs`` reports as
failed each run still in progress on this host whose process no longer exists. The CLI calls
it before every run; ``abandoned_runs_sensor`` calls it every minute while the Dagster daemon
runs (``make ui``).
"""

from __future__ import annotations

import os
import socket
from contextlib import suppress

import dagster as dg
import psutil

HOST_TAG, PID_TAG = "failcast/host", "failcast/pid"
IN_PROGRESS = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]


def host_tags() -> dict[str, str]:
    """The tag every failcast job carries: the machine its runs execute on."""
    return {HOST_TAG: socket.gethostname()}


def process_tags() -> dict[str, str]:
    """Tags of a run executed in this very process (the CLI's in-process runs)."""
    return {**host_tags(), PID_TAG: str(os.getpid())}


def _worker_pid(instance: dg.DagsterInstance, run: dg.DagsterRun) -> int | None:
    if run.tags.get(PID_TAG):
        return int(run.tags[PID_TAG])
    starts = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_START)
    return starts[0].dagster_event.pid if starts and starts[0].dagster_event else None


def _alive(pid: int, since: float) -> bool:
    """Whether process ``pid`` exists and is the one that started at ``since`` or before."""
    try:
        process = psutil.Process(pid)
        # A process that began after the run did is another one with a recycled id.
        return process.status() != psutil.STATUS_ZOMBIE and process.create_time() <= since + 1
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True  # not ours to inspect: assume it is running


def fail_abandoned_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark FAILED every in-progress run of this host whose process is gone; their ids."""
    host = socket.gethostname()
    records = instance.get_run_records(
        filters=dg.RunsFilter(statuses=IN_PROGRESS, tags={HOST_TAG: host}))
    failed = []
    for record in records:
        run = record.dagster_run
        pid = _worker_pid(instance, run)
        started = record.start_time or record.create_timestamp.timestamp()
        if pid is None or _alive(pid, started):
            continue
        with suppress(dg.DagsterInvariantViolationError):  # finished meanwhile
            instance.report_run_failed(
                run, f"its process (PID {pid} on {host}) ended before the run did: killed or "
                     "crashed. Marked failed by failcast; rerun the job (it is safe to rerun).")
            failed.append(run.run_id)
    return failed


@dg.sensor(
    name="abandoned_runs_sensor",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Marks FAILED the runs whose process died mid-way (kill -9, out of memory).",
)
def abandoned_runs_sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    failed = fail_abandoned_runs(context.instance)
    return dg.SkipReason(f"marked {len(failed)} abandoned run(s) failed: {', '.join(failed)}"
                         if failed else "no abandoned run")
