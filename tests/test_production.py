"""Production smoke test: the deployment of docs/deploy.md against real servers.

A real PostgreSQL 15 (the machine's own binaries) holds Dagster's run, event-log and schedule
storage through ``deploy/dagster.yaml``, the file the docs tell an operator to install, and an
MLflow tracking server's backend store; ``mlflow server`` keeps the artifacts. Ingest, training
and the nightly job run through Dagster with that instance and that server, and the published
rows must equal those of the embedded default (SQLite MLflow, local Dagster storage) for the
same day.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import polars as pl
import pytest

from pipelines.definitions import build_definitions
from pipelines.runner import run_job
from pipelines.settings import load_settings
from tests.production_servers import (
    create_database,
    mlflow_server,
    postgres_available,
    postgres_server,
    start_group,
    stop_group,
    wait_until,
)

pytestmark = [pytest.mark.production, pytest.mark.slow, pytest.mark.xdist_group("production")]

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
TRAIN_AS_OF, NIGHT = dt.date(2025, 8, 27), dt.date(2025, 8, 28)
HISTORY = (dt.date(2025, 1, 3), NIGHT)
TODAY = dt.date(2025, 9, 1)
# Differ by design between two runs of the same day: when the row was written, and MLflow's run
# ids (random UUIDs). Everything else, model_version included, must be equal.
RUN_SPECIFIC = ["scored_at", "mlflow_run_id"]
JOBS = ("features_job", "retrain_job", "nightly_job")


def _run_pipeline(settings) -> None:
    """Ingest and features of the history, training as of TRAIN_AS_OF, the nightly of NIGHT."""
    defs = build_definitions(settings, today=TODAY)
    run_job(defs, "features_job", settings, *HISTORY)
    run_job(defs, "retrain_job", settings,
            run_config={"ops": {"training_set": {"config": {"as_of": TRAIN_AS_OF.isoformat()}}}})
    run_job(defs, "nightly_job", settings, NIGHT, NIGHT)


def _published(settings) -> pl.DataFrame:
    with settings.warehouse().reader() as con:
        return con.sql("SELECT * FROM risk_scores WHERE as_of = ? ORDER BY system_id",
                       params=[NIGHT]).pl()


def env_file_keys() -> list[str]:
    """The variables deploy/failcast.env sets (commented-out optional ones aside)."""
    lines = (DEPLOY / "failcast.env").read_text().splitlines()
    return [line.split("=", 1)[0] for line in lines if line and not line.startswith("#")]


def deployment_environment(servers: dict, source: Path, root: Path) -> dict[str, str]:
    """deploy/failcast.env filled in with this test's servers and folders."""
    pg = urlsplit(servers["dagster_db"])
    values = {
        "FAILCAST_SOURCE": str(source),
        "FAILCAST_HOME": str(root / "home"),
        "FAILCAST_MLFLOW_TRACKING_URI": servers["tracking_uri"],
        "DAGSTER_HOME": str(root / "dagster"),
        "DAGSTER_PG_HOST": pg.hostname, "DAGSTER_PG_PORT": str(pg.port),
        "DAGSTER_PG_DB": pg.path.lstrip("/"), "DAGSTER_PG_USER": pg.username,
        "DAGSTER_PG_PASSWORD": pg.password or "",
    }
    keys = env_file_keys()
    assert sorted(keys) == sorted(values), "deploy/failcast.env and this test disagree"
    return values


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """PostgreSQL with a database for Dagster and one for MLflow, and an MLflow server."""
    why_not = postgres_available()
    if why_not:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the production smoke test: {why_not}")
        pytest.skip(why_not)
    root = tmp_path_factory.mktemp("servers")
    with postgres_server() as server:
        dagster_db = create_database(server, "dagster")
        mlflow_db = create_database(server, "mlflow")
        artifacts = root / "artifacts"
        with mlflow_server(DEPLOY / "mlflow-server.sh", mlflow_db, artifacts,
                           root / "mlflow-server.log") as tracking_uri:
            yield {"dagster_db": dagster_db, "mlflow_db": mlflow_db, "tracking_uri": tracking_uri,
                   "artifacts": artifacts}


@pytest.fixture(scope="module")
def production(servers, small_estate, tmp_path_factory):
    """The pipeline run as docs/deploy.md sets it up: deploy/dagster.yaml in DAGSTER_HOME and
    the environment of deploy/failcast.env."""
    root = tmp_path_factory.mktemp("production")
    environment = deployment_environment(servers, small_estate, root)
    dagster_home = Path(environment["DAGSTER_HOME"])
    dagster_home.mkdir()
    shutil.copy(DEPLOY / "dagster.yaml", dagster_home / "dagster.yaml")
    settings = load_settings(env=environment)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in environment.items():
            patch.setenv(name, value)
        _run_pipeline(settings)
    return settings, environment


@pytest.fixture(scope="module")
def embedded(small_estate, tmp_path_factory):
    """The same pipeline on the embedded default: local Dagster storage, SQLite MLflow."""
    root = tmp_path_factory.mktemp("embedded")
    settings = load_settings(small_estate, root / "home", env={})
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DAGSTER_HOME", str(root / "dagster"))
        _run_pipeline(settings)
    return settings


