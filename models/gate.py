"""The champion gate: one pure function from hold-out scores to a typed decision.

Every scorer (the candidate configuration, the champion's configuration refitted on the same
days, the baselines) has scored the same held-out rows. A scorer *beats* a reference when its
PR-AUC is higher by more than ``min_improvement`` and by more than noise: the lower end of a
paired bootstrap interval of the PR-AUC difference, resampling whole hold-out *days* (a day's
systems share its weather: a market event, a release night), lies above ``min_improvement``;
and its Brier score is not worse beyond noise: the lower end of the same resamples' interval
of the Brier difference stays within ``brier_tolerance`` (relative) of the reference's Brier.
A tie never beats, so a tie keeps the incumbent.

The incumbent's configuration (the champion's, refitted each retrain) only has to hold its
ground: it is refreshed unless a baseline beats *it* beyond noise. A small but real edge (LANL:
PR-AUC 0.017 against 0.015 over 20 months) is rarely provable on one 40-day hold-out; asking the
same recipe to prove it again every week left the champion unrefreshed for months.

The PR-AUC of a resample is computed exactly, without re-sorting: with day multiplicities
``c``, average precision is ``sum_i c[day_i] * P(s_i) / sum_i c[day_i]`` over the failures
``i``, where ``P(s)`` is the weighted precision of the rows scored ``>= s``; the counts of
failures and quiet rows at or above each failure's score, per day, are computed once. With
every multiplicity 1 this is scikit-learn's ``average_precision_score``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

PROMOTE, REFRESH, KEEP, FALLBACK = "promote", "refresh", "keep", "fallback"


@dataclass(frozen=True)
class GateConfig:
    min_improvement: float = 0.0  # PR-AUC points a scorer must gain over a reference
    confidence: float = 0.90  # two-sided level of the bootstrap interval
    resamples: int = 1000
    brier_tolerance: float = 0.02  # relative: Brier may be at most 2% worse
    seed: int = 7


@dataclass(frozen=True)
class Comparison:
    """``scorer`` against ``reference`` on the same held-out rows."""

    scorer: str
    reference: str
    pr_auc: float
    reference_pr_auc: float
    difference: float
    low: float  # bootstrap interval of the difference
    high: float
    brier: float
    reference_brier: float
    brier_low: float  # bootstrap interval of the Brier difference
    brier_high: float
    pr_auc_beats: bool
    brier_ok: bool

    @property
    def beats(self) -> bool:
        return self.pr_auc_beats and self.brier_ok

    @property
    def loses(self) -> bool:
        """The reference is better beyond noise (PR-AUC), or this Brier is worse beyond it."""
        return (self.difference < 0 and self.high < 0) or not self.brier_ok

    def interval(self) -> str:
        return f"{self.low:+.4f}..{self.high:+.4f}"

    def sentence(self, confidence: float, min_improvement: float) -> str:
        verdict = ("beats" if self.beats else "loses to" if self.loses
                   else "does not beat (within noise)")
        text = (f"{self.scorer} {verdict} {self.reference}: PR-AUC {self.pr_auc:.4f} vs "
                f"{self.reference_pr_auc:.4f}, difference {self.difference:+.4f} "
                f"({confidence:.0%} interval {self.interval()}")
        if not self.pr_auc_beats:
            text += f", needs its low end above {min_improvement:+.4f}"
        text += ")"
        if not self.brier_ok:
            text += (f", Brier {self.brier:.5f} worse than {self.reference_brier:.5f} beyond "
                     f"noise (interval of the difference {self.brier_low:+.5f}..{self.brier_high:+.5f})")
        return text


@dataclass(frozen=True)
class GateDecision:
    """What the hold-out says, and what the policy does about it.

    ``action``: ``promote`` (the candidate configuration serves), ``refresh`` (the champion's
    configuration serves, refitted), ``keep`` (the champion stays as it is), ``fallback`` (no
    model serves: the best baseline does).
    """

    action: str
    candidate_beats_baselines: bool
    candidate_beats_champion: bool | None  # None: no champion, or the same configuration
    champion_holds: bool | None  # no baseline beats the champion's configuration beyond noise
    best_baseline: str
    comparisons: tuple[Comparison, ...]
    reason: str
    rows: int
    failures: int
    days: int
    config: GateConfig = field(default_factory=GateConfig)

    @property
    def serves_model(self) -> bool:
        return self.action in (PROMOTE, REFRESH)

    def comparison(self, scorer: str, reference: str) -> Comparison | None:
        return next((c for c in self.comparisons
                     if c.scorer == scorer and c.reference == reference), None)

    def tags(self) -> dict[str, str]:
        """MLflow tags, written from the fields (never parsed back from the reason)."""
        out = {
            "gate.action": self.action,
            "gate.beats_baselines": str(self.candidate_beats_baselines),
            "gate.beats_champion": str(self.candidate_beats_champion),
            "gate.champion_holds": str(self.champion_holds),
            "gate.best_baseline": self.best_baseline,
            "gate.reason": self.reason[:5000],
            "gate.holdout": f"{self.days} days, {self.rows} rows, {self.failures} failures",
            "gate.rule": (f"PR-AUC difference {self.config.confidence:.0%} interval above "
                          f"{self.config.min_improvement:+.4f} (paired bootstrap over days, "
                          f"{self.config.resamples} resamples); Brier not worse than "
                          f"{self.config.brier_tolerance:.0%} beyond noise"),
        }
        for c in self.comparisons:
            verdict = "beats" if c.beats else "loses to" if c.loses else "within noise of"
            out[f"gate.{c.scorer}_vs_{c.reference}"] = (
                f"{verdict}: {c.difference:+.4f} [{c.interval()}]")
        return out

    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for c in self.comparisons:
            key = f"gate_{c.scorer}_vs_{c.reference}"
            out[f"{key}_difference"] = c.difference
            out[f"{key}_low"], out[f"{key}_high"] = c.low, c.high
            out[f"{key}_brier_difference"] = c.brier - c.reference_brier
        return out


# ---------------------------------------------------------------------------- the statistics


@dataclass(frozen=True)
class _Counts:
    """Per failure ``i``: its day, and per day the failures and quiet rows scored >= s_i."""

    day_of_failure: np.ndarray  # (failures,)
    failures_at_or_above: np.ndarray  # (failures, days)
    quiet_at_or_above: np.ndarray  # (failures, days)


def _counts(day: np.ndarray, label: np.ndarray, score: np.ndarray, days: int) -> _Counts:
    positive = label.astype(bool)
    thresholds = score[positive]
    failures = np.zeros((thresholds.size, days))
    quiet = np.zeros((thresholds.size, days))
    for d in range(days):
        on_day = day == d
        for target, rows in ((failures, score[on_day & positive]),
                             (quiet, score[on_day & ~positive])):
            ordered = np.sort(rows)
            target[:, d] = ordered.size - np.searchsorted(ordered, thresholds, side="left")
    return _Counts(day[positive], failures, quiet)


def _average_precision(counts: _Counts, multiplicity: np.ndarray) -> np.ndarray:
    """PR-AUC for each row of ``multiplicity`` (resamples x days)."""
    hits = multiplicity @ counts.failures_at_or_above.T  # (resamples, failures)
    flagged = hits + multiplicity @ counts.quiet_at_or_above.T
    weight = multiplicity[:, counts.day_of_failure]
    precision = np.divide(hits, flagged, out=np.zeros_like(hits), where=flagged > 0)
    total = weight.sum(axis=1)
    return np.divide((weight * precision).sum(axis=1), total, out=np.full(total.shape, np.nan),
                     where=total > 0)


def average_precision(day: np.ndarray, label: np.ndarray, score: np.ndarray) -> float:
    """PR-AUC of one scorer (equals scikit-learn's ``average_precision_score``)."""
    codes, days = _day_codes(day)
    counts = _counts(codes, np.asarray(label), np.asarray(score, dtype=float), days)
    return float(_average_precision(counts, np.ones((1, days)))[0])


def _day_codes(day: np.ndarray) -> tuple[np.ndarray, int]:
    values, codes = np.unique(np.asarray(day), return_inverse=True)
    return codes.ravel(), len(values)


def _brier_by_day(codes: np.ndarray, days: int, label: np.ndarray,
                  score: np.ndarray) -> np.ndarray:
    """Sum of squared errors per day."""
    return np.bincount(codes, weights=(np.clip(score, 0, 1) - label) ** 2, minlength=days)


def compare_scorers(day: np.ndarray, label: np.ndarray, scores: dict[str, np.ndarray],
                    pairs: list[tuple[str, str]], config: GateConfig) -> list[Comparison]:
    """Each (scorer, reference) pair, with one set of day resamples shared by all pairs."""
    codes, days = _day_codes(day)
    label = np.asarray(label).astype(float)
    rng = np.random.default_rng(config.seed)
    multiplicity = rng.multinomial(days, np.full(days, 1.0 / days), size=config.resamples)
    whole = np.ones((1, days))
    names = {name for pair in pairs for name in pair}
    counts = {n: _counts(codes, label, np.asarray(scores[n], dtype=float), days) for n in names}
    point = {n: float(_average_precision(counts[n], whole)[0]) for n in names}
    resampled = {n: _average_precision(counts[n], multiplicity) for n in names}
    rows_per_day = np.bincount(codes, minlength=days).astype(float)
    errors = {n: _brier_by_day(codes, days, label, np.asarray(scores[n], dtype=float))
              for n in names}
    brier = {n: float(errors[n].sum() / rows_per_day.sum()) for n in names}
    resampled_rows = multiplicity @ rows_per_day
    resampled_brier = {n: (multiplicity @ errors[n]) / resampled_rows for n in names}
    tail = (1 - config.confidence) / 2

    def interval(values: np.ndarray) -> tuple[float, float]:
        values = values[~np.isnan(values)]
        if not values.size:
            return float("nan"), float("nan")
        low, high = np.quantile(values, [tail, 1 - tail])
        return float(low), float(high)

    out = []
    for scorer, reference in pairs:
        low, high = interval(resampled[scorer] - resampled[reference])
        brier_low, brier_high = interval(resampled_brier[scorer] - resampled_brier[reference])
        difference = point[scorer] - point[reference]
        out.append(Comparison(
            scorer=scorer, reference=reference, pr_auc=point[scorer],
            reference_pr_auc=point[reference], difference=difference, low=low, high=high,
            brier=brier[scorer], reference_brier=brier[reference],
            brier_low=brier_low, brier_high=brier_high,
            pr_auc_beats=bool(difference > config.min_improvement
                              and low > config.min_improvement),
            brier_ok=bool(brier_low <= brier[reference] * config.brier_tolerance),
        ))
    return out


# ---------------------------------------------------------------------------- the decision


def decide(
    day: np.ndarray,
    label: np.ndarray,
    scores: dict[str, np.ndarray],
    *,
    baselines: list[str],
    candidate: str | None,
    champion: str | None,
    has_champion: bool,
    same_configuration: bool = False,
    config: GateConfig | None = None,
) -> GateDecision:
    """The gate's verdict on the held-out rows.

    ``candidate``: the name of the new configuration's scores (None when it could not be
    fitted); ``champion``: the champion's configuration fitted on the same days (None when
    there is no champion, it could not be fitted, or ``same_configuration``: the candidate *is*
    the champion's configuration); ``has_champion``: whether a champion serves today.
    ``baselines`` are in order of preference on a tie.
    """
    config = config or GateConfig()
    label = np.asarray(label)
    failures, rows = int(label.sum()), int(label.size)
    days = int(np.unique(np.asarray(day)).size)
    judged = 0 < failures < rows
    pairs: list[tuple[str, str]] = []
    if judged:
        for scorer in (candidate, champion):
            if scorer is not None:
                pairs += [(scorer, b) for b in baselines]
        if candidate is not None and champion is not None:
            pairs.append((candidate, champion))
    comparisons = compare_scorers(day, label, scores, pairs, config) if pairs else []

    def against_baselines(scorer: str | None) -> list[Comparison]:
        return [c for c in comparisons if c.scorer == scorer and c.reference in baselines]

    def beats_all(scorer: str | None) -> bool:
        return scorer is not None and judged and all(c.beats for c in against_baselines(scorer))

    def holds(scorer: str | None) -> bool:
        return scorer is not None and judged and not any(c.loses for c in against_baselines(scorer))

    candidate_ok = beats_all(candidate)
    incumbent = candidate if same_configuration else champion
    champion_holds = holds(incumbent) if has_champion and incumbent is not None else None
    head_to_head = next((c for c in comparisons
                         if c.scorer == candidate and c.reference == champion), None)
    beats_champion = head_to_head.beats if head_to_head else None
    best = _best_baseline(day, label, scores, baselines) if judged else baselines[0]

    said = [c.sentence(config.confidence, config.min_improvement) for c in comparisons]
    if not judged:
        said.insert(0, f"the {days} hold-out days hold {failures} failures in {rows} rows: "
                       "nothing to judge a model on")
    elif candidate is None:
        said.insert(0, "the candidate could not be fitted")
    if not has_champion:
        action = PROMOTE if candidate_ok else FALLBACK
        what = ("the candidate becomes champion (refitted through the latest labelled day)"
                if candidate_ok else f"no model passes: {best} scores until one does")
    elif same_configuration:
        action = REFRESH if champion_holds else KEEP
        what = ("the champion's configuration holds its ground (no baseline beats it beyond "
                "noise): refitted through the latest labelled day" if champion_holds
                else "on these days the champion's configuration does not hold its ground against "
                     "the baselines: the champion stays as it is, and ages")
    elif candidate_ok and beats_champion:
        action, what = PROMOTE, ("the candidate configuration beats the baselines and the "
                                 "champion's: it replaces it, refitted")
    elif champion_holds:
        action, what = REFRESH, ("the candidate does not win: the champion's configuration stays, "
                                 "refitted")
    elif champion is None:
        action, what = KEEP, ("the champion's configuration could not be fitted on these days: "
                              "the champion stays as it is")
    else:
        action, what = KEEP, ("the candidate does not win and the champion's configuration does "
                              "not hold its ground: the champion stays as it is, and ages")
    return GateDecision(
        action=action,
        candidate_beats_baselines=candidate_ok,
        candidate_beats_champion=beats_champion,
        champion_holds=champion_holds,
        best_baseline=best,
        comparisons=tuple(comparisons),
        reason=f"{action}: {what}. " + "; ".join(said),
        rows=rows, failures=failures, days=days, config=config,
    )


def _best_baseline(day: np.ndarray, label: np.ndarray, scores: dict[str, np.ndarray],
                   baselines: list[str]) -> str:
    """The baseline with the highest hold-out PR-AUC (the first listed on a tie)."""
    pr_auc = {name: average_precision(day, label, scores[name]) for name in baselines}
    return max(baselines, key=lambda name: (pr_auc[name], -baselines.index(name)))
