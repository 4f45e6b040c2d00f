"""Real servers for production-mode tests: PostgreSQL 15 and an MLflow tracking server.

Both run on 127.0.0.1 on random ports above 20000 and are stopped (and their files removed) when
the ``with`` block ends, whether the test passed or not. PostgreSQL comes from the machine's own
binaries (Debian's postgresql-15, not on PATH); it refuses to run as root, so as root it runs as
the ``postgres`` user on a data directory that user owns.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PG_BIN = Path(os.environ.get("FAILCAST_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_USER = "postgres"


def free_port() -> int:
    """A random port above 20000 that nothing on 127.0.0.1 listens on right now."""
    for _ in range(100):
        port = random.randint(20000, 60999)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port above 20000 on 127.0.0.1")


def postgres_available() -> str | None:
    """Why PostgreSQL cannot be started here, or None when it can."""
    if not (PG_BIN / "pg_ctl").is_file():
        return f"PostgreSQL binaries not found in {PG_BIN} (set FAILCAST_PG_BIN)"
    if os.geteuid() == 0 and shutil.which("runuser") is None and shutil.which("su") is None:
        return "running as root without runuser or su to start PostgreSQL as postgres"
    return None


def _as_postgres(command: list[str]) -> list[str]:
    """The command, run as the ``postgres`` user when we are root (the server refuses root)."""
    if os.geteuid() != 0:
        return command
    if shutil.which("runuser"):
        return ["runuser", "-u", PG_USER, "--", *command]
    return ["su", PG_USER, "-s", "/bin/sh", "-c", " ".join(f"'{c}'" for c in command)]


def _run(command: list[str], what: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}): {done.stdout}{done.stderr}")


@contextmanager
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL cluster; yields ``postgresql://postgres@127.0.0.1:PORT``."""
    root = Path(tempfile.mkdtemp(prefix="failcast-pg-"))
    data, log = root / "data", root / "server.log"
    if os.geteuid() == 0:
        shutil.chown(root, PG_USER)
    try:
        # trust: a cluster that lives for one test run and listens on loopback only
        _run(_as_postgres([str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", PG_USER,
                           "-E", "UTF8", "--no-sync"]), "initdb")
        for _attempt in range(3):
            port = free_port()
            # fsync off: nothing here outlives the test; the socket goes in the cluster's folder
            options = f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off -c full_page_writes=off"
            started = subprocess.run(
                _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(log), "-o",
                              options, "-w", "-t", "60", "start"]),
                capture_output=True, text=True, timeout=120, check=False)
            if started.returncode == 0:
                break
        else:
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"PostgreSQL did not start: {started.stderr}{tail}")
        try:
            yield f"postgresql://{PG_USER}@127.0.0.1:{port}"
        finally:
            subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m",
                                         "immediate", "-w", "stop"]),
                           capture_output=True, timeout=60, check=False)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def create_database(server_url: str, name: str) -> str:
    """Create database ``name`` on the server; returns its URL."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(f"{server_url}/postgres", autocommit=True) as con:
        con.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return f"{server_url}/{name}"


@contextmanager
def mlflow_server(script: Path, backend_store_uri: str, artifacts_destination: Path,
                  log_path: Path, timeout_s: float = 180.0) -> Iterator[str]:
    """The tracking server started by ``script`` (deploy/mlflow-server.sh) on a random port,
    proxying artifacts to ``artifacts_destination``; yields its URL once ``/health`` answers."""
    port = free_port()
    env = {**os.environ,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "MLFLOW_BACKEND_STORE_URI": backend_store_uri,
           "MLFLOW_ARTIFACTS_DIR": str(artifacts_destination),
           "MLFLOW_HOST": "127.0.0.1", "MLFLOW_PORT": str(port), "MLFLOW_WORKERS": "1"}
    url = f"http://127.0.0.1:{port}"
    with log_path.open("w") as log:
        process = start_group(["sh", str(script)], env, log)
    try:
        wait_until(lambda: _answers(f"{url}/health"), process, log_path, timeout_s,
                   "mlflow server")
        yield url
    finally:
        stop_group(process)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False


def start_group(command: list[str], env: dict[str, str], log, cwd: Path | None = None
                ) -> subprocess.Popen:
    """A server process in its own session, so stopping it stops the workers it forks too."""
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                            stdin=subprocess.DEVNULL, start_new_session=True)


def wait_until(ready, process: subprocess.Popen, log_path: Path, timeout_s: float,
               what: str) -> None:
    """Poll ``ready()`` until true; fail with the server's log if it exits or takes too long."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited ({process.returncode}): "
                               f"{log_path.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready within {timeout_s:.0f} s: "
                               f"{log_path.read_text()[-3000:]}")
        time.sleep(0.5)


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM to the server's whole process group (workers too), SIGKILL if it lingers."""
    for sig, wait_s in ((signal.SIGTERM, 5), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue
        with contextlib.suppress(ProcessLookupError):  # the leader is gone; now its workers
            os.killpg(process.pid, sig)
        return
