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


def plots(frame: pl.DataFrame, scores: dict[str, np.ndarray], importance: pl.DataFrame | None,
          out: Path, title: str = "the held-out days") -> dict[str, Path]:
    """PR curves, reliability curves and feature importance as PNG files under ``out``.

    The axes fit the data: at a base rate of 0.2% the precision that matters is a few percent
    and the risks are below 1%, so the limits come from the curves, not from 0..1."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    label = frame["label"].to_numpy().astype(int)
    files: dict[str, Path] = {}

    fig, ax = plt.subplots(figsize=(6, 4.5))
    top = label.mean()
    for name, score in scores.items():
        precision, recall, _ = precision_recall_curve(label, score)
        ax.plot(recall, precision, label=f"{name} (AP {average_precision_score(label, score):.3f})")
        top = max(top, float(precision[recall >= 0.02].max(initial=0.0)))
    ax.axhline(label.mean(), color="grey", lw=0.8, ls=":", label=f"base rate {label.mean():.4f}")
    ax.set(xlabel="recall", ylabel="precision", title=f"Precision-recall on {title}",
           xlim=(0, 1), ylim=(0, min(1.0, top * 1.15)))
    ax.legend(fontsize=8)
    files["pr_curve"] = out / "pr_curve.png"
    fig.tight_layout()
    fig.savefig(files["pr_curve"], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 5))
    curves = {name: reliability(label, np.asarray(score)) for name, score in scores.items()}
    top = max([label.mean() * 2] + [float(max(c["mean_risk"].max(), c["observed_rate"].max()))
                                    for c in curves.values() if c.height]) * 1.1
    ax.plot([0, top], [0, top], color="grey", lw=0.8, ls=":", label="perfectly calibrated")
    for name, curve in curves.items():
        ax.plot(curve["mean_risk"], curve["observed_rate"], marker="o", label=name)
    ax.set(xlabel="mean predicted risk (deciles of risk)", ylabel="observed failure rate",
           title=f"Reliability on {title}", xlim=(0, top), ylim=(0, top))
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
