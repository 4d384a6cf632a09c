"""Promotion to the registry, serving raw images over HTTP, predict and explain."""

from __future__ import annotations

import ast
import base64
import csv
import dataclasses
import json
import os
import re
import shutil
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
from helpers import free_port, mlflow_store
from mlflow.tracking import MlflowClient
from PIL import Image

from leukml.cli import main
from leukml.serving import registry
from leukml.serving.predict import predict_with_model
from leukml.tracking.mlflow_tracker import MlflowTracker
from leukml.tracking.uri import SERVE_PORT, serve_command
from leukml.training.config import TrainConfig
from leukml.workflows.train import tracked_train

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
    uri = mlflow_store(folder)
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
        runs[(arch, val)] = tracked_train(MlflowTracker("reg", uri), config)[0]
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


@dataclasses.dataclass(frozen=True)
class Served:
    url: str  # the server's address on the loopback interface
    files: list[Path]  # three of the tiny data's cells
    encoded: list[str]  # the same, base64 as a client sends them


@pytest.fixture(scope="class")
def served(store, tiny_data, child_env, tmp_path_factory):
    """The vgg16 champion promoted from the store and served by the command `leukml promote` prints,
    on a free port of the loopback interface, images over 200 kB refused. The fixture is the
    class's, so the server is stopped (its process group) as soon as its tests are done."""
    uri, _, _ = store
    registry.promote("reg", metric="val_accuracy", arch="vgg16", tracking_uri=uri)
    port = free_port()
    env = child_env(MLFLOW_TRACKING_URI=uri, LEUKML_MAX_IMAGE_BYTES="200000")
    command = serve_command(NAME, "champion", uri).replace(f"-p {SERVE_PORT}", f"-h 127.0.0.1 -p {port}")
    # a file, not a pipe: a pipe nobody reads would fill and stall it
    log = tmp_path_factory.mktemp("serve") / "server.log"
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
        yield Served(url, files, [base64.b64encode(f.read_bytes()).decode() for f in files])
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=60)


class TestServedChampion:
    """What a client of `mlflow models serve` gets from the promoted champion."""

    def test_answers_raw_images_with_labels_and_the_version(self, served):
        status, body = _post(served.url, _rows(served.encoded[0]))
        assert status == 200 and body["predictions"][0]["label"] in ("ALL", "hem")
        status, body = _post(served.url, _rows(*served.encoded))
        assert status == 200 and len(body["predictions"]) == 3
        assert {p["model_version"] for p in body["predictions"]} != {"unregistered"}

    def test_refuses_bad_requests_saying_why_and_keeps_serving(self, served):
        url, encoded = served.url, served.encoded
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

    def test_predict_by_url_agrees_with_predict_by_model_uri(self, served):
        files = [str(f) for f in served.files]
        by_url = CliRunner().invoke(main, ["predict", *files, "--url", served.url, "--json"])
        by_uri = CliRunner().invoke(
            main, ["predict", *files, "--model-uri", f"models:/{NAME}@champion", "--json"]
        )
        assert by_url.exit_code == 0 and by_uri.exit_code == 0, by_url.output + by_uri.output
        a = [json.loads(line) for line in by_url.output.splitlines()]
        b = [json.loads(line) for line in by_uri.output.splitlines()]
        assert [r["label"] for r in a] == [r["label"] for r in b]
        np.testing.assert_allclose([r["p_all"] for r in a], [r["p_all"] for r in b], atol=1e-5)

    def test_predict_by_url_writes_a_csv_row_per_file_in_numeric_order(self, served, tiny_data, tmp_path):
        numbered = _numbered(tiny_data, tmp_path / "test")
        out = tmp_path / "by_url.csv"
        by_url = CliRunner().invoke(
            main, ["predict", str(numbered[0].parent), "--url", served.url, "--csv", str(out)]
        )
        assert by_url.exit_code == 0, by_url.output
        rows = _read_csv(out)
        assert [r["file"] for r in rows] == [f.name for f in numbered]
        _, body = _post(served.url, _rows(*(base64.b64encode(f.read_bytes()).decode() for f in numbered)))
        expected = [p["p_all"] for p in body["predictions"]]
        np.testing.assert_allclose([float(r["p_all"]) for r in rows], expected, atol=1e-6)


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


