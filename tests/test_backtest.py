"""Walk-forward backtests: no score moves when the future changes; the CLI on any source."""

import datetime as dt
import shutil

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from features.trading_time import TradingCalendar
from models.backtest_run import backtest_source
from models.lifecycle import PolicyConfig, RetrainPolicy
from models.model import FailureModel, TrainConfig
from pipelines.cli import main

CAL = TradingCalendar("XSHG", "Asia/Shanghai")
AS_OF = dt.date(2025, 7, 8)  # served by the model the policy promotes on Friday 2025-07-04
NEXT = dt.date(2025, 7, 9)
POLICY = RetrainPolicy(PolicyConfig(train_sessions=100, holdout_sessions=30,
                                    candidate=TrainConfig(min_failures=10)))


def scores_for(source, work, end=AS_OF):
    result = backtest_source(source, CAL, AS_OF, end, work, policy=POLICY, progress=False)
    assert result.steps[0].scorer == "failcast-risk"  # a model, not a fallback baseline
    return result.scores.filter(pl.col("as_of") == AS_OF).drop("label")


def test_changing_anything_after_the_cutoff_never_changes_a_score(small_estate, tmp_path):
    before = scores_for(small_estate, tmp_path / "w1")
    future = tmp_path / "future"
    shutil.copytree(small_estate, future)
    systems = pl.read_csv(future / "systems.csv")["system_id"].to_list()
    with (future / "incidents.csv").open("a") as handle:
        for n, system in enumerate(systems):  # every system fails right after the cutoff
            handle.write(f"F{n},{system},{AS_OF}T18:00:01,,1,Hardware,after the cutoff,,\n")
    incidents = pl.read_csv(future / "incidents.csv", infer_schema=False)
    late = pl.col("opened_at") > f"{AS_OF}T18:00:00"
    incidents.with_columns(severity=pl.when(late).then(pl.lit("1")).otherwise("severity")).write_csv(
        future / "incidents.csv")
    changes = pl.read_csv(future / "changes.csv", infer_schema=False)
    extra = pl.DataFrame([{c: "" for c in changes.columns} | {
        "change_id": f"LATE{n}", "system_id": s, "scheduled_start": f"{NEXT}T20:00:00",
        "created_at": f"{AS_OF}T19:00:00", "risk_level": "high", "change_type": "release"}
        for n, s in enumerate(systems)])
    pl.concat([changes, extra]).write_csv(future / "changes.csv")
    (future / "metrics" / "late").mkdir()
    (future / "metrics" / "late" / "spike.csv").write_text(
        "ts,system_id,metric,value\n" + "".join(
            f"{NEXT}T10:00:00,{s},cpu_pct,1000\n" for s in systems))
    after = scores_for(future, tmp_path / "w2", end=dt.date(2025, 7, 31))
    assert_frame_equal(before, after)


def test_backtest_command_on_any_source(small_estate, tmp_path, capsys):
    out = tmp_path / "scores.csv"
    code = main(["backtest", "--source", str(small_estate), "--home", str(tmp_path / "home"),
                 "--start", "2025-07-01", "--end", "2025-07-31", "--out", str(out),
                 "--train-days", "100", "--quiet", "--no-mlflow"])
    assert code == 0
    scores = pl.read_csv(out, try_parse_dates=True)
    assert {"system_id", "as_of", "target_date", "risk"} <= set(scores.columns)
    assert scores["as_of"].min() == dt.date(2025, 7, 1) and scores["as_of"].max() == dt.date(2025, 7, 31)
    assert scores.select("system_id", "as_of").n_unique() == scores.height
    assert scores["risk"].is_between(0, 1).all()
    assert "failcast model" in capsys.readouterr().out
    assert (tmp_path / "scores_metrics.csv").exists()


def test_backtest_leave_out_keeps_a_feature_family_out_of_every_model_it_trains(
        small_estate, tmp_path, monkeypatch):
    trained = []  # (fit or refit, features offered, features used), as the policy trains

    def watched(name):
        real = getattr(FailureModel, name).__func__

        def train(cls, frame, features, *args, **kwargs):
            model = real(cls, frame, features, *args, **kwargs)
            trained.append((name, list(features), model.features))
            return model
        monkeypatch.setattr(FailureModel, name, classmethod(train))

    watched("fit")
    watched("refit")
    out = tmp_path / "scores.parquet"
    assert main(["backtest", "--source", str(small_estate), "--home", str(tmp_path / "home"),
                 "--start", "2025-07-01", "--end", "2025-07-04", "--out", str(out),
                 "--train-days", "100", "--leave-out", "change actions", "--quiet",
                 "--no-mlflow"]) == 0
    assert {name for name, _, _ in trained} == {"fit", "refit"}  # the gated fit, the one that serves
    for _, offered, used in trained:
        assert any(f.startswith("act_") for f in offered)  # the estate has them ...
        assert used and not any(f.startswith("act_") for f in used)  # ... no model uses them
    assert pl.read_parquet(out)["risk"].is_between(0, 1).all()


def test_backtest_names_the_families_it_can_leave_out(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["backtest", "--source", str(tmp_path), "--start", "2025-07-01",
              "--end", "2025-07-04", "--out", str(tmp_path / "s.parquet"),
              "--leave-out", "change action"])
    assert exit_.value.code == 2
    assert "invalid choice: 'change action'" in capsys.readouterr().err


def test_backtest_rejects_an_unknown_output_format(small_estate, tmp_path, capsys):
    code = main(["backtest", "--source", str(small_estate), "--start", "2025-07-01",
                 "--end", "2025-07-31", "--out", str(tmp_path / "scores.xlsx")])
    assert code == 2
    assert "must end in .parquet or .csv" in capsys.readouterr().err


@pytest.mark.parametrize("days", [["2025-08-01", "2025-07-01"]])
def test_backtest_rejects_an_inverted_range(small_estate, tmp_path, capsys, days):
    code = main(["backtest", "--source", str(small_estate), "--start", days[0], "--end", days[1],
                 "--out", str(tmp_path / "s.parquet")])
    assert code == 2


@pytest.mark.parametrize("exchange", ["XSHG", "24/7"])
def test_scoring_periods_score_every_session_once_by_the_model_retrained_before_it(exchange):
    from models.backtest import scoring_periods

    calendar = TradingCalendar(exchange=exchange, timezone="Asia/Shanghai")
    sessions = calendar.sessions(dt.date(2025, 9, 15), dt.date(2025, 11, 20))
    monthly = RetrainPolicy(PolicyConfig(cadence="monthly"))
    periods = scoring_periods(monthly, calendar, sessions)
    assert [d for _, period in periods for d in period] == sessions
    assert all(day < period[0] and monthly.is_retraining_day(calendar, day)
               for day, period in periods)
    assert [day.month for day, _ in periods] == [8, 9, 10]  # Aug 29 (XSHG) / Aug 31 (24/7)
