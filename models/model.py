"""The failure model: LightGBM trees on the oldest days, calibrated on the newest.

``FailureModel.fit`` splits the labelled as-of days by time, never at random:

    oldest 70%  -> the trees (quiet rows thinned by ``models.dataset``: failures are rare, and
                   the calibration below puts the probabilities back where they belong)
    next   15%  -> early stopping (all rows)
    newest 15%  -> probability calibration (all rows)

so the calibration is fitted on a later period than the trees, and a published 0.2 means
about one failure in five. When the calibration period holds enough failures, the trees'
margin is first weighed there against the recent incident rate (``models.blend``): a model
shrinks toward that rate as far as the newest days say it has nothing more to add. With
``TrainConfig.bags`` above one (an estate without telemetry) the trees are grown that many times
from consecutive seeds; each bag is blended and calibrated on its own and the published risk is
the mean of the bags' probabilities (``FailureModel.predict``).

``FailureModel.refit`` is how a configuration that passed the gate is brought up to date: the
same configuration on the window that ends at the latest labelled day, with as many boosting
rounds as early stopping chose for the gated fit, trees on the oldest 85% of the days and the
calibration on the newest 15% (no period is spent on early stopping).
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from dataclasses import dataclass, field, replace

# LightGBM's OpenMP threads spin while they wait for work by default. On a machine whose
# cores are shared (DuckDB, Dagster, other jobs) that spinning starves everyone: a fit of
# 6,000 rows took 17 s instead of 0.6 s on 2 busy cores. Passive waiting is set before
# LightGBM loads its OpenMP runtime (an operator's own OMP_WAIT_POLICY wins).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import lightgbm as lgb  # noqa: E402 - after the OpenMP setting above
import numpy as np
import polars as pl

from features.errors import DataError
from models.baselines import RecentRate
from models.blend import MIN_FAILURES as BLEND_MIN_FAILURES
from models.blend import RecentRateBlend
from models.calibration import Calibrator
from models.freed_memory import give_back_freed_memory


class NotEnoughData(DataError):
    """Too few failures (or days) in the training window to fit a model."""


@dataclass(frozen=True)
class TrainConfig:
    num_leaves: int = 31
    learning_rate: float = 0.05
    max_rounds: int = 400
    early_stopping_rounds: int = 40
    min_child_samples: int = 40
    feature_fraction: float = 0.7
    bagging_fraction: float = 0.8
    lambda_l2: float = 5.0
    quiet_per_failure: int = 20  # quiet rows kept per failure in the tree period (dataset)
    max_tree_rows: int = 160_000  # a bag's tree rows at most: fewer quiet rows a failure beyond
    fit_share: float = 0.70
    stop_share: float = 0.15
    min_failures: int = 20
    threads: int = 2
    seed: int = 7
    dask_scheduler: str | None = None  # a Dask scheduler address: the trees grow on that cluster
    leave_out: tuple[str, ...] = ()  # feature families not used (``models.reasons.family`` names)
    blend_recent_rate: bool = True  # weigh the trees against the recent incident rate (models.blend)
    case_library_mode: bool = True  # inputs and trees suited to telemetry or its absence (suited_to)
    bags: int = 1  # trees grown this many times (seeds seed, seed+1, ...), each calibrated

    def lightgbm_params(self) -> dict:
        # Early stopping watches both metrics: ``first_metric_only`` here reaches only the
        # callback LightGBM adds itself, not the explicit ``lgb.early_stopping`` of ``_boost``,
        # so a fit stops at the best round of whichever metric stalls first. Every model and
        # score in docs/model.md was made so; dropping the log loss moves the rounds (firm
        # scale: 133 -> 137), so it is kept.
        return {
            "objective": "binary",
            "metric": ["average_precision", "binary_logloss"],
            "first_metric_only": True,
            "num_leaves": self.num_leaves,
            "learning_rate": self.learning_rate,
            "min_child_samples": self.min_child_samples,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": 1,
            "lambda_l2": self.lambda_l2,
            "num_threads": self.threads,
            "seed": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "verbose": -1,
        }

    def __post_init__(self) -> None:
        object.__setattr__(self, "leave_out", tuple(sorted(set(self.leave_out))))

    def quiet_rows_per_failure(self, failures: int) -> float:
        """Quiet rows a failure that one bag's trees learn from, with ``failures`` in their
        period: ``quiet_per_failure``, or fewer (never under one) where that many would make
        the bag's rows exceed ``max_tree_rows``.

        The rows' cost is the trees' cost: at firm scale (14,347 failures in the tree period)
        20 quiet rows a failure are 301k rows, and the retrain job's two fits took most of its
        two minutes; with 160k rows (10.2 a failure) each fit takes half the time for a
        hold-out PR-AUC 2% lower (0.337 -> 0.330, three seeds; docs/model.md). Below 7,600 failures (every
        quality estate, LANL's five bags each) the budget does not bind."""
        if failures * (self.quiet_per_failure + 1) <= self.max_tree_rows:
            return self.quiet_per_failure
        return max(1.0, (self.max_tree_rows - failures) / failures)

    def to_dict(self) -> dict:
        return {**self.__dict__, "leave_out": list(self.leave_out)}

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: (tuple(v) if k == "leave_out" else v) for k, v in data.items()
                      if k in known})

    def inputs(self, features: list[str]) -> list[str]:
        """``features`` without the families this configuration leaves out, and without the long
        incident memory (``LONG_MEMORY``) where there is telemetry (``case_library_mode``)."""
        from models.reasons import family

        chosen = [f for f in features if family(f) not in self.leave_out]
        if self.case_library_mode and any(family(f) == "metric" for f in chosen):
            chosen = [f for f in chosen if not f.startswith(LONG_MEMORY)]
        return chosen

    def suited_to(self, features: list[str]) -> TrainConfig:
        """The trees for these inputs: without a metric feature (an estate that has only its
        case library, or a configuration that leaves the metrics out) small, strongly
        regularised ones (``CASE_LIBRARY_TREES``), unless ``case_library_mode`` is off."""
        from models.reasons import family

        if not self.case_library_mode or any(family(f) == "metric" for f in features):
            return self
        return replace(self, **{k: v(getattr(self, k)) for k, v in CASE_LIBRARY_TREES.items()})

    ENGINE = ("threads", "dask_scheduler")  # where the trees grow, not what they are

    def recipe(self) -> dict:
        """What makes two configurations the same model: everything but the engine."""
        return {k: v for k, v in self.to_dict().items() if k not in self.ENGINE}

    def with_data_plan_of(self, other: TrainConfig) -> TrainConfig:
        """This configuration's model settings on ``other``'s rows and engine: the same
        folds and machines, so two configurations compared on one training set see the same
        days. The thinning ratio is the configuration's own: a training set thinned to more
        quiet rows per failure is thinned further at fit time (``thin_tree_rows``)."""
        return replace(self, fit_share=other.fit_share, stop_share=other.stop_share,
                       seed=other.seed, threads=other.threads,
                       dask_scheduler=other.dask_scheduler)


