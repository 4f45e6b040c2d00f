"""Reading feature rows: reads in slices return exactly what a whole read returned."""

import datetime as dt
from dataclasses import replace

import duckdb
import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from features.labels import labels
from features.trading_time import TradingCalendar
from models import dataset
from models.dataset import Window, read_features, training_frame
from models.lifecycle import PolicyConfig, build_training_set
from models.model import FailureModel, TrainConfig
from tests.test_models import synthetic


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


def _labelled_warehouse() -> duckdb.DuckDBPyConnection:
    """Two feature columns (a double with values beyond float32's range, nulls and NaN; a
    count) for 150 systems over 120 sessions, and incidents on about one row in thirty."""
    calendar = TradingCalendar("24/7", "UTC")
    rng = np.random.default_rng(11)
    days = calendar.sessions(dt.date(2025, 1, 1), dt.date(2025, 12, 31))[:120]
    keys = [(f"S{s:03d}", day) for day in days for s in range(150)]
    x = rng.normal(size=len(keys)) * 1e3
    x[::23], x[7], x[8], x[9] = np.nan, np.inf, 1e300, -1e39
    con = duckdb.connect()
    features = pl.DataFrame({  # noqa: F841 - read by the SQL below
        "system_id": [k[0] for k in keys], "as_of": [k[1] for k in keys],
        "target_date": [calendar.next_session(k[1]) for k in keys], "x": x,
        "n": rng.poisson(2.0, len(keys))})
    con.execute("CREATE TABLE system_day_features AS SELECT * FROM features")
    failed = [k for k in keys if rng.random() < 0.03]
    incidents = pl.DataFrame({  # noqa: F841
        "incident_id": [f"I{i}" for i in range(len(failed))],
        "system_id": [k[0] for k in failed], "severity": [2] * len(failed),
        "opened_at": [dt.datetime.combine(calendar.next_session(k[1]), dt.time(3))
                      for k in failed]})
    con.execute("CREATE TABLE incidents AS SELECT * FROM incidents")
    return con


def test_a_retrains_frames_from_one_read_are_those_of_three(monkeypatch):
    """build_training_set reads the warehouse once for the training, hold-out and refit
    frames; each must be exactly what reading its own window gives: the same rows (the same
    quiet rows drawn for the trees), values, columns and order."""
    calendar = TradingCalendar("24/7", "UTC")
    con = _labelled_warehouse()
    monkeypatch.setattr(dataset, "SLICE_DAYS", 7)  # many slices, some across window edges
    as_of = calendar.sessions(dt.date(2025, 1, 1), dt.date(2025, 12, 31))[110]
    candidate = TrainConfig(quiet_per_failure=4, case_library_mode=False)
    config = PolicyConfig(train_sessions=80, holdout_sessions=15, candidate=candidate)
    spans = []
    slices = dataset._slices
    monkeypatch.setattr(dataset, "_slices", lambda c, a, b, q: spans.append((a, b)) or slices(c, a, b, q))

    got = build_training_set(con, calendar, as_of, config)

    read = [day for a, b in spans for day in calendar.sessions(a, b)]
    assert len(read) == len(set(read)) == 95  # every day of the three windows, once
    spans.clear()
    train = training_frame(con, calendar, got.train_window, 4, as_of, candidate)
    rows = read_features(con, got.holdout_window.first, got.holdout_window.last)
    known = labels(con, calendar, rows.select("system_id", "as_of"), 4, as_of)
    holdout = rows.join(known.select("system_id", "as_of", "label"), on=["system_id", "as_of"],
                        maintain_order="left")
    refit = training_frame(con, calendar, got.refit_window, 4, as_of, candidate, refit=True)
    assert train["thinned"].any() and 0 < train.height < 95 * 150  # the draw did thin
    assert_frame_equal(got.train, train)
    assert_frame_equal(got.holdout, holdout)
    assert_frame_equal(got.refit, refit)
    assert got.refit.filter("thinned").height != got.train.filter("thinned").height


def test_the_tree_period_keeps_at_most_the_row_budget_and_every_failure():
    """Past ``max_tree_rows`` the trees learn from fewer quiet rows per failure; below it the
    training set is exactly what it was without a budget."""
    calendar = TradingCalendar("24/7", "UTC")
    con = _labelled_warehouse()
    days = calendar.sessions(dt.date(2025, 1, 1), dt.date(2025, 12, 31))
    window, known_at = Window(days[0], days[99]), days[110]
    config = TrainConfig(quiet_per_failure=4, case_library_mode=False)

    def tree_period(**budget) -> pl.DataFrame:
        return training_frame(con, calendar, window, 4, known_at,
                              replace(config, **budget)).filter("thinned")

    unbounded = tree_period(max_tree_rows=10**9)
    failures = int(unbounded["label"].sum())
    assert failures > 200 and unbounded.height > 4 * failures  # 4 quiet rows a failure
    assert_frame_equal(tree_period(max_tree_rows=5 * failures), unbounded)  # does not bind
    budget = 2 * failures
    bounded = tree_period(max_tree_rows=budget)
    assert int(bounded["label"].sum()) == failures
    assert 0.85 * budget < bounded.height < 1.15 * budget
    assert config.quiet_rows_per_failure(failures) == 4
    assert replace(config, max_tree_rows=budget).quiet_rows_per_failure(failures) == 1.0
    assert replace(config, max_tree_rows=10).quiet_rows_per_failure(failures) == 1.0  # floor


def test_a_fit_grows_its_trees_from_at_most_the_row_budget():
    frame = synthetic(days=120, systems=60)  # read unthinned: about 13 quiet rows a failure
    failures = int(frame.filter(pl.col("as_of") < dt.date(2025, 3, 26))["label"].sum())
    budget = 6 * failures
    config = TrainConfig(max_rounds=30)
    model = FailureModel.fit(frame, ["x", "noise"], replace(config, max_tree_rows=budget))
    assert 0.85 * budget < model.info["tree_rows"] < 1.15 * budget
    whole = FailureModel.fit(frame, ["x", "noise"], config)
    assert whole.info["tree_rows"] > 1.5 * budget
