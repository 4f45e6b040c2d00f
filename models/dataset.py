"""Training sets: feature rows joined to labels that were known at an as-of day.

For an as-of day ``D`` a row ``(system, d)`` is usable when its label window has closed by
``D``'s cutoff, i.e. the session after ``d`` is on or before ``D``: as-of days up to the
previous session. Features are read from the warehouse table ``system_day_features``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import duckdb
import polars as pl

from features.build import KEYS, TABLE
from features.errors import DataError
from features.labels import create_label_table
from features.trading_time import TradingCalendar
from models.model import NotEnoughData, TimeSplit, TrainConfig


@dataclass(frozen=True)
class Window:
    """As-of days ``first..last`` (inclusive) of a training set."""

    first: dt.date
    last: dt.date

    def __str__(self) -> str:
        return f"{self.first}..{self.last}"


def labelled_window(calendar: TradingCalendar, as_of: dt.date, sessions: int) -> Window:
    """The last ``sessions`` as-of days whose labels are known at ``as_of``'s cutoff."""
    last = calendar.previous_session(as_of)
    first = calendar.sessions_back(last, sessions - 1)
    return Window(first, last)


def read_features(
    con: duckdb.DuckDBPyConnection, first: dt.date, last: dt.date, columns: list[str] | None = None
) -> pl.DataFrame:
    """Feature rows of as-of days ``first..last`` (all columns, or the named ones), float32."""
    types = _column_types(con)
    if not types:
        raise DataError("no features in the warehouse yet: build system_day_features first")
    wanted = list(types) if columns is None else [*KEYS, *(c for c in columns if c in types)]
    select = ", ".join(_selected(c, types[c]) for c in wanted)
    sql = f"SELECT {select} FROM {TABLE} WHERE as_of BETWEEN ? AND ? ORDER BY as_of, system_id"  # noqa: S608
    frame = _read_in_slices(con, first, last, lambda a, b: (sql, [a, b]))
    return _float32(_with_missing(frame, columns))


def training_frame(
    con: duckdb.DuckDBPyConnection,
    calendar: TradingCalendar,
    window: Window,
    max_severity: int,
    known_at: dt.date,
    config: TrainConfig | None = None,
    *,
    refit: bool = False,
) -> pl.DataFrame:
    """Features of ``window`` with a ``label`` column, only labels known at ``known_at``.

    Failures are rare, so the quiet rows of the period the trees learn from are thinned here,
    in SQL, before they reach memory (``TrainConfig.quiet_rows_per_failure``); the later
    periods, for early stopping and calibration, are read whole. Column ``thinned`` marks the
    rows of the thinned period: rates estimated from data (baselines) must skip them. For a
    ``refit`` (``FailureModel.refit``) the trees' period is the oldest 85%, not 70%. Bagged
    trees (``TrainConfig.bags``) each draw their own quiet rows at fit time, so the tree period
    keeps ``bags`` times as many.
    """
    config = config or TrainConfig()
    if not create_label_table(con, calendar, window.first, window.last, max_severity, known_at):
        return _no_rows(thinned=True)
    (frame,) = _read_labelled(con, [_thinned(con, window, config, refit=refit)], config.seed)
    return frame


