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


def default_experiment() -> str:
    """The experiment a training goes to when none is given: ``$MLFLOW_EXPERIMENT_NAME`` (as MLflow
    follows it), else ``leukml``."""
    return os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT


PROBE_S = 3.0  # how long a tracking server may take to answer /health before the user is told
# MLflow's HTTP retries (mlflow.environment_variables) and its defaults
RETRY_SETTINGS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": 7,
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": 2,
    "MLFLOW_HTTP_REQUEST_TIMEOUT": 120,
}


def reach_server(uri: str, experiment: str) -> None:
    """An http(s) tracking server asked once for ``experiment``, reading only, so that a command
    says a server it cannot reach (or one that refuses it) before the backend's seconds of import;
    after ``say_if_unanswered``. Other stores are not touched (``common.stores.check_sqlite``
    checks a store file).

    Raises:
        MlflowException: the server cannot be reached, or refuses.
    """
    if urlsplit(uri).scheme not in ("http", "https"):
        return
    say_if_unanswered(uri)
    from mlflow.tracking import MlflowClient

    MlflowClient(uri).get_experiment_by_name(experiment)


def say_if_unanswered(uri: str) -> None:
    """An http(s) tracking server that does not answer within ``PROBE_S``: MLflow retries it in
    silence for minutes (about 4 by default), so say at once on stderr that it does and how to
    change that. Said only when MLflow will wait: it retries, or the server took the connection
    and keeps quiet (each try then lasts up to ``MLFLOW_HTTP_REQUEST_TIMEOUT``)."""
    import urllib.error
    import urllib.request

    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https"):
        return
    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=PROBE_S).close()
        return
    except urllib.error.HTTPError:  # it answers, if not with a page
        return
    except (OSError, ValueError) as exc:
        why = str(getattr(exc, "reason", exc))
    retries, factor, timeout = (_setting(name) for name in RETRY_SETTINGS)
    if not retries and "timed out" not in why:
        return
    backoff = sum(factor * 2**i for i in range(retries))
    print(
        f"the MLflow server at {parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]} does not answer ({why}); "
        f"MLflow retries it {retries} time(s) (about {backoff} s of back-off, up to {timeout} s a try) "
        "before failing: set MLFLOW_HTTP_REQUEST_MAX_RETRIES, MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR or "
        "MLFLOW_HTTP_REQUEST_TIMEOUT lower to fail sooner",
        file=sys.stderr,
        flush=True,
    )


def _setting(name: str) -> int:
    try:
        return int(os.environ.get(name, RETRY_SETTINGS[name]))
    except ValueError:
        return RETRY_SETTINGS[name]


UI_PORT = 5000  # `mlflow ui`'s default, named in the start command so that it and the URL agree
LOCAL_UI = f"http://127.0.0.1:{UI_PORT}"  # where `mlflow ui` serves (its default host)
SERVE_PORT = 5001  # `mlflow models serve`: beside the UI's
# MLflow 3's UI opens in its GenAI view (traces, no training runs) unless the URL asks otherwise;
# its workflow-type switch reads this query on every page, a run's included, before the choice the
# browser remembers
TRAINING_VIEW = "workflowType=machine_learning"


class UiLink(NamedTuple):
    """A page of the MLflow UI: its URL, and for a store without a server (SQLite, a folder) the
    command that serves the UI at that URL."""

    url: str
    start: str | None

    def lines(self, what: str) -> list[str]:
        """Console lines: how to start the UI (a local store), then ``what: URL``, last."""
        return ([f"start the MLflow UI: {self.start}"] if self.start else []) + [f"{what}: {self.url}"]


def ui_link(tracking_uri: str | None, experiment_id: str, run_id: str | None = None) -> UiLink:
    """The MLflow UI's page of a run, or (no ``run_id``) of the experiment's runs table, both in the
    model-training view (``TRAINING_VIEW``). An http(s) tracking URI is its own UI; any other store
    is served by ``mlflow ui --backend-store-uri URI --port UI_PORT`` at ``LOCAL_UI`` (the URI
    absolute, a database password in it masked)."""
    uri = resolve_tracking_uri(tracking_uri)
    page = f"#/experiments/{experiment_id}/runs" + (f"/{run_id}" if run_id else "") + f"?{TRAINING_VIEW}"
    parts = urlsplit(uri)
    if parts.scheme in ("http", "https"):
        host = parts.hostname or ""
        netloc = f"[{host}]" if ":" in host else host
        netloc += f":{parts.port}" if parts.port else ""
        base = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
        return UiLink(f"{base}/{page}", None)
    start = f"{_mlflow_command()} ui --backend-store-uri {shlex.quote(shown_uri(uri))} --port {UI_PORT}"
    return UiLink(f"{LOCAL_UI}/{page}", start)


def serve_command(model: str, alias: str, tracking_uri: str | None) -> str:
    """The shell command that serves ``models:/MODEL@ALIAS`` of this tracking store from any folder:
    without ``MLFLOW_TRACKING_URI`` MLflow looks for the model in ``./mlflow.db`` there, fails with a
    traceback and leaves that file behind, empty. A database password in the URI is masked."""
    uri = shlex.quote(shown_uri(resolve_tracking_uri(tracking_uri)))
    model_uri = shlex.quote(f"models:/{model}@{alias}")
    return f"MLFLOW_TRACKING_URI={uri} mlflow models serve -m {model_uri} --env-manager local -p {SERVE_PORT}"


def shown_uri(uri: str) -> str:
    """A tracking URI fit to print in a command run from any folder: a relative SQLite or folder
    path made absolute (MLflow reads it from the current folder), a password replaced by ``***``."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = f"sqlite:///{os.path.abspath(uri[len('sqlite:///') :])}"
    elif not urlsplit(uri).scheme:
        uri = os.path.abspath(uri)
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", uri)


def _mlflow_command() -> str:
    """``mlflow``, or the path of this virtual environment's when it is not the activated one (a
    venv's script run by its path, ``make demo``)."""
    own = Path(sys.executable).parent / "mlflow"
    in_venv = sys.prefix != sys.base_prefix and os.environ.get("VIRTUAL_ENV") != sys.prefix
    return shlex.quote(str(own)) if in_venv and own.is_file() else "mlflow"


def _print_experiment_link(experiment: str, tracking_uri: str | None = None) -> None:
    """``python -m leukml.tracking.uri [EXPERIMENT]``: how to see an experiment's runs (make demo)."""
    import mlflow

    uri = resolve_tracking_uri(tracking_uri)
    found = mlflow.MlflowClient(uri).get_experiment_by_name(experiment)
    if found is None:
        raise SystemExit(f"experiment {experiment!r} not found in {uri}; train first (make demo)")
    print("\n".join(ui_link(uri, found.experiment_id).lines(f"runs of experiment {experiment}")))


if __name__ == "__main__":
    _print_experiment_link(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_EXPERIMENT)
