"""Dagster resources: thin handles on the settings, the warehouse and MLflow.

The embedded default and a production deployment differ only in how these are configured
(``build_resources``): a source on shared storage, a warehouse path, an MLflow server.
"""

from __future__ import annotations

import dagster as dg
from pydantic import PrivateAttr

from pipelines.settings import Settings, load_settings, settings_as_text


class FailcastResource(dg.ConfigurableResource):
    """The run's settings: where the source and the home are, and the rules of time and risk.

    ``values`` holds every setting as text, exactly as the settings object that built the
    definitions had it, so an asset sees the same settings as the command that launched it
    (and a value can be changed for one run in the launchpad).
    """

    source: str
    home: str
    values: dict[str, str] = {}

    _settings: Settings | None = PrivateAttr(default=None)

    @classmethod
    def from_settings(cls, settings: Settings) -> FailcastResource:
        return cls(source=str(settings.source), home=str(settings.home),
                   values=settings_as_text(settings))

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.source, self.home, env={}, **self.values)
        return self._settings

    def warehouse(self):
        return self.settings.warehouse()

    def source_files(self):
        from features.source import Source

        return Source.open(self.settings.source)


def build_resources(settings: Settings) -> dict[str, dg.ConfigurableResource | dg.ConfigurableIOManager]:
    """The resources of one deployment; the only place that chooses between environments."""
    from pipelines.io_managers import TrainingSetIOManager
    from pipelines.mlflow_resource import MlflowResource

    return {
        "failcast": FailcastResource.from_settings(settings),
        "mlflow": MlflowResource(
            tracking_uri=settings.tracking_uri,
            artifact_location=settings.artifact_location,
            model_name=settings.model_name,
            timeout=settings.mlflow_timeout,
        ),
        "training_set_io": TrainingSetIOManager(base_dir=str(settings.home / "training_sets")),
    }
