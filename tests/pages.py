"""What the page's tests share (test_app.py, test_app_hostile.py): the page in front of leukml's
served pyfunc (CellClassifier) on a small untrained VGG16, in a thread of the test's process
(the fixture ``serve_page``), or as a server process of its own, for what only a process of its
own shows, its memory (``python -c PAGE TESTS MODEL PORT LIMITS``: `leukml app`'s ``create_app``
and ``serve`` on 127.0.0.1:PORT, ``Limits(**json.loads(LIMITS))``); requests to it; real cells."""

from __future__ import annotations

import base64
import json
import re
import textwrap
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from helpers import free_port, tiny_model

from leukml.serving.app.config import Limits

PAGE = textwrap.dedent("""
    import json
    import sys

    sys.path.insert(0, sys.argv[1])
    from pages import evaluation, small_source

    from leukml.serving.app.config import Limits
    from leukml.serving.app.server import create_app, serve

    app = create_app(small_source(sys.argv[2]), evaluation(), Limits(**json.loads(sys.argv[4])))
    serve(app, "127.0.0.1", int(sys.argv[3]))
""")


def evaluation():
    """What the page says of the model's evaluation (made when asked: it imports MLflow)."""
    from leukml.serving.app.evaluation import Evaluation

    return Evaluation(
        "subject", "a subject-grouped split", (("weighted F1", 0.5, "[0.31, 0.69]"),), "10", "selected on val"
    )


def save_small_model(folder: Path) -> Path:
    """A small untrained VGG16 (32 px), saved as ``folder/model.keras``."""
    from leukml.model.networks import build_network

    network = build_network(tiny_model(arch="vgg16"), seed=0)
    path = folder / "model.keras"
    network.model.save(path)
    return path


def small_source(path: str | Path):
    """leukml's served pyfunc on the model saved at ``path``, as the page's source (version 7)."""
    import keras
    from mlflow.pyfunc.model import PythonModelContext

    from leukml.model.networks import split_network
    from leukml.serving.app.source import Source, VersionInfo
    from leukml.serving.pyfunc import CellClassifier

    classifier = CellClassifier()
    classifier.load_context(PythonModelContext({"keras_model": str(path)}, {"model_version": "7"}))
    keras_model = keras.saving.load_model(path, compile=False)

    def answer(encoded: list[str]) -> pd.DataFrame:
        return classifier.predict(None, pd.DataFrame({"image": encoded}))

    info = VersionInfo("test-model", "7", "champion", "2026-12-04 12:00 UTC")
    return Source(info, answer, split_network(keras_model), 32)


def peak_growth(pid: int, action):
    """``action()``'s result and how far process ``pid``'s resident memory rose above where it was
    while it ran: the kernel's high-water mark (VmHWM), reset to the current size first (Linux)."""
    import psutil

    before = psutil.Process(pid).memory_info().rss
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # 5: the high-water mark := the current size
    result = action()
    status = Path(f"/proc/{pid}/status").read_text()
    peak = int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)[1]) * 1024
    return result, peak - before


def some_cells(real_sample: Path, n: int) -> list[Path]:
    files = sorted(real_sample.rglob("*.bmp"))
    return files[:: max(1, len(files) // n)][:n]


@pytest.fixture(scope="module")
def small_model(tmp_path_factory) -> Path:
    return save_small_model(tmp_path_factory.mktemp("app-model"))


@pytest.fixture(scope="module")
def source(small_model):
    """leukml's served pyfunc (CellClassifier) on a small untrained VGG16, as the page's source."""
    return small_source(small_model)


@pytest.fixture(scope="module")
def serve_page(source):
    """Start the page on a free loopback port in a thread (uvicorn); returns its URL."""
    import uvicorn

    from leukml.serving.app.security import HostCheck
    from leukml.serving.app.server import create_app

    servers = []

    def start(limits: Limits, token: str | None = None, allowed: tuple[str, ...] = ()) -> str:
        port = free_port()
        app = create_app(source, evaluation(), limits, token, HostCheck("127.0.0.1", allowed))
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        servers.append((server, thread))
        deadline = time.monotonic() + 60
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the page did not start"
            time.sleep(0.05)
        return f"http://127.0.0.1:{port}"

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=30)


def ask(url: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, dict | str]:
    request = urllib.request.Request(url, data=body, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read().decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def predict(url: str, files: list[tuple[str, bytes]]) -> tuple[int, dict]:
    payload = {"files": [{"name": n, "data": base64.b64encode(d).decode()} for n, d in files]}
    return ask(url + "/api/predict", json.dumps(payload).encode(), {"Content-Type": "application/json"})


def expand(url: str, data: bytes, name: str) -> tuple[int, dict]:
    return ask(url + "/api/expand", data, {"Content-Type": "application/zip", "X-File-Name": name})
