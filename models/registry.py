"""MLflow: every retrain tracked, every served model registered whole, aliases say what scores.

A thin layer over ``MlflowClient`` and MLflow's pyfunc flavour (``models.served``). Aliases:
``champion`` (the model that scores), ``challenger`` (the latest candidate that did not win),
``fallback`` (the best baseline, which scores while no champion exists).

Faults are answered here, where they are understood, in one line that names MLflow and what to
do (``ResourceError``, exit 3): a tracking server that does not answer within ``timeout``
seconds (MLflow's own HTTP retries are bounded to fit), a store locked by another process or
read-only, artifacts that are missing or unreadable (``BrokenModel``). Only MLflow's
``RESOURCE_DOES_NOT_EXIST`` for the registered model, or an alias absent from the model's
alias list, means "no such alias yet". ``mlflow`` is imported only when a method needs it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import re
import sqlite3
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import polars as pl

from features.errors import ResourceError
from models.served import (
    RegisteredModel,
    Served,
    published_name,
    save_scorer,
    signature,
)
from models.spreadsheet import neutralise_formulas

CHAMPION, CHALLENGER, FALLBACK = "champion", "challenger", "fallback"
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
DEFAULT_TIMEOUT = 30.0
PYFUNC_ENTRY = Path(__file__).with_name("pyfunc_entry.py")
# What a registered model needs to be loaded and scored elsewhere (MLflow adds itself). Named,
# because MLflow otherwise infers them by loading the model in a subprocess: 15 s of every
# registration (three a retrain at most), measured with py-spy on the MLflow fault tests.
SCORING_PACKAGES = ("failcast", "lightgbm", "numpy", "pandas", "polars", "scikit-learn")
__all__ = ["CHALLENGER", "CHAMPION", "FALLBACK", "BrokenModel", "ModelRegistry",
           "RegisteredModel", "Served"]


class BrokenModel(ResourceError):
    """A registered version whose artifacts are missing or unreadable."""

    def __init__(self, message: str, version: str) -> None:
        super().__init__(message)
        self.version = version


def scoring_requirements() -> list[str]:
    """``SCORING_PACKAGES`` pinned to the versions installed here, which trained the model."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in SCORING_PACKAGES]


def _first_line(exc: BaseException) -> str:
    """The line of an error that says what happened (not SQLAlchemy's notes, SQL or footer)."""
    for line in str(exc).strip().splitlines():
        line = line.strip()
        if not line or line.startswith(("(raised as a result", "[SQL", "[parameters", "(Background")):
            continue
        return re.sub(r"^\((?:sqlite3|psycopg[\w.]*|sqlalchemy[\w.]*)\.\w+\)\s*", "", line)
    return type(exc).__name__


def _http_bounds(timeout: float) -> dict[str, str]:
    """MLflow's HTTP retry settings that end one request's attempts within ``timeout``:
    three attempts of a third of it each, minus the two short back-offs between them."""
    per_attempt = max(1, int((timeout - 3) / 3))
    return {
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(per_attempt),
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
        "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
    }


