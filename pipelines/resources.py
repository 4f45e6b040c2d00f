"""Dagster resources: thin handles on the settings, the warehouse and MLflow.

The embedded default and a production deployment differ only in how these are configured
(``build_resources``): a source on shared storage, a warehouse path, an MLflow server.
"""

from __future__ import annotations

import dagster as dg
from pydantic import PrivateAttr

from pipelines.settings import Settings, load_settings


class FailcastResource(dg.ConfigurableResource):
    """The run's settings: where the source and the home are, and the rules of time and risk.

    Values left empty come from the source's ``failcast.toml`` and the ``FAILCAST_*``
    environment, exactly as on the command line.
    """

    source: str
    home: str
    timezone: str | None = None
    exchange: str | None = None
    cutoff: str | None = None
    max_severity: int | None = None
    quarantine_max_share: float | None = None
    mlflow_tracking_uri: str | None = None

    _settings: Settings | None = PrivateAttr(default=None)

    @classmethod
    def from_settings(cls, settings: Settings) -> FailcastResource:
        return cls(
            source=str(settings.source),
            home=str(settings.home),
            timezone=settings.timezone,
            exchange=settings.exchange,
            cutoff=settings.cutoff.strftime("%H:%M"),
            max_severity=settings.max_severity,
            quarantine_max_share=settings.quarantine_max_share,
            mlflow_tracking_uri=settings.mlflow_tracking_uri,
        )

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(
                self.source,
                self.home,
                timezone=self.timezone,
                exchange=self.exchange,
                cutoff=self.cutoff,
                max_severity=self.max_severity,
                quarantine_max_share=self.quarantine_max_share,
                mlflow_tracking_uri=self.mlflow_tracking_uri,
            )
        return self._settings

    def warehouse(self):
        return self.settings.warehouse()

    def source_files(self):
        from features.source import Source

        return Source.open(self.settings.source)


def build_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    """The resources of one deployment; the only place that chooses between environments."""
    from pipelines.mlflow_resource import MlflowResource

    return {
        "failcast": FailcastResource.from_settings(settings),
        "mlflow": MlflowResource(
            tracking_uri=settings.tracking_uri,
            artifact_location=settings.artifact_location,
            model_name=settings.model_name,
        ),
    }
