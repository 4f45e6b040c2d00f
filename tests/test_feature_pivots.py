"""The metric and peer features, pivoted in DuckDB, equal the Polars pivots they replaced."""

import datetime as dt

import polars as pl
from polars.testing import assert_frame_equal

from features.ingest import load_metrics, load_source_tables
from features.metric_features import (
    BOUNDED_METRIC,
    FEATURES_PER_METRIC,
    HISTORY_SQL,
    LOOKBACK_SESSIONS,
    metric_features,
)
from features.metric_stats import build_metric_day_stats
from features.source import Source
from features.trading_time import TradingCalendar
from features.warehouse import Warehouse

CAL = TradingCalendar("XSHG", "Asia/Shanghai")


def polars_pivot(con, first, last, lookback_start) -> pl.DataFrame:
    """The previous implementation: the long table in Polars, unpivoted and pivoted."""
    long = con.sql(HISTORY_SQL, params=[BOUNDED_METRIC, lookback_start, last, first, last]).pl()
    melted = long.unpivot(index=["as_of", "system_id", "metric"], on=list(FEATURES_PER_METRIC),
                          variable_name="stat").drop_nulls("value")
    melted = melted.with_columns(feature=pl.col("metric") + "__" + pl.col("stat"),
                                 value=pl.col("value").cast(pl.Float64))
    wide = melted.pivot(on="feature", index=["as_of", "system_id"], values="value",
                        aggregate_function="first")
    rank = {stat: i for i, stat in enumerate(FEATURES_PER_METRIC)}
    features = sorted(wide.columns[2:],
                      key=lambda c: (c.rsplit("__", 1)[0], rank[c.rsplit("__", 1)[1]]))
    return wide.select("as_of", "system_id", *features)


def test_duckdb_pivot_equals_the_polars_pivot(tiny_estate, tmp_path):
    first, last = dt.date(2025, 6, 3), dt.date(2025, 7, 31)
    warehouse = Warehouse(tmp_path / "wh.duckdb", timezone="Asia/Shanghai")
    with warehouse.lake_writer() as con:
        load_source_tables(con, warehouse.lake, Source.open(tiny_estate))
        load_metrics(con, warehouse.lake, Source.open(tiny_estate), CAL, first, last)
        build_metric_day_stats(con, warehouse.lake, CAL.session_table(first, last))
        # The first days have no baseline yet (those columns are absent), later ones have.
        for start, end in ((first, dt.date(2025, 6, 6)), (dt.date(2025, 6, 20), last)):
            lookback = CAL.sessions_back(CAL.sessions(start, end)[0], LOOKBACK_SESSIONS)
            new = metric_features(con, start, end, lookback).sort("as_of", "system_id")
            old = polars_pivot(con, start, end, lookback).sort("as_of", "system_id")
            assert new.height and new.width > 40
            assert_frame_equal(new, old)


def test_metrics_whose_names_reduce_to_one_give_one_row(tmp_path):
    from features.build import build_features
    from tests.conftest import write_source

    days = CAL.sessions("2025-06-03", "2025-06-05")
    lines = ["ts,system_id,metric,value"]
    for day in days:
        for metric in ("cpu.pct", "cpu_pct"):
            lines.append(f"{day}T10:00:00,A,{metric},50")
    source = write_source(tmp_path / "src", metrics={"m.csv": "\n".join(lines) + "\n"})
    warehouse = Warehouse(tmp_path / "wh.duckdb", timezone="Asia/Shanghai")
    with warehouse.lake_writer() as con:
        load_source_tables(con, warehouse.lake, Source.open(source))
        load_metrics(con, warehouse.lake, Source.open(source), CAL, days[0], days[-1])
        build_metric_day_stats(con, warehouse.lake, CAL.session_table(days[0], days[-1]))
        frame = build_features(con, CAL, days[0], days[-1])
    assert frame.filter(pl.col("system_id") == "A").height == len(days)
    assert frame["cpu_pct__mean"].drop_nulls().to_list() == [50.0] * len(days)


def polars_peers(con) -> pl.DataFrame:
    """The previous peer pivot: the long table in Polars, unpivoted and pivoted."""
    from features.case_features import PEERS

    peers = con.sql(PEERS).pl().unpivot(
        index=["system_id", "as_of", "attribute"], on=["peer_inc_1d", "peer_inc_7d", "peer_inc_30d"]
    ).with_columns(feature=pl.lit("peer_") + pl.col("attribute") + "_" + pl.col("variable").str.slice(5))
    wide = peers.pivot(on="feature", index=["system_id", "as_of"], values="value",
                       aggregate_function="first")
    return wide.select("system_id", "as_of", *sorted(wide.columns[2:]))


def test_peer_pivot_in_duckdb_equals_the_polars_pivot(tiny_estate, tmp_path):
    from features.build import FEATURE_BASE, session_frame
    from features.case_features import case_features

    warehouse = Warehouse(tmp_path / "wh.duckdb", timezone="Asia/Shanghai")
    with warehouse.lake_writer() as con:
        load_source_tables(con, warehouse.lake, Source.open(tiny_estate))
        con.register("base_sessions", session_frame(CAL, dt.date(2025, 6, 3), dt.date(2025, 7, 31)))
        con.execute(FEATURE_BASE)
        new = case_features(con)[-1].sort("as_of", "system_id")
        old = polars_peers(con).sort("as_of", "system_id")
    assert new.columns[2:] and all(c.startswith("peer_") for c in new.columns[2:])
    assert_frame_equal(new, old)