class ModelRegistry:
    def __init__(self, tracking_uri: str, artifact_location: str | None, model_name: str,
                 experiment: str = "failcast", timeout: float = DEFAULT_TIMEOUT) -> None:
        self.tracking_uri = tracking_uri
        self.artifact_location = artifact_location
        self.model_name = model_name
        self.experiment = experiment
        self.timeout = timeout
        self._checked: set[bool] = set()

    # ------------------------------------------------------------------ plumbing
    @property
    def where(self) -> str:
        if self.tracking_uri.startswith(("http://", "https://")):
            return f"the MLflow tracking server at {self.tracking_uri}"
        if self.sqlite_path:
            return f"MLflow's tracking store {self.sqlite_path}"
        return f"MLflow's tracking store {self.tracking_uri}"

    @property
    def sqlite_path(self) -> Path | None:
        if not self.tracking_uri.startswith("sqlite:///"):
            return None
        path = self.tracking_uri[len("sqlite:///"):].split("?")[0]
        return Path(path.removeprefix("file:"))

    def _mlflow(self):
        # The tracking URI is always explicit here, never the working directory's default;
        # downloads draw no progress bars; MLflow's HTTP retries end within the timeout (an
        # operator's own MLFLOW_HTTP_* variables win); the store's own error log (a
        # traceback per failed query) is silenced because the fault is reported here, in one line.
        # A model's environment is its requirements (scoring_requirements), not the uv project
        # of whatever directory the process started in: MLflow copied failcast's development
        # lock file into every model logged from the repository, and would restore it to serve.
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        os.environ.setdefault("MLFLOW_UV_AUTO_DETECT", "false")
        for key, value in _http_bounds(self.timeout).items():
            os.environ.setdefault(key, value)
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
        import mlflow

        mlflow.set_tracking_uri(self.tracking_uri)
        return mlflow

    def client(self):
        from mlflow import MlflowClient

        self._mlflow()
        return MlflowClient(tracking_uri=self.tracking_uri)

    def _fault(self, exc: BaseException, doing: str) -> ResourceError:
        text = _first_line(exc)
        low = str(exc).lower()
        if "database is locked" in low or "could not obtain lock" in low:
            return ResourceError(
                f"{self.where} is locked by another process ({doing}): let it finish, then run "
                "again")
        if "readonly" in low or "read-only" in low or "permission denied" in low:
            return ResourceError(
                f"{self.where} is read-only ({doing}: {text}): make it writable, or point "
                "[mlflow] tracking_uri (FAILCAST_MLFLOW_TRACKING_URI) at a writable store")
        if "disk is full" in low or "no space left" in low or "disk i/o error" in low:
            return ResourceError(f"{self.where} cannot write ({doing}: {text}): free disk space")
        if any(m in low for m in ("max retries exceeded", "connection refused", "timed out",
                                  "connectionerror", "failed to establish", "name or service")):
            return ResourceError(
                f"{self.where} is unreachable ({doing}; gave up within {self.timeout:.0f} s): "
                "start it, or point [mlflow] tracking_uri (FAILCAST_MLFLOW_TRACKING_URI) at a "
                "running one")
        return ResourceError(f"{self.where} failed ({doing}): {text}")

    @contextlib.contextmanager
    def _calling(self, doing: str) -> Iterator[None]:
        """Turn what MLflow, its store or the network raise into one ResourceError line."""
        import requests
        import sqlalchemy
        from mlflow.exceptions import MlflowException

        try:
            yield
        except ResourceError:
            raise
        except (MlflowException, requests.RequestException, sqlalchemy.exc.SQLAlchemyError,
                sqlite3.Error, OSError) as exc:
            raise self._fault(exc, doing) from None

    def check_available(self, *, write: bool = False) -> None:
        """Fail fast, in one line, when the tracking store cannot answer (or cannot be written).

        A server gets ``timeout`` seconds to answer its health check; a SQLite store is opened
        with the same patience for its lock."""
        if write in self._checked:
            return
        started = time.monotonic()
        if self.tracking_uri.startswith(("http://", "https://")):
            self._check_server(started)
        elif self.sqlite_path is not None:
            self._check_sqlite(self.sqlite_path, write)
        self._checked.add(write)

    def _check_server(self, started: float) -> None:
        import requests

        per_attempt = max(1.0, self.timeout / 3)
        reason = "no answer"
        while time.monotonic() - started < self.timeout:
            try:
                response = requests.get(f"{self.tracking_uri.rstrip('/')}/health",
                                        timeout=per_attempt)
                if response.ok:
                    return
                reason = f"HTTP {response.status_code}"
            except requests.RequestException as exc:
                reason = _reason(exc)
            time.sleep(min(1.0, max(0.0, self.timeout - (time.monotonic() - started))))
        raise ResourceError(
            f"{self.where} is unreachable ({reason}; gave up after {time.monotonic() - started:.0f}"
            " s): start it, or point [mlflow] tracking_uri (FAILCAST_MLFLOW_TRACKING_URI) at a "
            "running one")

    def _check_sqlite(self, path: Path, write: bool) -> None:
        if write and re.search(r"[?&]mode=ro\b", self.tracking_uri):
            raise ResourceError(
                f"{self.where} is opened read-only (mode=ro in {self.tracking_uri}): a retrain "
                "must write; point [mlflow] tracking_uri (FAILCAST_MLFLOW_TRACKING_URI) at a "
                "writable store")
        if not path.exists():
            folder = path.parent
            if folder.exists() and not os.access(folder, os.W_OK):
                raise ResourceError(f"{self.where} cannot be created: {folder} is read-only")
            return
        if write and not os.access(path, os.W_OK):
            raise ResourceError(
                f"{self.where} is read-only: make it writable, or point [mlflow] tracking_uri "
                "(FAILCAST_MLFLOW_TRACKING_URI) at a writable store")
        try:
            con = sqlite3.connect(f"{path.as_uri()}?mode={'rw' if write else 'ro'}", uri=True,
                                  timeout=min(self.timeout, 20.0))
            try:
                if write:
                    con.execute("BEGIN IMMEDIATE")  # the write lock, released at once
                    con.rollback()
                else:
                    con.execute("SELECT count(*) FROM sqlite_master").fetchall()
            finally:
                con.close()
        except sqlite3.Error as exc:
            raise self._fault(exc, "opening it") from None

    def experiment_id(self, name: str | None = None) -> str:
        mlflow = self._mlflow()
        name = name or self.experiment
        with self._calling(f"opening the experiment {name!r}"):
            found = mlflow.get_experiment_by_name(name)
            if found is None:
                # No artifact location: a tracking server keeps the artifacts itself.
                location = f"{self.artifact_location}/{name}" if self.artifact_location else None
                return mlflow.create_experiment(name, artifact_location=location,
                                                tags=EXPERIMENT_KIND)
            if found.tags.get("mlflow.experimentKind") != EXPERIMENT_KIND["mlflow.experimentKind"]:
                # MLflow 3 opens an experiment without this tag on its GenAI view.
                self.client().set_experiment_tag(found.experiment_id, *next(iter(EXPERIMENT_KIND.items())))
            return found.experiment_id

    def run_url(self, run_id: str, experiment_id: str | None = None) -> str:
        base = self.tracking_uri if self.tracking_uri.startswith("http") else "http://127.0.0.1:5000"
        experiment = experiment_id or self.experiment_id()
        return f"{base.rstrip('/')}/#/experiments/{experiment}/runs/{run_id}"

    # ------------------------------------------------------------------ reading
    def resolve(self, alias: str):
        """The model version behind ``alias`` (read once), or None when there is none yet."""
        from mlflow.exceptions import MlflowException

        self.check_available()
        client = self.client()
        with self._calling(f"looking up the alias {alias!r}"):
            try:
                model = client.get_registered_model(self.model_name)
            except MlflowException as exc:
                if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                    return None
                raise
            version = model.aliases.get(alias)
            if version is None:
                return None
            return client.get_model_version(self.model_name, str(version))

    def served(self, alias: str = CHAMPION) -> Served | None:
        """The whole scorer behind ``alias``, resolved once to a version and loaded from it."""
        version = self.resolve(alias)
        if version is None:
            return None
        scorer = self.load_version(str(version.version), alias)
        tags = dict(version.tags)
        through = tags.get("trained_through")
        return Served(
            scorer,
            RegisteredModel(published_name(scorer, self.model_name), str(version.version),
                            version.run_id, alias),
            tags,
            dt.date.fromisoformat(through) if through else None,
        )

    def load_version(self, version: str, alias: str | None = None) -> Any:
        """The scorer of one registered version, read through MLflow's pyfunc loader."""
        mlflow = self._mlflow()
        import mlflow.pyfunc  # noqa: F811 - the submodule, loaded on demand
        import requests
        from lightgbm.basic import LightGBMError
        from mlflow.exceptions import MlflowException

        label = f"{self.model_name} v{version}" + (f" ({alias})" if alias else "")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                loaded = mlflow.pyfunc.load_model(f"models:/{self.model_name}/{version}")
            pyfunc = loaded.metadata.flavors.get("python_function", {})
            if pyfunc.get("loader_module") == "mlflow.lightgbm":
                return self._load_bare_booster(version)
            return loaded.unwrap_python_model().scorer
        # Reading one model's files: a ValueError or KeyError here is a damaged file (JSON,
        # the MLmodel description), not a bug elsewhere.
        except (MlflowException, OSError, ValueError, KeyError, LightGBMError,
                requests.RequestException) as exc:
            fault = self._fault(exc, f"loading {label}")
            if "unreachable" in str(fault) or "locked" in str(fault):
                raise fault from None
            retire = (" (`failcast train --retire-broken-champion` retires it and trains a "
                      "new one)" if alias == CHAMPION else "")
            raise BrokenModel(
                f"{label} in {self.where} is broken: its artifacts are missing or unreadable "
                f"({_first_line(exc)}){retire}", version) from None

    def _load_bare_booster(self, version: str) -> Any:
        """A version registered before models were whole (failcast <= 0.1: MLflow's LightGBM
        flavour, with the calibration and the feature list as JSON files of its run), so a
        champion from then keeps scoring until the next retrain replaces it."""
        import json

        import mlflow.lightgbm

        from models.calibration import Calibrator
        from models.model import FailureModel

        run_id = self.client().get_model_version(self.model_name, version).run_id
        booster = mlflow.lightgbm.load_model(f"models:/{self.model_name}/{version}")
        with tempfile.TemporaryDirectory() as tmp:
            files = {name: Path(mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=f"{name}.json", dst_path=tmp))
                for name in ("calibration", "features")}
            calibrator = Calibrator.from_dict(json.loads(files["calibration"].read_text()))
            described = json.loads(files["features"].read_text())
        return FailureModel(booster, described["features"], calibrator, None, described["info"])

    def version_tags(self, version: str) -> dict[str, str]:
        with self._calling(f"reading the tags of v{version}"):
            return dict(self.client().get_model_version(self.model_name, version).tags)

    # ------------------------------------------------------------------ writing
    @contextlib.contextmanager
    def retrain_run(self, as_of: dt.date, *, tags: dict[str, str]) -> Iterator[MlflowRun]:
        """One MLflow run for one retrain; a failure inside ends it FAILED (when MLflow can)."""
        mlflow = self._mlflow()
        self.check_available(write=True)
        experiment_id = self.experiment_id()
        with self._calling("starting the retrain's run"):
            run = mlflow.start_run(experiment_id=experiment_id, run_name=f"retrain {as_of}")
        record = MlflowRun(self, run.info.run_id, experiment_id)
        try:
            with self._calling("recording the retrain"):
                mlflow.set_tags({k: str(v)[:5000] for k, v in tags.items()})
            yield record
        except BaseException:
            with contextlib.suppress(Exception):
                mlflow.end_run("FAILED")
            raise
        with self._calling("closing the retrain's run"):
            mlflow.end_run()

    def set_alias(self, alias: str, version: str) -> None:
        with self._calling(f"moving the alias {alias!r} to v{version}"):
            self.client().set_registered_model_alias(self.model_name, alias, version)

    def tag_version(self, version: str, tags: dict[str, str]) -> None:
        with self._calling(f"tagging v{version}"):
            client = self.client()
            for key, value in tags.items():
                client.set_model_version_tag(self.model_name, version, key, str(value)[:5000])

    def delete_alias(self, alias: str) -> None:
        from mlflow.exceptions import MlflowException

        with self._calling(f"removing the alias {alias!r}"):
            try:
                self.client().delete_registered_model_alias(self.model_name, alias)
            except MlflowException as exc:
                if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                    raise

    def retire_broken_champion(self) -> str | None:
        """Remove the alias ``champion`` from a version whose artifacts are broken, and say so;
        None when the champion is whole (or there is none): nothing is changed then."""
        version = self.resolve(CHAMPION)
        if version is None:
            return None
        try:
            self.load_version(str(version.version), CHAMPION)
            return None
        except BrokenModel as broken:
            reason = str(broken).split(" (`failcast train")[0]
        with self._calling(f"retiring v{version.version}"):
            self.client().set_model_version_tag(
                self.model_name, str(version.version), "retired",
                f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC: {reason}"[:5000])
        self.delete_alias(CHAMPION)
        return f"retired {self.model_name} v{version.version}: {reason}"

    def log_backtest(self, *, params: dict, metrics: dict[str, float], tables: dict[str, pl.DataFrame],
                     plots: dict[str, Path], tags: dict[str, str]) -> tuple[str, str]:
        """A backtest as a run of its own experiment; returns (run id, experiment id)."""
        mlflow = self._mlflow()
        self.check_available(write=True)
        experiment_id = self.experiment_id(f"{self.experiment}-backtests")
        with self._calling("logging the backtest"), \
                mlflow.start_run(experiment_id=experiment_id, run_name=tags.get("run_name")) as run:
            mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
            mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v == v})
            mlflow.set_tags({k: v for k, v in tags.items() if k != "run_name"})
            for name, frame in tables.items():
                mlflow.log_text(neutralise_formulas(frame).write_csv(), f"tables/{name}.csv")
            for path in plots.values():
                mlflow.log_artifact(str(path), "plots")
        return run.info.run_id, experiment_id