# Counts and rates of a case library carry a weak, smooth signal: on the LANL records (no
# telemetry) trees of 15 leaves with at least 100 rows a leaf and L2 20 ranked failures better
# than the 31 / 40 / 5 that suit metric statistics; beside metrics they cost PR-AUC (short-history
# 0.2218 -> 0.2015; docs/model.md, "Trees without telemetry, the blend and the long memory").
# Such weak signal also makes one fit's ranking depend on its seed (LANL, monthly what-if:
# PR-AUC 0.0163..0.0173 over five seeds), so the trees are grown several times and averaged
# (``bags``; docs/model.md, "Bagged trees"). Each setting only ever tightens a configuration's own.
# The long incident memory (features.case_features: two years, fading weights, the second- and
# third-last incident) serves an estate without telemetry (LANL, monthly what-if: 1.180 -> 1.196
# times the recent rate's PR-AUC); beside metric statistics it measured no gain and a worse
# Brier on faint-precursors (docs/model.md), so a model with metric features leaves it out.
CASE_LIBRARY_BAGS = 5
LONG_MEMORY = ("inc_730d", "inc_decayed_", "days_since_2nd_incident", "days_since_3rd_incident")
CASE_LIBRARY_TREES = {
    "num_leaves": lambda v: min(v, 15),
    "min_child_samples": lambda v: max(v, 100),
    "lambda_l2": lambda v: max(v, 20.0),
    "bags": lambda v: max(v, CASE_LIBRARY_BAGS),
}


