"""Publish assets: score the day (staged), write the CAB's files, publish the table.

Write, audit, publish: ``scored_systems`` stages the day and its blocking checks look at it;
only when they pass does ``change_review`` write the files from the staged day, and then
``risk_scores`` replace the day in the published table, the publication point. Files first:
a run killed between the two leaves the table as it was (a rerun completes it), never a day
the table serves without its page. A bad night leaves yesterday's publication as it was.
"""

import datetime as dt
import json
from collections.abc import Iterator

import dagster as dg
import polars as pl

from features.build import active_system_days
from features.data_status import NO_TELEMETRY, data_status, missing_share, with_stale_feeds
from features.errors import DataError
from features.feeds import METRICS, feed_status
from features.ingest import newest_sample
from models.drift import MIN_CURRENT_ROWS, drift_table
from models.lifecycle import PROMOTE, REFRESH, champion_age
from models.registry import CHAMPION, FALLBACK
from models.report import render_change_review
from models.scoring import (
    STAGING,
    change_entries,
    publish_day,
    read_scores,
    score_day,
    stage_day,
)
from pipelines.assets.ingest import partition_dates
from pipelines.metadata import markdown_table
from pipelines.mlflow_resource import MlflowResource
from pipelines.partitions import per_trading_day
from pipelines.resources import FailcastResource
from pipelines.run_tags import refusal_severity

GROUP = "publish"
ROWS_CHECK = "one_score_per_active_system"
PROBABILITY_CHECK = "risk_is_a_probability"
CHAMPION_CHECK = "champion_beats_baselines"
DRIFT_CHECK = "features_not_drifted"
TELEMETRY_CHECK = "telemetry_across_estate"
AGE_CHECK = "champion_not_stale"
REFERENCE_SESSIONS = 60
DRIFT_TABLE = """
CREATE TABLE IF NOT EXISTS feature_drift (
    as_of DATE, feature VARCHAR, psi DOUBLE, status VARCHAR, model_version VARCHAR
)
"""


