"""Where runs are tracked: the tracking URI and the default experiment, shared by every MLflow
reader and writer (and the CLI, which loads no MLflow to know them)."""

from __future__ import annotations

import os
import re
import shlex
import sys
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit, urlunsplit

DEFAULT_EXPERIMENT = "leukml"


def resolve_tracking_uri(uri: str | None) -> str:
    """The given URI, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db`` here."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


LOCAL_UI = "http://127.0.0.1:5000"  # where `mlflow ui` serves by default


class UiLink(NamedTuple):
    """A page of the MLflow UI: its URL, and for a store without a server (SQLite, a folder) the
    command that serves the UI at that URL."""

    url: str
    start: str | None

    def lines(self, what: str) -> list[str]:
        """Console lines: how to start the UI (a local store), then ``what: URL``, last."""
        return ([f"start the MLflow UI: {self.start}"] if self.start else []) + [f"{what}: {self.url}"]


def ui_link(tracking_uri: str | None, experiment_id: str, run_id: str | None = None) -> UiLink:
    """The MLflow UI's page of a run, or (no ``run_id``) of the experiment's runs table in the
    model-training view: MLflow 3's UI opens on its GenAI overview, where training runs are not
    listed. An http(s) tracking URI is its own UI; any other store is served by ``mlflow ui
    --backend-store-uri URI`` on ``LOCAL_UI`` (a database password in the URI is masked)."""
    uri = resolve_tracking_uri(tracking_uri)
    page = f"#/experiments/{experiment_id}/runs" + (
        f"/{run_id}" if run_id else "?workflowType=machine_learning"
    )
    parts = urlsplit(uri)
    if parts.scheme in ("http", "https"):
        host = parts.hostname or ""
        netloc = f"[{host}]" if ":" in host else host
        netloc += f":{parts.port}" if parts.port else ""
        base = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
        return UiLink(f"{base}/{page}", None)
    shown = re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", uri)
    return UiLink(f"{LOCAL_UI}/{page}", f"{_mlflow_command()} ui --backend-store-uri {shlex.quote(shown)}")


def _mlflow_command() -> str:
    """``mlflow``, or the path of this virtual environment's when it is not the activated one (a
    venv's script run by its path, ``make demo``)."""
    own = Path(sys.executable).parent / "mlflow"
    in_venv = sys.prefix != sys.base_prefix and os.environ.get("VIRTUAL_ENV") != sys.prefix
    return shlex.quote(str(own)) if in_venv and own.is_file() else "mlflow"


def _print_experiment_link(experiment: str, tracking_uri: str | None = None) -> None:
    """``python -m leukml.tracking_uri [EXPERIMENT]``: how to see an experiment's runs (make demo)."""
    import mlflow

    uri = resolve_tracking_uri(tracking_uri)
    found = mlflow.MlflowClient(uri).get_experiment_by_name(experiment)
    if found is None:
        raise SystemExit(f"experiment {experiment!r} not found in {uri}; train first (make demo)")
    print("\n".join(ui_link(uri, found.experiment_id).lines(f"runs of experiment {experiment}")))


if __name__ == "__main__":
    _print_experiment_link(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_EXPERIMENT)
