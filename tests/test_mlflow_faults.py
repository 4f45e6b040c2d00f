"""MLflow faults: each ends in one line that names MLflow and what to do, with exit code 3,
within the configured timeout, and never moves the champion without the comparison."""

import datetime as dt
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from features.errors import ResourceError
from models.lifecycle import CHAMPION
from models.model import FailureModel
from models.registry import ModelRegistry
from tests.lifecycle_home import GROUP
from tests.test_lifecycle import policy, synthetic, training_set

DAY = "2025-08-26"


def free_port() -> int:
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port > 20000:
            return port


def failcast(home, *args, env=None, timeout=600):
    """The CLI in a process of its own, as an operator runs it."""
    environment = {**os.environ, **(env or {})}  # the fixture's Dagster instance
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "pipelines.cli", *args, *home.args()],
                            capture_output=True, text=True, env=environment, timeout=timeout)
    return result, time.monotonic() - started


def one_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("failcast: error:")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr and "sqlalche.me" not in result.stderr
    return lines[0]


@pytest.fixture
def home(trained_home, tmp_path):
    return trained_home.copy(tmp_path / "home")


@GROUP  # the trained home, built once by one worker
def test_an_unreachable_tracking_server_is_one_line_within_the_timeout(home):
    uri = f"http://127.0.0.1:{free_port()}"
    result, seconds = failcast(home, "nightly", "--date", DAY, env={
        "FAILCAST_MLFLOW_TRACKING_URI": uri, "FAILCAST_MLFLOW_TIMEOUT": "4"})
    assert result.returncode == 3
    line = one_line(result)
    assert f"the MLflow tracking server at {uri} is unreachable" in line
    assert "tracking_uri" in line
    # It waited 258 s before. The whole command's wall time also holds ingest and features, so
    # on a loaded machine it says little; the bound the line reports and the registry's own
    # timing (below) are what this protects.
    waited = re.search(r"gave up after (\d+) s", line)
    assert waited and int(waited.group(1)) <= 4 + 5

    registry = ModelRegistry(uri, "file:///tmp/unused", "m", timeout=3)
    started = time.monotonic()
    with pytest.raises(ResourceError, match="unreachable"):
        registry.served(CHAMPION)
    assert time.monotonic() - started < 3 + 5  # slack for a loaded machine


@GROUP  # the trained home, built once by one worker
def test_a_locked_store_is_one_line(home):
    lock = sqlite3.connect(home.settings.home / "mlflow.db")
    lock.execute("BEGIN EXCLUSIVE")
    try:
        result, _ = failcast(home, "nightly", "--date", DAY, env={"FAILCAST_MLFLOW_TIMEOUT": "3"})
    finally:
        lock.rollback()
        lock.close()
    assert result.returncode == 3
    assert "is locked by another process" in one_line(result)


@GROUP  # the trained home, built once by one worker
def test_a_read_only_store_refuses_a_retrain_in_one_line(home):
    path = home.settings.home / "mlflow.db"
    result, _ = failcast(home, "train", "--as-of", "2025-08-22", env={
        "FAILCAST_MLFLOW_TRACKING_URI": f"sqlite:///file:{path}?mode=ro&uri=true"})
    assert result.returncode == 3
    line = one_line(result)
    assert "MLflow" in line and "read-only" in line
    registry = home.settings.registry()
    assert str(registry.resolve(CHAMPION).version) == home.versions[dt.date(2025, 8, 22)]

    # A store MLflow itself finds read-only (a read-only file system, permissions) is told
    # the same way when it refuses the write.
    opened = ModelRegistry(f"sqlite:///file:{path}?mode=ro&uri=true", "file:///tmp/unused",
                           home.settings.model_name, timeout=3)
    with pytest.raises(ResourceError, match="is read-only .*attempt to write a readonly database"):
        opened.set_alias("challenger", home.versions[dt.date(2025, 8, 22)])


def _delete_artifacts(registry: ModelRegistry, version: str) -> None:
    import mlflow

    source = registry.client().get_model_version(registry.model_name, version).source
    model = mlflow.get_logged_model(source.removeprefix("models:/"))
    shutil.rmtree(Path(model.artifact_location.removeprefix("file://")))


@GROUP  # the trained home, built once by one worker
def test_a_broken_champion_is_reported_and_retired_only_on_purpose(home):
    registry = home.settings.registry()
    broken = str(registry.resolve(CHAMPION).version)
    _delete_artifacts(registry, broken)
    for command in (["nightly", "--date", DAY], ["train", "--as-of", "2025-08-25"]):
        result, _ = failcast(home, *command)
        assert result.returncode == 3, result.stderr
        line = one_line(result)
        assert f"v{broken} (champion)" in line and "broken" in line
        assert "--retire-broken-champion" in line
        assert str(registry.resolve(CHAMPION).version) == broken  # nothing was replaced

    result, _ = failcast(home, "train", "--as-of", "2025-08-25", "--retire-broken-champion")
    assert result.returncode == 0, result.stderr
    assert "retired" in registry.version_tags(broken)
    now = registry.resolve(CHAMPION) or registry.resolve("fallback")
    assert now is not None and str(now.version) != broken


@pytest.fixture
def mlflow_server(tmp_path):
    """A real tracking server on a random port, with its store under ``tmp_path/server``."""
    store = tmp_path / "server"
    store.mkdir()
    port = free_port()
    processes = []

    def start():
        process = subprocess.Popen(
            [str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1",
             "--port", str(port), "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}",
             "--artifacts-destination", str(store / "artifacts"), "--workers", "1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        processes.append(process)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{port}/health", timeout=2).ok:
                    return process
            except requests.RequestException:
                time.sleep(0.5)
        raise RuntimeError("mlflow server did not start")

    def stop(process):
        os.killpg(process.pid, 15)
        process.wait(timeout=60)

    yield f"http://127.0.0.1:{port}", start, stop, tmp_path
    for process in processes:
        if process.poll() is None:
            stop(process)


def test_a_store_lost_mid_training_fails_the_run_and_leaves_the_alias(mlflow_server, monkeypatch):
    uri, start, stop, tmp = mlflow_server
    server = start()
    registry = ModelRegistry(uri, (tmp / "client-artifacts").as_uri(), "failcast-risk", timeout=6)
    frame, dates = synthetic()
    policy().retrain(training_set(frame, dates), registry)
    champion = str(registry.resolve(CHAMPION).version)

    fit = FailureModel.fit

    def fit_then_lose_the_store(*args, **kwargs):
        model = fit(*args, **kwargs)
        if server.poll() is None:
            stop(server)
        return model

    monkeypatch.setattr(FailureModel, "fit", fit_then_lose_the_store)
    started = time.monotonic()
    with pytest.raises(ResourceError, match="MLflow tracking server .* is unreachable"):
        policy().retrain(training_set(frame, dates, offset=5), registry)
    assert time.monotonic() - started < 60

    # The server's own store, read directly (a restarted server would serve the same rows).
    after = ModelRegistry(f"sqlite:///{tmp / 'server' / 'mlflow.db'}",
                          (tmp / "client-artifacts").as_uri(), "failcast-risk", timeout=6)
    assert str(after.resolve(CHAMPION).version) == champion
