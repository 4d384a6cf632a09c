"""`leukml predict`: classify image files with a model URI or a running server."""

from __future__ import annotations

import base64
import csv
import json
import re
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pandas as pd

from leukml.common.console import import_backend
from leukml.common.errors import LeukmlError
from leukml.data.images import is_image_name, read_image_file

_DIGITS = re.compile(r"([0-9]+)")
CHALLENGE_CODES = {"ALL": 1, "hem": 0}  # the C-NMC challenge's coding of the label


def natural_key(path: Path) -> tuple:
    """Sort key: runs of digits compare as numbers, so ``2.bmp`` < ``10.bmp`` (the challenge's test
    files are numbered); folder by folder, so a subfolder's files stay together."""
    return tuple(
        (tuple(int(c) if i % 2 else c.casefold() for i, c in enumerate(_DIGITS.split(part))), part)
        for part in path.parts
    )


def collect_images(paths: list[Path]) -> list[tuple[Path, str]]:
    """Image files and their names: files as given; folders searched recursively (hidden files
    skipped), in natural order, each file named by its path relative to the folder given."""
    found: list[tuple[Path, str]] = []
    for path in paths:
        if path.is_dir():
            inside = [p.relative_to(path) for p in path.rglob("*") if p.is_file() and is_image_name(p)]
            found += [(path / p, p.as_posix()) for p in sorted(inside, key=natural_key)]
        elif path.is_file():
            found.append((path, str(path)))
        elif path.exists() or path.is_symlink():  # a symlink loop, a dangling link, a device
            path.stat()  # raises what is wrong: too many levels of symbolic links, ...
            raise LeukmlError(f"{path} is neither a file nor a folder; give image files or folders")
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    if not found:
        raise LeukmlError(f"no images found in {', '.join(map(str, paths))}")
    return found


def check_csv(path: Path, names: list[str]) -> None:
    """Fail before the model loads if the CSV cannot be written or its rows would share a name.

    Raises:
        OSError: ``path`` is a folder, or its folder is missing or not writable.
        ValueError: two folders given hold files of the same relative name.
    """
    if twice := [name for name, count in Counter(names).items() if count > 1]:
        raise LeukmlError(
            f"{twice[0]} is found twice; the CSV's file column could not tell the two apart: "
            "give each folder in its own `leukml predict --csv` run"
        )
    existed = path.exists()
    with open(path, "a"):  # leaves an existing file as it is until the predictions are in
        pass
    if not existed:
        path.unlink()


def write_csv(path: Path, names: list[str], table: pd.DataFrame) -> None:
    """Columns file, label (1 = ALL, 0 = hem) and p_all, one row per image in the order given.

    Raises:
        ValueError: a label other than ALL or hem (a model that is not a leukml classifier).
    """
    if unknown := set(table["label"]) - set(CHALLENGE_CODES):
        raise LeukmlError(f"the model answered label(s) {sorted(unknown)}; expected ALL or hem")
    with open(path, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["file", "label", "p_all"])
        for name, label, p_all in zip(names, table["label"], table["p_all"], strict=True):
            writer.writerow([name, CHALLENGE_CODES[label], float(p_all)])


def _encode(path: Path) -> str:
    """The file as base64, checked first: a bad file is named here, not as 'row N' by the model."""
    return base64.b64encode(read_image_file(path)).decode("ascii")


def predict_with_model(model_uri: str, images: list[Path], tracking_uri: str | None = None) -> pd.DataFrame:
    """The registered (or logged) classifier's answers for image files, loaded in this process
    from the registry of ``tracking_uri`` (``resolve_tracking_uri``)."""
    encoded = [_encode(p) for p in images]  # a bad file is named before the model loads
    import mlflow

    from leukml.tracking.reader import fetch_model

    local = fetch_model(model_uri, tracking_uri)  # a missing model is said before the import
    import_backend()  # the model's Keras, without TensorFlow's start-up lines
    model = mlflow.pyfunc.load_model(local)
    return model.predict(pd.DataFrame({"image": encoded}))


def predict_with_server(url: str, images: list[Path], timeout: float = 120.0) -> pd.DataFrame:
    return post_encoded(url, [_encode(p) for p in images], timeout)


def post_encoded(url: str, encoded: list[str], timeout: float = 120.0) -> pd.DataFrame:
    """One POST of base64 image files to a running ``mlflow models serve``; its predictions.

    Raises:
        ValueError: the server refused the request or cannot be reached.
    """
    body = json.dumps({"dataframe_split": {"columns": ["image"], "data": [[e] for e in encoded]}}).encode()
    request = urllib.request.Request(
        url.rstrip("/") + "/invocations", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:500]
        raise LeukmlError(f"{url} answered {exc.code}: {detail}") from None
    except urllib.error.URLError as exc:
        raise LeukmlError(f"cannot reach {url}: {exc.reason}; is `mlflow models serve` running?") from None
    return pd.DataFrame(payload["predictions"])