def training_set_frames(
    con: duckdb.DuckDBPyConnection,
    calendar: TradingCalendar,
    train: Window,
    holdout: Window,
    refit: Window,
    max_severity: int,
    known_at: dt.date,
    config: TrainConfig,
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """A retrain's three frames from one read of the warehouse: ``training_frame`` of
    ``train``, the ``holdout`` days whole (no ``thinned`` column) and ``training_frame`` of
    ``refit`` with ``refit=True``, each with exactly those rows, values and order.

    The windows overlap by most of their days: read one at a time, the refit's rows were read
    and converted a second time (half the read of a firm-scale retrain)."""
    first, last = min(train.first, refit.first), max(holdout.last, refit.last)
    if not create_label_table(con, calendar, first, last, max_severity, known_at):
        return _no_rows(thinned=True), _no_rows(thinned=False), _no_rows(thinned=True)
    plans = [_thinned(con, train, config), _Rows(holdout),
             _thinned(con, refit, config, refit=True)]
    train_rows, holdout_rows, refit_rows = _read_labelled(con, plans, config.seed)
    return train_rows, holdout_rows, refit_rows


DRAWS = 1_000_000  # a quiet row's draw is its hash modulo this


@dataclass(frozen=True)
class _Rows:
    """The labelled rows of ``window``; with ``thin_through``, its quiet rows up to that day
    only where their draw is below ``keep`` (a share), and a ``thinned`` column."""

    window: Window
    thin_through: dt.date | None = None
    keep: float = 1.0

    @property
    def threshold(self) -> int:
        return int(self.keep * DRAWS)

    def in_sql(self) -> tuple[str, list]:
        """The rule as a condition on ``window_labels l`` and the column ``draw``."""
        inside, span = "l.as_of BETWEEN ? AND ?", [self.window.first, self.window.last]
        if self.thin_through is None:
            return inside, span
        return (f"({inside} AND (l.label OR l.as_of > ? OR draw < ?))",
                [*span, self.thin_through, self.threshold])

    def in_polars(self) -> pl.Expr:
        """The same rule on a slice's columns ``as_of``, ``label`` and ``draw``."""
        inside = pl.col("as_of").is_between(self.window.first, self.window.last)
        if self.thin_through is None:
            return inside
        return inside & (pl.col("label") | (pl.col("as_of") > self.thin_through)
                         | (pl.col("draw") < self.threshold))


def _thinned(con: duckdb.DuckDBPyConnection, window: Window, config: TrainConfig, *,
             refit: bool = False) -> _Rows:
    """The rows of ``window`` (in ``window_labels``) with the trees' period thinned to
    ``TrainConfig.quiet_rows_per_failure`` quiet rows per failure for every bag."""
    days = [r[0] for r in con.execute(
        "SELECT DISTINCT as_of FROM window_labels WHERE as_of BETWEEN ? AND ? ORDER BY as_of",
        [window.first, window.last]).fetchall()]
    try:
        split = (TimeSplit.for_refit(days, config.fit_share + config.stop_share) if refit
                 else TimeSplit.of(days, config.fit_share, config.stop_share))
    except NotEnoughData:
        return _Rows(window, thin_through=window.last)
    tree_period = split.fit
    failures, quiet = con.execute(
        "SELECT count(*) FILTER (WHERE label), count(*) FILTER (WHERE NOT label) "
        "FROM window_labels WHERE as_of BETWEEN ? AND ?", list(tree_period)).fetchall()[0]
    trees = _trees(con, config)
    keep = min(1.0, max(failures, 1) * trees.quiet_rows_per_failure(failures) * trees.bags
               / max(quiet, 1))
    return _Rows(window, thin_through=tree_period[1], keep=keep)


def _read_labelled(con: duckdb.DuckDBPyConnection, plans: list[_Rows], seed: int
                   ) -> list[pl.DataFrame]:
    """Each plan's rows of ``system_day_features`` joined to ``window_labels``, from one read:
    each slice holds the rows any plan wants (a row's draw, its hash with ``seed``, is the same
    for every plan) and is split among them."""
    first = min(p.window.first for p in plans)
    last = max(p.window.last for p in plans)
    conditions = [plan.in_sql() for plan in plans]
    wanted = " OR ".join(text for text, _ in conditions)
    params = [value for _, values in conditions for value in values]
    select = ", ".join(_selected(c, t, "f.") for c, t in _column_types(con).items())
    sql = f"""
        SELECT {select}, l.label, hash(f.system_id, f.as_of, ?) % {DRAWS} AS draw
        FROM {TABLE} f
        JOIN window_labels l ON l.system_id = f.system_id AND l.as_of = f.as_of
        WHERE f.as_of BETWEEN ? AND ? AND l.as_of BETWEEN ? AND ? AND ({wanted})
        ORDER BY f.as_of, f.system_id
        """  # noqa: S608 - identifiers quoted; data in parameters
    parts: list[list[pl.DataFrame]] = [[] for _ in plans]
    for rows in _slices(con, first, last, lambda a, b: (sql, [seed, a, b, a, b, *params])):
        for plan, kept in zip(plans, parts, strict=True):
            part = rows.filter(plan.in_polars()).drop("draw")
            if plan.thin_through is not None:
                part = part.with_columns(thinned=pl.col("as_of") <= plan.thin_through)
            kept.append(part)
        del rows
    return [pl.concat(kept, rechunk=False) for kept in parts]


def _no_rows(*, thinned: bool) -> pl.DataFrame:
    return pl.DataFrame(schema={"system_id": pl.String, "as_of": pl.Date,
                                "target_date": pl.Date, "label": pl.Boolean,
                                **({"thinned": pl.Boolean} if thinned else {})})


def _trees(con: duckdb.DuckDBPyConnection, config: TrainConfig) -> TrainConfig:
    """The trees the configuration will grow from this table's features (their bags)."""
    features = [c for c in _column_types(con) if c not in (*KEYS, "target_date")]
    return config.suited_to(config.inputs(features))


def _column_types(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    return dict(con.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ? "
        "ORDER BY ordinal_position", [TABLE]).fetchall())


def _selected(column: str, data_type: str, prefix: str = "") -> str:
    """The column as read: doubles become float32 in DuckDB, before they reach Python.

    Polars keeps each DuckDB result batch alive for as long as any column of it is (the keys,
    read without a copy), so doubles cast in Polars stayed in memory beside their float32
    copies: a LANL retrain held 1 GB more than its rows. Beyond float32's range a double
    becomes an infinity, as a cast in Polars or NumPy makes it: DuckDB's own cast refuses, its
    ``TRY_CAST`` gives NULL, which the ``coalesce`` turns into the signed infinity (half the
    time of a ``CASE`` over every value: 0.9 s against 1.6 s for 62k rows of 349 columns)."""
    from features.warehouse import quote_ident

    name = f"{prefix}{quote_ident(column)}"
    if data_type != "DOUBLE":
        return name
    return f"coalesce(TRY_CAST({name} AS FLOAT), sign({name}) * 'inf'::FLOAT) AS {quote_ident(column)}"


SLICE_DAYS = 30  # calendar days of feature rows per query


def _read_in_slices(con: duckdb.DuckDBPyConnection, first: dt.date, last: dt.date,
                    query: Callable[[dt.date, dt.date], tuple[str, list]]) -> pl.DataFrame:
    """The rows of ``query(a, b)`` for consecutive spans ``a..b`` of ``first..last``, each
    read whole, made float32 and appended in order: one slice of doubles at a time is in
    memory, never the whole window's (a LANL training set read in one query peaked at 2.4 GB
    for 0.5 GB of float32 rows). Each query orders its rows by as-of day, so the whole does."""
    return pl.concat(list(_slices(con, first, last, query)), rechunk=False)


def _slices(con: duckdb.DuckDBPyConnection, first: dt.date, last: dt.date,
            query: Callable[[dt.date, dt.date], tuple[str, list]]) -> Iterator[pl.DataFrame]:
    """``query(a, b)``'s rows, float32, for consecutive spans ``a..b`` of ``first..last``."""
    start = first
    while True:
        end = min(last, start + dt.timedelta(days=SLICE_DAYS - 1))
        sql, params = query(start, end)
        yield _float32(con.sql(sql, params=params).pl())
        if end >= last:
            return
        start = end + dt.timedelta(days=1)


def _with_missing(frame: pl.DataFrame, columns: list[str] | None) -> pl.DataFrame:
    missing = [c for c in (columns or []) if c not in frame.columns]
    if missing:  # a feature the model knows but this stretch of data never had
        frame = frame.with_columns([pl.lit(None, pl.Float64).alias(c) for c in missing])
    return frame


def _float32(frame: pl.DataFrame) -> pl.DataFrame:
    """Half the memory of DuckDB's doubles; LightGBM works in float32 anyway."""
    return frame.with_columns(pl.selectors.float().cast(pl.Float32))


def feature_names(frame: pl.DataFrame) -> list[str]:
    """Model inputs: every column but the keys and the label, in a stable order."""
    return [c for c in frame.columns if c not in (*KEYS, "label", "failures", "thinned")]
