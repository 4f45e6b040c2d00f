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
from pipelines.partitions import trading_day_partitions
from pipelines.resources import build_resources
from pipelines.runner import step_printer
from pipelines.settings import Settings, load_settings

# Single-run backfills are the point of the feature partitions; their beta label is noise here.
warnings.filterwarnings("ignore", category=dg.BetaWarning)


def build_definitions(settings: Settings, today: dt.date | None = None) -> dg.Definitions:
    partitions = trading_day_partitions(settings.calendar, settings.start, today)
    assets = [*build_ingest_assets(partitions), *build_feature_assets(partitions)]
    ingest_job = dg.define_asset_job(
        "ingest_job",
        selection=dg.AssetSelection.groups("ingest"),
        description="Load the source into the warehouse for one as-of day (or a range).",
    )
    features_job = dg.define_asset_job(
        "features_job",
        selection=dg.AssetSelection.groups("ingest", "features"),
        description="Ingest and build the point-in-time features for one as-of day (or a range).",
    )
    return dg.Definitions(
        assets=assets,
        jobs=[ingest_job, features_job],
        resources=build_resources(settings),
        loggers={"steps": step_printer, **dg.default_loggers()},
    )


def _load() -> dg.Definitions:
    return build_definitions(load_settings())


defs = _load()
