"""The page's latency: one image's answer with its Grad-CAM through `leukml app` against the served
model's own latency plus a bare Grad-CAM pass, all in one run.

A small tracked training (VGG16, ``weights=none``, 1 epoch) is promoted into a throwaway SQLite
registry. The same version is served twice on free 127.0.0.1 ports: by ``mlflow models serve
--env-manager local`` (the served model) and by ``leukml app`` (the page, model in-process). In
interleaved rounds, one synthetic cell BMP is sent to each: ``POST /invocations`` (base64,
``dataframe_split``) and the page's ``POST /api/predict`` (label, p_all, Grad-CAM overlay, the
look-alike check); and this process runs one bare Grad-CAM pass (``leukml.model.gradcam``) on the
same cell with the version's Keras model. Then a whole upload (100 images; the page's chunks of 16,
one model call each) goes through the page as its script sends it.

Headline: p50 page / (p50 served + p50 Grad-CAM), the issue's target is <= 1.5x; and the upload's
images/s. Both servers' process groups are always stopped.
"""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import harness

WORK = harness.workdir("app")

import numpy as np  # noqa: E402

URI = f"sqlite:///{WORK / 'mlflow.db'}"
MODEL = "models:/leukml-all-classifier@champion"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(argv: list[str], log: str, url: str, timeout: float = 300) -> subprocess.Popen:
    """A child in its own process group, once ``url`` answers."""
    env = harness.child_env(venv_path=True, MLFLOW_TRACKING_URI=URI)
    with open(WORK / log, "wb") as err:
        child = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    deadline = time.perf_counter() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return child
        except OSError as exc:
            if child.poll() is not None or time.perf_counter() > deadline:
                harness.stop_group(child)
                raise RuntimeError(f"{argv[0]} did not serve: {(WORK / log).read_text()[-2000:]}") from exc
            time.sleep(0.5)


def post(url: str, payload: dict) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=300) as response:
        return json.loads(response.read())


def prepare(size: int, file_size: int) -> list[Path]:
    from leukml.serving import registry
    from leukml.tracking.mlflow_tracker import MlflowTracker
    from leukml.training.config import TrainConfig
    from leukml.workflows.train import tracked_train

    data = harness.synthetic(WORK / "data", 40, file_size, n_all=24, subjects=4, seed=3)
    config = TrainConfig.of(data_dir=str(data), weights="none", image_size=size, epochs=1, batch_size=16)
    tracked_train(MlflowTracker("bench", URI), config)
    registry.promote("bench", arch="vgg16", allow_test_selection=True, tracking_uri=URI, gradcam_per_class=1)
    return sorted(data.rglob("*.bmp"))


def main() -> None:
    args = harness.Parser(
        __doc__,
        size=(64, 32, "model input side"),
        file_size=(450, 64, "side of the BMP files sent, C-NMC's"),
        reps=(30, 3, "interleaved rounds"),
        images=(100, 20, "images of the whole upload"),
    ).parse_args()
    children = []
    try:
        files = prepare(args.size, args.file_size)
        from leukml.data.images import decode_image
        from leukml.model.gradcam import gradcam
        from leukml.model.networks import split_network
        from leukml.tracking.reader import fetch_model, load_keras_model

        network = split_network(load_keras_model(fetch_model(MODEL, URI)))
        bin_dir = Path(sys.executable).parent
        served, page = (f"http://127.0.0.1:{free_port()}" for _ in range(2))
        port = served.rsplit(":", 1)[1]
        serve = [str(bin_dir / "mlflow"), "models", "serve", "-m", MODEL, "--env-manager", "local"]
        children.append(start([*serve, "-h", "127.0.0.1", "-p", port], "serve.log", served + "/ping"))
        app = [str(bin_dir / "leukml"), "app", "--port", page.rsplit(":", 1)[1], "--tracking-uri", URI]
        children.append(start(app, "app.log", page + "/"))
        data = files[0].read_bytes()
        encoded = base64.b64encode(data).decode("ascii")
        cell = decode_image(data, args.size)
        sides = {
            "served": lambda: post(
                served + "/invocations", {"dataframe_split": {"columns": ["image"], "data": [[encoded]]}}
            ),
            "Grad-CAM": lambda: gradcam(network, cell),
            "page": lambda: post(
                page + "/api/predict", {"files": [{"name": files[0].name, "data": encoded}]}
            ),
        }
        for run in sides.values():  # warm-up: first calls compile and load
            run(), run()
        print(f"{harness.machine()}; VGG16 at {args.size} px; BMP files {args.file_size} px", flush=True)
        times = harness.interleaved(list(sides), args.reps, lambda side: harness.timed(sides[side])[0])
        upload = [
            {"name": f"{k}.bmp", "data": base64.b64encode(files[k % len(files)].read_bytes()).decode()}
            for k in range(args.images)
        ]
        whole, answers = harness.timed(
            lambda: [
                post(page + "/api/predict", {"files": upload[i : i + 16]}) for i in range(0, len(upload), 16)
            ]
        )
        assert sum(len(a["results"]) for a in answers) == args.images
    finally:
        for child in children:
            harness.stop_group(child)
    report(times, whole, args.images)


def report(times: dict[str, list[float]], whole: float, images: int) -> None:
    print()
    harness.table("path", "p50 ms", "p95 ms")
    for side, t in times.items():
        print(f"| {side} | {1000 * np.median(t):.1f} | {1000 * np.percentile(t, 95):.1f} |")
    p50 = {side: float(np.median(t)) for side, t in times.items()}
    ratio = p50["page"] / (p50["served"] + p50["Grad-CAM"])
    chunks = -(-images // 16)
    print(f"| upload of {images} images, {chunks} chunks of 16 | {1000 * whole:.0f} (whole) | |")
    harness.headline(
        f"page / (served + Grad-CAM), p50 for one image: {ratio:.2f}x (target <= 1.5x); "
        f"{images} images through the page: {images / whole:.1f} images/s"
    )


if __name__ == "__main__":
    try:
        main()
    finally:
        import shutil

        shutil.rmtree(WORK, ignore_errors=True)
