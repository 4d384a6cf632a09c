"""`leukml predict`: classify image files with a model URI or a running server."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd

from leukml.console import import_backend
from leukml.images import is_image_name, read_image_file


def collect_images(paths: list[Path]) -> list[Path]:
    """Files as given; folders searched recursively for images (hidden files skipped)."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and is_image_name(p))
        elif path.is_file():
            found.append(path)
        elif path.exists() or path.is_symlink():  # a symlink loop, a dangling link, a device
            path.stat()  # raises what is wrong: too many levels of symbolic links, ...
            raise ValueError(f"{path} is neither a file nor a folder; give image files or folders")
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    if not found:
        raise ValueError(f"no images found in {', '.join(map(str, paths))}")
    return found


def _encode(path: Path) -> str:
    """The file as base64, checked first: a bad file is named here, not as 'row N' by the model."""
    return base64.b64encode(read_image_file(path)).decode("ascii")


def predict_with_model(model_uri: str, images: list[Path]) -> pd.DataFrame:
    encoded = [_encode(p) for p in images]  # a bad file is named before the model loads
    import_backend()  # the model's Keras, without TensorFlow's start-up lines
    import mlflow

    model = mlflow.pyfunc.load_model(model_uri)
    return model.predict(pd.DataFrame({"image": encoded}))


def predict_with_server(url: str, images: list[Path], timeout: float = 120.0) -> pd.DataFrame:
    body = json.dumps(
        {"dataframe_split": {"columns": ["image"], "data": [[_encode(p)] for p in images]}}
    ).encode()
    request = urllib.request.Request(
        url.rstrip("/") + "/invocations", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:500]
        raise ValueError(f"{url} answered {exc.code}: {detail}") from None
    except urllib.error.URLError as exc:
        raise ValueError(f"cannot reach {url}: {exc.reason}; is `mlflow models serve` running?") from None
    return pd.DataFrame(payload["predictions"])
