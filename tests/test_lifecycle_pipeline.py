"""The policy through Dagster and MLflow: what `failcast train` registers is what the backtest
measured, the registered model reproduces the published risk, and every retrain is traceable."""

import datetime as dt
import json
import os
import subprocess
import sys

import mlflow
import numpy as np
import polars as pl
import pytest

from models.backtest import walk_forward
from models.lifecycle import CHAMPION, FALLBACK
from pipelines.cli import main
from pipelines.definitions import build_definitions
from pipelines.runner import RunFailed, run_job
from pipelines.settings import load_settings
from tests.lifecycle_home import GROUP, R1, R2

pytestmark = GROUP


def features(settings, first, last):
    with settings.warehouse().reader() as con:
        return con.sql("SELECT * FROM system_day_features WHERE as_of BETWEEN ? AND ? "
                       "ORDER BY as_of, system_id", params=[first, last]).df()


def test_the_served_model_learned_through_the_day_before_its_retrain(trained_home):
    registry = trained_home.settings.registry()
    calendar = trained_home.settings.calendar
    for day in (R1, R2):
        tags = registry.version_tags(trained_home.versions[day])
        assert tags["trained_through"] == str(calendar.previous_session(day))
        assert tags["as_of"] == str(day)
        assert tags["training_set"].startswith(f"{day}_")  # the folder it was trained from
        run = registry.client().get_run(tags["evaluation.run_id"])
        assert run.info.run_name.startswith(f"retrain {day} · ")


def test_the_backtest_replays_what_train_registered(trained_home):
    """The walk-forward (an in-memory registry) on the warehouse `failcast train` used (MLflow):
    the same decisions, and each period scored exactly as the registered version scores."""
    settings = trained_home.settings
    calendar = settings.calendar
    start, end = calendar.next_session(R1), dt.date(2025, 8, 28)
    with settings.warehouse().reader() as con:
        scores, steps = walk_forward(con, calendar, start, end, settings.policy(),
                                     model_name=settings.model_name)
    assert [s.retrained_on for s in steps] == [R1, R2]
    registry = settings.registry()
    for step, (day, until) in zip(steps, ((R1, R2), (R2, end)), strict=True):
        version = trained_home.versions[day]
        tags = registry.version_tags(version)
        assert step.action == tags["gate.action"]
        assert str(step.trained_through) == tags["trained_through"]
        served = features(settings, calendar.next_session(day), until)
        loaded = mlflow.pyfunc.load_model(f"models:/{settings.model_name}/{version}")
        expected = pl.DataFrame({"system_id": served["system_id"], "as_of": served["as_of"].dt.date,
                                 "expected": np.asarray(loaded.predict(served))})
        measured = scores.join(expected, on=["system_id", "as_of"])
        assert measured.height == len(served)
        assert np.array_equal(measured["risk"].to_numpy(), measured["expected"].to_numpy())


def test_the_registered_champion_reproduces_the_published_risk(trained_home):
    settings = trained_home.settings
    day = dt.date(2025, 8, 26)
    assert main(["nightly", *trained_home.args(), "--date", day.isoformat()]) == 0
    with settings.warehouse().reader() as con:
        published = con.sql("SELECT system_id, risk, model_name, model_version FROM risk_scores "
                            "WHERE as_of = ?", params=[day]).pl()
    assert set(published["model_version"]) == {trained_home.versions[R2]}
    rows = features(settings, day, day)
    loaded = mlflow.pyfunc.load_model(f"models:/{settings.model_name}@{CHAMPION}")
    again = pl.DataFrame({"system_id": rows["system_id"], "again": np.asarray(loaded.predict(rows))})
    joined = published.join(again, on="system_id")
    assert joined.height == published.height == len(rows)
    assert np.array_equal(joined["risk"].to_numpy(), joined["again"].to_numpy())
    page = (settings.published_dir / "2025-08-27" / "change_review.html").read_text()
    assert "trained through 2025-08-21 (3 trading days before this as-of day)" in page


