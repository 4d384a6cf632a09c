"""`leukml app` without a browser: the refused bind (the installed script), the look-alike check on
real cells and made-up counter-examples, and the page's HTTP answers (a bad file named, the limits,
the token) from a real uvicorn server in front of leukml's own pyfunc on a small untrained model."""

from __future__ import annotations

import base64
import http.client
import io
import json
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from leukml.data.lookalike import check
from leukml.serving.app.config import Limits

TOKEN = "a-token-of-20-chars!"


def _run_app(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["leukml", "app", *args], env=env, capture_output=True, text=True, timeout=120)


def test_non_loopback_without_token_is_refused_in_one_line(child_env):
    refused = _run_app(child_env(LEUKML_APP_TOKEN=""), "--host", "0.0.0.0", "--port", "1")
    assert refused.returncode == 2, refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in refused.stderr, refused.stderr
    assert "0.0.0.0 is not a loopback address" in lines[0] and "LEUKML_APP_TOKEN" in lines[0]
    short = _run_app(child_env(LEUKML_APP_TOKEN="short"), "--host", "10.1.2.3")
    assert short.returncode == 2 and "use at least 12" in short.stderr, short.stderr


def _cells(real_sample: Path, n: int) -> list[Path]:
    files = sorted(real_sample.rglob("*.bmp"))
    return files[:: max(1, len(files) // n)][:n]


def test_real_cells_look_like_the_training_cells(real_sample):
    for path in _cells(real_sample, 40):
        assert check(np.asarray(Image.open(path).convert("RGB"))).warnings == (), path


def test_lookalike_warns_on_grayscale_size_bright_background_and_several_cells(real_sample):
    cell = np.asarray(Image.open(_cells(real_sample, 1)[0]).convert("RGB"))
    gray = np.repeat(cell.mean(axis=-1, keepdims=True).astype(np.uint8), 3, axis=-1)
    (only,) = check(gray).warnings
    assert only.startswith("grayscale")
    small = np.asarray(Image.fromarray(cell).resize((120, 120)))
    (only,) = check(small).warnings
    assert only.startswith("size 120x120 px is far from")
    bright = np.where(cell.max(axis=-1, keepdims=True) <= 20, 235, cell).astype(np.uint8)
    (only,) = check(bright).warnings
    assert only.startswith("background is not dark")
    several = np.zeros_like(cell)
    tile = np.asarray(Image.fromarray(cell).resize((150, 150)))
    for y, x in ((10, 10), (10, 290), (290, 10), (290, 290)):
        several[y : y + 150, x : x + 150] = tile
    (only,) = check(several).warnings
    assert only.startswith("not a single cell")


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """leukml's served pyfunc (CellClassifier) on a small untrained VGG16, as the page's source."""
    import keras
    from mlflow.pyfunc.model import PythonModelContext

    from leukml.model.archs import ModelConfig
    from leukml.model.networks import build_network, split_network
    from leukml.serving.app.source import Source, VersionInfo
    from leukml.serving.pyfunc import CellClassifier

    network = build_network(ModelConfig(arch="vgg16", weights="none", image_size=32), seed=0)
    path = tmp_path_factory.mktemp("app-model") / "model.keras"
    network.model.save(path)
    classifier = CellClassifier()
    classifier.load_context(PythonModelContext({"keras_model": str(path)}, {"model_version": "7"}))
    keras_model = keras.saving.load_model(path, compile=False)

    def answer(encoded: list[str]) -> pd.DataFrame:
        return classifier.predict(None, pd.DataFrame({"image": encoded}))

    info = VersionInfo("test-model", "7", "champion", "2026-12-04 12:00 UTC")
    return Source(info, answer, split_network(keras_model), 32)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def serve_page(source):
    """Start the page on a free loopback port in a thread (uvicorn); returns its URL."""
    import uvicorn

    from leukml.serving.app.evaluation import Evaluation
    from leukml.serving.app.server import create_app

    told = Evaluation(
        "subject", "a subject-grouped split", (("weighted F1", 0.5, "[0.31, 0.69]"),), "10", "selected on val"
    )
    servers = []

    def start(limits: Limits, token: str | None = None) -> str:
        port = _free_port()
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(source, told, limits, token), host="127.0.0.1", port=port, log_level="error"
            )
        )
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


def _request(url: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, dict | str]:
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


def _predict(url: str, files: list[tuple[str, bytes]]) -> tuple[int, dict]:
    payload = {"files": [{"name": n, "data": base64.b64encode(d).decode()} for n, d in files]}
    return _request(url + "/api/predict", json.dumps(payload).encode(), {"Content-Type": "application/json"})


