"""The demo estate: a realistic firm, deterministic by seed, valid by the contract."""

import datetime as dt
import hashlib

import polars as pl

from features.demo_estate.generate import generate_estate
from features.source import Source
from features.source_report import validate_source
from features.trading_time import TradingCalendar
from tests.conftest import TINY


def digest(root):
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def test_same_seed_same_estate_other_seed_other_estate(tiny_estate, tmp_path):
    again = generate_estate(tmp_path / "again", progress=False, **TINY)
    assert digest(again.out) == digest(tiny_estate)
    other = generate_estate(tmp_path / "other", progress=False, **{**TINY, "seed": 4})
    assert digest(other.out) != digest(tiny_estate)


def test_estate_meets_the_contract(tiny_estate):
    report = validate_source(Source.open(tiny_estate), TradingCalendar("XSHG", "Asia/Shanghai"), 0.01)
    assert report.usable and report.worst_share == 0


def test_estate_looks_like_a_securities_firm(tiny_estate):
    systems = pl.read_csv(tiny_estate / "systems.csv")
    assert systems.height == TINY["systems"]
    assert {"trading", "market-data", "database"} <= set(systems["category"])
    assert systems["tier"].is_between(1, 4).all()
    depends = systems["depends_on"].drop_nulls().str.split(";").explode()
    assert depends.is_in(systems["system_id"]).all()

    incidents = pl.read_csv(tiny_estate / "incidents.csv")
    assert set(incidents["severity"]) <= {1, 2, 3, 4}
    assert incidents["incident_id"].is_unique().all()
    assert incidents["title"].str.starts_with("[P").all()
    assert incidents["root_cause"].str.len_chars().min() > 10
    assert incidents["system_id"].is_in(systems["system_id"]).all()

    changes = pl.read_csv(tiny_estate / "changes.csv")
    assert set(changes["risk_level"]) <= {"low", "medium", "high"}
    assert (changes["created_at"] < changes["scheduled_start"]).all()
    saturdays = changes.filter(pl.col("change_type") == "os_patch")["scheduled_start"].str.to_datetime()
    assert (saturdays.dt.weekday() == 6).all()  # patching happens on weekends


def test_metrics_cover_every_window_with_trading_session_load(tiny_estate):
    metrics = pl.read_parquet(tiny_estate / "metrics" / "**" / "*.parquet")
    assert metrics["metric"].n_unique() == TINY["metrics"]
    first, last = metrics["ts"].min(), metrics["ts"].max()
    assert first == dt.datetime(2025, 5, 30, 18)  # the cutoff before the first as-of day
    assert last < dt.datetime(2025, 7, 31, 18)  # nothing after the last cutoff
    metrics = metrics.with_columns(pl.col("system_id", "metric").cast(pl.String))
    cpu = metrics.filter(pl.col("metric") == "cpu_pct", pl.col("system_id").str.starts_with("GW"))
    by_hour = cpu.group_by(pl.col("ts").dt.hour().alias("h")).agg(pl.col("value").mean())
    hour = dict(by_hour.iter_rows())
    assert hour[10] > 1.5 * hour[3]  # busier in the session than at night


def test_firm_scale_day_has_28_8_million_rows(tmp_path):
    """One trading day, 1,000 systems x 20 metrics x 1-minute samples (the benchmark estate)."""
    summary = generate_estate(tmp_path / "firm", systems=1000, start=dt.date(2025, 6, 10),
                              end=dt.date(2025, 6, 10), metrics=20, minutes_per_sample=1,
                              progress=False)
    expected = 1000 * 20 * 1440
    assert abs(summary.metric_rows - expected) / expected < 0.01  # gaps and drops are rare


def test_profiles_change_the_mix_and_the_operations_rhythm(tiny_estate, tmp_path):
    import pytest

    from features.errors import UsageError

    def changes(root):
        return pl.read_csv(root / "changes.csv")["change_type"].value_counts()

    def count(frame, kind):
        found = frame.filter(pl.col("change_type") == kind)
        return found["count"][0] if found.height else 0

    demo = changes(tiny_estate)
    heavy = generate_estate(tmp_path / "heavy", progress=False, profile="change-heavy", **TINY)
    assert count(changes(heavy.out), "release") > 2 * count(demo, "release")
    ops = generate_estate(tmp_path / "ops", progress=False, profile="maintenance-driven", **TINY)
    assert count(changes(ops.out), "restart") > count(demo, "restart")
    pools = pl.read_csv(ops.out / "incidents.csv")["title"].str.contains("pool (exhausted|saturated)")
    assert pools.any()  # a mechanism the demo estate does not have
    assert not pl.read_csv(tiny_estate / "incidents.csv")["title"].str.contains("pool").any()
    assert "profile maintenance-driven" in (ops.out / "failcast.toml").read_text()
    with pytest.raises(UsageError, match="change-heavy"):
        generate_estate(tmp_path / "none", progress=False, profile="nonesuch", **TINY)