def _drift(con, calendar, as_of, model, trained_through: str | None) -> pl.DataFrame:
    """PSI of the model's features: the day (pooled with the days before it on a small estate)
    against the champion's last training sessions."""
    import datetime as dt

    from models.dataset import read_features

    if not trained_through:
        return pl.DataFrame(schema={"feature": pl.String, "psi": pl.Float64, "status": pl.String})
    last = dt.date.fromisoformat(trained_through)
    first = calendar.sessions_back(calendar.last_session_on_or_before(last), REFERENCE_SESSIONS)
    reference = read_features(con, first, last, model.features)
    current = read_features(con, as_of, as_of, model.features)
    if current.height and current.height < MIN_CURRENT_ROWS:
        back = min(20, -(-MIN_CURRENT_ROWS // current.height) - 1)
        current = read_features(con, calendar.sessions_back(as_of, back), as_of, model.features)
    return drift_table(reference, current, model.features)


def _telemetry_check(context, days: list[tuple], limit: float) -> dg.AssetCheckResult:
    """The estate-wide rule: refuse a night on which too many systems that normally send
    metrics sent none."""
    worst = None
    for as_of, status in days:
        silent, senders, share = missing_share(status)
        if share > limit and (worst is None or share > worst[3]):
            worst = (as_of, silent, senders, share, status)
    if worst is None:
        shares = {str(d): round(missing_share(s)[2], 4) for d, s in days}
        return dg.AssetCheckResult(
            check_name=TELEMETRY_CHECK, passed=True, metadata={"missing_share": shares},
            description=f"At most {limit:.0%} of the systems that send metrics are silent.")
    as_of, silent, senders, share, status = worst
    names = status.filter(pl.col("data_status") == NO_TELEMETRY)["system_id"].to_list()
    listed = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return dg.AssetCheckResult(
        check_name=TELEMETRY_CHECK,
        passed=False,
        severity=refusal_severity(context),
        metadata={"as_of": str(as_of), "silent_systems": silent, "systems_sending_metrics": senders,
                  "missing_share": share, "limit": limit},
        description=(f"{silent} of {senders} systems that normally send metrics sent none for "
                     f"as-of {as_of} ({share:.0%}, limit {limit:.0%}): {listed}"),
    )


def _gate_check(served) -> dg.AssetCheckResult:
    """A champion scores only if the gate put it there; a hand-moved alias blocks. While no
    model has passed, the fallback baseline scores, with a warning."""
    tags, registered = served.tags, served.registered
    if registered.alias == FALLBACK:
        return dg.AssetCheckResult(
            check_name=CHAMPION_CHECK, passed=False, severity=dg.AssetCheckSeverity.WARN,
            metadata={"model": f"{registered.name} v{registered.version}"},
            description=f"No model has passed the gate yet: {registered.name} scores, labelled "
                        "as such, until one does.")
    passed = (tags.get("role") == CHAMPION and tags.get("gate.action") in (PROMOTE, REFRESH)) \
        or tags.get("beats_baselines") == "True"  # versions registered before the policy
    return dg.AssetCheckResult(
        check_name=CHAMPION_CHECK, passed=passed,
        metadata={"model_version": registered.version,
                  "decision": tags.get("gate.reason", tags.get("decision", "unknown"))[:2000]},
        description="The scoring model beat the baselines on its held-out days.",
    )


def _age_check(context, age: int | None, limits: tuple[int, int], served) -> dg.AssetCheckResult:
    """Trading days since the serving model's newest label: a warning past the first limit,
    a refused publication past the second (unless the operator allows stale publication)."""
    warn, block = limits
    stale = age is not None and age > warn
    return dg.AssetCheckResult(
        check_name=AGE_CHECK,
        passed=not stale,
        severity=refusal_severity(context) if age is not None and age > block
        else dg.AssetCheckSeverity.WARN,
        metadata={"champion_age_sessions": age, "warn_after": warn, "block_after": block,
                  "trained_through": str(served.trained_through)},
        description=(f"{served.registered.name} v{served.registered.version} learned labels up to "
                     f"{served.trained_through}, {age} trading days ago (warn after {warn}, block "
                     f"after {block}: [model] champion_warn_age, champion_max_age)."),
    )


def build_publish_assets(partitions: dg.PartitionsDefinition) -> list:
    common = {**per_trading_day(partitions), "group_name": GROUP}

    @dg.asset(
        **common,
        kinds={"lightgbm", "duckdb"},
        deps=["system_day_features", "failure_model"],
        description=(
            "The champion's scores of each system in service, staged for checks: calibrated "
            "risk, tier, rank, SHAP reasons, similar past incidents, changes in the window."
        ),
        check_specs=[
            dg.AssetCheckSpec(ROWS_CHECK, asset="scored_systems", blocking=True),
            dg.AssetCheckSpec(PROBABILITY_CHECK, asset="scored_systems", blocking=True),
            dg.AssetCheckSpec(CHAMPION_CHECK, asset="scored_systems", blocking=True),
            dg.AssetCheckSpec(DRIFT_CHECK, asset="scored_systems"),
            dg.AssetCheckSpec(TELEMETRY_CHECK, asset="scored_systems", blocking=True),
            dg.AssetCheckSpec(AGE_CHECK, asset="scored_systems", blocking=True),
        ],
    )
    def scored_systems(context: dg.AssetExecutionContext, failcast: FailcastResource,
                       mlflow: MlflowResource) -> Iterator:
        settings = failcast.settings
        calendar = settings.calendar
        registry = mlflow.registry()
        served = registry.served(CHAMPION) or registry.served(FALLBACK)
        if served is None:
            raise DataError(f"no model has the alias '{CHAMPION}' (nor '{FALLBACK}') in "
                            f"{settings.model_name!r} yet: train one (failcast train)")
        model, registered, tags = served.scorer, served.registered, served.tags
        first, last = partition_dates(context)
        age = champion_age(calendar, served.trained_through, last) if served.trained_through else None
        frames, drifts, silent = [], [], []
        with settings.warehouse().writer() as con:
            con.execute(DRIFT_TABLE)
            for as_of in calendar.sessions(first, last):
                status = data_status(con, calendar, as_of)
                stale = [f.message for f in feed_status(con, calendar, as_of,
                                                        settings.max_feed_age_days)
                         if f.stale and f.feed != METRICS]
                status = with_stale_feeds(status, stale)
                silent.append((as_of, status))
                frame = score_day(con, calendar, as_of, model, registered, settings.tier_thresholds,
                                  status=status)
                stage_day(con, frame, as_of)
                drift = _drift(con, calendar, as_of, model, tags.get("trained_through"))
                con.execute("DELETE FROM feature_drift WHERE as_of = ?", [as_of])
                if drift.height:
                    con.register("drift_rows", drift.with_columns(
                        as_of=pl.lit(as_of), model_version=pl.lit(registered.version)))
                    con.execute("INSERT INTO feature_drift BY NAME SELECT * FROM drift_rows")
                    con.unregister("drift_rows")
                frames.append(frame)
                drifts.append(drift)
        scores = pl.concat(frames)
        latest = frames[-1]
        heavy = [d.filter(pl.col("status") == "heavy")["feature"].to_list() for d in drifts]
        drifted = sorted({f for day in heavy for f in day})
        tiers = latest.group_by("tier").len().sort("len", descending=True)
        yield dg.MaterializeResult(metadata={
            "dagster/row_count": scores.height,
            "model": f"{registered.name} v{registered.version} ({registered.alias})",
            "trained_through": str(served.trained_through),
            "champion_age_sessions": age,
            "mlflow_run": dg.MetadataValue.url(registry.run_url(registered.run_id,
                                                                registry.experiment_id())),
            "systems_per_tier": markdown_table(tiers.rename({"len": "systems"})),
            "riskiest": markdown_table(latest.select("rank", "system_id", "risk", "tier").head(10)),
            "data_status": markdown_table(
                latest.group_by("data_status").len().sort("data_status").rename({"len": "systems"})),
            "systems_not_ok": markdown_table(
                latest.filter(pl.col("data_status") != "ok").select("system_id", "data_status",
                                                                    "data_notes")),
            "drifted_features": ", ".join(drifted) or "none",
        })
        with settings.warehouse().reader() as con:
            active = active_system_days(con, calendar.sessions(first, last))
        yield dg.AssetCheckResult(
            check_name=ROWS_CHECK,
            passed=scores.height == active and scores.select("system_id", "as_of").n_unique() == scores.height,
            metadata={"scores": scores.height, "active_system_days": active},
        )
        yield dg.AssetCheckResult(
            check_name=PROBABILITY_CHECK,
            passed=bool(scores["risk"].is_between(0, 1).all() and scores["risk"].is_not_null().all()),
        )
        yield _gate_check(served)
        yield _telemetry_check(context, silent, settings.max_missing_share)
        yield _age_check(context, age, settings.champion_age_limits, served)
        yield dg.AssetCheckResult(
            check_name=DRIFT_CHECK,
            passed=not drifted,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"heavily_drifted": ", ".join(drifted) or "none"},
            description="Heavy drift (PSI > 0.25) from the champion's training data: retrain early.",
        )

    @dg.asset(
        **common,
        kinds={"duckdb"},
        deps=["change_review"],
        description=(
            "The published table risk_scores: the checked day replaces that day, atomically, "
            "after its files are in place (the publication point)."
        ),
    )
    def risk_scores(context: dg.AssetExecutionContext, failcast: FailcastResource) -> dg.MaterializeResult:
        settings = failcast.settings
        first, last = partition_dates(context)
        published = 0
        with settings.warehouse().writer() as con:
            for as_of in settings.calendar.sessions(first, last):
                published += publish_day(con, as_of)
        return dg.MaterializeResult(metadata={"dagster/row_count": published,
                                              "table": f"{settings.warehouse_path}:risk_scores"})

    @dg.asset(
        **common,
        kinds={"html", "parquet"},
        deps=["scored_systems"],
        description=(
            "Files for the CAB under published/<target_date>/, written from the checked day "
            "before the table: risk_scores.parquet and .csv, and change_review.html with every "
            "scheduled change (also on systems out of service) and its recommended action."
        ),
    )
    def change_review(context: dg.AssetExecutionContext, failcast: FailcastResource,
                      mlflow: MlflowResource) -> dg.MaterializeResult:
        from models.publish import publish_files

        settings = failcast.settings
        calendar = settings.calendar
        registry = mlflow.registry()
        first, last = partition_dates(context)
        written, actions = [], {}
        with settings.warehouse().reader() as con:
            systems = con.sql("SELECT system_id, name, category, owner FROM systems").pl()
            for as_of in calendar.sessions(first, last):
                scores = read_scores(con, STAGING, as_of)
                drift = con.sql("SELECT feature, psi, status FROM feature_drift WHERE as_of = ?",
                                params=[as_of]).pl()
                window = calendar.label_window(as_of)
                run = scores["mlflow_run_id"][0]
                tiers = dict(zip(scores["system_id"].to_list(), scores["tier"].to_list(),
                                 strict=True))
                unscored = [e for e in change_entries(con, calendar, as_of, tiers)
                            if e["system_id"] not in tiers]
                through = registry.version_tags(scores["model_version"][0]).get("trained_through")
                html = render_change_review(
                    scores, systems, cutoff=window.start.strftime("%Y-%m-%d %H:%M"),
                    target_cutoff=window.end.strftime("%Y-%m-%d %H:%M"),
                    timezone=calendar.timezone, thresholds=settings.tier_thresholds, drift=drift,
                    mlflow_url=registry.run_url(run, registry.experiment_id()),
                    feeds=feed_status(con, calendar, as_of, settings.max_feed_age_days,
                                      newest_in_source=lambda since, before: newest_sample(
                                          con, failcast.source_files(), since, before)),
                    unscored_changes=unscored,
                    trained_through=through,
                    model_age=champion_age(calendar, dt.date.fromisoformat(through), as_of)
                    if through else None,
                    age_warn=settings.champion_age_limits[0])
                files = publish_files(settings.published_dir, scores, html)
                written.append(files["html"])
                scored = [c for cs in scores["scheduled_changes"].to_list()
                          for c in json.loads(cs or "[]")]
                for change in scored + unscored:
                    actions[change["action"]] = actions.get(change["action"], 0) + 1
        return dg.MaterializeResult(metadata={
            "report": dg.MetadataValue.path(str(written[-1])),
            "reports_written": len(written),
            "changes_by_action": markdown_table(pl.DataFrame(
                {"action": list(actions), "changes": list(actions.values())},
                schema={"action": pl.String, "changes": pl.Int64})),
        })

    return [scored_systems, change_review, risk_scores]
