"""Where the page's answers come from: one registered version, loaded in-process or served by a
running ``mlflow models serve`` (then Grad-CAM still comes from that version's Keras model)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from leukml.common.errors import LeukmlError
from leukml.model.networks import Network, split_network

_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>[0-9]+))$")


@dataclass(frozen=True)
class VersionInfo:
    """Which model answers: its registered name and version, the alias it was chosen by, when it
    was registered (a promotion registers it), and its tags."""

    name: str
    version: str
    alias: str | None
    registered: str
    tags: dict = field(default_factory=dict)

    @property
    def uri(self) -> str:
        """The version itself, so that an alias moved while the page runs changes nothing."""
        return f"models:/{self.name}/{self.version}"


@dataclass
class Source:
    """Answers for base64 image files (one call per chunk), the Keras model for Grad-CAM, and
    which version this is. ``url``: the server that answers, or None (in-process)."""

    info: VersionInfo
    answer: Callable[[list[str]], pd.DataFrame]
    network: Network
    size: int
    url: str | None = None


def resolve_version(client: MlflowClient, model_uri: str) -> VersionInfo:
    """The registered version behind ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``.

    Raises:
        ValueError: another kind of URI, or no such model, alias or version.
    """
    match = _URI.match(model_uri)
    if not match:
        raise LeukmlError(
            f"--model-uri {model_uri!r}: give a registered model, models:/NAME@ALIAS or models:/NAME/VERSION"
        )
    name, alias, number = match["name"], match["alias"], match["version"]
    try:
        mv = (
            client.get_model_version_by_alias(name, alias)
            if alias
            else client.get_model_version(name, number)
        )
    except MlflowException:
        raise LeukmlError(
            f"--model-uri {model_uri}: no such registered model version; run `leukml promote` first"
        ) from None
    when = datetime.fromtimestamp(int(mv.creation_timestamp) / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")
    return VersionInfo(name, str(mv.version), alias, when, dict(mv.tags))


def open_source(client: MlflowClient, model_uri: str, url: str | None = None) -> Source:
    """Load the version (in-process, or only its Keras model when ``url`` answers for it).

    Raises:
        ValueError: the URI names no registered version.
    """
    import mlflow

    from leukml.serving import predict

    info = resolve_version(client, model_uri)
    pyfunc = mlflow.pyfunc.load_model(info.uri)
    keras_model = pyfunc.unwrap_python_model().model
    if url:
        url = url.rstrip("/")

        def answer(encoded: list[str]) -> pd.DataFrame:
            return predict.post_encoded(url, encoded)
    else:

        def answer(encoded: list[str]) -> pd.DataFrame:
            return pyfunc.predict(pd.DataFrame({"image": encoded}))

    return Source(info, answer, split_network(keras_model), int(keras_model.input_shape[1]), url)