def test_a_stale_champion_warns_then_blocks_publication(trained_home, monkeypatch):
    settings = trained_home.settings
    day = dt.date(2025, 8, 28)  # 5 trading days after the champion's newest label
    blocked = settings.with_values(champion_warn_age=2, champion_max_age=4)
    with pytest.raises(RunFailed, match="scored_systems|risk_scores"):
        run_job(build_definitions(blocked, today=dt.date(2025, 9, 1)), "nightly_job", blocked,
                day, day)
    with settings.warehouse().reader() as con:
        assert con.execute("SELECT count(*) FROM risk_scores WHERE as_of = ?",
                           [day]).fetchall()[0][0] == 0
    warned = settings.with_values(champion_warn_age=2, champion_max_age=10)
    result = run_job(build_definitions(warned, today=dt.date(2025, 9, 1)), "nightly_job", warned,
                     day, day)
    checks = [e.event_specific_data for e in result.all_events
              if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    age = next(c for c in checks if c.check_name == "champion_not_stale")
    assert not age.passed and age.severity.value == "WARN"
    assert age.metadata["champion_age_sessions"].value == 5


def test_a_first_night_without_a_champion_publishes_the_best_baseline(trained_home, tmp_path,
                                                                      monkeypatch):
    home = trained_home.copy(tmp_path / "home")
    monkeypatch.setenv("FAILCAST_MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'fresh.db'}")
    monkeypatch.setenv("FAILCAST_GATE_MIN_IMPROVEMENT", "0.9")  # no model can pass
    day = dt.date(2025, 8, 27)
    assert main(["train", *home.args(), "--as-of", R2.isoformat()]) == 0
    settings = load_settings(home.settings.source, home.settings.home)
    registry = settings.registry()
    assert registry.resolve(CHAMPION) is None
    fallback = registry.served(FALLBACK)
    assert fallback.registered.name.startswith("baseline:")
    assert main(["nightly", *home.args(), "--date", day.isoformat()]) == 0
    with settings.warehouse().reader() as con:
        names = con.execute("SELECT DISTINCT model_name FROM risk_scores WHERE as_of = ?",
                            [day]).fetchall()
    assert names == [(fallback.registered.name,)]
    page = (settings.published_dir / "2025-08-28" / "change_review.html").read_text()
    assert "No model has passed the champion gate yet" in page


def test_two_retrains_at_once_produce_two_consistent_versions(trained_home, tmp_path):
    home = trained_home.copy(tmp_path / "home")
    days = (dt.date(2025, 8, 20), dt.date(2025, 8, 21))
    env = dict(os.environ)  # the fixture's Dagster instance: created and migrated already
    assert env["DAGSTER_HOME"]
    runs = [subprocess.Popen([sys.executable, "-m", "pipelines.cli", "train", *home.args(),
                              "--as-of", day.isoformat()], env=env, stderr=subprocess.PIPE,
                             text=True) for day in days]
    for run in runs:
        _, err = run.communicate(timeout=900)
        assert run.returncode == 0, err
    registry = home.settings.registry()
    client = registry.client()
    versions = client.search_model_versions(f"name = '{home.settings.model_name}'")
    new = [v for v in versions if v.tags.get("as_of") in {str(d) for d in days}]
    by_day = {d: [v for v in new if v.tags["as_of"] == str(d)] for d in days}
    calendar = home.settings.calendar
    for day, found in by_day.items():
        assert found, f"no version registered for the retrain as of {day}"
        for version in found:
            folder = home.settings.home / "training_sets" / version.tags["training_set"]
            described = json.loads((folder / "training_set.json").read_text())
            assert described["as_of"] == str(day)
            if version.tags["role"] == CHAMPION:
                assert version.tags["trained_through"] == str(calendar.previous_session(day))
    champion = registry.resolve(CHAMPION)
    assert champion.tags["as_of"] in {str(d) for d in days}
    assert champion.tags["role"] == CHAMPION


def test_an_experiment_from_the_launchpad_lands_in_mlflow_with_its_configuration_and_keeps_the_alias(
        trained_home, tmp_path):
    """The retrain job launched with a changed model configuration (the launchpad's run
    config): its MLflow run, beside the champion's, holds that configuration, the tag
    ``experiment`` and the metrics every retrain logs; a configuration that does not pass the
    gate leaves the champion where it was (a scheduled retrain would have refreshed it)."""
    home = trained_home.copy(tmp_path / "home")
    settings = home.settings
    registry = settings.registry()
    before = str(registry.resolve(CHAMPION).version)
    result = run_job(build_definitions(settings, today=dt.date(2025, 9, 1)), "retrain_job",
                     settings, run_config={"ops": {
                         "training_set": {"config": {"as_of": R2.isoformat()}},
                         "failure_model": {"config": {
                             "experiment": "one stump", "num_leaves": 2, "max_rounds": 1,
                             "leave_out_families": ["peers"], "search": False}}}})
    meta = result.asset_materializations_for_node("failure_model")[-1].metadata
    assert meta["experiment"].value == "one stump"
    runs = registry.client().search_runs([registry.experiment_id()],
                                         "tags.experiment = 'one stump'")
    assert len(runs) == 1
    run = runs[0]
    params, tags = run.data.params, run.data.tags
    assert (params["num_leaves"], params["max_rounds"], params["leave_out"], params["search"]) \
        == ("2", "1", "peers", "False")
    assert run.info.run_name.startswith(f"experiment one stump: retrain {R2}")
    assert {"candidate_pr_auc", "recent_incident_rate_pr_auc", "operator_rule_pr_auc"} \
        <= set(run.data.metrics)
    assert tags["gate.beats_champion"] == "False" and tags["gate.action"] == "keep"
    assert str(registry.resolve(CHAMPION).version) == before
    challenger = registry.resolve("challenger")
    assert challenger.tags["experiment"] == "one stump"
    assert json.loads(challenger.tags["config"])["num_leaves"] == 2


def test_each_retrain_logs_its_model_search_in_mlflow(trained_home):
    registry = trained_home.settings.registry()
    run_id = registry.version_tags(trained_home.versions[R2])["evaluation.run_id"]
    run = registry.client().get_run(run_id)
    chosen = run.data.params["search_chosen"]
    assert run.data.tags["search.chosen"] == chosen and run.data.params["search"] == "True"
    assert f"search_{chosen.replace(' ', '_').replace(',', '')}_inner_pr_auc" in run.data.metrics
    table = pl.read_csv(mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="tables/model_search.csv"))
    assert table.filter(pl.col("chosen"))["name"].to_list() == [chosen]
    assert run.data.params["chosen_num_leaves"] == str(
        json.loads(table.filter(pl.col("chosen"))["config"][0])["num_leaves"])


def test_the_launchpad_model_configuration_is_the_same_for_the_retrain_and_the_backtest(tmp_path):
    from pipelines.assets.model import BacktestConfig, RetrainConfig

    settings = load_settings(tmp_path, tmp_path, env={})
    for kind in (RetrainConfig, BacktestConfig):
        config = kind(num_leaves=7, leave_out_families=["peers"], search=False)
        policy = config.policy(settings).config
        assert (policy.candidate.num_leaves, policy.candidate.leave_out, policy.search.enabled) \
            == (7, ("peers",), False)
        assert config.tags()["experiment"] == "unnamed"
    untouched = RetrainConfig()
    assert untouched.tags() == {} and untouched.experiment_name is None
    assert untouched.policy(settings).config == settings.policy().config