@dataclass
class TimeSplit:
    fit: tuple[dt.date, dt.date]
    stop: tuple[dt.date, dt.date] | None  # None in a refit: the rounds are already known
    calibrate: tuple[dt.date, dt.date]

    @classmethod
    def of(cls, days: list[dt.date], fit_share: float, stop_share: float) -> TimeSplit:
        if len(days) < 10:
            raise NotEnoughData(f"{len(days)} labelled days; a model needs at least 10")
        a = max(1, int(len(days) * fit_share))
        b = max(a + 1, int(len(days) * (fit_share + stop_share)))
        b = min(b, len(days) - 1)
        return cls((days[0], days[a - 1]), (days[a], days[b - 1]), (days[b], days[-1]))

    @classmethod
    def for_refit(cls, days: list[dt.date], tree_share: float) -> TimeSplit:
        """Trees on the oldest ``tree_share`` of the days, calibration on the rest."""
        if len(days) < 10:
            raise NotEnoughData(f"{len(days)} labelled days; a model needs at least 10")
        b = min(max(1, int(len(days) * tree_share)), len(days) - 1)
        return cls((days[0], days[b - 1]), None, (days[b], days[-1]))

    def to_dict(self) -> dict:
        return {k: [str(v[0]), str(v[1])] for k, v in
                (("fit", self.fit), ("stop", self.stop), ("calibrate", self.calibrate))
                if v is not None}

    @classmethod
    def from_dict(cls, data: dict | None) -> TimeSplit | None:
        if not data:
            return None

        def span(key: str):
            pair = data.get(key)
            return (dt.date.fromisoformat(pair[0]), dt.date.fromisoformat(pair[1])) if pair else None

        return cls(span("fit"), span("stop"), span("calibrate"))


def _between(frame: pl.DataFrame, span: tuple[dt.date, dt.date]) -> pl.DataFrame:
    """The rows of the days in ``span``, in the frame's order: a slice that copies nothing
    where the frame is in day order (as ``models.dataset`` reads a training set; at firm
    scale the tree period alone is 230 MB), a filtered copy otherwise."""
    days = frame["as_of"]
    if days.null_count() == 0 and days.is_sorted():
        first = days.search_sorted(span[0], side="left")
        return frame.slice(first, days.search_sorted(span[1], side="right") - first)
    return frame.filter(pl.col("as_of").is_between(span[0], span[1]))


def tree_period(frame: pl.DataFrame, config: TrainConfig) -> pl.DataFrame:
    """The rows whose days a fit of ``config`` on ``frame`` grows its trees from (before any
    thinning of ``thin_tree_rows``)."""
    days = sorted(frame["as_of"].unique().to_list())
    return _between(frame, TimeSplit.of(days, config.fit_share, config.stop_share).fit)


def matrix(frame: pl.DataFrame, features: list[str]) -> np.ndarray:
    """The frame's features as float32, in the model's order; absent columns are missing.

    Row-major, as LightGBM reads rows: it bins a firm-scale tree period (301k rows x 342
    features) in 6.9 s from it against 7.8 s from Polars' default column-major array, with
    the same bins (the same trees); Polars builds either in a third of a second."""
    present = [pl.col(c) if c in frame.columns else pl.lit(None).alias(c) for c in features]
    return frame.select(present).cast(pl.Float32).to_numpy(order="c")


