"""The Dagster definitions load, and their shape changes only on purpose."""

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import textwrap

import dagster as dg
import polars as pl
import pytest

from pipelines.definitions import build_definitions
from pipelines.partitions import PARTITIONS_PER_RUN, partitions_start
from pipelines.settings import load_settings


@pytest.fixture(scope="module")
def defs(tiny_estate, tmp_path_factory):
    settings = load_settings(tiny_estate, tmp_path_factory.mktemp("home"), env={})
    return build_definitions(settings)


def test_asset_graph_snapshot(defs):
    graph = defs.resolve_asset_graph()
    shape = {
        key.to_user_string(): (
            graph.get(key).group_name,
            type(graph.get(key).partitions_def).__name__ if graph.get(key).partitions_def else None,
        )
        for key in graph.get_all_asset_keys()
    }
    assert shape == {
        "trading_calendar": ("ingest", None),
        "systems": ("ingest", None),
        "incidents": ("ingest", None),
        "changes": ("ingest", None),
        "metrics": ("ingest", "DailyPartitionsDefinition"),
        "metric_day_stats": ("features", "DailyPartitionsDefinition"),
        "system_day_features": ("features", "DailyPartitionsDefinition"),
        "training_set": ("model", None),
        "failure_model": ("model", None),
        "backtest": ("model", None),
        "scored_systems": ("publish", "DailyPartitionsDefinition"),
        "risk_scores": ("publish", "DailyPartitionsDefinition"),
        "change_review": ("publish", "DailyPartitionsDefinition"),
        "track_record": ("track_record", None),
        "backtest_track_record": ("track_record", None),
    }
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    assert ("metrics", "quarantine_share_within_limit") in checks
    assert ("trading_calendar", "calendar_covers_next_30_days") in checks
    assert {("system_day_features", name) for name in (
        "one_row_per_active_system", "no_infinite_values", "no_metric_family_gone_empty")} <= checks
    assert {("metrics", "source_feeds_fresh"), ("scored_systems", "telemetry_across_estate"),
            ("risk_scores", "freshness_check")} <= checks


