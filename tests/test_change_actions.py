"""Change actions (``act_*``): what a change does, when, and against the signal it acts on."""

import datetime as dt

import polars as pl
import pytest

from features.build import build_features
from features.change_actions import RELIEVED_DAYS, with_signal_interactions
from features.ingest import load_source_tables
from features.source import Source
from features.trading_time import TradingCalendar
from features.warehouse import Warehouse
from tests.conftest import write_source

AS_OF = dt.date(2025, 7, 18)  # a Friday: cutoff 18:00, the window runs to Monday's cutoff
CHANGES = """change_id,system_id,scheduled_start,scheduled_end,created_at,change_type,description
R1,A,2025-07-19T10:00:00,2025-07-19T11:00:00,2025-07-10T09:00:00,other,Reboot of the app servers
C1,A,2025-07-26T10:00:00,2025-07-26T12:00:00,2025-07-15T09:00:00,housekeeping,
U1,A,2025-07-21T08:00:00,2025-07-21T10:30:00,2025-07-11T09:00:00,Application Upgrade,to v2
L1,A,2025-07-19T12:00:00,,2025-07-18T18:00:01,cleanup,raised after the cutoff
P1,A,2025-07-16T22:00:00,2025-07-16T23:00:00,2025-07-10T09:00:00,os_patch,Monthly OS security patching
S1,B,2025-07-19T09:00:00,2025-07-19T12:00:00,2025-07-01T09:00:00,os_patch,patching with reboot
"""


def actions(tmp_path, exchange="XSHG"):
    calendar = TradingCalendar(exchange, "Asia/Shanghai")
    source = write_source(tmp_path / "src", changes=CHANGES)
    warehouse = Warehouse(tmp_path / "wh.duckdb", timezone="Asia/Shanghai")
    with warehouse.lake_writer() as con:
        load_source_tables(con, warehouse.lake, Source.open(source))
        frame = build_features(con, calendar, AS_OF, AS_OF)
    return {r["system_id"]: r for r in frame.iter_rows(named=True)}


def test_kinds_from_type_and_description_timing_and_horizons(tmp_path):
    a = actions(tmp_path)["A"]
    assert a["act_restart_window"] == 1  # "Reboot" in a free-text description
    assert a["act_upgrade_window"] == 1  # "Application Upgrade" as the type
    assert a["act_cleanup_window"] == 0  # C1 is next week; L1 was raised after the cutoff
    assert a["act_relief_before_open"] == 1  # the Saturday reboot ends before Monday 09:30
    assert a["act_risky_hours_to_open"] == pytest.approx(-1.0)  # the upgrade runs past the open
    assert a["act_days_to_restart"] == pytest.approx(16 / 24)
    assert a["act_days_to_cleanup"] == pytest.approx(7 + 16 / 24)
    assert a["act_days_since_restart"] == pytest.approx(1 + 20 / 24)  # the patch rebooted it
    assert a["act_days_since_upgrade"] is None


def test_a_change_can_be_of_several_kinds(tmp_path):
    b = actions(tmp_path)["B"]
    assert (b["act_patch_window"], b["act_restart_window"], b["act_config_window"]) == (1, 1, 0)


def test_a_site_that_never_closes_has_no_quiet_hours_before_the_open(tmp_path):
    a = actions(tmp_path, exchange="24/7")["A"]
    # Saturday is the target day: the reboot is in the window, and in its session.
    assert a["act_restart_window"] == 1 and a["act_relief_before_open"] == 0
    assert a["act_days_to_restart"] == pytest.approx(16 / 24)


def test_a_filling_disk_is_relieved_only_by_a_clean_up_scheduled_before_it_fills():
    frame = pl.DataFrame({
        "disk_pct__days_to_limit": [3.0, 3.0, 3.0, None],
        "data_volume_pct__days_to_limit": [9.0, 9.0, 1.5, None],
        "cpu_pct__days_to_limit": [0.5, 0.5, 0.5, 0.5],  # not a disk: never relieved by a clean-up
        "act_days_to_cleanup": [1.0, 4.0, None, 1.0],
        "act_days_to_restart": [None, None, None, None],
    })
    out = with_signal_interactions(frame)
    assert out["act_disk_days_unrelieved"].to_list() == [RELIEVED_DAYS, 3.0, 1.5, None]
    assert "act_mem_days_unrelieved" not in out.columns  # no memory metric on this estate
