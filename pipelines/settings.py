"""One settings object, built once: defaults < the source's failcast.toml < FAILCAST_* < flags.

Every setting has one row in ``FIELDS``: its TOML section and key, its environment variable,
how to parse it and its default. A wrong key or value fails with one line that names it.
"""

from __future__ import annotations

import datetime as dt
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from features.errors import UsageError
from features.source import CALENDAR, SETTINGS


class SettingsError(UsageError):
    """A setting has a wrong name or value."""


def _timezone(value: Any) -> str:
    try:
        ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone {value!r} (use an IANA name such as Asia/Shanghai)") from None
    return str(value)


def _cutoff(value: Any) -> dt.time:
    from features.trading_time import parse_cutoff

    return value if isinstance(value, dt.time) else parse_cutoff(str(value))


def _severity(value: Any) -> int:
    number = int(value)
    if not 1 <= number <= 4:
        raise ValueError(f"must be 1-4, got {value!r}")
    return number


def _share(value: Any) -> float:
    number = float(value)
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"must be a share between 0 and 1, got {value!r}")
    return number


def _date(value: Any) -> dt.date | None:
    if value in (None, ""):
        return None
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value))


def _path(value: Any) -> Path:
    return Path(str(value)).expanduser().resolve()


def _positive_int(value: Any) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(f"must be a positive integer, got {value!r}")
    return number


def _positive_float(value: Any) -> float:
    number = float(value)
    if not number > 0:
        raise ValueError(f"must be a positive number, got {value!r}")
    return number


CADENCES = ("weekly", "monthly")  # models.lifecycle.CADENCES, without importing the models here


def _cadence(value: Any) -> str:
    if str(value) not in CADENCES:
        raise ValueError(f"must be one of {', '.join(CADENCES)}, got {value!r}")
    return str(value)


def _non_negative(value: Any) -> float:
    number = float(value)
    if not number >= 0:
        raise ValueError(f"must be zero or more, got {value!r}")
    return number


def _confidence(value: Any) -> float:
    number = float(value)
    if not 0.5 <= number < 1.0:
        raise ValueError(f"must be a confidence level between 0.5 and 1, got {value!r}")
    return number


def _optional_sessions(value: Any) -> int | None:
    return None if value in (None, "") else _positive_int(value)


def _thresholds(value: Any) -> tuple[float, float, float]:
    parts = value.split(",") if isinstance(value, str) else list(value)
    numbers = tuple(float(p) for p in parts)
    if len(numbers) != 3 or not 0 < numbers[0] < numbers[1] < numbers[2] < 1:
        raise ValueError(
            f"must be three increasing probabilities for elevated,high,critical, got {value!r}"
        )
    return numbers  # type: ignore[return-value]


def _seconds(value: Any) -> float:
    number = float(value)
    if not 0 <= number <= 86_400:
        raise ValueError(f"must be seconds between 0 and 86400, got {value!r}")
    return number


def _switch(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"must be true or false, got {value!r}")


def _text(value: Any) -> str:
    return str(value)


def _optional_text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


@dataclass(frozen=True)
class Field:
    name: str
    section: str
    key: str
    parse: Callable[[Any], Any]
    help: str


