"""The registry the backtest replays the policy against: versions and aliases in memory.

It answers the policy exactly as ``models.registry.ModelRegistry`` does (the scorer behind an
alias, its tags, new versions numbered 1, 2, ...), without MLflow: a backtest retrains dozens
of times, and none of those models is for serving.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from models.served import RegisteredModel, Served, published_name


@dataclass
class _Version:
    version: str
    run_id: str
    scorer: Any
    tags: dict[str, str] = field(default_factory=dict)


class _Record:
    url = None

    def __init__(self, registry: InMemoryRegistry, run_id: str) -> None:
        self.registry = registry
        self.run_id = run_id
        self.run_name = ""

    def log_evaluation(self, **_recorded) -> None:
        """Nothing to keep: the backtest reports its own metrics."""

    def register(self, scorer: Any, *, name: str, tags: dict[str, str]) -> RegisteredModel:
        versions = self.registry.versions
        version = str(len(versions) + 1)
        versions[version] = _Version(version, self.run_id, scorer, dict(tags))
        return RegisteredModel(published_name(scorer, self.registry.model_name), version,
                               self.run_id)

    def name(self, text: str) -> None:
        self.run_name = text


class InMemoryRegistry:
    def __init__(self, model_name: str = "failcast-risk") -> None:
        self.model_name = model_name
        self.versions: dict[str, _Version] = {}
        self.aliases: dict[str, str] = {}
        self.runs = 0

    def resolve(self, alias: str) -> _Version | None:
        version = self.aliases.get(alias)
        return self.versions[version] if version else None

    def served(self, alias: str) -> Served | None:
        found = self.resolve(alias)
        if found is None:
            return None
        through = found.tags.get("trained_through")
        return Served(
            found.scorer,
            RegisteredModel(published_name(found.scorer, self.model_name), found.version,
                            found.run_id, alias),
            dict(found.tags),
            dt.date.fromisoformat(through) if through else None,
        )

    @contextlib.contextmanager
    def retrain_run(self, as_of: dt.date, *, tags: dict[str, str]) -> Iterator[_Record]:
        self.runs += 1
        yield _Record(self, f"memory-{self.runs}")

    def set_alias(self, alias: str, version: str) -> None:
        self.aliases[alias] = version

    def delete_alias(self, alias: str) -> None:
        self.aliases.pop(alias, None)

    def tag_version(self, version: str, tags: dict[str, str]) -> None:
        self.versions[version].tags.update(tags)