def thin_tree_rows(fit: pl.DataFrame, quiet_per_failure: float, seed: int) -> pl.DataFrame:
    """The tree period with at most about ``quiet_per_failure`` quiet rows per failure.

    The training set was thinned in SQL to the ratio it was built with; a configuration with
    fewer quiet rows per failure (the search's thinning ratios) thins it further here, by a
    fixed-seed draw, so every configuration is fitted from the one training set."""
    failures = int(fit["label"].sum())
    quiet = fit.height - failures
    keep = max(failures, 1) * quiet_per_failure / max(quiet, 1)
    if keep >= 0.85:  # already (about) as thin as asked: the SQL draw is approximate
        return fit
    draw = np.random.default_rng(seed).random(fit.height) < keep
    return fit.filter(pl.Series(draw) | pl.col("label"))


def _rate_rows(frame: pl.DataFrame) -> pl.DataFrame:
    """The rows a rate can be estimated from (not those thinned for the trees), with only the
    columns the recent rate reads: a copy of every feature column of them (most of LANL's
    training frame) would be held beside the frame while the bags are calibrated."""
    columns = ["label", *RecentRate.features]
    if "thinned" not in frame.columns:
        return frame.select(columns)
    return frame.select(*columns, "thinned").filter(~pl.col("thinned")).drop("thinned")


