"""Profiles: the mix and strength of the failure mechanisms an estate is simulated with.

The demo estate is one firm. A model that only ever meets it learns the generator's author, not
failure: the quality benchmark also runs on estates whose failures come from other mechanisms,
in other proportions, with weaker or stronger precursors, and whose operations team restarts,
cleans up and releases on another rhythm. A ``Profile`` says how, as parameters of the one
generator (``failcast generate --profile NAME``); ``demo`` is the demo estate, draw for draw.

Strengths multiply the demo's daily hazard of each mechanism (capped at 1); onsets are the
daily chance that a precursor episode starts on a system; the operations parameters are the
daily (or weekly) chances that the operations team schedules a change.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from features.errors import UsageError


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    # Strength of each mechanism: a multiplier on the demo's hazard.
    capacity: float = 1.0
    leak: float = 1.0
    latency: float = 1.0
    storm: float = 1.0
    hardware: float = 1.0
    reopen: float = 1.0
    change: float = 1.0
    cascade: float = 1.0
    random: float = 1.0
    exhaustion: float = 1.0
    # Precursor episodes: the daily chance one starts on a system.
    degradation_onset: float = 0.006
    storm_onset: float = 0.009
    hardware_onset: float = 0.0025
    exhaustion_onset: float = 0.0  # connection-pool exhaustion: not in the demo estate
    # The estate's make-up.
    leak_prone: float = 1.0  # multiplier on each kind's share of systems running leaky software
    disk_growth: float = 1.0  # multiplier on how fast disks fill
    new_leak_on_release: float = 0.15  # chance a release brings a new leak
    # Operations: how the team plans changes.
    leaky_restart: float = 0.25  # weekly chance a leaky system gets a Saturday restart
    cleanup_reaction: float = 0.12  # daily chance a disk past 85% gets a clean-up scheduled
    release_rate: float = 0.012  # daily chance of an evening release (upper layers)
    config_rate: float = 0.012  # daily chance of an evening configuration change

    def to_dict(self) -> dict:
        return asdict(self)

    def strength(self, mechanism: str) -> float:
        return getattr(self, mechanism)


PROFILES: dict[str, Profile] = {p.name: p for p in (
    Profile("demo", "the demo estate: every mechanism at its demo strength"),
    Profile(
        "change-heavy",
        "a firm that ships often: releases and configuration changes three times as often, "
        "each more likely to fail or to bring a leak; fewer routine restarts; disks, latency "
        "and error storms matter less",
        change=1.8, capacity=0.6, latency=0.6, storm=0.5, release_rate=0.035, config_rate=0.03,
        new_leak_on_release=0.3, leaky_restart=0.08),
    Profile(
        "faint-precursors",
        "weak signals: half the precursor-driven failures, twice the failures that have no "
        "precursor, more cascades; a harder estate to forecast",
        capacity=0.5, leak=0.5, latency=0.5, storm=0.5, hardware=0.5, random=2.0, cascade=1.5,
        degradation_onset=0.004, storm_onset=0.006),
    Profile(
        "maintenance-driven",
        "an operations team that lives by its maintenance calendar: twice the leaky systems, "
        "faster-filling disks, restarts and clean-ups scheduled often (whether one comes before "
        "the limit decides the failure), and connection pools that exhaust until restarted",
        leak_prone=2.0, disk_growth=1.6, leaky_restart=0.45, cleanup_reaction=0.3,
        capacity=1.2, leak=1.2, exhaustion_onset=0.004, storm=0.6, latency=0.7),
)}


def profile(name: str | Profile) -> Profile:
    if isinstance(name, Profile):
        return name
    try:
        return PROFILES[name]
    except KeyError:
        raise UsageError(f"unknown estate profile {name!r}: choose from "
                         f"{', '.join(PROFILES)}") from None


def describe() -> str:
    return "; ".join(f"{p.name}: {p.description}" for p in PROFILES.values())


PARAMETERS = tuple(f.name for f in fields(Profile) if f.name not in ("name", "description"))
