"""Track-record assets: the published forecasts, and the backtest's, against what happened.

Both are unpartitioned: each run rebuilds the record of every night the table holds. The
published one refreshes ``forecast_outcomes`` in the warehouse; the backtest's is a page only,
labelled as a backtest, and never mixes with the published record.
"""

import dagster as dg

from models import track_record as tr
from pipelines.metadata import markdown_table
from pipelines.resources import FailcastResource

GROUP = "track_record"


def _metadata(record: tr.TrackRecord, files: dict) -> dict:
    metadata = {"report": dg.MetadataValue.path(str(files["html"])),
                "nights": record.nights, "nights_with_outcome": record.nights_known,
                "watch_list_size": record.watch_list}
    if record.nights_known:
        metadata.update({
            "incidents_foreseen": record.incidents["foreseen"],
            "incidents_missed": record.incidents["missed"],
            "watch_list_precision": record.watch["precision"],
            "pr_auc": record.headline["pr_auc"],
            "brier": record.headline["brier"],
            "by_category": markdown_table(record.by_category),
        })
    return metadata


@dg.asset(
    group_name=GROUP,
    kinds={"duckdb", "html"},
    deps=["risk_scores"],
    description=(
        "forecast_outcomes: every published score (as published) joined with what happened in "
        "its window, and the track-record page (foreseen vs missed at the watch-list size, "
        "watch-list precision, calibration, changes by recommended action) under "
        "published/track-record/."
    ),
)
def track_record(failcast: FailcastResource) -> dg.MaterializeResult:
    settings = failcast.settings
    with settings.warehouse().reader() as con:
        scores = tr.published_scores(con)
        record, outcomes = tr.track_record(
            con, settings.calendar, scores, max_severity=settings.max_severity,
            thresholds=settings.tier_thresholds, watch_list=settings.watch_list_size,
            known_through=tr.data_through(con), kind="published",
            label=f"risk_scores in {settings.warehouse_path}")
    with settings.warehouse().writer() as con:
        rows = tr.save_outcomes(con, outcomes)
    files = tr.write_report(settings.published_dir / "track-record", "track_record", record, outcomes)
    return dg.MaterializeResult(metadata={"dagster/row_count": rows, **_metadata(record, files)})


@dg.asset(
    group_name=GROUP,
    kinds={"html"},
    deps=["backtest"],
    description=(
        "The track record the walk-forward backtest (table backtest_scores) would have earned, "
        "labelled as a backtest: what a new site can read before its first published night."
    ),
)
def backtest_track_record(failcast: FailcastResource) -> dg.MaterializeResult:
    from features.errors import DataError
    from features.warehouse import table_exists

    settings = failcast.settings
    with settings.warehouse().reader() as con:
        if not table_exists(con, "backtest_scores"):
            raise DataError("no backtest in the warehouse yet: materialize backtest first")
        frame = con.sql("SELECT * FROM backtest_scores").pl()
        scores = tr.scores_from_backtest(frame, settings.tier_thresholds)
        record, outcomes = tr.track_record(
            con, settings.calendar, scores, max_severity=settings.max_severity,
            thresholds=settings.tier_thresholds, watch_list=settings.watch_list_size,
            known_through=tr.backtest_known_through(frame), kind="backtest",
            label="table backtest_scores (the backtest asset)")
    files = tr.write_report(settings.home / "backtest", "backtest_track_record", record, outcomes)
    return dg.MaterializeResult(metadata=_metadata(record, files))


track_record_assets = [track_record, backtest_track_record]