def test_a_bad_file_is_named_and_the_others_answered(serve_page, source, real_sample):
    url = serve_page(Limits(chunk=4))
    cells = _cells(real_sample, 2)
    files = [
        (cells[0].name, cells[0].read_bytes()),
        ("broken.bmp", b"BM not really"),
        ("header.bmp", b"BM this is not a bitmap"),
        (cells[1].name, cells[1].read_bytes()),
    ]
    status, body = _predict(url, files)
    assert status == 200, body
    first, broken, header, second = body["results"]
    for bad in (broken, header):  # an unknown format; a BMP header that breaks off
        assert bad["error"].startswith(f"{bad['file']}: not a readable image"), bad
    expected = source.answer([base64.b64encode(d).decode() for n, d in (files[0], files[3])])
    for got, (_, want) in zip((first, second), expected.iterrows(), strict=True):
        assert got["label"] == want["label"] and got["p_all"] == pytest.approx(want["p_all"], abs=1e-6)
        assert got["model_version"] == "7" and got["warnings"] == []
        for key in ("image", "gradcam"):
            png = Image.open(io.BytesIO(base64.b64decode(got[key].removeprefix("data:image/png;base64,"))))
            assert png.size == (224, 224)
    status, page = _request(url + "/")
    assert status == 200 and 'version <b id="model-version">7</b>' in page
    assert "not a diagnostic device" in page and "cdn" not in page.lower() and "https://" not in page


def test_limits_give_a_clear_message(serve_page, real_sample):
    limits = Limits(max_files=3, max_bytes=300_000, chunk=3)
    url = serve_page(limits)
    cell = _cells(real_sample, 1)[0]  # a 450x450 BMP: 608 KB
    status, body = _predict(url, [(cell.name, cell.read_bytes())])
    assert status == 200
    assert body["results"][0]["error"].startswith(
        f"{cell.name}: {cell.stat().st_size} bytes, over the 300000-byte limit"
    )
    status, body = _predict(url, [("a.png", b"x")] * 4)
    assert status == 422 and body["error"] == "4 files in one request; send at most 3"
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        for k in range(4):
            z.writestr(f"cells/{k}.bmp", b"x")
    status, body = _request(url + "/api/expand", archive.getvalue(), {"X-File-Name": "sample.zip"})
    assert status == 422 and body["error"] == "sample.zip holds 4 images; an upload may hold 3"
    # only the headers of a body over the limit: it is refused before a byte of it is read (sending
    # the body too would race the server closing the connection after its answer)
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    connection.putrequest("POST", "/api/predict")
    connection.putheader("Content-Length", str(limits.max_request_bytes + 1))
    connection.endheaders()
    response = connection.getresponse()
    body = json.loads(response.read())
    connection.close()
    assert response.status == 413
    over, limit = limits.max_request_bytes + 1, limits.max_request_bytes
    assert body["error"] == f"request of {over} bytes is over the {limit}-byte limit"


def test_a_token_guards_every_route_but_the_static_files(serve_page):
    url = serve_page(Limits(), token=TOKEN)
    status, body = _request(url + "/")
    assert status == 401 and "/?token=" in body["error"]
    assert _request(url + "/api/info", headers={"Authorization": "Bearer wrong-token-here"})[0] == 401
    assert _request(url + "/api/info", headers={"Authorization": f"Bearer {TOKEN}"})[0] == 200
    assert _request(url + "/static/app.js")[0] == 200
    with urllib.request.urlopen(f"{url}/?token={TOKEN}", timeout=60) as response:
        assert response.status == 200 and f"leukml_app_token={TOKEN}" in response.headers["set-cookie"]


def test_a_zip_gives_its_images_and_names_what_it_left_out(serve_page, real_sample):
    url = serve_page(Limits())
    cells = _cells(real_sample, 2)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        for cell in cells:
            z.write(cell, f"patient/{cell.name}")
        z.writestr("patient/notes.txt", "not a cell")
        z.writestr("__MACOSX/patient/._x.bmp", "resource fork")
    status, body = _request(url + "/api/expand", archive.getvalue(), {"X-File-Name": "p.zip"})
    assert status == 200, body
    assert [f["name"] for f in body["files"]] == [f"p.zip/patient/{c.name}" for c in cells]
    assert [base64.b64decode(f["data"]) for f in body["files"]] == [c.read_bytes() for c in cells]
    assert body["skipped"] == ["p.zip/patient/notes.txt: not an image file name"]


def test_an_answer_from_another_version_is_flagged(source, real_sample):
    """With --url, a server may serve another version than the page names: each answer says so."""
    import dataclasses

    from leukml.serving.app.inference import Upload, answer_chunk

    cell = _cells(real_sample, 1)[0]
    upload = [Upload(cell.name, cell.read_bytes())]
    (same,) = answer_chunk(source, upload, Limits())
    assert same["warnings"] == []
    other = dataclasses.replace(source, info=dataclasses.replace(source.info, version="8"))
    (flagged,) = answer_chunk(other, upload, Limits())
    assert flagged["warnings"] == ["answered by model version 7, not version 8 shown above"]
