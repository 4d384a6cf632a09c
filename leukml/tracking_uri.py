"""Where runs are tracked: the tracking URI and the default experiment, shared by every MLflow
reader and writer (and the CLI, which loads no MLflow to know them)."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_EXPERIMENT = "leukml"


def resolve_tracking_uri(uri: str | None) -> str:
    """The given URI, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db`` here."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"
