"""Promotion to the registry, serving raw images over HTTP, predict and explain."""

from __future__ import annotations

import base64
import csv
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient
from PIL import Image

from leukml.cli import main
from leukml.serving import registry
from leukml.tracking.runs import tracked_train
from leukml.tracking.uri import SERVE_PORT, serve_command
from leukml.training.config import TrainConfig

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("quiet")]
NAME = "leukml-all-classifier"


@pytest.fixture(scope="module")
def quiet():
    """LEUKML_QUIET=1 for this module's trainings and commands, and for no later module."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LEUKML_QUIET", "1")
        yield


@pytest.fixture(scope="module")
def store(tmp_path_factory, tiny_data, quiet):
    """Two finished runs (vgg16, resnet50) with a validation split, and one paper-protocol run."""
    folder = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    runs = {}
    for arch, val in (("vgg16", 0.15), ("resnet50", 0.15), ("vgg16", 0.0)):
        config = TrainConfig.of(
            data_dir=str(tiny_data),
            arch=arch,
            weights="none",
            image_size=32,
            epochs=2,
            batch_size=8,
            val_fraction=val,
        )
        runs[(arch, val)] = tracked_train(config, experiment="reg", tracking_uri=uri)[0]
    mlflow.set_tracking_uri(uri)
    return uri, runs, folder


def test_promote_alias_tags_idempotence_rollback(store):
    uri, runs, _ = store
    client = MlflowClient(uri)
    with pytest.raises(ValueError, match="selecting|test-split accuracy"):
        registry.promote("reg", arch="vgg16", tracking_uri=uri)  # best vgg16 may be either run
    first = registry.promote("reg", metric="val_accuracy", arch="vgg16", tracking_uri=uri)
    assert first.created and first.run_id == runs[("vgg16", 0.15)]
    version = client.get_model_version_by_alias(NAME, "champion")
    assert str(version.version) == first.version
    assert version.tags["run_id"] == first.run_id
    assert {"metric", "metric_value", "arch", "dataset_fingerprint", "split_protocol"} <= set(version.tags)
    again = registry.promote("reg", metric="val_accuracy", arch="vgg16", tracking_uri=uri)
    assert not again.created and again.version == first.version
    assert len(client.search_model_versions(f"name = '{NAME}'")) == 1
    # promoting the champion again must not make it 'previous'
    with pytest.raises(mlflow.exceptions.MlflowException):
        client.get_model_version_by_alias(NAME, "previous")

    second = registry.promote("reg", metric="val_accuracy", arch="resnet50", tracking_uri=uri)
    assert second.version != first.version
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == second.version
    assert str(client.get_model_version_by_alias(NAME, "previous").version) == first.version
    result = CliRunner().invoke(main, ["promote", "--rollback", "--tracking-uri", uri])
    assert result.exit_code == 0, result.output
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == first.version
    assert str(client.get_model_version_by_alias(NAME, "previous").version) == second.version

    files = mlflow.artifacts.list_artifacts(f"models:/{NAME}/{first.version}/artifacts")
    assert any(f.path.endswith("gradcam_grid.png") for f in files)


def test_promote_refusals(store):
    uri, _, _ = store
    with pytest.raises(ValueError, match="no finished run .* arch=densenet121"):
        registry.promote("reg", arch="densenet121", tracking_uri=uri)
    with pytest.raises(ValueError, match="experiment 'nope' not found"):
        registry.promote("nope", tracking_uri=uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("bare")
    with mlflow.start_run():
        mlflow.log_params({"arch": "vgg16", "split": "image"})
        mlflow.log_metric("val_accuracy", 0.99)
    with pytest.raises(ValueError, match="has no logged model"):
        registry.promote("bare", metric="val_accuracy", tracking_uri=uri)


def test_promote_tta_registers_a_classifier_averaging_the_8_variants(store, tiny_data):
    from leukml.data.augment import dihedral
    from leukml.data.images import decode_image, read_image_file
    from leukml.serving.pyfunc import encode_file

    uri, runs, _ = store
    client = MlflowClient(uri)
    done = registry.promote("reg", metric="val_accuracy", arch="vgg16", name="tta-model", tracking_uri=uri)
    tta = registry.promote(
        "reg", metric="val_accuracy", arch="vgg16", name="tta-model", tracking_uri=uri, tta="dihedral"
    )
    assert tta.created and tta.version != done.version and tta.run_id == done.run_id
    assert client.get_model_version("tta-model", tta.version).tags["tta"] == "dihedral"
    assert client.get_model_version("tta-model", done.version).tags["tta"] == "none"
    again = registry.promote(
        "reg", metric="val_accuracy", arch="vgg16", name="tta-model", tracking_uri=uri, tta="dihedral"
    )
    assert not again.created and again.version == tta.version

    paths = sorted(tiny_data.rglob("*.bmp"))[:5]
    rows = pd.DataFrame({"image": [encode_file(p) for p in paths]})
    served = mlflow.pyfunc.load_model(f"models:/tta-model/{tta.version}").predict(rows)
    plain = mlflow.pyfunc.load_model(f"models:/tta-model/{done.version}").predict(rows)
    keras_model = mlflow.keras.load_model(f"runs:/{done.run_id}/model")
    images = np.stack([decode_image(read_image_file(p), 32) for p in paths])
    per_variant = [np.asarray(keras_model.predict_on_batch(dihedral(images, v)))[:, 1] for v in range(8)]
    assert np.allclose(served["p_all"], np.mean(per_variant, axis=0), atol=1e-5)
    assert np.allclose(plain["p_all"], per_variant[0], atol=1e-5)
    assert not np.allclose(served["p_all"], plain["p_all"], atol=1e-6)  # the variants do differ


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str, payload: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        url + "/invocations", data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _until_serving(server: subprocess.Popen, url: str, log: Path, within_s: float = 300) -> None:
    """Return once the server answers ``/ping``; fail at once if it exited (with its stderr), or
    after ``within_s`` seconds without an answer."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            urllib.request.urlopen(url + "/ping", timeout=2)
            return
        except OSError:
            if server.poll() is not None:
                pytest.fail(f"the server exited ({server.returncode}) before serving:\n{_tail(log)}")
            if time.monotonic() > deadline:
                pytest.fail(f"the server did not answer {url}/ping within {within_s:g} s:\n{_tail(log)}")
            time.sleep(1)


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]


