"""The quality scenario's runner reads a real backtest's files into its one table."""

import polars as pl

from benchmarks.quality import BASELINES, MODEL, comparison, markdown, summarise
from pipelines.cli import main


def test_the_table_reports_the_backtest_its_ratios_and_the_policy(small_estate, tmp_path):
    out = tmp_path / "scores.parquet"
    assert main(["backtest", "--source", str(small_estate), "--home", str(tmp_path / "home"),
                 "--start", "2025-07-01", "--end", "2025-07-18", "--out", str(out),
                 "--train-days", "100", "--quiet", "--no-mlflow"]) == 0
    result = summarise("small", "2025-07-01..2025-07-18", out, 12.3, 456, (1.0, 2.0))
    metrics = pl.read_csv(tmp_path / "scores_metrics.csv")
    model = metrics.filter(pl.col("scorer") == MODEL).row(0, named=True)
    recent = metrics.filter(pl.col("scorer") == BASELINES[0]).row(0, named=True)
    assert result.metrics[MODEL]["pr_auc"] == model["pr_auc"]
    assert result.ratio("pr_auc", BASELINES[0]) == model["pr_auc"] / recent["pr_auc"]
    scores = pl.read_parquet(out)
    assert result.rows == scores["label"].is_not_null().sum()
    assert result.retrainings == scores["retrained_on"].n_unique() == sum(result.actions.values())
    table = markdown([result], "before")
    row = next(line for line in table.splitlines() if line.startswith("| small |"))
    assert f"{model['pr_auc']:.4f}" in row and f"{model['pr_auc'] / recent['pr_auc']:.2f}" in row
    assert "| 456 |" in row
    assert sum(line.startswith("| small | ") for line in table.splitlines()) == 3  # + baselines
    side_by_side = comparison({"before": [result], "after": [result]})
    assert f"| small | {model['pr_auc']:.4f} | {model['pr_auc']:.4f} |" in side_by_side
