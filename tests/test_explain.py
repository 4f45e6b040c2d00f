"""A system's normal comes only from the sessions before the as-of day."""

import datetime as dt

import polars as pl

from features.metric_stats import METRIC_DAY_STATS_TABLE
from features.trading_time import TradingCalendar
from features.warehouse import Warehouse
from models.explain import NORMAL_SESSIONS, system_normals

CALENDAR = TradingCalendar("XSHG", "Asia/Shanghai")
AS_OF = dt.date(2025, 7, 31)


def write_stats(warehouse: Warehouse, days: list[dt.date], level) -> None:
    frame = pl.DataFrame({"as_of": days, "system_id": ["A"] * len(days), "metric": ["disk.pct"] * len(days),
                          "after_close_mean": [level(d) for d in days]})
    with warehouse.lake_writer() as con:
        con.register("stats", frame)
        warehouse.lake.write_partitions(
            con, METRIC_DAY_STATS_TABLE,
            f"SELECT * FROM ({METRIC_DAY_STATS_TABLE.empty_sql()}) UNION ALL BY NAME SELECT * FROM stats", (), days)  # noqa: S608
        con.unregister("stats")


def test_the_normal_is_the_last_20_sessions_before_the_day_and_ignores_the_future(tmp_path):
    warehouse = Warehouse(tmp_path / "w.duckdb")
    days = CALENDAR.sessions(dt.date(2025, 6, 1), dt.date(2025, 8, 29))
    before = [d for d in days if d < AS_OF]
    factors = [[{"feature": "disk_pct__after_close_mean"}]]  # names reduced as features reduce them

    write_stats(warehouse, days, lambda d: 50.0 if d < AS_OF else 99.0)
    with warehouse.reader() as con:
        normal = system_normals(con, CALENDAR, AS_OF, ["A"], factors)
    assert normal == {"A": {("disk_pct", "after_close_mean"): 50.0}}

    # Older sessions than the 20 before the day, the day itself and later days do not count.
    recent = set(before[-NORMAL_SESSIONS:])
    write_stats(warehouse, days, lambda d: 70.0 if d in recent else 1000.0)
    with warehouse.reader() as con:
        normal = system_normals(con, CALENDAR, AS_OF, ["A"], factors)
    assert normal == {"A": {("disk_pct", "after_close_mean"): 70.0}}