TRAVEL = "travelling-classifier"  # its own name: the other tests move leukml-all-classifier's aliases


@pytest.fixture(scope="module")
def travelling(store, tmp_path_factory, child_env):
    """``leukml promote`` of the validated VGG16 run to ``TRAVEL``, as a user runs it; its output,
    and the registered model's files downloaded to a folder outside the checkout."""
    uri, _, _ = store
    leukml = Path(sys.executable).parent / "leukml"
    command = [str(leukml), "promote", "--metric", "val_accuracy", "--name", TRAVEL, "--tracking-uri", uri]
    proc = subprocess.run(command, env=child_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    mlflow.set_tracking_uri(uri)
    folder = mlflow.artifacts.download_artifacts(
        f"models:/{TRAVEL}@champion", dst_path=str(tmp_path_factory.mktemp("downloaded"))
    )
    return proc, Path(folder)


@pytest.fixture(scope="module")
def python_without_leukml(tmp_path_factory) -> Path:
    """A Python that has every package of this environment but leukml: a virtual environment whose
    only site entry is this one's site-packages as a plain path (so leukml's editable-install hook,
    a ``.pth`` of this environment, never runs). Checked: ``import leukml`` fails there."""
    import site
    import sysconfig

    folder = tmp_path_factory.mktemp("no-leukml")
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    python = folder / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ours = sysconfig.get_paths()["purelib"]
    assert ours in site.getsitepackages()
    Path(purelib, "this-env.pth").write_text(ours + "\n")
    probe = subprocess.run(
        [str(python), "-c", "import leukml"], cwd=folder, capture_output=True, text=True, timeout=60
    )
    assert probe.returncode != 0 and "No module named 'leukml'" in probe.stderr, probe.stderr
    return python


def _cells(real_sample: Path, n: int = 6) -> list[Path]:
    """``n`` real C-NMC cells, ALL and hem alternating."""
    ill, healthy = sorted(real_sample.rglob("all/*.bmp")), sorted(real_sample.rglob("hem/*.bmp"))
    return [c for pair in zip(ill, healthy, strict=False) for c in pair][:n]


def test_registered_model_answers_where_leukml_is_not_installed(
    travelling, python_without_leukml, store, real_sample, tmp_path, child_env
):
    """The registered classifier loads and predicts in a Python without leukml, with the answers
    leukml's own predict gives on the same real cells; its stored serving example predicts there
    too."""
    proc, model = travelling
    assert "Got error" not in proc.stderr and "not a usable image" not in proc.stderr, proc.stderr[-2000:]
    cells = _cells(real_sample)
    script = (
        "import base64, json, sys\n"
        "import mlflow, pandas as pd\n"
        "model = mlflow.pyfunc.load_model(sys.argv[1])\n"
        "rows = [base64.b64encode(open(f, 'rb').read()).decode() for f in sys.argv[2:]]\n"
        "print(sys.modules['leukml'].__file__)\n"
        "print(json.dumps(model.predict(pd.DataFrame({'image': rows}))['p_all'].tolist()))\n"
    )
    env = child_env()

    def run(*args: str) -> subprocess.CompletedProcess:
        done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return done

    away = run(str(python_without_leukml), "-c", script, str(model), *map(str, cells))
    assert away.stdout.splitlines()[-2] == str(model / "code" / "leukml" / "__init__.py")  # the model's
    uri, _, _ = store
    # what `leukml predict --model-uri` answers (its library call, here: this Python has leukml)
    expected = predict_with_model(f"models:/{TRAVEL}@champion", cells, uri)["p_all"]
    np.testing.assert_allclose(json.loads(away.stdout.splitlines()[-1]), expected, atol=1e-6)

    example = model / "serving_input_example.json"
    predicted = run(
        str(python_without_leukml),
        "-m",
        "mlflow",
        "models",
        "predict",
        "-m",
        str(model),
        "-i",
        str(example),
        "--content-type",
        "json",
        "--env-manager",
        "local",
    )
    assert re.search(r'"label": "(ALL|hem)"', predicted.stdout), predicted.stdout[-2000:]


def test_the_model_carries_its_code_and_pinned_requirements(travelling):
    """Only the leukml modules the served pyfunc imports, and every package it needs, pinned."""
    _, model = travelling
    shipped = {p.relative_to(model / "code").as_posix() for p in (model / "code").rglob("*.py")}
    assert "leukml/serving/pyfunc.py" in shipped and "leukml/data/images.py" in shipped
    assert not any(
        s.startswith(("leukml/training", "leukml/tracking", "leukml/cli"))
        for s in shipped
        - {
            "leukml/tracking/__init__.py",
            "leukml/tracking/mlflow_compat.py",  # MLflow's private names, in one place: it needs MLflow only
        }
    )
    # what the shipped modules import when they load: the standard library, leukml, and the
    # requirements (a lazy import inside a function runs only where that function is called)
    imported = set()
    for file in (model / "code").rglob("*.py"):
        for node in ast.parse(file.read_text()).body:
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"leukml"}
    assert third_party <= {"mlflow", "numpy", "pandas", "PIL", "keras"}, third_party
    requirements = (model / "requirements.txt").read_text().split()
    names = {r.split("==")[0] for r in requirements}
    assert {"mlflow", "keras", "numpy", "pandas", "pillow"} <= names
    assert names & {"tensorflow", "jax", "torch"}
    assert all(re.fullmatch(r"[\w.-]+==[\w.]+", r) for r in requirements), requirements


