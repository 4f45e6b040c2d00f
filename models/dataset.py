"""Training sets: feature rows joined to labels that were known at an as-of day.

For an as-of day ``D`` a row ``(system, d)`` is usable when its label window has closed by
``D``'s cutoff, i.e. the session after ``d`` is on or before ``D``: as-of days up to the
previous session. Features are read from the warehouse table ``system_day_features``.
"""

from __future__ import annotations

import datetime as dt
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
    from features.warehouse import quote_ident, table_columns

    present = table_columns(con, TABLE)
    if not present:
        raise DataError("no features in the warehouse yet: build system_day_features first")
    wanted = present if columns is None else [*KEYS, *(c for c in columns if c in present)]
    select = ", ".join(quote_ident(c) for c in wanted)
    frame = con.sql(
        f"SELECT {select} FROM {TABLE} WHERE as_of BETWEEN ? AND ? ORDER BY as_of, system_id",  # noqa: S608
        params=[first, last],
    ).pl()
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
    in SQL, before they reach memory (``TrainConfig.quiet_per_failure`` per failure); the later
    periods, for early stopping and calibration, are read whole. Column ``thinned`` marks the
    rows of the thinned period: rates estimated from data (baselines) must skip them. For a
    ``refit`` (``FailureModel.refit``) the trees' period is the oldest 85%, not 70%.
    """
    from features.warehouse import quote_ident

    config = config or TrainConfig()
    if not create_label_table(con, calendar, window.first, window.last, max_severity, known_at):
        return pl.DataFrame(schema={"system_id": pl.String, "as_of": pl.Date,
                                    "target_date": pl.Date, "label": pl.Boolean,
                                    "thinned": pl.Boolean})
    days = [r[0] for r in con.execute(
        "SELECT DISTINCT as_of FROM window_labels ORDER BY as_of").fetchall()]
    keep = 1.0
    try:
        split = (TimeSplit.for_refit(days, config.fit_share + config.stop_share) if refit
                 else TimeSplit.of(days, config.fit_share, config.stop_share))
        tree_period = split.fit
        failures, quiet = con.execute(
            "SELECT count(*) FILTER (WHERE label), count(*) FILTER (WHERE NOT label) "
            "FROM window_labels WHERE as_of BETWEEN ? AND ?", list(tree_period)).fetchall()[0]
        keep = min(1.0, max(failures, 1) * config.quiet_per_failure / max(quiet, 1))
    except NotEnoughData:
        tree_period = (days[0], days[-1])
    columns = [c for c in con.execute(f"DESCRIBE {TABLE}").fetchall()]  # noqa: S608
    select = ", ".join(f"f.{quote_ident(c[0])}" for c in columns)
    frame = con.sql(
        f"""
        SELECT {select}, l.label, l.as_of <= ? AS thinned FROM {TABLE} f
        JOIN window_labels l ON l.system_id = f.system_id AND l.as_of = f.as_of
        WHERE l.label OR l.as_of > ? OR hash(f.system_id, f.as_of, ?) % 1000000 < ?
        ORDER BY f.as_of, f.system_id
        """,  # noqa: S608 - identifiers quoted; data in parameters
        params=[tree_period[1], tree_period[1], config.seed, int(keep * 1_000_000)],
    ).pl()
    return _float32(frame)


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