def test_risk_scores_freshness_is_due_after_the_nightly_in_the_local_timezone(defs):
    (check,) = [c for c in defs.asset_checks if "freshness_check" in str(c.check_keys)]
    params = check.check_specs_by_output_name
    spec = next(iter(params.values()))
    assert spec.asset_key.to_user_string() == "risk_scores"
    assert spec.metadata["dagster/freshness_params"].value == {
        "deadline_cron": "30 19 * * 1-5", "timezone": "Asia/Shanghai"}
    sensor = defs.resolve_sensor_def("risk_scores_freshness_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING


def test_jobs_schedules_and_sensor(defs):
    assert {j.name for j in defs.jobs} >= {"ingest_job", "features_job", "nightly_job",
                                           "retrain_job", "backtest_job", "track_record_job"}
    nightly = defs.resolve_schedule_def("nightly_schedule")
    assert nightly.cron_schedule == "30 18 * * *"
    assert nightly.execution_timezone == "Asia/Shanghai"
    assert defs.resolve_sensor_def("source_data_sensor").default_status == dg.DefaultSensorStatus.STOPPED


@pytest.mark.parametrize(("when", "expected"), [
    (dt.datetime(2025, 7, 4, 10, 30, tzinfo=dt.UTC), "2025-07-04"),  # Friday 18:30 Shanghai
    (dt.datetime(2025, 7, 5, 10, 30, tzinfo=dt.UTC), None),  # Saturday: skipped
])
def test_nightly_schedule_targets_the_day_on_trading_days_only(defs, when, expected):
    schedule = defs.resolve_schedule_def("nightly_schedule")
    with dg.build_schedule_context(scheduled_execution_time=when,
                                   repository_def=defs.get_repository_def()) as context:
        result = schedule.evaluate_tick(context)
    keys = [r.partition_key for r in result.run_requests or []]
    assert keys == ([expected] if expected else [])


def test_partitions_are_trading_days_only(defs):
    metrics = defs.resolve_assets_def("metrics")
    keys = metrics.partitions_def.get_partition_keys(
        current_time=dt.datetime(2025, 8, 1, 11, tzinfo=dt.UTC))  # 19:00 in Shanghai
    assert keys[0] == "2025-06-03"  # the estate's [pipeline] start
    assert "2025-06-07" not in keys  # a Saturday
    assert "2025-06-02" not in keys  # before start (and Dragon Boat Festival)
    assert keys[-1] == "2025-08-01"  # the evening run's partition exists during its day


def test_the_retrain_schedule_follows_the_policys_cadence(defs):
    schedule = defs.resolve_schedule_def("retrain_schedule")
    saturday = dt.datetime(2025, 7, 5, 6, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    with dg.build_schedule_context(scheduled_execution_time=saturday,
                                   repository_def=defs.get_repository_def()) as context:
        result = schedule.evaluate_tick(context)
    (request,) = result.run_requests
    assert request.run_config["ops"]["training_set"]["config"]["as_of"] == "2025-07-04"


IMPORT_DEFINITIONS = textwrap.dedent("""
    import json, os, sys
    source = os.environ["FAILCAST_SOURCE"]
    touched = []
    def hook(event, args):
        if event in ("open", "os.listdir", "os.scandir") and args and str(args[0]).startswith(source):
            touched.append(str(args[0]))
    sys.addaudithook(hook)
    import pipelines.definitions as module
    on_import = list(touched)
    module.defs()  # Dagster loading the code location: now the source is read
    print(json.dumps({"on_import": on_import, "on_load": touched[len(on_import):]}))
""")


def test_importing_the_definitions_reads_nothing_from_the_source(tiny_estate, tmp_path):
    env = {**os.environ, "FAILCAST_SOURCE": str(tiny_estate), "FAILCAST_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", IMPORT_DEFINITIONS], env=env, check=True,
                         capture_output=True, text=True).stdout
    touched = json.loads(out.strip().splitlines()[-1])
    assert touched["on_import"] == []
    assert any(path.endswith("failcast.toml") for path in touched["on_load"])  # the hook works


def test_partitions_start_at_the_sources_first_record_without_a_start(tiny_estate, tmp_path):
    source = tmp_path / "source"
    shutil.copytree(tiny_estate, source)
    toml = (source / "failcast.toml").read_text()
    (source / "failcast.toml").write_text(toml.split("[pipeline]")[0])
    settings = load_settings(source, tmp_path / "home", env={})
    assert settings.start is None
    first_incident = min(pl.read_csv(source / "incidents.csv")["opened_at"].str.slice(0, 10))
    keys = build_definitions(settings).resolve_assets_def("metrics").partitions_def
    expected = settings.calendar.sessions(dt.date.fromisoformat(first_incident),
                                          settings.calendar.last_day)[0]
    assert keys.get_first_partition_key() == expected.isoformat()
    # Fixed: the day the definitions are built does not move it.
    for today in (dt.date(2025, 8, 1), dt.date(2026, 5, 4)):
        assert partitions_start(settings.calendar, None, expected, today) == expected


def test_trading_day_backfills_run_a_quarter_of_days_per_run(defs):
    for name in ("metrics", "metric_day_stats", "system_day_features", "scored_systems"):
        policy = defs.resolve_assets_def(name).backfill_policy
        assert policy.max_partitions_per_run == PARTITIONS_PER_RUN


@pytest.mark.parametrize(("command", "job"), [
    (["ingest", "--date", "2025-07-01"], "ingest_job"),
    (["nightly", "--date", "2025-07-01"], "nightly_job"),
    (["train"], "retrain_job"),
])
def test_each_command_builds_one_definitions_object_from_its_source(
        tiny_estate, tmp_path, monkeypatch, command, job):
    import pipelines.definitions
    import pipelines.runner
    from pipelines.cli import main

    built, ran = [], []
    real = pipelines.definitions.build_definitions
    monkeypatch.setattr(pipelines.definitions, "build_definitions",
                        lambda settings, **k: built.append(settings.source) or real(settings, **k))

    class NoRun:  # what `train` reads of a run's result: nothing materialized
        def asset_materializations_for_node(self, node):
            return []

    monkeypatch.setattr(pipelines.runner, "run_job",
                        lambda defs, name, *a, **k: ran.append(name) or NoRun())
    monkeypatch.setenv("FAILCAST_SOURCE", str(tmp_path / "elsewhere"))  # --source wins
    code = main([command[0], "--source", str(tiny_estate), "--home", str(tmp_path / "home"),
                 *command[1:]])
    assert code == 0
    assert built == [tiny_estate.resolve()] and ran == [job]
