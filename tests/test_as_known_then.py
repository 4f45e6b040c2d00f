"""Features of a night equal the features computed later from the full history.

For several as-of days (a window over the National Day holiday, a Friday, a Monday with an
incident still open at the cutoff), the source is cut back to what was known at the day's cutoff
(``features.snapshot``) and the day's features are built from that snapshot alone; they must
equal, column for column, the same day's features built from the complete, later history.
Point-in-time tests elsewhere change the future and check the past; this one catches what they
cannot: data that is filled in later (a resolution time, a change's outcome).
"""

import datetime as dt
import shutil

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from features.build import build_and_write_features, build_features
from features.ingest import load_metrics, load_source_tables
from features.metric_features import LOOKBACK_SESSIONS
from features.metric_stats import build_metric_day_stats
from features.snapshot import snapshot_source
from features.source import Source
from features.trading_time import TradingCalendar
from features.warehouse import Warehouse

CAL = TradingCalendar("XSHG", "Asia/Shanghai")
START, END = dt.date(2025, 8, 25), dt.date(2025, 10, 31)
DAYS = [
    dt.date(2025, 9, 30),   # its window runs over the holiday to the cutoff of 2025-10-09
    dt.date(2025, 10, 10),  # a Friday
    dt.date(2025, 10, 20),  # a Monday; OPEN-1 is still open at its cutoff
]
OPEN = "OPEN-1,{system},2025-10-17T10:00:00,2025-10-23T09:00:00,2,Software,slow queries,,"
LATE_OUTCOME = ("CHG-LATE,{system},2025-10-20T20:00:00,2025-10-20T22:00:00,2025-10-14T10:00:00,"
                "release,high,failed,an upgrade that failed after the cutoff")


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """An estate over the National Day holiday, with an incident open across a cutoff and a
    change whose failure was recorded after the cutoff."""
    from features.demo_estate.generate import generate_estate

    root = tmp_path_factory.mktemp("known")
    source = root / "source"
    generate_estate(source, systems=12, start=START, end=END, seed=5, minutes_per_sample=60,
                    metrics=4, progress=False)
    system = pl.read_csv(source / "systems.csv")["system_id"][0]
    with (source / "incidents.csv").open("a") as handle:
        handle.write(OPEN.format(system=system) + "\n")
    columns = pl.read_csv(source / "changes.csv", n_rows=0).columns
    assert columns[:9] == ["change_id", "system_id", "scheduled_start", "scheduled_end",
                           "created_at", "change_type", "risk_level", "status", "description"]
    with (source / "changes.csv").open("a") as handle:
        handle.write(LATE_OUTCOME.format(system=system) + "," * (len(columns) - 9) + "\n")
    return root, source, system


def _features(source, home, first, last, days):
    """Ingest ``source`` for ``first..last`` and build the features of ``days``."""
    warehouse = Warehouse(home / "wh.duckdb", timezone=CAL.timezone)
    with warehouse.lake_writer() as con:
        load_source_tables(con, warehouse.lake, Source.open(source))
        load_metrics(con, warehouse.lake, Source.open(source), CAL, first, last)
        build_metric_day_stats(con, warehouse.lake, CAL.session_table(first, last))
        if len(days) == 1:
            return build_features(con, CAL, days[0], days[0])
        build_and_write_features(con, warehouse.lake, CAL, first, last)
        return con.sql("SELECT * FROM system_day_features WHERE list_contains(?, as_of)",
                       params=[days]).pl()


def test_features_of_each_night_equal_those_from_the_full_history(history):
    root, source, system = history
    first = CAL.sessions(START, END)[0]
    full = _features(source, root / "full", first, CAL.sessions(START, END)[-1], DAYS)
    for day in DAYS:
        snapshot = snapshot_source(source, root / f"then-{day}", CAL.cutoff(day), CAL.timezone)
        lookback = max(first, CAL.sessions_back(day, LOOKBACK_SESSIONS + 1))
        night = _features(snapshot.out, root / f"night-{day}", lookback, day, [day])
        later = full.filter(pl.col("as_of") == day)
        shared = [c for c in night.columns if c in later.columns]
        assert sum("__" in c for c in shared) > 40 and "inc_open_at_cutoff" in shared
        assert set(night.columns) <= set(later.columns), "a feature only the night knows"
        extra = [c for c in later.columns if c not in night.columns]
        # Columns the full history has only because a later day had them: empty on this day.
        assert all(later[c].null_count() == later.height for c in extra), extra
        assert_frame_equal(night.select(shared).sort("system_id"),
                           later.select(shared).sort("system_id").cast(night.select(shared).schema),
                           check_exact=False, rel_tol=1e-9, abs_tol=1e-9)
    monday = full.filter((pl.col("as_of") == DAYS[2]) & (pl.col("system_id") == system))
    assert monday["inc_open_at_cutoff"][0] >= 1  # OPEN-1 counts as open, as it did that night


def test_a_snapshot_holds_only_what_was_known(history, tmp_path):
    _, source, system = history
    cutoff = CAL.cutoff(dt.date(2025, 10, 20))
    out = snapshot_source(source, tmp_path / "then", cutoff, CAL.timezone).out
    incidents = pl.read_csv(out / "incidents.csv", infer_schema=False)
    opened = incidents["opened_at"].str.to_datetime().dt.replace_time_zone(CAL.timezone)
    assert (opened < cutoff).all()
    still_open = incidents.filter(pl.col("incident_id") == "OPEN-1")
    assert still_open["resolved_at"][0] is None
    changes = pl.read_csv(out / "changes.csv", infer_schema=False)
    assert changes.filter(pl.col("change_id") == "CHG-LATE")["status"][0] == "approved"
    metrics = pl.read_parquet(list((out / "metrics").rglob("*.parquet")))
    assert metrics["ts"].max() < cutoff.replace(tzinfo=None)
    assert (out / "systems.csv").read_bytes() == (source / "systems.csv").read_bytes()
    with pytest.raises(Exception, match="not empty"):
        snapshot_source(source, out, cutoff, CAL.timezone)
    shutil.rmtree(out)
