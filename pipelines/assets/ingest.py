"""Ingest assets: the trading calendar, the inventory, the case library, changes and metrics."""


import datetime as dt
from collections.abc import Iterator

import dagster as dg
import polars as pl

from features.feeds import FeedStatus, feed_status
from features.ingest import load_metrics, load_source_tables, newest_sample, write_trading_calendar
from pipelines.metadata import markdown_table
from pipelines.partitions import per_trading_day
from pipelines.resources import FailcastResource
from pipelines.run_tags import refusal_severity

GROUP = "ingest"
QUARANTINE_CHECK = "quarantine_share_within_limit"
FEEDS_CHECK = "source_feeds_fresh"
CALENDAR_CHECK = "calendar_covers_next_30_days"
CALENDAR_WARN_DAYS = 30


def partition_dates(context: dg.AssetExecutionContext) -> tuple[dt.date, dt.date]:
    """First and last as-of day of the run: one partition, or a single-run backfill range."""
    keys = context.partition_key_range
    return dt.date.fromisoformat(keys.start), dt.date.fromisoformat(keys.end)


def _quarantine_examples(con, table: str, as_of: tuple[dt.date, dt.date] | None = None) -> pl.DataFrame:
    where = "table_name = ?" + (" AND as_of BETWEEN ? AND ?" if as_of else "")
    params = [table, *(as_of or ())]
    return con.sql(
        "SELECT reason, column_name, count(*) AS rows, any_value(source_file) AS example_file, "  # noqa: S608
        f"min(\"row\") AS example_row, any_value(raw_value) AS example_value FROM quarantine WHERE {where} "
        "GROUP BY ALL ORDER BY rows DESC",
        params=params,
    ).pl()


def _share_check(asset: str, share: float, limit: float, rejected: int, read: int) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name=QUARANTINE_CHECK,
        passed=share <= limit,
        metadata={"rejected_rows": rejected, "rows_read": read, "share": share, "limit": limit},
        description=(
            f"{rejected} of {read} rows quarantined ({share:.2%}); publishing stops above {limit:.2%}"
        ),
    )


def _feeds_check(context: dg.AssetExecutionContext, feeds: list[FeedStatus]) -> dg.AssetCheckResult:
    stale = [f.message for f in feeds if f.stale]
    return dg.AssetCheckResult(
        asset_key="metrics",
        check_name=FEEDS_CHECK,
        passed=not stale,
        severity=refusal_severity(context),
        metadata={f.feed: f.message for f in feeds},
        description="; ".join(stale) if stale else "Every feed of the source is moving.",
    )


def calendar_coverage(calendar, today: dt.date) -> dg.AssetCheckResult:
    """Warn a month before the trading calendar runs out (XSHG's recorded holidays end 2026)."""
    coverage = calendar.future_coverage_days(today)
    return dg.AssetCheckResult(
        asset_key="trading_calendar",
        check_name=CALENDAR_CHECK,
        passed=coverage >= CALENDAR_WARN_DAYS,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"days_covered_after_today": coverage, "calendar_ends": calendar.last_day.isoformat()},
        description=(
            f"The {calendar.exchange} calendar ends {calendar.last_day}: add the coming dates "
            "to calendar.csv in the source before it runs out."
        ),
    )