@dataclass(frozen=True)
class BagCalibration:
    """One bag's own way from its trees' log-odds to a probability: its blend with the recent
    rate (None: the margin alone) and its calibration, both fitted on the calibration period."""

    blend: RecentRateBlend | None
    calibrator: Calibrator

    def to_dict(self) -> dict:
        return {"blend": self.blend.to_dict() if self.blend else None,
                "calibration": self.calibrator.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> BagCalibration:
        return cls(RecentRateBlend.from_dict(data.get("blend")),
                   Calibrator.from_dict(data["calibration"]))


def _calibrations(boosters: tuple[lgb.Booster, ...], features: list[str],
                  calibrate: pl.DataFrame, history: pl.DataFrame,
                  config: TrainConfig) -> list[BagCalibration]:
    """Each bag's blend with the recent rate (when configured) and its calibration, fitted on
    the ``calibrate`` rows, which the trees never saw.

    Each bag on its own: bags stop early at very different rounds (LANL, one month: 4 to 164),
    so their raw log-odds are on different scales and a plain mean follows the longest; the
    mean of the bags' calibrated probabilities ranked better (LANL monthly what-if: PR-AUC
    0.0177 against 0.0171; docs/model.md, "Bagged trees (LANL, monthly what-if)")."""
    labels = calibrate["label"].to_numpy()
    # Rows without the rate's inputs (a frame of hand-made features) have no rate to lean on.
    usable = (config.blend_recent_rate and set(RecentRate.features) <= set(calibrate.columns)
              and labels.sum() >= BLEND_MIN_FAILURES)
    rate_history = _rate_rows(history) if usable else None
    X = matrix(calibrate, features)
    out = []
    for booster in boosters:
        margin = _trees_margin(booster, X)
        blend = RecentRateBlend.fit(margin, calibrate, rate_history) if usable else None
        out.append(BagCalibration(
            blend, Calibrator.fit(blend(margin, calibrate) if blend else margin, labels)))
    return out


def _trees_margin(booster: lgb.Booster, X: np.ndarray, **how) -> np.ndarray:
    """One booster's log-odds (or with ``pred_contrib``, its SHAP values and bias), at the
    rounds early stopping kept."""
    return booster.predict(X, raw_score=True, num_iteration=booster.best_iteration or None, **how)


def _grow(fit: pl.DataFrame, useful: list[str], trees: TrainConfig, rounds: int,
          stop: pl.DataFrame | None = None) -> tuple[tuple[lgb.Booster, ...], dict]:
    """``trees.bags`` boosters, each from its own seed: its own draw of the quiet rows (where
    the tree period holds more than ``quiet_per_failure``) and LightGBM's row and feature
    sampling. The first is the one a single fit would grow. Also returns the first bag's
    facts for ``info`` (its tree rows, the engine)."""
    boosters, facts, shared = [], {}, None
    for bag in range(trees.bags):
        grown = replace(trees, seed=trees.seed + bag)
        rows = thin_tree_rows(fit, grown.quiet_rows_per_failure(int(fit["label"].sum())),
                              grown.seed)
        if grown.dask_scheduler:
            from models.dask_training import train_trees

            booster, engine = train_trees(grown.dask_scheduler, rows, stop, useful,
                                          replace(grown, max_rounds=rounds))
        else:
            # Bags that learn from every row of the tree period share its bins: LightGBM bins
            # every row up to BIN_SAMPLE_ROWS whatever the seed, so they are the bins each bag
            # would make (identical trees, one binning for all the bags).
            reuse = rows is fit and fit.height <= BIN_SAMPLE_ROWS
            data = shared if reuse and shared else _binned(rows, useful, stop,
                                                           grown.lightgbm_params())
            shared = data if reuse else None
            booster, engine = _boost(data, grown, rounds), {"engine": "local"}
        boosters.append(booster)
        facts = facts or {"tree_rows": rows.height, **engine}
        del rows
        give_back_freed_memory()  # this bag's draw and matrix, before the next bag's
    return tuple(boosters), facts


# LightGBM's ``bin_construct_sample_cnt``: up to this many rows every row is binned, so the
# bins do not depend on the seed.
BIN_SAMPLE_ROWS = 200_000


@dataclass(frozen=True)
class _Binned:
    """A tree period's rows and the early-stopping rows (None: a refit), as LightGBM's bins."""

    train: lgb.Dataset
    stop: lgb.Dataset | None


# Binning holds, for a moment, a copy of every sampled value as a double beside the matrix
# (at firm scale about 1 GB over the frame): fits side by side (``models.search``) take turns.
_BINNING = threading.Lock()


def _binned(fit: pl.DataFrame, useful: list[str], stop: pl.DataFrame | None,
            params: dict) -> _Binned:
    with _BINNING:
        train = lgb.Dataset(matrix(fit, useful), fit["label"].to_numpy(), feature_name=useful,
                            params=params, free_raw_data=True).construct()
        if stop is None:
            return _Binned(train, None)
        return _Binned(train, lgb.Dataset(matrix(stop, useful), stop["label"].to_numpy(),
                                          reference=train).construct())


def _boost(data: _Binned, config: TrainConfig, rounds: int) -> lgb.Booster:
    """LightGBM trees: early stopping on ``data.stop`` when given, else exactly ``rounds``."""
    if data.stop is None:
        return lgb.train(config.lightgbm_params(), data.train, num_boost_round=rounds)
    return lgb.train(
        config.lightgbm_params(),
        data.train,
        num_boost_round=rounds,
        valid_sets=[data.stop],
        callbacks=[lgb.early_stopping(config.early_stopping_rounds, verbose=False)],
    )


@dataclass
class FailureModel:
    booster: lgb.Booster
    features: list[str]
    calibrator: Calibrator
    split: TimeSplit | None = None
    info: dict = field(default_factory=dict)
    config: TrainConfig = field(default_factory=TrainConfig)
    blend: RecentRateBlend | None = None  # None: the trees' margin alone is calibrated
    bags: tuple[lgb.Booster, ...] = ()  # the other bags' trees, beside ``booster``
    # The other bags' own blend and calibration, in ``bags`` order. Empty with bags: a model
    # stored before bags were calibrated one by one, whose bags' mean log-odds are blended and
    # calibrated once by ``blend`` and ``calibrator``.
    bag_calibrations: tuple[BagCalibration, ...] = ()

    def __post_init__(self) -> None:
        if self.bag_calibrations and len(self.bag_calibrations) != len(self.bags):
            raise ValueError(f"{len(self.bags)} other bags but {len(self.bag_calibrations)} "
                             "calibrations of their own")

    @property
    def inputs(self) -> list[str]:
        """Columns scoring reads: the trees' features, then the blend's rate inputs."""
        extra = [f for f in (self.blend.rate.features if self.blend else []) if f not in self.features]
        return [*self.features, *extra]

    @property
    def trained_through(self) -> dt.date | None:
        """The latest as-of day whose label this model learned from (trees or calibration)."""
        return self.split.calibrate[1] if self.split else None

    @property
    def boosters(self) -> tuple[lgb.Booster, ...]:
        return (self.booster, *self.bags)

    @property
    def rounds(self) -> int:
        """Boosting rounds in use: early stopping's choice, or all of them."""
        best = self.booster.best_iteration
        return best if best and best > 0 else self.booster.num_trees()

    # ------------------------------------------------------------------ training
    @classmethod
    def fit(cls, frame: pl.DataFrame, features: list[str], config: TrainConfig | None = None,
            ) -> FailureModel:
        """Train on a frame with ``as_of``, ``label`` and the ``features`` columns."""
        config = config or TrainConfig()
        failures = int(frame["label"].sum())
        if failures < config.min_failures:
            raise NotEnoughData(
                f"{failures} failures in the training window; a model needs {config.min_failures}")
        days = sorted(frame["as_of"].unique().to_list())
        split = TimeSplit.of(days, config.fit_share, config.stop_share)
        fit = _between(frame, split.fit)
        stop, calibrate = _between(frame, split.stop), _between(frame, split.calibrate)
        if stop["label"].sum() == 0 or calibrate["label"].sum() == 0:
            # Few failures late in the window: stop and calibrate on the same later period
            # rather than fail; it is still later than the trees.
            later = pl.concat([stop, calibrate])
            stop = calibrate = later
            if later["label"].sum() == 0:
                raise NotEnoughData("no failure after the tree period to calibrate on")
        useful = [c for c in config.inputs(features) if fit[c].null_count() < fit.height]
        trees = config.suited_to(useful)
        boosters, engine = _grow(fit, useful, trees, config.max_rounds, stop)
        del fit  # the tree period's rows: not held while the bags are calibrated
        first, *others = _calibrations(boosters, useful, calibrate, frame, config)
        info = {
            "rows": frame.height,
            "failures": failures,
            "best_iteration": boosters[0].best_iteration,
            "features_used": len(useful),
            "calibration": first.calibrator.method,
            **_trees_info(trees, config),
            **_blend_info(first.blend),
            **engine,
        }
        return cls(boosters[0], useful, first.calibrator, split, info, config, first.blend,
                   boosters[1:], tuple(others))

    @classmethod
    def refit(cls, frame: pl.DataFrame, features: list[str], config: TrainConfig,
              rounds: int) -> FailureModel:
        """``config`` brought up to the newest day of ``frame``: ``rounds`` boosting rounds on
        the oldest days (``fit_share + stop_share`` of them), calibration on the newest."""
        failures = int(frame["label"].sum())
        if failures < config.min_failures:
            raise NotEnoughData(
                f"{failures} failures in the refit window; a model needs {config.min_failures}")
        days = sorted(frame["as_of"].unique().to_list())
        split = TimeSplit.for_refit(days, config.fit_share + config.stop_share)
        fit = _between(frame, split.fit)
        calibrate = _between(frame, split.calibrate)
        if calibrate["label"].sum() == 0:
            raise NotEnoughData(
                f"no failure in the newest labelled days ({split.calibrate[0]}..{split.calibrate[1]}) "
                "to calibrate the refit on")
        useful = [c for c in config.inputs(features) if fit[c].null_count() < fit.height]
        trees = config.suited_to(useful)
        boosters, engine = _grow(fit, useful, trees, max(1, rounds))
        del fit  # the tree period's rows: not held while the bags are calibrated
        first, *others = _calibrations(boosters, useful, calibrate, frame, config)
        info = {
            "rows": frame.height,
            "failures": failures,
            "refit_rounds": boosters[0].num_trees(),
            "features_used": len(useful),
            "calibration": first.calibrator.method,
            **_trees_info(trees, config),
            **_blend_info(first.blend),
            **engine,
        }
        return cls(boosters[0], useful, first.calibrator, split, info, config, first.blend,
                   boosters[1:], tuple(others))

    # ------------------------------------------------------------------ scoring
    @property
    def calibrations(self) -> tuple[BagCalibration, ...]:
        """Each bag's blend and calibration, ``booster``'s first; one for all the bags' mean
        when the model calibrates their mean (see ``bag_calibrations``)."""
        return (BagCalibration(self.blend, self.calibrator), *self.bag_calibrations)

    def _members(self) -> list[tuple[tuple[lgb.Booster, ...], BagCalibration]]:
        """(trees, their blend and calibration): one pair a bag, or all bags with one."""
        if self.bag_calibrations or not self.bags:
            return [((b,), c) for b, c in zip(self.boosters, self.calibrations, strict=True)]
        return [(self.boosters, self.calibrations[0])]

    def _margins(self, frame: pl.DataFrame) -> list[tuple[np.ndarray, Calibrator]]:
        X = matrix(frame, self.features)
        out = []
        for boosters, calibration in self._members():
            trees = np.mean([_trees_margin(b, X) for b in boosters], axis=0)
            out.append((calibration.blend(trees, frame) if calibration.blend else trees,
                        calibration.calibrator))
        return out

    def margin(self, frame: pl.DataFrame) -> np.ndarray:
        """Log-odds before calibration: the trees', blended with the recent rate's; with bags,
        the mean of the bags' (what the reasons of ``contributions`` add up to)."""
        return np.mean([margin for margin, _ in self._margins(frame)], axis=0)

    def predict(self, frame: pl.DataFrame) -> np.ndarray:
        """Calibrated probability of a failure in each row's label window; with bags, the
        mean of the bags' calibrated probabilities."""
        return np.mean([calibrator(margin) for margin, calibrator in self._margins(frame)],
                       axis=0)

    def contributions(self, frame: pl.DataFrame) -> np.ndarray:
        """LightGBM's own SHAP values: (rows, features + 1); the last column is the bias. With
        a blend, the trees' values scaled by their weight and the rate's log-odds added to its
        inputs; with bags, the mean of the bags'. Each row sums to its ``margin``; with more
        than one bag, whose probabilities are calibrated one by one, that margin ranks the
        systems of a day as the published risk does, closely but not exactly."""
        X = matrix(frame, self.features)
        out = []
        for boosters, calibration in self._members():
            trees = np.mean([_trees_margin(b, X, pred_contrib=True) for b in boosters], axis=0)
            out.append(calibration.blend.contributions(trees, frame, self.features)
                       if calibration.blend else trees)
        return np.mean(out, axis=0)

    def importance(self) -> pl.DataFrame:
        return pl.DataFrame({
            "feature": self.features,
            "gain": sum(b.feature_importance("gain").astype(float) for b in self.boosters),
        }).sort("gain", descending=True)


def _blend_info(blend: RecentRateBlend | None) -> dict:
    if blend is None:
        return {}
    return {"blend_model_weight": round(blend.model_weight, 4),
            "blend_rate_weight": round(blend.rate_weight, 4)}


def _trees_info(trees: TrainConfig, asked: TrainConfig) -> dict:
    """The tree settings used, when the inputs changed them (``TrainConfig.suited_to``)."""
    if trees is asked:
        return {}
    return {"trees": "case library", **{f"{k}_used": getattr(trees, k) for k in CASE_LIBRARY_TREES}}
