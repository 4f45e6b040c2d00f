"""A small MLflow resource over ``MlflowClient``.

``dagster-mlflow`` leaves runs RUNNING and pins old pandas; this resource only carries the
tracking URI, the artifact location, the registered model name and the time MLflow gets to
answer, and hands out a
``models.registry.ModelRegistry`` (plain MLflow code, no Dagster) that tags each MLflow run
with the Dagster run id.
"""

from __future__ import annotations

import dagster as dg


class MlflowResource(dg.ConfigurableResource):
    tracking_uri: str
    artifact_location: str | None = None  # None: the tracking server's artifact destination
    model_name: str = "failcast-risk"
    experiment: str = "failcast"
    timeout: float = 30.0  # seconds MLflow gets to answer (see models.registry)

    def registry(self):
        from models.registry import ModelRegistry

        return ModelRegistry(
            tracking_uri=self.tracking_uri,
            artifact_location=self.artifact_location,
            model_name=self.model_name,
            experiment=self.experiment,
            timeout=self.timeout,
        )
