"""A home with features and two weekly retrains, shared by the lifecycle and MLflow fault tests.

Tests that use it (the ``trained_home`` fixture) run in one xdist group, so it is built once.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipelines.cli import main
from pipelines.definitions import build_definitions
from pipelines.runner import run_job
from pipelines.settings import Settings, load_settings

R1, R2 = dt.date(2025, 8, 15), dt.date(2025, 8, 22)  # two Fridays: weekly retraining days
HISTORY = (dt.date(2025, 1, 3), dt.date(2025, 8, 28))
GROUP = pytest.mark.xdist_group("trained_home")


@dataclass
class TrainedHome:
    settings: Settings
    versions: dict[dt.date, str]  # the version that served after each retrain

    def args(self) -> list[str]:
        return ["--source", str(self.settings.source), "--home", str(self.settings.home)]

    def copy(self, to: Path) -> TrainedHome:
        """An independent copy (warehouse, MLflow store and artifacts, training sets)."""
        shutil.copytree(self.settings.home, to)
        settings = load_settings(self.settings.source, to, env={})
        return TrainedHome(settings, dict(self.versions))


def retrain(home: TrainedHome, as_of: dt.date) -> str:
    assert main(["train", *home.args(), "--as-of", as_of.isoformat()]) == 0
    registry = home.settings.registry()
    found = registry.resolve("champion") or registry.resolve("fallback")
    return str(found.version)


def with_model_search(source: Path, to: Path) -> Path:
    """A copy of the source whose settings turn the model search on (off by default), so the
    retrains here, the backtest that replays them and every command on the copy run it alike."""
    shutil.copytree(source, to)
    toml = to / "failcast.toml"
    text = toml.read_text()
    text = (text.replace("[model]\n", "[model]\nsearch = true\n", 1) if "[model]\n" in text
            else text + "\n[model]\nsearch = true\n")
    toml.write_text(text)
    return to


def build_trained_home(source: Path, root: Path) -> TrainedHome:
    """Features for the history, then `failcast train` as of R1 and R2 (the ``trained_home``
    fixture in ``conftest.py``; ``DAGSTER_HOME`` points at ``root / "dagster"``)."""
    os.environ["DAGSTER_HOME"] = str(root / "dagster")
    source = with_model_search(source, root / "source")
    settings = load_settings(source, root / "home", env={})
    defs = build_definitions(settings, today=dt.date(2025, 9, 1))
    run_job(defs, "features_job", settings, *HISTORY)
    home = TrainedHome(settings, {})
    for day in (R1, R2):
        home.versions[day] = retrain(home, day)
    return home
