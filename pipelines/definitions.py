"""The one place where failcast's Dagster definitions are assembled.

``dagster dev -w workspace.yaml`` loads ``defs``, built from the settings of the environment
(``FAILCAST_SOURCE``, ``FAILCAST_HOME``, the source's ``failcast.toml``). Tests and the CLI
call ``build_definitions`` with settings of their own.
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
from pipelines.partitions import trading_day_partitions
from pipelines.resources import build_resources
from pipelines.run_health import abandoned_runs_sensor
from pipelines.runner import step_printer
from pipelines.settings import Settings, load_settings

# Single-run backfills are the point of the partitioned assets; their beta label is noise here.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
# Dagster calls its time-partition freshness checks superseded by FreshnessPolicy, but a
# FreshnessPolicy judges when an asset last materialized, not whether the trading day's partition
# exists, so it would fail every weekend and holiday (pipelines.automation).
warnings.filterwarnings("ignore", category=dg.SupersessionWarning)


def build_definitions(settings: Settings, today: dt.date | None = None) -> dg.Definitions:
    calendar = settings.calendar
    partitions = trading_day_partitions(calendar, settings.start, today)
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


def _load() -> dg.Definitions:
    return build_definitions(load_settings())


defs = _load()
