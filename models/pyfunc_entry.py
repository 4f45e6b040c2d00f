"""The file MLflow runs to rebuild a registered failcast model (MLflow's "models from code").

MLflow copies this file into every logged model and executes it at load time; the model's
files travel as the artifact ``model`` (``models.served``). No pickled object is involved.
"""

from mlflow.models import set_model

from models.served import whole_model

set_model(whole_model())
