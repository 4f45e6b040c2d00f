import datetime as dt

import pytest

from pipelines.settings import SettingsError, load_settings


def test_toml_then_environment_then_flags(tmp_path):
    (tmp_path / "failcast.toml").write_text(
        '[time]\ntimezone = "America/Denver"\ncutoff = "17:30"\nexchange = "24/7"\n'
        "[label]\nmax_severity = 2\n"
    )
    env = {"FAILCAST_CUTOFF": "19:00", "FAILCAST_MAX_SEVERITY": "3"}
    settings = load_settings(tmp_path, tmp_path / "home", env=env, max_severity=1)
    assert settings.timezone == "America/Denver"  # from the toml
    assert settings.cutoff == dt.time(19, 0)  # the environment beats the toml
    assert settings.max_severity == 1  # a flag beats both
    assert settings.origins["cutoff"] == "FAILCAST_CUTOFF"
    assert settings.warehouse_path == (tmp_path / "home" / "warehouse.duckdb").resolve()


def test_defaults_without_any_configuration(tmp_path):
    settings = load_settings(tmp_path, tmp_path, env={})
    assert (settings.timezone, settings.exchange, settings.cutoff) == (
        "Asia/Shanghai", "XSHG", dt.time(18))
    assert settings.max_severity == 4 and settings.quarantine_max_share == 0.01
    assert settings.tracking_uri.startswith("sqlite:///")


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[time]\ntimzone = 'UTC'\n", r"unknown setting \[time\] timzone"),
        ("[time]\ntimezone = 'Mars/Olympus'\n", r"\[time\] timezone: unknown timezone"),
        ("[time]\ncutoff = '6pm'\n", r"\[time\] cutoff: cutoff must be HH:MM"),
        ("[label]\nmax_severity = 7\n", r"\[label\] max_severity: must be 1-4"),
        ("[time]\nexchange = 'NOPE'\n", r"unknown exchange calendar 'NOPE'"),
        ("[time\n", "not valid TOML"),
    ],
)
def test_a_wrong_key_or_value_is_one_line_naming_it(tmp_path, toml, message):
    (tmp_path / "failcast.toml").write_text(toml)
    with pytest.raises(SettingsError, match=message) as info:
        load_settings(tmp_path, tmp_path, env={})
    assert "\n" not in str(info.value)


def test_environment_value_errors_name_the_variable(tmp_path):
    with pytest.raises(SettingsError, match="FAILCAST_QUARANTINE_MAX_SHARE"):
        load_settings(tmp_path, tmp_path, env={"FAILCAST_QUARANTINE_MAX_SHARE": "2"})


def test_the_dagster_resource_carries_the_same_settings(tmp_path):
    from pipelines.resources import FailcastResource

    (tmp_path / "failcast.toml").write_text('[time]\nexchange = "24/7"\n[risk]\ntier_thresholds = "0.1,0.2,0.3"\n')
    settings = load_settings(tmp_path, tmp_path / "home", env={"FAILCAST_CUTOFF": "17:15"},
                             max_severity=2)
    resource = FailcastResource.from_settings(settings)
    assert resource.settings == settings


def test_the_dask_scheduler_comes_from_the_engine_section_or_the_environment(tmp_path):
    assert load_settings(tmp_path, tmp_path, env={}).dask_scheduler is None  # local training
    (tmp_path / "failcast.toml").write_text('[engine]\ndask_scheduler = "tcp://10.0.0.5:8786"\n')
    assert load_settings(tmp_path, tmp_path, env={}).dask_scheduler == "tcp://10.0.0.5:8786"
    env = {"FAILCAST_DASK_SCHEDULER": "tcp://dask:8786"}
    assert load_settings(tmp_path, tmp_path, env=env).dask_scheduler == "tcp://dask:8786"


def test_a_tracking_server_keeps_its_own_artifacts(tmp_path):
    local = load_settings(tmp_path, tmp_path / "home", env={})
    assert local.artifact_location == (tmp_path / "home" / "mlartifacts").resolve().as_uri()
    served = load_settings(tmp_path, tmp_path / "home",
                           env={"FAILCAST_MLFLOW_TRACKING_URI": "http://mlflow:5000"})
    assert served.tracking_uri == "http://mlflow:5000"
    assert served.artifact_location is None  # the server's --artifacts-destination


def test_the_retraining_policy_comes_from_the_settings(tmp_path):
    (tmp_path / "failcast.toml").write_text(
        '[model]\nretrain_every = "monthly"\nholdout_days = 30\n'
        "[gate]\nmin_improvement = 0.01\nconfidence = 0.8\n")
    settings = load_settings(tmp_path, tmp_path, env={"FAILCAST_GATE_RESAMPLES": "500"})
    config = settings.policy().config
    assert (config.cadence, config.holdout_sessions) == ("monthly", 30)
    assert (config.gate.min_improvement, config.gate.confidence, config.gate.resamples) == (
        0.01, 0.8, 500)
    assert settings.champion_age_limits == (42, 84)  # two and four months of trading days
    assert load_settings(tmp_path, tmp_path, env={"FAILCAST_CHAMPION_MAX_AGE": "30"}
                         ).champion_age_limits == (42, 30)


def test_the_model_search_is_off_by_default_and_one_setting_away_from_on(tmp_path):
    search = load_settings(tmp_path, tmp_path, env={}).policy().config.search
    assert not search.enabled and search.max_configurations == 4
    (tmp_path / "failcast.toml").write_text("[model]\nsearch = true\nsearch_configurations = 2\n")
    search = load_settings(tmp_path, tmp_path, env={}).policy().config.search
    assert search.enabled and search.max_configurations == 2
    (tmp_path / "failcast.toml").write_text("[model]\nsearch = false\n")
    assert load_settings(tmp_path, tmp_path, env={"FAILCAST_MODEL_SEARCH": "true"}
                         ).policy().config.search.enabled


@pytest.mark.parametrize(("toml", "message"), [
    ("[model]\nsearch = 'maybe'\n", r"\[model\] search: must be true or false"),
    ("[model]\nretrain_every = 'daily'\n", r"\[model\] retrain_every: must be one of weekly, monthly"),
    ("[gate]\nconfidence = 1.5\n", r"\[gate\] confidence: must be a confidence level"),
    ("[mlflow]\ntimeout = 0\n", r"\[mlflow\] timeout: must be a positive number"),
])
def test_a_wrong_policy_setting_is_one_line(tmp_path, toml, message):
    (tmp_path / "failcast.toml").write_text(toml)
    with pytest.raises(SettingsError, match=message):
        load_settings(tmp_path, tmp_path, env={})
