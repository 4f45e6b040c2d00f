"""Features see only data before the cutoff: change the future, and the past does not move.

Build the features of an as-of day, then add or change data after its cutoff (incidents,
metric samples, changes created later, even a later resolution time) and rebuild everything:
the day's features must be identical. Data just before the cutoff must change them.
"""

import datetime as dt
import shutil

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from features.build import build_features
from features.ingest import load_metrics, load_source_tables
from features.metric_stats import build_metric_day_stats
from features.source import Source
from features.trading_time import TradingCalendar
from features.warehouse import Warehouse

CAL = TradingCalendar("XSHG", "Asia/Shanghai")
AS_OF = dt.date(2025, 7, 18)  # a Friday: its window runs to Monday's cutoff
CUTOFF = "2025-07-18T18:00:00"


def features_of(source, home, as_of=AS_OF):
    """Ingest everything the source has, then build the features of ``as_of``."""
    warehouse = Warehouse(home / "wh.duckdb", timezone="Asia/Shanghai")
    first, last = dt.date(2025, 6, 3), dt.date(2025, 7, 31)
    with warehouse.lake_writer() as con:
        load_source_tables(con, warehouse.lake, Source.open(source))
        load_metrics(con, warehouse.lake, Source.open(source), CAL, first, last)
        build_metric_day_stats(con, warehouse.lake, CAL.session_table(first, last))
        return build_features(con, CAL, as_of, as_of)


def append(path, line):
    with path.open("a") as handle:
        handle.write(line + "\n")


@pytest.fixture
def estate(tiny_estate, tmp_path):
    copy = tmp_path / "source"
    shutil.copytree(tiny_estate, copy)
    return copy


@pytest.fixture
def before(estate, tmp_path):
    return features_of(estate, tmp_path / "before")


def _system(estate):
    systems = pl.read_csv(estate / "systems.csv")
    return systems.filter(pl.col("depends_on").is_not_null())["system_id"][0]


def test_future_data_does_not_move_past_features(estate, before, tmp_path):
    system = _system(estate)
    upstream = pl.read_csv(estate / "systems.csv").filter(pl.col("system_id") == system)["depends_on"][0].split(";")[0]
    # Incidents at and after the cutoff, on the system and its upstream.
    append(estate / "incidents.csv", f"FUT-1,{system},{CUTOFF},,1,Hardware,at the cutoff,,")
    append(estate / "incidents.csv", f"FUT-2,{system},2025-07-18T18:00:01,,1,Hardware,a second later,,")
    append(estate / "incidents.csv", f"FUT-3,{upstream},2025-07-21T09:00:00,,1,Network,monday,,")
    # A change scheduled inside the window but created after the cutoff.
    changes = pl.read_csv(estate / "changes.csv", infer_schema=False)
    late = {c: "" for c in changes.columns} | {
        "change_id": "LATE-1", "system_id": system, "scheduled_start": "2025-07-19T10:00:00",
        "scheduled_end": "2025-07-19T12:00:00", "created_at": "2025-07-18T18:00:01",
        "change_type": "release", "risk_level": "high", "status": "approved"}
    pl.concat([changes, pl.DataFrame([late])]).write_csv(estate / "changes.csv")
    # Metric samples at the cutoff and later, with absurd values.
    future = estate / "metrics" / "late" / "future.csv"
    future.parent.mkdir(parents=True)
    future.write_text(
        "ts,system_id,metric,value\n"
        f"{CUTOFF},{system},cpu_pct,99999\n"
        f"2025-07-20T03:00:00,{system},cpu_pct,99999\n"
        f"2025-07-21T10:00:00,{system},mem_pct,99999\n"
    )
    # An incident opened before the cutoff but resolved later: the later time moves.
    incidents = pl.read_csv(estate / "incidents.csv", infer_schema=False)
    resolved_late = (pl.col("opened_at") < "2025-07-18T17:00:00") & (pl.col("resolved_at") > CUTOFF)
    incidents.with_columns(
        resolved_at=pl.when(resolved_late).then(pl.lit("2025-07-25T00:00:00")).otherwise("resolved_at")
    ).write_csv(estate / "incidents.csv")

    after = features_of(estate, tmp_path / "after")
    assert_frame_equal(before, after)


def test_data_just_before_the_cutoff_moves_features(estate, before, tmp_path):
    system = _system(estate)
    append(estate / "incidents.csv", f"NEW-1,{system},2025-07-18T17:59:00,,1,Hardware,a minute early,,")
    changes = pl.read_csv(estate / "changes.csv", infer_schema=False)
    early = {c: "" for c in changes.columns} | {
        "change_id": "EARLY-1", "system_id": system, "scheduled_start": "2025-07-19T10:00:00",
        "created_at": "2025-07-18T17:59:00", "change_type": "release", "risk_level": "high"}
    pl.concat([changes, pl.DataFrame([early])]).write_csv(estate / "changes.csv")
    sample = estate / "metrics" / "late" / "early.csv"
    sample.parent.mkdir(parents=True)
    sample.write_text(f"ts,system_id,metric,value\n2025-07-18T17:59:00,{system},cpu_pct,99999\n")

    after = features_of(estate, tmp_path / "after")
    row = lambda frame: frame.filter(pl.col("system_id") == system).row(0, named=True)  # noqa: E731
    was, now = row(before), row(after)
    assert now["inc_1d"] == was["inc_1d"] + 1
    assert now["inc_sev12_30d"] == was["inc_sev12_30d"] + 1
    assert now["days_since_incident"] < 0.01
    assert now["chg_window_high"] == was["chg_window_high"] + 1
    assert now["chg_window_short_notice"] == was["chg_window_short_notice"] + 1
    assert now["act_upgrade_window"] == was["act_upgrade_window"] + 1
    assert now["cpu_pct__max"] == 99999 and was["cpu_pct__max"] < 100
    assert now["cpu_pct__last"] == 99999
    others = before.filter(pl.col("system_id") != system)
    assert_frame_equal(others.select("system_id", "inc_1d"),
                       after.filter(pl.col("system_id") != system).select("system_id", "inc_1d"))
