"""Feature assets: per-day metric statistics and the point-in-time feature table."""

from collections.abc import Iterator

import dagster as dg
import polars as pl

from features.build import (
    FeatureSummary,
    active_system_days,
    build_and_write_features,
    families_gone_empty,
)
from features.metric_features import LOOKBACK_SESSIONS
from features.metric_stats import build_metric_day_stats
from pipelines.assets.ingest import partition_dates
from pipelines.metadata import markdown_table
from pipelines.partitions import per_trading_day
from pipelines.resources import FailcastResource
from pipelines.run_tags import refusal_severity

GROUP = "features"
ROWS_CHECK = "one_row_per_active_system"
FINITE_CHECK = "no_infinite_values"
FAMILY_CHECK = "no_metric_family_gone_empty"


def _feature_checks(context, con, calendar, summary: FeatureSummary,
                    sessions: list) -> list[dg.AssetCheckResult]:
    active = active_system_days(con, sessions)
    infinite = sorted(summary.infinite)
    gone = families_gone_empty(con, calendar, summary.first, summary.last)
    empty_now = [c for c, nulls in summary.null_counts.items() if nulls == summary.rows]
    described = "; ".join(f"{day}: every feature of {_names(families)} is empty"
                          for day, families in gone.items())
    return [
        dg.AssetCheckResult(
            check_name=ROWS_CHECK,
            passed=summary.rows == active and summary.duplicates == 0,
            metadata={"rows": summary.rows, "active_system_days": active,
                      "duplicates": summary.duplicates},
            description="Exactly one feature row per system in service and as-of day.",
        ),
        dg.AssetCheckResult(
            check_name=FINITE_CHECK,
            passed=not infinite,
            metadata={"infinite_features": ", ".join(infinite) or "none"},
        ),
        dg.AssetCheckResult(
            check_name=FAMILY_CHECK,
            passed=not gone,
            severity=refusal_severity(context),
            metadata={"families_gone_empty": described or "none",
                      "features_without_values": len(empty_now)},
            description=(
                f"system_day_features {described}, though the sessions before had them: "
                "their metrics did not arrive" if gone else
                "No metric family that had values in the sessions before is entirely empty."),
        ),
    ]


def _names(families: list[str], shown: int = 4) -> str:
    more = len(families) - shown
    return ", ".join(families[:shown]) + (f" and {more} more metrics" if more > 0 else "")


def build_feature_assets(partitions: dg.PartitionsDefinition) -> list:
    @dg.asset(
        **per_trading_day(partitions),
        group_name=GROUP,
        kinds={"parquet"},
        deps=["metrics"],
        description=(
            "Per (system, metric, as-of day): mean, std, min, max, exact p95, last value, "
            "post-market mean and max, coverage and longest gap, in one pass over the samples."
        ),
    )
    def metric_day_stats(context: dg.AssetExecutionContext, failcast: FailcastResource) -> dg.MaterializeResult:
        settings = failcast.settings
        first, last = partition_dates(context)
        sessions = settings.calendar.session_table(first, last)
        warehouse = settings.warehouse()
        with warehouse.lake_writer() as con:
            rows = build_metric_day_stats(con, warehouse.lake, sessions)
            metrics = con.execute(
                "SELECT count(DISTINCT metric), count(DISTINCT system_id) FROM metric_day_stats "
                "WHERE as_of BETWEEN ? AND ?", [first, last]).fetchall()[0]
        return dg.MaterializeResult(
            metadata={"dagster/row_count": rows, "metrics": metrics[0], "systems": metrics[1],
                      "as_of_range": f"{first}..{last}"}
        )

    @dg.asset(
        **per_trading_day(partitions),
        group_name=GROUP,
        kinds={"parquet", "polars"},
        deps=[
            dg.AssetDep(
                "metric_day_stats",
                partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-LOOKBACK_SESSIONS),
            ),
            "systems",
            "incidents",
            "changes",
        ],
        description=(
            "One row per system in service and as-of day: metric levels, baselines, trends and "
            "limits; incident history of the system, its dependencies and its peers; changes in "
            "the label window; calendar and inventory. Only data before the day's cutoff."
        ),
        check_specs=[
            dg.AssetCheckSpec(ROWS_CHECK, asset="system_day_features", blocking=True),
            dg.AssetCheckSpec(FINITE_CHECK, asset="system_day_features", blocking=True),
            dg.AssetCheckSpec(FAMILY_CHECK, asset="system_day_features", blocking=True),
        ],
    )
    def system_day_features(context: dg.AssetExecutionContext, failcast: FailcastResource) -> Iterator:
        settings = failcast.settings
        first, last = partition_dates(context)
        warehouse = settings.warehouse()
        with warehouse.lake_writer() as con:
            summary = build_and_write_features(
                con, warehouse.lake, settings.calendar, first, last,
                on_chunk=lambda done, total: context.log.info(f"features: chunk {done}/{total}"),
            )
            checks = _feature_checks(context, con, settings.calendar, summary,
                                     settings.calendar.sessions(first, last))
        features = summary.features
        nulls = pl.DataFrame(
            {"feature": features,
             "null_share": [summary.null_counts[c] / max(summary.rows, 1) for c in features]}
        ).sort("null_share", descending=True)
        latest = summary.latest
        preview_columns = ["system_id", "as_of", *features[:12]]
        yield dg.MaterializeResult(
            metadata={
                "dagster/row_count": summary.rows,
                "features": len(features),
                "systems_per_day": latest.height,
                "as_of_range": f"{first}..{last}",
                "null_shares": markdown_table(nulls, max_rows=15),
                "preview": markdown_table(latest.select(preview_columns), max_rows=10),
            }
        )
        yield from checks

    return [metric_day_stats, system_day_features]
