"""Jobs, schedules and the sensor: when failcast runs without anyone asking.

- ``nightly_job`` (ingest, features, score, publish) for the as-of day, scheduled half an hour
  after the cutoff (18:30 by default) in the configured timezone, on trading days only.
- ``retrain_job`` (training set, gated model) at 06:00 after each retraining day of the policy
  (the last trading day of each week, or month: ``[model] retrain_every``), as of that day;
  the policy decides what serves (``models.lifecycle``), and the backtest replays the same days.
- ``source_data_sensor`` (off by default): starts the nightly run as soon as new files land in
  the source after the day's cutoff, for firms whose post-market batch has no fixed time.
- ``risk_scores_freshness``: Dagster's time-partition freshness check on ``risk_scores``, due
  ``PUBLICATION_GRACE`` after the nightly run starts, in the configured timezone, evaluated by
  its sensor: an overdue publication shows on the asset's page in the UI.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg

from features.trading_time import TradingCalendar
from models.lifecycle import RetrainPolicy

NIGHTLY_DELAY = dt.timedelta(minutes=30)
# The CAB expects the night's publication by an hour after the nightly run starts.
PUBLICATION_GRACE = dt.timedelta(hours=1)


def build_jobs() -> list:
    from pipelines.run_health import host_tags

    partitioned = dict(tags={"dagster/max_runtime": str(3600), **host_tags()})
    return [
        dg.define_asset_job(
            "ingest_job", selection=dg.AssetSelection.groups("ingest"),
            description="Load the source into the warehouse for one as-of day (or a range).",
            **partitioned),
        dg.define_asset_job(
            "features_job", selection=dg.AssetSelection.groups("ingest", "features"),
            description="Ingest and build the point-in-time features for one as-of day (or a range).",
            **partitioned),
        dg.define_asset_job(
            "nightly_job", selection=dg.AssetSelection.groups("ingest", "features", "publish"),
            description="The evening run: ingest the day, build its features, score with the "
                        "champion, publish the table and the CAB's files.",
            **partitioned),
        dg.define_asset_job(
            "retrain_job", selection=dg.AssetSelection.assets("training_set", "failure_model"),
            description="Train a model on the labels known today and put it through the gate.",
            tags=host_tags()),
        dg.define_asset_job(
            "backtest_job", selection=dg.AssetSelection.assets("backtest", "backtest_track_record"),
            description="Walk-forward backtest on the warehouse, logged to MLflow, and the track "
                        "record it would have earned.",
            tags=host_tags()),
        dg.define_asset_job(
            "track_record_job", selection=dg.AssetSelection.assets("track_record"),
            description="The published forecasts against what happened: forecast_outcomes and "
                        "the track-record page.",
            tags=host_tags()),
    ]


def nightly_schedule(calendar: TradingCalendar) -> dg.ScheduleDefinition:
    run_at = _after_cutoff(calendar, NIGHTLY_DELAY)

    @dg.schedule(
        name="nightly_schedule",
        cron_schedule=f"{run_at.minute} {run_at.hour} * * *",
        execution_timezone=calendar.timezone,
        job_name="nightly_job",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"{run_at:%H:%M} {calendar.timezone} on trading days: the as-of day's run.",
    )
    def _nightly(context: dg.ScheduleEvaluationContext):
        day = context.scheduled_execution_time.astimezone(ZoneInfo(calendar.timezone)).date()
        if not calendar.is_session(day):
            return dg.SkipReason(f"{day} is not a trading day on {calendar.exchange}")
        return dg.RunRequest(run_key=f"nightly-{day}", partition_key=day.isoformat())

    return _nightly


def retrain_due(calendar: TradingCalendar, policy: RetrainPolicy, today: dt.date) -> dt.date | None:
    """The as-of day to retrain on this morning: the last trading day before today, when it is
    one of the policy's retraining days (its nightly run ended last evening)."""
    as_of = calendar.last_session_on_or_before(today - dt.timedelta(days=1))
    return as_of if policy.is_retraining_day(calendar, as_of) else None


