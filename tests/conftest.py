"""Fixtures: tiny estates built by the generator with a fixed seed, and hand-made sources."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

os.environ.setdefault("DAGSTER_HOME", "")  # tests use ephemeral Dagster instances
os.environ.pop("FAILCAST_SOURCE", None)
os.environ.pop("FAILCAST_HOME", None)

TINY = {
    "systems": 14,
    "start": dt.date(2025, 6, 3),
    "end": dt.date(2025, 7, 31),
    "seed": 3,
    "minutes_per_sample": 60,
    "metrics": 5,
}


SMALL = {
    "systems": 30,
    "start": dt.date(2025, 1, 2),
    "end": dt.date(2025, 8, 29),
    "seed": 11,
    "minutes_per_sample": 60,
    "metrics": 6,
}


@pytest.fixture(scope="session")
def small_estate(tmp_path_factory) -> Path:
    """A 30-system estate over eight months: enough failures to train and gate a model."""
    from features.demo_estate.generate import generate_estate

    out = tmp_path_factory.mktemp("small") / "source"
    generate_estate(out, progress=False, **SMALL)
    with (out / "failcast.toml").open("a") as handle:
        handle.write("\n[model]\nholdout_days = 30\ntrain_window_days = 200\n")
    return out


@pytest.fixture(scope="session")
def tiny_estate(tmp_path_factory) -> Path:
    """A 14-system XSHG estate, June-July 2025, hourly samples of five metrics."""
    from features.demo_estate.generate import generate_estate

    out = tmp_path_factory.mktemp("tiny") / "source"
    generate_estate(out, progress=False, **TINY)
    return out


@pytest.fixture(scope="session")
def trained_home(small_estate, tmp_path_factory):
    """The small estate's history with features and two weekly retrains (tests.lifecycle_home)."""
    from tests.lifecycle_home import build_trained_home

    try:
        yield build_trained_home(small_estate, tmp_path_factory.mktemp("trained"))
    finally:
        os.environ["DAGSTER_HOME"] = ""


def write_source(
    root: Path,
    systems: str = "system_id,tier\nA,1\nB,2\n",
    incidents: str | None = "incident_id,system_id,opened_at,severity\n",
    changes: str | None = None,
    metrics: dict[str, str] | None = None,
    toml: str | None = None,
    calendar: str | None = None,
) -> Path:
    """A hand-made source directory; ``metrics`` maps a relative path to CSV text."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "systems.csv").write_text(systems)
    if incidents is not None:
        (root / "incidents.csv").write_text(incidents)
    if changes is not None:
        (root / "changes.csv").write_text(changes)
    for name, text in (metrics or {}).items():
        path = root / "metrics" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if toml is not None:
        (root / "failcast.toml").write_text(toml)
    if calendar is not None:
        (root / "calendar.csv").write_text(calendar)
    return root
