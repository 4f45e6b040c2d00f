#!/bin/sh
# The MLflow tracking server of a failcast deployment (docs/deploy.md).
# tests/test_production.py starts the server with this very script.
#
#   MLFLOW_BACKEND_STORE_URI  postgresql://USER:PASSWORD@HOST:PORT/MLFLOW_DB (runs, the registry;
#                             SQLAlchemy drives it with psycopg 3, installed with failcast)
#   MLFLOW_ARTIFACTS_DIR      where model files go: a directory on a disk the server keeps, or
#                             an object store (s3://bucket/prefix); clients upload through the
#                             server and need no access of their own
#   MLFLOW_HOST, MLFLOW_PORT  where it listens (default 127.0.0.1:5000)
#   MLFLOW_ALLOWED_HOSTS      the host names clients use when it listens on another address
#                             (MLflow rejects unknown Host headers)
#   MLFLOW_WORKERS            web workers (default 2)
set -eu
exec mlflow server \
  --backend-store-uri "$MLFLOW_BACKEND_STORE_URI" \
  --artifacts-destination "$MLFLOW_ARTIFACTS_DIR" \
  --host "${MLFLOW_HOST:-127.0.0.1}" \
  --port "${MLFLOW_PORT:-5000}" \
  --workers "${MLFLOW_WORKERS:-2}" \
  ${MLFLOW_ALLOWED_HOSTS:+--allowed-hosts "$MLFLOW_ALLOWED_HOSTS"}
