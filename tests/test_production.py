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
import os
import shutil
from pathlib import Path

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


def _pg_environment(url: str) -> dict[str, str]:
    """The DAGSTER_PG_* variables deploy/dagster.yaml reads, for a postgresql:// URL."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return {"DAGSTER_PG_HOST": parts.hostname, "DAGSTER_PG_PORT": str(parts.port),
            "DAGSTER_PG_DB": parts.path.lstrip("/"), "DAGSTER_PG_USER": parts.username,
            "DAGSTER_PG_PASSWORD": parts.password or ""}


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
        with mlflow_server(mlflow_db, artifacts, root / "mlflow-server.log") as tracking_uri:
            yield {"dagster_db": dagster_db, "mlflow_db": mlflow_db, "tracking_uri": tracking_uri,
                   "artifacts": artifacts}


@pytest.fixture(scope="module")
def production(servers, small_estate, tmp_path_factory):
    """The pipeline run with deploy/dagster.yaml and the tracking server, as an operator would."""
    root = tmp_path_factory.mktemp("production")
    dagster_home = root / "dagster"
    dagster_home.mkdir()
    shutil.copy(DEPLOY / "dagster.yaml", dagster_home / "dagster.yaml")
    settings = load_settings(small_estate, root / "home",
                             env={"FAILCAST_MLFLOW_TRACKING_URI": servers["tracking_uri"]})
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DAGSTER_HOME", str(dagster_home))
        for name, value in _pg_environment(servers["dagster_db"]).items():
            patch.setenv(name, value)
        _run_pipeline(settings)
    return settings


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
