"""The one place where failcast's Dagster definitions are assembled.

Importing this module reads nothing: ``defs`` is a lazy ``@dg.definitions`` function that
Dagster calls when it loads the code location (``dagster dev -w workspace.yaml``), building the
definitions from the settings of the environment (``FAILCAST_SOURCE``, ``FAILCAST_HOME``, the
source's ``failcast.toml`` and ``calendar.csv``). Each CLI command and each test builds its
own with ``build_definitions(settings)``: one definitions object, from the settings it was
given (``--source``, ``--home``).
"""

from __future__ import annotations

import datetime as dt
import warnings

import dagster as dg

from pipelines.assets.features import build_feature_assets
from pipelines.assets.ingest import build_ingest_assets
from pipelines.assets.model import model_assets
from pipelines.assets.publish import build_publish_assets
from pipelines.assets.track_record import track_record_assets
from pipelines.automation import (
    build_jobs,
    nightly_schedule,
    retrain_schedule,
    risk_scores_freshness,
    source_data_sensor,
)
from pipelines.partitions import partitions_start, trading_day_partitions
from pipelines.resources import build_resources
from pipelines.run_health import abandoned_runs_sensor
from pipelines.runner import step_printer
from pipelines.settings import Settings, load_settings

# Backfill policies are the point of the partitioned assets; their beta label is noise here.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
# Dagster calls its time-partition freshness checks superseded by FreshnessPolicy, but a
# FreshnessPolicy judges when an asset last materialized, not whether the trading day's partition
# exists, so it would fail every weekend and holiday (pipelines.automation).
warnings.filterwarnings("ignore", category=dg.SupersessionWarning)


def build_definitions(settings: Settings, today: dt.date | None = None) -> dg.Definitions:
    from features.source import earliest_record_day

    calendar = settings.calendar
    first = partitions_start(calendar, settings.start,
                             earliest_record_day(settings.source, settings.timezone), today)
    partitions = trading_day_partitions(calendar, first)
    freshness_checks, freshness_sensor = risk_scores_freshness(calendar)
    return dg.Definitions(
        assets=[
            *build_ingest_assets(partitions),
            *build_feature_assets(partitions),
            *model_assets,
            *build_publish_assets(partitions),
            *track_record_assets,
        ],
        asset_checks=freshness_checks,
        jobs=build_jobs(),
        schedules=[nightly_schedule(calendar), retrain_schedule(calendar, settings.policy())],
        sensors=[source_data_sensor(calendar, settings.source), freshness_sensor,
                 abandoned_runs_sensor],
        resources=build_resources(settings),
        loggers={"steps": step_printer, **dg.default_loggers()},
    )


@dg.definitions
def defs() -> dg.Definitions:
    """The definitions of the environment's settings, built when Dagster loads them."""
    return build_definitions(load_settings())