def retrain_schedule(calendar: TradingCalendar, policy: RetrainPolicy) -> dg.ScheduleDefinition:
    cadence = policy.config.cadence

    @dg.schedule(
        name="retrain_schedule",
        cron_schedule="0 6 * * *",
        execution_timezone=calendar.timezone,
        job_name="retrain_job",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"06:00 after the last trading day of each {cadence[:-2]}: retrain as of "
                    "that day; the gate decides what serves.",
    )
    def _retrain(context: dg.ScheduleEvaluationContext):
        today = context.scheduled_execution_time.astimezone(ZoneInfo(calendar.timezone)).date()
        as_of = retrain_due(calendar, policy, today)
        if as_of is None:
            return dg.SkipReason(f"the day before {today} ends no {cadence[:-2]}: no retrain")
        return dg.RunRequest(
            run_key=f"retrain-{as_of}",
            run_config={"ops": {"training_set": {"config": {"as_of": as_of.isoformat()}}}},
        )

    return _retrain


def latest_file_change(source: Path) -> float:
    """The newest modification time among the source's files (0 when there are none)."""
    newest = 0.0
    for path in source.rglob("*"):
        if path.is_file():
            newest = max(newest, path.stat().st_mtime)
    return newest


def nightly_due(calendar: TradingCalendar, now: dt.datetime, cursor: str | None,
                landed: float) -> tuple[dt.date | None, str]:
    """The as-of day whose nightly run should start now, or None and the reason why not.

    Due: the latest trading day whose cutoff has passed, when no run was started for it yet
    (``cursor``) and a file of the source changed after its cutoff (``landed``, a timestamp).
    """
    day = calendar.last_session_on_or_before(now.date())
    if now < calendar.cutoff(day):
        day = calendar.previous_session(day)
    if cursor and cursor >= day.isoformat():
        return None, f"already started the run for {day}"
    if landed < calendar.cutoff(day).timestamp():
        return None, f"no file has landed in the source since the cutoff of {day}"
    return day, f"files landed after the cutoff of {day}"


def source_data_sensor(calendar: TradingCalendar, source: Path) -> dg.SensorDefinition:
    @dg.sensor(
        name="source_data_sensor",
        job_name="nightly_job",
        minimum_interval_seconds=300,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description="Starts the nightly run when files land in the source after a cutoff.",
    )
    def _sensor(context: dg.SensorEvaluationContext):
        now = dt.datetime.now(ZoneInfo(calendar.timezone))
        day, reason = nightly_due(calendar, now, context.cursor, latest_file_change(source))
        if day is None:
            return dg.SkipReason(reason)
        context.update_cursor(day.isoformat())
        return dg.RunRequest(run_key=f"nightly-{day}", partition_key=day.isoformat())

    return _sensor


def _after_cutoff(calendar: TradingCalendar, delay: dt.timedelta) -> dt.time:
    return (dt.datetime.combine(dt.date(2000, 1, 1), calendar.cutoff_time) + delay).time()


def freshness_due(calendar: TradingCalendar, now: dt.datetime, due: dt.time) -> bool:
    """Whether the freshness check should be evaluated at ``now``: on a trading day, after the
    publication's deadline. Dagster's time-partition check asks for the newest partition at the
    last deadline; on an exchange holiday, and on the morning after one, that partition is the
    next trading day's (partitions skip holidays), which cannot be published yet."""
    local = now.astimezone(calendar.tz)
    return calendar.is_session(local.date()) and local.time() >= due


def risk_scores_freshness(calendar: TradingCalendar) -> tuple[list, dg.SensorDefinition]:
    """The freshness check of the published table and the sensor that evaluates it."""
    due = _after_cutoff(calendar, NIGHTLY_DELAY + PUBLICATION_GRACE)
    checks = list(dg.build_time_partition_freshness_checks(
        assets=["risk_scores"],
        deadline_cron=f"{due.minute} {due.hour} * * 1-5" if not calendar.always_open
        else f"{due.minute} {due.hour} * * *",
        timezone=calendar.timezone,
        severity=dg.AssetCheckSeverity.ERROR,
    ))
    evaluate = dg.build_sensor_for_freshness_checks(freshness_checks=checks)

    @dg.sensor(
        name="risk_scores_freshness_sensor",
        asset_selection=dg.AssetSelection.checks(*checks),
        minimum_interval_seconds=300,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(f"Evaluates the freshness check of risk_scores after {due:%H:%M} "
                     f"{calendar.timezone} on trading days: the night's publication is overdue "
                     "when it has not arrived by then."),
    )
    def _freshness(context: dg.SensorEvaluationContext):
        if not freshness_due(calendar, dt.datetime.now(dt.UTC), due):
            return dg.SkipReason(f"risk_scores is judged after {due:%H:%M} on trading days")
        return evaluate(context)

    return checks, _freshness
