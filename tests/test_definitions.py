"""The Dagster definitions load, and their shape changes only on purpose."""

import datetime as dt

import pytest

from pipelines.definitions import build_definitions
from pipelines.settings import load_settings


@pytest.fixture(scope="module")
def defs(tiny_estate, tmp_path_factory):
    settings = load_settings(tiny_estate, tmp_path_factory.mktemp("home"), env={})
    return build_definitions(settings, today=dt.date(2025, 8, 1))


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
    }
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    assert ("metrics", "quarantine_share_within_limit") in checks
    assert ("trading_calendar", "calendar_covers_next_30_days") in checks
    assert {("system_day_features", name) for name in (
        "one_row_per_active_system", "no_infinite_values", "no_feature_entirely_null")} <= checks


def test_partitions_are_trading_days_only(defs):
    metrics = defs.resolve_assets_def("metrics")
    keys = metrics.partitions_def.get_partition_keys(
        current_time=dt.datetime(2025, 8, 1, 11, tzinfo=dt.UTC))  # 19:00 in Shanghai
    assert keys[0] == "2025-06-03"  # the estate's [pipeline] start
    assert "2025-06-07" not in keys  # a Saturday
    assert "2025-06-02" not in keys  # before start (and Dragon Boat Festival)
    assert keys[-1] == "2025-08-01"  # the evening run's partition exists during its day
