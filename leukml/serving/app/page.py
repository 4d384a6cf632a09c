"""Everything `leukml app` does before it serves: refuse an unsafe bind, load the version, read its
evaluation, build the page."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI

from leukml.serving.app.config import AppConfig
from leukml.serving.app.evaluation import Evaluation, evaluation
from leukml.serving.app.security import TOKEN_ENV, HostCheck, check_bind
from leukml.serving.app.server import create_app
from leukml.serving.app.source import VersionInfo


@dataclass(frozen=True)
class Page:
    app: FastAPI
    info: VersionInfo
    evaluation: Evaluation
    address: str  # what to open (with ?token=... when one guards the page)


def prepare(config: AppConfig, token: str | None, tracking_uri: str | None = None) -> Page:
    """The page for ``config``, its model loaded. The bind is checked first, before anything loads.

    Raises:
        ValueError: a non-loopback host without a token; no such registered version.
    """
    check_bind(config.host, token)
    import mlflow
    from mlflow.tracking import MlflowClient

    from leukml.serving.app.source import open_source
    from leukml.tracking.uri import resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    mlflow.set_tracking_uri(uri)  # the registry and models:/ URIs follow the global one, not the client's
    client = MlflowClient(uri)
    source = open_source(client, config.model_uri, config.url or None)
    told = evaluation(client, source.info)
    host = f"[{config.host}]" if ":" in config.host else config.host
    address = f"http://{host}:{config.port}/" + (f"?token=${TOKEN_ENV}" if token else "")
    hosts = HostCheck(config.host, config.allowed_hosts)
    return Page(create_app(source, told, config.limits, token, hosts), source.info, told, address)