FIELDS: tuple[Field, ...] = (
    Field("timezone", "time", "timezone", _timezone, "how naive timestamps are read; where the cutoff is"),
    Field("exchange", "time", "exchange", _text, "exchange_calendars code, or 24/7"),
    Field("cutoff", "time", "cutoff", _cutoff, "local time (HH:MM) that ends an as-of day"),
    Field("max_severity", "label", "max_severity", _severity, "incidents of severity <= this are failures"),
    Field("quarantine_max_share", "quality", "quarantine_max_share", _share,
          "quarantined share of a table's rows that blocks publishing"),
    Field("max_feed_age_days", "quality", "max_feed_age_days", _positive_float,
          "days an incident or change feed may stand still before a night is refused"),
    Field("max_missing_share", "quality", "max_missing_share", _share,
          "share of the systems that normally send metrics allowed to send none"),
    Field("start", "pipeline", "start", _date, "first as-of day of the Dagster partitions"),
    Field("train_window_days", "model", "train_window_days", _positive_int,
          "trading days of labels a model trains on"),
    Field("holdout_days", "model", "holdout_days", _positive_int,
          "latest trading days held out to compare a new model with the champion"),
    Field("retrain_every", "model", "retrain_every", _cadence,
          "retraining cadence (weekly or monthly): the schedule and the backtest's default"),
    Field("model_search", "model", "search", _switch,
          "choose each retrain's configuration by a small search inside the training window"),
    Field("model_search_configurations", "model", "search_configurations", _positive_int,
          "at most this many configurations per search (the cost: about one fit each, or less)"),
    Field("model_search_at_once", "model", "search_at_once", _positive_int,
          "configurations a search fits side by side (more: faster on free cores, more memory)"),
    Field("champion_warn_age", "model", "champion_warn_age", _optional_sessions,
          "trading days since the champion's newest label that warn (default: 2 periods)"),
    Field("champion_max_age", "model", "champion_max_age", _optional_sessions,
          "trading days since the champion's newest label that block publishing (default: 4 periods)"),
    Field("gate_min_improvement", "gate", "min_improvement", _non_negative,
          "PR-AUC points a model must gain over a baseline or the champion, beyond noise"),
    Field("gate_confidence", "gate", "confidence", _confidence,
          "level of the bootstrap interval of the hold-out PR-AUC difference"),
    Field("gate_resamples", "gate", "resamples", _positive_int,
          "bootstrap resamples of the hold-out days"),
    Field("model_name", "model", "name", _text, "registered model name in MLflow"),
    Field("tier_thresholds", "risk", "tier_thresholds", _thresholds,
          "risk at which a system becomes elevated, high, critical"),
    Field("watch_list_size", "risk", "watch_list_size", _positive_int,
          "systems on the CAB's watch list each night (the track record counts them as foreseen)"),
    Field("mlflow_tracking_uri", "mlflow", "tracking_uri", _optional_text,
          "MLflow tracking URI (default: SQLite under the home directory)"),
    Field("mlflow_timeout", "mlflow", "timeout", _positive_float,
          "seconds MLflow gets to answer before a run fails (its HTTP retries included)"),
    Field("threads", "engine", "threads", _positive_int, "DuckDB threads"),
    Field("memory_limit", "engine", "memory_limit", _text, "DuckDB memory limit"),
    Field("lock_timeout_s", "engine", "lock_timeout_s", _seconds,
          "seconds to wait for another process's lock on the warehouse before giving up"),
    Field("dask_scheduler", "engine", "dask_scheduler", _optional_text,
          "Dask scheduler address (tcp://HOST:PORT): models train on that cluster"),
)
_BY_KEY = {(f.section, f.key): f for f in FIELDS}


@dataclass(frozen=True)
class Settings:
    """Where failcast reads, where it writes, and the rules of time, labels and risk."""

    source: Path
    home: Path
    timezone: str = "Asia/Shanghai"
    exchange: str = "XSHG"
    cutoff: dt.time = dt.time(18, 0)
    max_severity: int = 4
    quarantine_max_share: float = 0.01
    max_feed_age_days: float = 10.0
    max_missing_share: float = 0.2
    start: dt.date | None = None
    train_window_days: int = 500
    holdout_days: int = 40
    retrain_every: str = "weekly"
    model_search: bool = False  # opt-in: on short histories it chose worse (docs/model.md)
    model_search_configurations: int = 4
    model_search_at_once: int = 2
    champion_warn_age: int | None = None
    champion_max_age: int | None = None
    gate_min_improvement: float = 0.0
    gate_confidence: float = 0.90
    gate_resamples: int = 1000
    model_name: str = "failcast-risk"
    tier_thresholds: tuple[float, float, float] = (0.05, 0.15, 0.35)
    watch_list_size: int = 10
    mlflow_tracking_uri: str | None = None
    mlflow_timeout: float = 30.0
    threads: int = 2
    memory_limit: str = "1500MB"
    lock_timeout_s: float = 60.0
    dask_scheduler: str | None = None
    origins: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    # ---------------------------------------------------------------- derived places
    @property
    def warehouse_path(self) -> Path:
        return self.home / "warehouse.duckdb"

    @property
    def published_dir(self) -> Path:
        return self.home / "published"

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{self.home / 'mlflow.db'}"

    @property
    def artifact_location(self) -> str | None:
        """Artifacts under the home for a local store; a tracking server keeps its own
        (``mlflow server --artifacts-destination``), so runs upload through it."""
        if self.tracking_uri.startswith(("http://", "https://")):
            return None
        return (self.home / "mlartifacts").as_uri()

    @cached_property
    def calendar(self):
        """The trading calendar of these settings, with the source's calendar.csv applied."""
        from features.trading_time import TradingCalendar, read_calendar_overrides

        overrides_path = self.source / CALENDAR
        overrides = read_calendar_overrides(overrides_path) if overrides_path.is_file() else None
        return TradingCalendar(self.exchange, self.timezone, self.cutoff, overrides)

    def warehouse(self, **overrides):
        from features.warehouse import Warehouse

        options = {"timezone": self.timezone, "threads": self.threads,
                   "memory_limit": self.memory_limit, "lock_timeout_s": self.lock_timeout_s,
                   **overrides}
        return Warehouse(self.warehouse_path, **options)

    def registry(self):
        """The MLflow model registry of these settings (tracking store, artifacts, model name)."""
        from models.registry import ModelRegistry

        return ModelRegistry(self.tracking_uri, self.artifact_location, self.model_name,
                             timeout=self.mlflow_timeout)

    def policy(self):
        """The retraining policy of these settings (cadence, windows, gate)."""
        from models.gate import GateConfig
        from models.lifecycle import PolicyConfig, RetrainPolicy
        from models.model import TrainConfig
        from models.search import SearchConfig

        return RetrainPolicy(PolicyConfig(
            cadence=self.retrain_every,
            train_sessions=self.train_window_days,
            holdout_sessions=self.holdout_days,
            max_severity=self.max_severity,
            gate=GateConfig(min_improvement=self.gate_min_improvement,
                            confidence=self.gate_confidence, resamples=self.gate_resamples),
            candidate=TrainConfig(dask_scheduler=self.dask_scheduler),
            search=SearchConfig(enabled=self.model_search,
                                max_configurations=self.model_search_configurations,
                                at_once=self.model_search_at_once),
        ))

    @property
    def champion_age_limits(self) -> tuple[int, int]:
        """(warn, block): trading days since the serving model's newest label."""
        policy = self.policy()
        return (self.champion_warn_age or policy.default_warn_age(),
                self.champion_max_age or policy.default_max_age())

    def with_values(self, **values: Any) -> Settings:
        return replace(self, **values)


