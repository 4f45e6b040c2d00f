"""Model selection inside each retraining: a few configurations, chosen inside the training window.

One fixed LightGBM configuration does not suit every estate: 40 failures call for small,
strongly regularised trees, 7,000 can afford larger ones. ``search`` fits a handful of
configurations (``grid``) on the gated fit's training set and keeps the one that ranks the
failures of the training window's own newest days best:

- **inner validation**: each configuration is fitted exactly as ``FailureModel.fit`` fits a
  model (trees on the oldest 70% of the training window's days, early stopping on the next
  15%), and scored by the PR-AUC of its margin on the window's newest 15% (the period its
  calibration and its blend with the recent rate are fitted on, which neither the trees nor
  early stopping saw; the blend's two weights are fitted there alike for every configuration).
  The hold-out and everything after it are never read: the gate judges the chosen
  configuration on them as it judges any candidate.
- **choice**: another configuration replaces the policy's own only when it ranks the inner
  days' failures better *beyond noise*: the lower end of the paired day-bootstrap interval of
  its PR-AUC difference to ``base`` (the gate's ``compare_scorers``, 90%) above zero. Among
  those, the highest inner PR-AUC; none: ``base``. A search that measured a gain within noise
  (issue 12: short-history chose a configuration that did not hold up) leaves the policy's
  configuration in place. The chosen configuration's fit *is* the candidate: nothing is fitted
  twice.
- **cost**: every configuration reuses the one training set in memory (a thinner ratio thins
  its tree rows further, a family left out drops columns); smaller trees, fewer rows and fewer
  features cost less than the policy's own fit. ``max_configurations`` bounds the work, and
  ``at_once`` configurations are fitted side by side, each with its own LightGBM threads (the
  trees each grows alone, in less time on cores one fit leaves idle, for more memory).

The grid (``grid``), from the failures ``F`` in the training window and the policy's
configuration ``base``:

=====================  ==========================================================================
``base``               the policy's configuration, always first
``F < few_failures``   ``regularised`` (4 leaves, at least 60 rows a leaf, L2 25, half the
                       features per tree) and ``stumps`` (2 leaves, L2 25: an additive model):
                       little history shrinks the model toward a few strong effects instead of
                       jumping to the baseline
``F < many_failures``  ``smaller`` (15 leaves, twice the rows a leaf, four times the L2)
``F >= many_failures`` ``larger`` (63 leaves, half the rows a leaf, at least 20)
``without <families>`` ``base`` with the feature families of ``leave_out_options`` left out
                       (default: metric statistics and peers, i.e. incidents, changes,
                       dependencies, calendar and inventory only)
``thinner``            ``base`` with ``thin_to`` quiet rows per failure in the tree period, where
                       that is at most half of what ``base``'s trees learn from: the row budget
                       (``TrainConfig.max_tree_rows``) thins them already at firm scale (to 10.2
                       a failure), and 8 would repeat ``base`` on 81% of its rows
=====================  ==========================================================================
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial

import numpy as np
import polars as pl

from models.gate import Comparison, GateConfig, compare_scorers
from models.model import FailureModel, NotEnoughData, TrainConfig, tree_period
from models.reasons import FAMILIES as FAMILIES  # what a configuration may leave out

BASE = "base"


@dataclass(frozen=True)
class SearchConfig:
    """Whether the policy searches, and over what (see the module's table)."""

    enabled: bool = False
    max_configurations: int = 4
    few_failures: int = 200  # below: strongly regularised configurations
    many_failures: int = 2000  # from here on: a larger tree is tried
    thin_to: int = 8  # quiet rows per failure of the ``thinner`` configuration
    leave_out_options: tuple[tuple[str, ...], ...] = (("metric", "peers"),)
    # Configurations fitted at once. One fit at a time kept the firm-scale retrain job's 2
    # cores only 1.5 busy (LightGBM's serial steps); a second fit beside it fills them.
    # Each fit's own threads stay ``TrainConfig.threads``, so its trees are the same.
    at_once: int = 2

    def params(self) -> dict[str, object]:
        """Flat, for MLflow."""
        return {"search": self.enabled,
                **({"search_max_configurations": self.max_configurations,
                    "search_few_failures": self.few_failures,
                    "search_many_failures": self.many_failures,
                    "search_thin_to": self.thin_to,
                    "search_at_once": self.at_once,
                    "search_leave_out_options": ";".join(
                        "+".join(o) for o in self.leave_out_options)} if self.enabled else {})}


def grid(base: TrainConfig, failures: int, search: SearchConfig,
         features: list[str] | None = None,
         tree_failures: int | None = None) -> dict[str, TrainConfig]:
    """The named configurations to try, the policy's own first (see the module's table). A
    family option that would leave out no feature of ``features`` is not tried, nor a thinner
    ratio that keeps more than half the quiet rows ``base``'s trees learn from with
    ``tree_failures`` in their period (the row budget may thin them already)."""
    sizes: dict[str, TrainConfig] = {}
    if failures < search.few_failures:
        sizes["regularised"] = replace(
            base, num_leaves=4, min_child_samples=max(base.min_child_samples, 60),
            lambda_l2=max(base.lambda_l2, 25.0), feature_fraction=min(base.feature_fraction, 0.5))
        sizes["stumps"] = replace(base, num_leaves=2, lambda_l2=max(base.lambda_l2, 25.0))
    elif failures < search.many_failures:
        sizes["smaller"] = replace(base, num_leaves=15, min_child_samples=2 * base.min_child_samples,
                                   lambda_l2=4 * base.lambda_l2)
    else:
        sizes["larger"] = replace(base, num_leaves=63,
                                  min_child_samples=max(20, base.min_child_samples // 2))
    families = {}
    for option in search.leave_out_options:
        fewer = replace(base, leave_out=(*base.leave_out, *option))
        if features is None or len(fewer.inputs(features)) < len(base.inputs(features)):
            families[f"without {', '.join(option)}"] = fewer
    base_ratio = base.quiet_rows_per_failure(tree_failures or 0)
    thinner = ({"thinner": replace(base, quiet_per_failure=search.thin_to)}
               if search.thin_to <= base_ratio / 2 else {})
    named = {BASE: base, **sizes, **families, **thinner}
    return dict(list(named.items())[:max(1, search.max_configurations)])


def changes(config: TrainConfig, base: TrainConfig) -> str:
    """What a configuration changes in ``base``, in a few words (``num_leaves=4, ...``)."""
    differ = [f"{k}={'+'.join(v) if isinstance(v, list) else v}"
              for k, v in config.recipe().items() if base.recipe()[k] != v]
    return ", ".join(differ) or "the policy's configuration"


@dataclass
class SearchResult:
    chosen: str | None  # the name of the chosen configuration (None: none could be fitted)
    fitted: dict[str, FailureModel]  # every configuration that could be fitted, by name
    configs: dict[str, TrainConfig]
    table: pl.DataFrame  # one row per configuration: what it is, its inner score, its cost
    notes: list[str] = field(default_factory=list)

    @property
    def model(self) -> FailureModel | None:
        return self.fitted.get(self.chosen) if self.chosen else None

    @property
    def config(self) -> TrainConfig | None:
        return self.configs.get(self.chosen) if self.chosen else None

    def fitted_with(self, config: TrainConfig) -> FailureModel | None:
        """A fit of the same recipe, when the search made one (the champion's configuration
        is often one of the grid's): the gate's comparison needs no second fit of it."""
        for name, model in self.fitted.items():
            if self.configs[name].recipe() == config.recipe():
                return model
        return None

    def params(self) -> dict[str, object]:
        """The chosen configuration, flat, for MLflow (``chosen_num_leaves``, ...)."""
        if self.config is None:
            return {"search_chosen": "none"}
        return {"search_chosen": self.chosen,
                **{f"chosen_{k}": v for k, v in self.config.recipe().items()}}

    def metrics(self) -> dict[str, float]:
        out = {}
        for row in self.table.iter_rows(named=True):
            if row["inner_pr_auc"] is not None:
                out[f"search_{row['name'].replace(' ', '_').replace(',', '')}_inner_pr_auc"] = \
                    row["inner_pr_auc"]
        return out


def inner_rows(model: FailureModel, frame: pl.DataFrame) -> pl.DataFrame:
    """The model's calibration period: the training window's newest days, which its trees and
    early stopping did not see."""
    first, last = model.split.calibrate
    return frame.filter(pl.col("as_of").is_between(first, last))


def inner_score(label: np.ndarray, margin: np.ndarray) -> float | None:
    """PR-AUC of a configuration's margin on ``inner_rows`` (None: one class only)."""
    from sklearn.metrics import average_precision_score

    failures = int(label.sum())
    if failures == 0 or failures == label.size:
        return None
    return float(average_precision_score(label, margin))


def beyond_noise(margins: dict[str, np.ndarray], rows: pl.DataFrame,
                 gate: GateConfig | None = None) -> dict[str, Comparison]:
    """Each configuration's inner PR-AUC against ``base``'s, from their margins on the same
    inner ``rows``, with the gate's paired day bootstrap (its default 90% level): one
    ``Comparison`` per configuration other than ``base``."""
    gate = gate or GateConfig()
    if BASE not in margins or len(margins) < 2:
        return {}
    if rows.is_empty() or not rows["label"].any() or rows["label"].all():
        return {}
    pairs = [(name, BASE) for name in margins if name != BASE]
    compared = compare_scorers(rows["as_of"].to_numpy(), rows["label"].to_numpy(), margins,
                               pairs, gate)
    return {c.scorer: c for c in compared}


def choose(scores: dict[str, float | None], beats_base: dict[str, bool]) -> str | None:
    """``base`` unless another configuration beats it beyond noise; among those, the highest
    inner PR-AUC (ties: listed first). Without ``base``'s score, the highest score."""
    scored = {name: score for name, score in scores.items() if score is not None}
    if not scored:
        return None
    if BASE in scored:
        scored = {name: score for name, score in scored.items()
                  if name == BASE or beats_base.get(name, False)}
    best = max(scored.values())
    return next(name for name, score in scored.items() if score == best)


@dataclass
class _Fitted:
    """One configuration's fit and its margin on its inner rows, or why it could not be fitted."""

    model: FailureModel | None
    seconds: float
    error: str = ""
    inner: pl.DataFrame | None = None
    margin: np.ndarray | None = None

    def score(self) -> tuple[float | None, int, int]:
        """(inner PR-AUC, rows, failures)."""
        if self.inner is None:
            return None, 0, 0
        label = self.inner["label"].to_numpy()
        return inner_score(label, self.margin), label.size, int(label.sum())


def _fit_and_score(frame: pl.DataFrame, features: list[str], candidate: TrainConfig) -> _Fitted:
    started = time.perf_counter()
    try:
        model = FailureModel.fit(frame, features, candidate)
    except NotEnoughData as exc:
        return _Fitted(None, time.perf_counter() - started, str(exc))
    inner = inner_rows(model, frame)
    return _Fitted(model, time.perf_counter() - started, "", inner, model.margin(inner))


def search(frame: pl.DataFrame, features: list[str], base: TrainConfig,
           config: SearchConfig) -> SearchResult:
    """Fit every configuration of ``grid`` on ``frame`` (the gated fit's training set) and
    choose by the inner validation; ``frame`` must not hold the hold-out's days."""
    failures = int(frame["label"].sum()) if frame.height else 0
    try:
        tree_failures = int(tree_period(frame, base)["label"].sum())
    except NotEnoughData:
        tree_failures = None
    configs = grid(base, failures, config, features, tree_failures)
    # LightGBM's network for training on a Dask cluster is one per worker process: two
    # configurations would train on the same workers at once, so a cluster fits one at a time.
    at_once = 1 if base.dask_scheduler else max(1, config.at_once)
    with ThreadPoolExecutor(max_workers=at_once) as pool:
        outcomes = dict(zip(configs, pool.map(partial(_fit_and_score, frame, features),
                                              configs.values()), strict=True))
    fitted = {name: o.model for name, o in outcomes.items() if o.model is not None}
    inner = outcomes[BASE].inner if BASE in fitted else None
    margins = {name: o.margin for name, o in outcomes.items()  # base's inner rows, alike
               if o.model is not None and inner is not None
               and o.model.split.calibrate == fitted[BASE].split.calibrate}
    notes = [f"{name} could not be fitted: {o.error}" for name, o in outcomes.items() if o.error]
    rows = [_row(name, configs[name], base, o.model, o.seconds, o.error, o.score())
            for name, o in outcomes.items()]
    compared = beyond_noise(margins, inner) if inner is not None else {}
    table = pl.DataFrame(rows, schema=_SCHEMA).with_columns(
        vs_base_low=pl.Series([compared[n].low if n in compared else None for n in configs],
                              dtype=pl.Float64),
        beats_base=pl.Series([compared[n].pr_auc_beats if n in compared else None
                              for n in configs], dtype=pl.Boolean))
    chosen = choose(dict(zip(table["name"], table["inner_pr_auc"], strict=True)),
                    {name: c.pr_auc_beats for name, c in compared.items()})
    if chosen is None:
        chosen = next(iter(fitted), None)  # nothing to score on: the first that was fitted
    table = table.with_columns(chosen=pl.col("name") == pl.lit(chosen))
    return SearchResult(chosen, fitted, configs, table, notes)


_SCHEMA = {"name": pl.String, "changes": pl.String, "config": pl.String,
           "inner_pr_auc": pl.Float64, "inner_rows": pl.Int64, "inner_failures": pl.Int64,
           "rounds": pl.Int64, "tree_rows": pl.Int64, "features_used": pl.Int64,
           "seconds": pl.Float64, "error": pl.String}


def _row(name: str, config: TrainConfig, base: TrainConfig, model: FailureModel | None,
         seconds: float, error: str, score: tuple[float | None, int, int] = (None, 0, 0)) -> dict:
    inner, inner_rows, inner_failures = score
    return {"name": name, "changes": changes(config, base),
            "config": json.dumps(config.recipe(), sort_keys=True),
            "inner_pr_auc": None if inner is None or np.isnan(inner) else round(inner, 6),
            "inner_rows": inner_rows, "inner_failures": inner_failures,
            "rounds": model.rounds if model else None,
            "tree_rows": model.info.get("tree_rows") if model else None,
            "features_used": len(model.features) if model else None,
            "seconds": round(seconds, 2), "error": error}
