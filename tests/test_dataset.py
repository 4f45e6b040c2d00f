"""Reading feature rows: reads in slices return exactly what a whole read returned."""

import datetime as dt

import duckdb
import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from models import dataset
from models.dataset import read_features


@pytest.fixture
def features_con():
    """A system_day_features table inserted out of order, with nulls, infinities and NaN."""
    rng = np.random.default_rng(5)
    days = [dt.date(2025, 3, 3) + dt.timedelta(days=d) for d in range(20)]
    rows = [(f"S{s:02d}", day, day + dt.timedelta(days=1)) for day in days for s in range(25)]
    order = rng.permutation(len(rows))
    x = rng.normal(size=len(rows)) * 1e3
    x[::17], x[5], x[6], x[7], x[8], x[9] = np.nan, np.inf, -np.inf, 1e-40, 1e300, -1e39
    con = duckdb.connect()
    con.execute("CREATE TABLE system_day_features (system_id VARCHAR, as_of DATE, "
                "target_date DATE, x DOUBLE, y DOUBLE, n BIGINT)")
    frame = pl.DataFrame({  # noqa: F841 - read by the INSERT below
        "system_id": [rows[i][0] for i in order], "as_of": [rows[i][1] for i in order],
        "target_date": [rows[i][2] for i in order], "x": x[order],
        "y": [None if i % 5 == 0 else float(i) / 3 for i in order], "n": order})
    con.execute("INSERT INTO system_day_features SELECT * FROM frame")
    return con


def whole_read(con, first, last) -> pl.DataFrame:
    """What read_features returned before it read in slices."""
    frame = con.sql("SELECT * FROM system_day_features WHERE as_of BETWEEN ? AND ? "
                    "ORDER BY as_of, system_id", params=[first, last]).pl()
    return frame.with_columns(pl.selectors.float().cast(pl.Float32))


def test_read_in_slices_has_the_rows_order_and_values_of_a_whole_read(features_con, monkeypatch):
    monkeypatch.setattr(dataset, "SLICE_DAYS", 3)  # many slices
    first, last = dt.date(2025, 3, 5), dt.date(2025, 3, 18)
    got = read_features(features_con, first, last)
    assert got.height == 14 * 25
    assert got.schema["x"] == pl.Float32 and got.schema["n"] == pl.Int64
    assert_frame_equal(got, whole_read(features_con, first, last))


def test_named_columns_and_an_empty_range_keep_their_types(features_con):
    got = read_features(features_con, dt.date(2025, 3, 4), dt.date(2025, 3, 4), ["y", "absent"])
    assert got.columns == ["system_id", "as_of", "target_date", "y", "absent"]
    assert got.schema["absent"] == pl.Float32
    empty = read_features(features_con, dt.date(2024, 1, 1), dt.date(2024, 1, 2))
    assert empty.height == 0 and empty.schema == whole_read(features_con, dt.date(2025, 3, 3),
                                                            dt.date(2025, 3, 3)).schema