def test_mlflow_models_serve_builds_the_models_own_environment(travelling, store, real_sample, tmp_path):
    """`mlflow models serve --env-manager uv`, from a folder outside the checkout: MLflow builds the
    model's environment from its own files (no leukml in it) and the server answers a real cell;
    `mlflow models generate-dockerfile` writes the Dockerfile of the same environment."""
    uri, _, _ = store
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_EXPERIMENT", "MLFLOW_RUN"))}
    env["MLFLOW_TRACKING_URI"] = uri
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    serve = ["mlflow", "models", "serve", "-m", f"models:/{TRAVEL}@champion", "--env-manager", "uv"]
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [*serve, "-h", "127.0.0.1", "-p", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    try:
        _until_serving(server, url, log, within_s=900)  # the first build downloads ~110 packages
        print(f"environment built and serving after {time.monotonic() - started:.0f} s")
        cell = _cells(real_sample, 1)[0]
        status, body = _post(url, _rows(base64.b64encode(cell.read_bytes()).decode()))
        assert status == 200, body
        assert body["predictions"][0]["label"] in ("ALL", "hem") and 0 <= body["predictions"][0]["p_all"] <= 1
        assert "No module named" not in _tail(log)
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=60)
    docker = subprocess.run(
        ["mlflow", "models", "generate-dockerfile", "-m", f"models:/{TRAVEL}@champion", "-d", "image"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert docker.returncode == 0, docker.stderr[-3000:]
    assert "FROM python:3" in (tmp_path / "image" / "Dockerfile").read_text()
    assert (tmp_path / "image" / "model_dir" / "code" / "leukml" / "serving" / "pyfunc.py").is_file()


def test_the_runs_reference_names_what_a_promotion_writes(travelling, store, runs_reference):
    """docs/reference/runs.md names the registered version's tags and the promotion run's."""
    uri, _, _ = store
    client = MlflowClient(uri)
    version = client.get_model_version_by_alias(TRAVEL, "champion")
    experiment = client.get_experiment_by_name("reg").experiment_id
    query = f"tags.leukml_promotion = 'true' and tags.registered_model = '{TRAVEL}'"
    promotion = client.search_runs([experiment], query)[0]
    page = runs_reference
    written = [*version.tags, *(t for t in promotion.data.tags if not t.startswith("mlflow."))]
    written += list(promotion.data.params)
    assert "leukml_promotion" in written and "ranked_protocol" in written
    # each as itself: `name` or `name=value`
    assert not [name for name in written if not re.search(rf"`{re.escape(name)}[`=]", page)]