def _reason(exc: BaseException) -> str:
    text = str(exc)
    for needle, said in (("Connection refused", "connection refused"), ("timed out", "timed out"),
                         ("Name or service not known", "unknown host")):
        if needle in text:
            return said
    return type(exc).__name__


class MlflowRun:
    """What a retrain records in its MLflow run: the evaluation, and the versions it registers."""

    def __init__(self, registry: ModelRegistry, run_id: str, experiment_id: str) -> None:
        self.registry = registry
        self.run_id = run_id
        self.experiment_id = experiment_id

    @property
    def url(self) -> str:
        return self.registry.run_url(self.run_id, self.experiment_id)

    def log_evaluation(self, *, params: dict, metrics: dict[str, float],
                       tables: dict[str, pl.DataFrame],
                       draw: Callable[[Path], dict[str, Path]] | None,
                       tags: dict[str, str]) -> None:
        mlflow = self.registry._mlflow()
        with tempfile.TemporaryDirectory() as tmp, self.registry._calling("logging the evaluation"):
            mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
            mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v == v})  # skip NaN
            mlflow.set_tags({k: str(v)[:5000] for k, v in tags.items()})
            for name, frame in tables.items():
                mlflow.log_text(neutralise_formulas(frame).write_csv(), f"tables/{name}.csv")
            for path in (draw(Path(tmp)) if draw else {}).values():
                mlflow.log_artifact(str(path), "plots")

    def register(self, scorer: Any, *, name: str, tags: dict[str, str]) -> RegisteredModel:
        """Log ``scorer`` as a whole pyfunc model in this run and register it as a new version."""
        mlflow = self.registry._mlflow()
        import mlflow.pyfunc  # noqa: F811 - the submodule, loaded on demand

        with tempfile.TemporaryDirectory() as tmp, self.registry._calling(f"registering {name}"):
            folder = save_scorer(scorer, Path(tmp) / "model")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # no input example: the schema is explicit
                info = mlflow.pyfunc.log_model(
                    name=name, python_model=str(PYFUNC_ENTRY), artifacts={"model": str(folder)},
                    signature=signature(scorer), registered_model_name=self.registry.model_name,
                    pip_requirements=scoring_requirements(),
                )
            version = str(info.registered_model_version)
            client = self.registry.client()
            for key, value in tags.items():
                client.set_model_version_tag(self.registry.model_name, version, key,
                                             str(value)[:5000])
        return RegisteredModel(published_name(scorer, self.registry.model_name), version,
                               self.run_id)

    def name(self, text: str) -> None:
        mlflow = self.registry._mlflow()
        with self.registry._calling("naming the run"):
            mlflow.set_tag("mlflow.runName", text)
