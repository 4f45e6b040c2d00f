"""The quality scenario's runner: a real backtest's files into its one table; ablations."""

import datetime as dt
import json
from dataclasses import asdict
from pathlib import Path

import polars as pl
import pytest

import benchmarks.quality as quality
from benchmarks.quality import (
    BASELINES,
    MODEL,
    EstateResult,
    backtest_arguments,
    comparison,
    estate_tables,
    keep_scores,
    markdown,
    paired,
    stored,
    summarise,
)
from pipelines.cli import build_parser, main


@pytest.fixture(scope="module")
def small_backtest(small_estate, tmp_path_factory) -> Path:
    """A real backtest's scores (and its metrics file beside them)."""
    out = tmp_path_factory.mktemp("quality") / "scores.parquet"
    assert main(["backtest", "--source", str(small_estate), "--home", str(out.parent / "home"),
                 "--start", "2025-07-01", "--end", "2025-07-18", "--out", str(out),
                 "--train-days", "100", "--quiet", "--no-mlflow"]) == 0
    return out


def test_the_table_reports_the_backtest_its_ratios_and_the_policy(small_backtest):
    out = small_backtest
    result = summarise("small", "2025-07-01..2025-07-18", out, 12.3, 456, (1.0, 2.0))
    metrics = pl.read_csv(out.with_name("scores_metrics.csv"))
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


def test_two_runs_are_compared_on_the_same_rows_as_the_gate_compares(small_backtest, tmp_path,
                                                                    monkeypatch):
    out = small_backtest
    monkeypatch.setattr(quality, "HOME", tmp_path / "bench")
    result = summarise("small", "2025-07-01..2025-07-18", out, 1.0, 1, (1.0, 1.0))
    keep_scores(out, "before", "small")
    keep_scores(out, "the same again", "small")
    inverted = tmp_path / "inverted.parquet"  # a scorer that ranks every failure last
    pl.read_parquet(out).with_columns(risk=1 - pl.col("risk")).write_parquet(inverted)
    keep_scores(inverted, "inverted: risk upside down", "small")

    same = paired("small", "before", "the same again")
    assert same.difference == 0 and not same.beats and not same.loses
    worse = paired("small", "before", "inverted: risk upside down")
    assert worse.loses and worse.high < 0
    tables = estate_tables({"before": [result], "inverted: risk upside down": [result]})
    assert f"PR-AUC {worse.difference:+.4f} ({worse.low:+.4f}..{worse.high:+.4f}: lower beyond noise)" \
        in tables
    assert paired("small", "before", "never run") is None
    tables = estate_tables({"before": [result], "the same again": [result]})
    assert "PR-AUC +0.0000 (+0.0000..+0.0000: within noise)" in tables
    assert f"| PR-AUC | {result.metrics[MODEL]['pr_auc']:.4f} |" in tables


def test_an_ablation_passes_its_families_to_every_backtest_and_is_stored_with_its_run(
        tmp_path, monkeypatch):
    span = (Path("estate"), dt.date(2026, 1, 5), dt.date(2026, 6, 30), tmp_path)
    parse = build_parser().parse_args
    assert parse(backtest_arguments(*span, ("change actions", "peers"))).leave_out == [
        "change actions", "peers"]
    assert parse(backtest_arguments(*span)).leave_out == []

    metrics = {name: {"pr_auc": 0.2, "roc_auc": 0.8, "brier": 0.04, "recall_at_5pct": 0.3}
               for name in (MODEL, *BASELINES)}
    ablation = EstateResult("small", "2026-01-05..2026-06-30", 100, 5, metrics, 2,
                            {"refresh": 2}, 0, 1.0, 1, (1.0, 1.0), ("change actions",))
    before = {k: v for k, v in asdict(ablation).items() if k != "leave_out"}  # stored earlier
    monkeypatch.setattr(quality, "HOME", tmp_path)
    (tmp_path / "quality_results.json").write_text(json.dumps(
        {"before": {"small": before}, "without change actions": {"small": asdict(ablation)}}))
    runs = stored(["before", "without change actions"])
    assert runs["before"][0].leave_out == ()
    assert runs["without change actions"][0] == ablation