def build_ingest_assets(partitions: dg.PartitionsDefinition) -> list:
    @dg.asset(
        group_name=GROUP,
        kinds={"parquet"},
        description="Trading sessions with their cutoffs and label windows (table trading_calendar).",
        check_specs=[dg.AssetCheckSpec(CALENDAR_CHECK, asset="trading_calendar")],
    )
    def trading_calendar(failcast: FailcastResource) -> Iterator:
        settings = failcast.settings
        calendar = settings.calendar
        first = dt.date.fromisoformat(partitions.get_first_partition_key())
        last = calendar.previous_session(calendar.last_day)
        table = calendar.session_table(first, last)
        warehouse = settings.warehouse()
        with warehouse.lake_writer() as con:
            write_trading_calendar(con, warehouse.lake, table)
        yield dg.MaterializeResult(
            metadata={
                "dagster/row_count": table.height,
                "exchange": calendar.exchange,
                "timezone": calendar.timezone,
                "cutoff": calendar.cutoff_time.strftime("%H:%M"),
                "calendar_ends": calendar.last_day.isoformat(),
                "overrides_from_calendar_csv": len(calendar.overrides),
            }
        )
        yield calendar_coverage(calendar, dt.date.today())

    table_specs = [
        dg.AssetSpec("systems", group_name=GROUP, kinds={"parquet"},
                     description="Inventory: tiers, owners, dependencies, service dates."),
        dg.AssetSpec("incidents", group_name=GROUP, kinds={"parquet"}, deps=["systems"],
                     description="The case library, instants as naive UTC."),
        dg.AssetSpec("changes", group_name=GROUP, kinds={"parquet"}, deps=["systems"],
                     description="The change calendar; created_at says when a change was known."),
    ]

    @dg.multi_asset(
        specs=table_specs,
        check_specs=[
            dg.AssetCheckSpec(QUARANTINE_CHECK, asset=spec.key, blocking=True) for spec in table_specs
        ],
        description="Validate and load systems.csv, incidents.csv and changes.csv together.",
    )
    def source_tables(failcast: FailcastResource) -> Iterator:
        settings = failcast.settings
        source = failcast.source_files()
        warehouse = settings.warehouse()
        with warehouse.lake_writer() as con:
            results = load_source_tables(con, warehouse.lake, source)
            examples = {r.table: _quarantine_examples(con, r.table) for r in results}
        for r in results:
            yield dg.MaterializeResult(
                asset_key=r.table,
                metadata={
                    "dagster/row_count": r.rows_loaded,
                    "source_file": r.file or "(none: optional file absent)",
                    "rows_read": r.rows_read,
                    "rows_rejected": r.rows_rejected,
                    "values_dropped": r.values_dropped,
                    "rows_kept_for_review": r.rows_flagged,
                    "quarantine": markdown_table(examples[r.table]),
                },
            )
        for r in results:
            yield _share_check(r.table, r.reject_share, settings.quarantine_max_share,
                               r.rows_rejected, r.rows_read)

    @dg.asset(
        **per_trading_day(partitions),
        group_name=GROUP,
        kinds={"parquet"},
        deps=["systems", "incidents", "changes"],
        description=(
            "Metric samples of each as-of day: [cutoff of the previous session, cutoff of this "
            "one), read by DuckDB from the source's Parquet/CSV files. Its checks refuse a "
            "night whose feeds (metrics, incidents, changes) are stale."
        ),
        check_specs=[dg.AssetCheckSpec(QUARANTINE_CHECK, asset="metrics", blocking=True),
                     dg.AssetCheckSpec(FEEDS_CHECK, asset="metrics", blocking=True)],
    )
    def metrics(context: dg.AssetExecutionContext, failcast: FailcastResource) -> Iterator:
        settings = failcast.settings
        first, last = partition_dates(context)
        warehouse = settings.warehouse()
        with warehouse.lake_writer() as con:
            source = failcast.source_files()
            load = load_metrics(
                con, warehouse.lake, source, settings.calendar, first, last,
                on_chunk=lambda done, total: context.log.info(f"metrics: {done}/{total} sessions"),
            )
            examples = _quarantine_examples(con, "metrics", (first, last))
            # A backfill's range is judged by its newest day: the night it would publish.
            feeds = feed_status(
                con, settings.calendar, last, settings.max_feed_age_days,
                newest_in_source=lambda since, before: newest_sample(con, source, since, before))
        context.log.info(
            f"metrics {first}..{last}: {load.rows_loaded:,} samples loaded, "
            f"{load.rows_rejected:,} quarantined, {load.duplicates_dropped:,} duplicates dropped"
        )
        yield dg.MaterializeResult(
            metadata={
                "dagster/row_count": load.rows_loaded,
                "rows_read": load.rows_read,
                "rows_rejected": load.rows_rejected,
                "duplicates_dropped": load.duplicates_dropped,
                "undated_rows_rejected": load.unplaced_rejected,
                "as_of_range": f"{first}..{last}",
                "quarantine": markdown_table(examples),
            }
        )
        yield _share_check("metrics", load.reject_share, settings.quarantine_max_share,
                           load.rows_rejected, load.rows_read)
        yield _feeds_check(context, feeds)

    return [trading_calendar, source_tables, metrics]