def default_home() -> Path:
    return Path.cwd() / "data"


def load_settings(
    source: str | Path | None = None,
    home: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    **flags: Any,
) -> Settings:
    """Build the settings: defaults, then ``failcast.toml`` in the source, then the
    environment (``FAILCAST_<NAME>``), then explicit flags (``None`` means not given)."""
    env = os.environ if env is None else env
    home_path = _path(home or env.get("FAILCAST_HOME") or default_home())
    source_path = _path(source or env.get("FAILCAST_SOURCE") or home_path / "demo")
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}

    toml_path = source_path / SETTINGS
    if toml_path.is_file():
        try:
            document = tomllib.loads(toml_path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise SettingsError(f"{toml_path}: not valid TOML ({exc})") from None
        for section, table in document.items():
            if not isinstance(table, dict):
                raise SettingsError(f"{toml_path}: unknown top-level key {section!r}")
            for key, raw in table.items():
                spec = _BY_KEY.get((section, key))
                if spec is None:
                    known = ", ".join(f"[{f.section}] {f.key}" for f in FIELDS)
                    raise SettingsError(
                        f"{toml_path}: unknown setting [{section}] {key} (known: {known})"
                    )
                values[spec.name] = _parse(spec, raw, f"{toml_path} [{section}] {key}")
                origins[spec.name] = str(toml_path)

    for spec in FIELDS:
        variable = f"FAILCAST_{spec.name.upper()}"
        if env.get(variable) not in (None, ""):
            values[spec.name] = _parse(spec, env[variable], variable)
            origins[spec.name] = variable

    names = {f.name for f in FIELDS}
    for name, raw in flags.items():
        if name not in names:
            raise SettingsError(f"unknown setting {name!r}")
        if raw is not None:
            spec = next(f for f in FIELDS if f.name == name)
            values[name] = _parse(spec, raw, f"--{name.replace('_', '-')}")
            origins[name] = "flag"

    settings = Settings(source=source_path, home=home_path, origins=origins, **values)
    _check_exchange(settings)
    return settings


def _parse(spec: Field, raw: Any, where: str) -> Any:
    try:
        return spec.parse(raw)
    except (ValueError, TypeError) as exc:
        raise SettingsError(f"{where}: {exc}") from None


def _check_exchange(settings: Settings) -> None:
    import exchange_calendars as xcals

    if not xcals.calendar_utils.global_calendar_dispatcher.has_calendar(settings.exchange):
        where = settings.origins.get("exchange", "default")
        raise SettingsError(
            f"{where}: unknown exchange calendar {settings.exchange!r} "
            "(use an exchange_calendars code such as XSHG, XHKG, XNYS, or 24/7)"
        )


def settings_as_text(settings: Settings) -> dict[str, str]:
    """Every setting that has a value, as text its parser reads back to the same value."""
    out = {}
    for spec in FIELDS:
        value = getattr(settings, spec.name)
        if value is None:
            continue
        if isinstance(value, dt.time):
            value = value.strftime("%H:%M")
        elif isinstance(value, tuple):
            value = ",".join(str(v) for v in value)
        out[spec.name] = str(value)
    return out


def describe(settings: Settings) -> list[tuple[str, str, str, str]]:
    """(name, value, where it came from, meaning) of every setting, for `failcast settings`."""
    meaning = {f.name: f"[{f.section}] {f.key}: {f.help}" for f in FIELDS}
    rows = [("source", str(settings.source), "", "the source directory"),
            ("home", str(settings.home), "", "warehouse, MLflow store, published files")]
    for f in fields(settings):
        if f.name in ("source", "home", "origins"):
            continue
        rows.append((f.name, str(getattr(settings, f.name)), settings.origins.get(f.name, "default"),
                     meaning.get(f.name, "")))
    return rows