def _rows(*images: str) -> dict:
    return {"dataframe_split": {"columns": ["image"], "data": [[i] for i in images]}}


def _numbered(tiny_data: Path, folder: Path, n: int = 12) -> list[Path]:
    """A folder like the challenge's final test set: 1.bmp .. n.bmp, no labels, ALL and hem cells
    alternating. Returns the files in numeric order."""
    cells = sorted(tiny_data.rglob("all/*.bmp")), sorted(tiny_data.rglob("hem/*.bmp"))
    folder.mkdir()
    files = [folder / f"{k}.bmp" for k in range(1, n + 1)]
    for k, file in enumerate(files):
        shutil.copy(cells[k % 2][k // 2], file)
    return files


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_serve_raw_images_and_bad_requests(store, tiny_data, tmp_path, child_env):
    uri, _, _ = store
    registry.promote("reg", metric="val_accuracy", arch="vgg16", tracking_uri=uri)
    port = _free_port()
    env = child_env(MLFLOW_TRACKING_URI=uri, LEUKML_MAX_IMAGE_BYTES="200000")
    # the command `leukml promote` prints, on a free port of the loopback interface
    command = serve_command(NAME, "champion", uri).replace(f"-p {SERVE_PORT}", f"-h 127.0.0.1 -p {port}")
    log = tmp_path / "server.log"  # a file, not a pipe: a pipe nobody reads would fill and stall it
    with open(log, "wb") as stderr:
        server = subprocess.Popen(
            ["bash", "-c", f"exec env {command}"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _until_serving(server, url, log)
        files = sorted(tiny_data.rglob("*.bmp"))[:3]
        encoded = [base64.b64encode(f.read_bytes()).decode() for f in files]
        status, body = _post(url, _rows(encoded[0]))
        assert status == 200 and body["predictions"][0]["label"] in ("ALL", "hem")
        status, body = _post(url, _rows(*encoded))
        assert status == 200 and len(body["predictions"]) == 3
        assert {p["model_version"] for p in body["predictions"]} != {"unregistered"}

        big = base64.b64encode(os.urandom(300_000)).decode()
        bad = {
            "not base64": _rows(encoded[0], "%%%not base64%%%"),
            "not a usable image": _rows(base64.b64encode(b"plain text").decode()),
            "empty": _rows(""),
            "missing inputs ['image']": {"dataframe_split": {"columns": ["img"], "data": [[encoded[0]]]}},
            "limit": _rows(big),
        }
        for expected, payload in bad.items():
            status, body = _post(url, payload)
            assert 400 <= status < 500, (expected, status, body)
            assert expected in body["message"], body["message"]
        assert "row 1" in _post(url, bad["not base64"])[1]["message"]
        assert _post(url, _rows(encoded[1]))[0] == 200  # still serving

        by_url = CliRunner().invoke(main, ["predict", *map(str, files), "--url", url, "--json"])
        by_uri = CliRunner().invoke(
            main, ["predict", *map(str, files), "--model-uri", f"models:/{NAME}@champion", "--json"]
        )
        assert by_url.exit_code == 0 and by_uri.exit_code == 0, by_url.output + by_uri.output
        a = [json.loads(line) for line in by_url.output.splitlines()]
        b = [json.loads(line) for line in by_uri.output.splitlines()]
        assert [r["label"] for r in a] == [r["label"] for r in b]
        np.testing.assert_allclose([r["p_all"] for r in a], [r["p_all"] for r in b], atol=1e-5)

        numbered = _numbered(tiny_data, tmp_path / "test")
        out = tmp_path / "by_url.csv"
        by_url = CliRunner().invoke(
            main, ["predict", str(numbered[0].parent), "--url", url, "--csv", str(out)]
        )
        assert by_url.exit_code == 0, by_url.output
        rows = _read_csv(out)
        assert [r["file"] for r in rows] == [f.name for f in numbered]
        _, body = _post(url, _rows(*(base64.b64encode(f.read_bytes()).decode() for f in numbered)))
        expected = [p["p_all"] for p in body["predictions"]]
        np.testing.assert_allclose([float(r["p_all"]) for r in rows], expected, atol=1e-6)
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=60)


def test_predict_csv_of_an_unlabelled_test_folder(store, tiny_data, tmp_path, child_env):
    """The challenge's final test set: numbered files, no labels; one CSV row per file, in the
    files' numeric order, label coded 1 = ALL, 0 = hem."""
    uri, _, _ = store
    registry.promote("reg", metric="val_accuracy", arch="vgg16", tracking_uri=uri)
    files = _numbered(tiny_data, tmp_path / "test")
    leukml = Path(sys.executable).parent / "leukml"
    command = [str(leukml), "predict", "test", "--model-uri", f"models:/{NAME}@champion", "--csv", "out.csv"]
    env = child_env(MLFLOW_TRACKING_URI=uri)
    proc = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    said = re.fullmatch(r"wrote 12 predictions \((\d+) ALL, (\d+) hem\) to out.csv\n", proc.stdout)
    assert said and int(said[1]) + int(said[2]) == 12, proc.stdout
    assert (tmp_path / "out.csv").read_text().startswith("file,label,p_all\n")
    rows = _read_csv(tmp_path / "out.csv")
    assert [r["file"] for r in rows] == [f"{k}.bmp" for k in range(1, 13)]
    p_all = np.array([float(r["p_all"]) for r in rows])
    assert {r["label"] for r in rows} <= {"0", "1"} and ((p_all >= 0) & (p_all <= 1)).all()
    assert [r["label"] for r in rows] == ["1" if p > 0.5 else "0" for p in p_all]
    assert sum(r["label"] == "1" for r in rows) == int(said[1])
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")  # the same files, in numeric order
    images = pd.DataFrame({"image": [base64.b64encode(f.read_bytes()).decode() for f in files]})
    np.testing.assert_allclose(p_all, model.predict(images)["p_all"], atol=1e-5)


def test_explain_writes_a_heatmap_of_the_image_size(store, real_sample, tmp_path):
    uri, runs, _ = store
    mlflow.set_tracking_uri(uri)
    image = next(real_sample.rglob("*.bmp"))
    out = tmp_path / "cam.png"
    result = CliRunner().invoke(
        main,
        ["explain", str(image), "--model-uri", f"runs:/{runs[('vgg16', 0.15)]}/model", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    cam = np.asarray(Image.open(out))
    assert cam.shape[:2] == Image.open(image).size[::-1]
    assert cam.std() > 1.0
