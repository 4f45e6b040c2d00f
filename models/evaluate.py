"""Metrics for rare events, the model side by side with its baselines.

PR-AUC (average precision), ROC-AUC, Brier score and log loss from scikit-learn; precision and
recall when each day flags its top 1%, 5% or 10% of systems (the alert budget a team can
actually follow up); and the reliability curve (scikit-learn's ``calibration_curve``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    precision_recall_curve,
    roc_auc_score,
)

BUDGETS = (0.01, 0.05, 0.10)
HEADLINE = ("pr_auc", "roc_auc", "brier", "precision_at_5pct", "recall_at_5pct")


def budget_metrics(as_of: np.ndarray, label: np.ndarray, score: np.ndarray,
                   budget: float) -> tuple[float, float]:
    """Precision and recall when every day flags the top ``budget`` share of its systems."""
    frame = pl.DataFrame({"as_of": as_of, "label": label.astype(bool), "score": score})
    flagged = frame.with_columns(
        rank=pl.col("score").rank("ordinal", descending=True).over("as_of"),
        quota=(pl.len().over("as_of") * budget).ceil(),
    ).filter(pl.col("rank") <= pl.col("quota"))
    hits = int(flagged["label"].sum())
    failures = int(frame["label"].sum())
    precision = hits / flagged.height if flagged.height else 0.0
    recall = hits / failures if failures else 0.0
    return precision, recall


def score_metrics(as_of: np.ndarray, label: np.ndarray, score: np.ndarray) -> dict[str, float]:
    label = label.astype(int)
    both = 0 < label.sum() < len(label)
    clipped = np.clip(score, 1e-6, 1 - 1e-6)
    metrics = {
        "rows": float(len(label)),
        "failures": float(label.sum()),
        "base_rate": float(label.mean()) if len(label) else float("nan"),
        "mean_risk": float(np.mean(score)) if len(label) else float("nan"),
        "pr_auc": float(average_precision_score(label, score)) if both else float("nan"),
        "roc_auc": float(roc_auc_score(label, score)) if both else float("nan"),
        "brier": float(brier_score_loss(label, clipped)) if len(label) else float("nan"),
        "log_loss": float(log_loss(label, clipped, labels=[0, 1])) if len(label) else float("nan"),
    }
    for budget in BUDGETS:
        precision, recall = budget_metrics(as_of, label, score, budget)
        tag = f"{round(budget * 100)}pct"
        metrics[f"precision_at_{tag}"] = precision
        metrics[f"recall_at_{tag}"] = recall
    return metrics


def compare(frame: pl.DataFrame, scores: dict[str, np.ndarray]) -> pl.DataFrame:
    """One row per scorer (model and baselines) on the same rows of ``frame``."""
    as_of, label = frame["as_of"].to_numpy(), frame["label"].to_numpy()
    rows = [{"scorer": name, **score_metrics(as_of, label, np.asarray(score))}
            for name, score in scores.items()]
    return pl.DataFrame(rows)


def reliability(label: np.ndarray, score: np.ndarray, bins: int = 10) -> pl.DataFrame:
    """Observed failure rate against mean predicted risk, in quantile bins of the risk."""
    observed, predicted = calibration_curve(label.astype(int), score, n_bins=bins,
                                            strategy="quantile")
    return pl.DataFrame({"mean_risk": predicted, "observed_rate": observed})


def beats(candidate: dict, reference: dict, brier_tolerance: float = 0.02) -> tuple[bool, str]:
    """Whether ``candidate`` is better than ``reference`` on the same rows, and why (not)."""
    pr, ref_pr = candidate["pr_auc"], reference["pr_auc"]
    brier, ref_brier = candidate["brier"], reference["brier"]
    if not pr > ref_pr:
        return False, f"PR-AUC {pr:.4f} is not above {ref_pr:.4f}"
    if brier > ref_brier * (1 + brier_tolerance):
        return False, f"Brier {brier:.5f} is worse than {ref_brier:.5f}"
    return True, f"PR-AUC {pr:.4f} > {ref_pr:.4f}, Brier {brier:.5f} vs {ref_brier:.5f}"


def plots(frame: pl.DataFrame, scores: dict[str, np.ndarray], importance: pl.DataFrame | None,
          out: Path) -> dict[str, Path]:
    """PR curves, reliability curves and feature importance as PNG files under ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    label = frame["label"].to_numpy().astype(int)
    files: dict[str, Path] = {}

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, score in scores.items():
        precision, recall, _ = precision_recall_curve(label, score)
        ax.plot(recall, precision, label=f"{name} (AP {average_precision_score(label, score):.3f})")
    ax.axhline(label.mean(), color="grey", lw=0.8, ls=":", label=f"base rate {label.mean():.3f}")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall on the held-out days")
    ax.legend(fontsize=8)
    files["pr_curve"] = out / "pr_curve.png"
    fig.tight_layout()
    fig.savefig(files["pr_curve"], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 5))
    top = max(max(float(np.max(s)) for s in scores.values()), label.mean() * 3, 0.05)
    ax.plot([0, top], [0, top], color="grey", lw=0.8, ls=":")
    for name, score in scores.items():
        curve = reliability(label, np.asarray(score))
        ax.plot(curve["mean_risk"], curve["observed_rate"], marker="o", label=name)
    ax.set(xlabel="mean predicted risk", ylabel="observed failure rate",
           title="Reliability (calibration)")
    ax.legend(fontsize=8)
    files["calibration"] = out / "calibration.png"
    fig.tight_layout()
    fig.savefig(files["calibration"], dpi=110)
    plt.close(fig)

    if importance is not None and importance.height:
        head = importance.head(20).reverse()
        fig, ax = plt.subplots(figsize=(6, 6))
        ax.barh(head["feature"].to_list(), head["gain"].to_list())
        ax.set(xlabel="total gain", title="Feature importance (top 20)")
        ax.tick_params(axis="y", labelsize=7)
        files["feature_importance"] = out / "feature_importance.png"
        fig.tight_layout()
        fig.savefig(files["feature_importance"], dpi=110)
        plt.close(fig)
    return files