def test_published_rows_equal_the_embedded_default(production, embedded):
    production, _ = production
    assert production.tracking_uri.startswith("http://")
    assert embedded.tracking_uri.startswith("sqlite:")
    served, local = _published(production), _published(embedded)
    assert served.height > 0
    assert served["mlflow_run_id"].is_not_null().all()
    assert served.drop(RUN_SPECIFIC).equals(local.drop(RUN_SPECIFIC))


def test_runs_are_in_postgresql_run_storage(production, servers):
    import psycopg

    with psycopg.connect(servers["dagster_db"]) as con:
        runs = con.execute("SELECT pipeline_name, status FROM runs").fetchall()
        events = con.execute("SELECT count(*) FROM event_logs").fetchone()[0]
        schedule_tables = con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name IN "
            "('instigators', 'instance_info')").fetchone()[0]
    assert {(job, "SUCCESS") for job in JOBS} <= set(runs)
    assert all(status == "SUCCESS" for _, status in runs)
    assert events > 0
    assert schedule_tables == 2


def test_model_versions_and_aliases_are_in_the_mlflow_server(production, servers):
    import psycopg
    production, _ = production
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=servers["tracking_uri"])
    name = production.model_name
    champion = client.get_model_version_by_alias(name, "champion")
    served = _published(production)
    assert set(served["model_version"]) == {str(champion.version)}
    assert set(served["mlflow_run_id"]) == {champion.run_id}
    # the server keeps them in its PostgreSQL backend store ...
    with psycopg.connect(servers["mlflow_db"]) as con:
        aliases = con.execute("SELECT name, alias, version FROM registered_model_aliases").fetchall()
        versions = con.execute("SELECT count(*) FROM model_versions WHERE name = %s",
                               [name]).fetchone()[0]
    assert (name, "champion", int(champion.version)) in aliases
    assert versions >= 1
    # ... and the model's files in its artifact destination, uploaded through the server
    assert champion.source.startswith(("models:/", "mlflow-artifacts:/"))
    assert list(servers["artifacts"].rglob("MLmodel"))
    assert not (production.home / "mlartifacts").exists()


def test_the_daemon_launches_queued_runs_on_the_deployment_instance(production, servers,
                                                                   tmp_path):
    """`dagster-daemon run` with deploy/dagster.yaml loads failcast's workspace, reports every
    daemon the deployment relies on (schedules, sensors, the run queue, run monitoring), and
    launches a run submitted to the queue (`dagster job launch`) in a process of its own, which
    trains against the MLflow server."""
    import psycopg
    from dagster import DagsterInstance
    from mlflow import MlflowClient

    settings, environment = production
    repo = DEPLOY.parent
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, **environment}
    wanted = {"SCHEDULER", "SENSOR", "QUEUED_RUN_COORDINATOR", "MONITORING"}
    client = MlflowClient(tracking_uri=servers["tracking_uri"])
    versions_before = len(client.search_model_versions(f"name = '{settings.model_name}'"))
    with pytest.MonkeyPatch.context() as patch:
        for name, value in environment.items():
            patch.setenv(name, value)
        instance = DagsterInstance.get()
        with (tmp_path / "daemon.log").open("w") as log:
            daemon = start_group([str(bin_dir / "dagster-daemon"), "run", "-w", "workspace.yaml"],
                                 env, log, cwd=repo)
        try:
            wait_until(lambda: wanted <= set(instance.get_daemon_heartbeats()), daemon,
                       tmp_path / "daemon.log", 180, "dagster-daemon")
            beats = instance.get_daemon_heartbeats()
            launched = subprocess.run(
                [str(bin_dir / "dagster"), "job", "launch", "-w", "workspace.yaml",
                 "-j", "retrain_job", "--tags", json.dumps({"smoke": "queued"}),
                 # the run gets a process of its own from the daemon; its two steps share it
                 "--config-json", json.dumps({"execution": {"config": {"in_process": {}}}})],
                cwd=repo, env=env, capture_output=True, text=True, timeout=180, check=False)
            assert launched.returncode == 0, launched.stderr[-2000:]

            def finished() -> bool:
                with psycopg.connect(servers["dagster_db"]) as con:
                    row = con.execute(
                        "SELECT r.status FROM runs r JOIN run_tags t ON t.run_id = r.run_id "
                        "WHERE t.key = 'smoke' AND t.value = 'queued'").fetchone()
                return row is not None and row[0] in ("SUCCESS", "FAILURE", "CANCELED")

            wait_until(finished, daemon, tmp_path / "daemon.log", 420, "the queued retrain run")
        finally:
            stop_group(daemon)
            instance.dispose()
    assert all(not beats[name].errors for name in wanted), {n: beats[n].errors for n in wanted}
    with psycopg.connect(servers["dagster_db"]) as con:
        status, job = con.execute(
            "SELECT r.status, r.pipeline_name FROM runs r JOIN run_tags t ON t.run_id = r.run_id "
            "WHERE t.key = 'smoke'").fetchone()
    assert (job, status) == ("retrain_job", "SUCCESS")
    assert len(client.search_model_versions(f"name = '{settings.model_name}'")) > versions_before
