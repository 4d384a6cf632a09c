"""Serving latency: POST /invocations on a real `mlflow models serve` against the same model in-process.

A small tracked training (VGG16, ``weights=none``, small images, 1 epoch) is promoted with
``leukml.serving.registry.promote`` into a throwaway SQLite registry, which logs leukml's image-taking
pyfunc. That model is served by ``mlflow models serve --env-manager local`` on a free 127.0.0.1
port and, in this process, loaded with ``mlflow.pyfunc.load_model``. For 1 and for 32 images per
request (synthetic cell BMP files, base64, ``dataframe_split``), requests alternate between the
server (urllib, one connection per request) and the in-process ``predict`` on the same rows, after
warm-up; p50 / p95 latency and sequential throughput (images/s) are reported, and the predictions
of both are checked to agree. The server's process group is always stopped at the end.

Each request's JSON body is built once, before the timed requests, as the in-process frame is:
what is timed is the request, not the client's encoding of it (printed on its own line).

The floor: an empty pyfunc with the same signature (no decoding, no model: a constant answer per
row), saved to a folder and served by the same command on a second port, gets the same requests,
interleaved with the other two. Its p50 is what MLflow's server costs any pyfunc for that payload
(HTTP, parsing the JSON, the DataFrame, the schema check, the answer's JSON); ``served / in-process``
can go no lower than ``(in-process + floor) / in-process``, and the distance between the two is what
leukml's pyfunc adds in the server beyond its in-process work. The server's log is searched for
TensorFlow's "triggered tf.function retracing" warning.

The last printed line is the headline: the server's p50 over the in-process p50 (HTTP, JSON and
the server's request handling on top of the model call), with the floor's.
"""

from __future__ import annotations

import base64
import json
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import harness

WORK = harness.workdir("serve")

import mlflow  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from leukml.serving import registry  # noqa: E402
from leukml.serving.pyfunc import SIGNATURE, tune_scoring_server  # noqa: E402
from leukml.tracking.mlflow_tracker import MlflowTracker  # noqa: E402
from leukml.tracking.uri import serve_command  # noqa: E402
from leukml.training.config import TrainConfig  # noqa: E402
from leukml.workflows.train import tracked_train  # noqa: E402

URI = f"sqlite:///{WORK / 'mlflow.db'}"
# the command `leukml promote` prints, split: MLFLOW_TRACKING_URI=URI mlflow models serve -m MODEL ...
SERVE = shlex.split(serve_command(registry.DEFAULT_NAME, registry.DEFAULT_ALIAS, URI))
MODEL = SERVE[SERVE.index("-m") + 1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_argv(port: int) -> tuple[list[str], dict[str, str]]:
    """``SERVE`` as a process runs it: the argv, with this venv's ``mlflow`` on 127.0.0.1 and
    ``port``, and the variables it sets (the tracking URI)."""
    assignment, program, *args = SERVE
    name, _, value = assignment.partition("=")
    args[args.index("-p") + 1] = str(port)
    return [str(Path(sys.executable).parent / program), *args, "-h", "127.0.0.1"], {name: value}


class EmptyClassifier(mlflow.pyfunc.PythonModel):
    """The floor: leukml's signature and server settings, a constant answer, no work per image."""

    def load_context(self, context) -> None:
        tune_scoring_server()

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        n = len(model_input["image"])
        return pd.DataFrame({"label": ["hem"] * n, "p_all": [0.0] * n, "model_version": ["0"] * n})


def start_server(port: int, log: Path, model: str = MODEL) -> subprocess.Popen:
    argv, variables = serve_argv(port)
    argv[argv.index("-m") + 1] = model
    return subprocess.Popen(
        argv,
        env=harness.child_env(venv_path=True, **variables),
        stdout=subprocess.DEVNULL,
        stderr=open(log, "wb"),
        start_new_session=True,
    )


def wait_ready(server: subprocess.Popen, url: str, log: Path, timeout: float = 300) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        try:
            urllib.request.urlopen(url + "/ping", timeout=2)
            return time.perf_counter() - start
        except OSError as exc:
            if server.poll() is not None:
                raise RuntimeError(f"server exited: {log.read_text()[-2000:]}") from exc
            time.sleep(0.5)
    raise RuntimeError(f"server not ready after {timeout} s")


def body(rows: list[str]) -> bytes:
    return json.dumps({"dataframe_split": {"columns": ["image"], "data": [[r] for r in rows]}}).encode()


def post(url: str, data: bytes) -> list[dict]:
    request = urllib.request.Request(
        url + "/invocations", data=data, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=300) as response:
        return json.loads(response.read())["predictions"]


def measure(url: str, floor_url: str, model, rows: list[str], reps: int, warmup: int = 2) -> dict:
    """``reps`` timed rounds after ``warmup``: the server, the floor's server, in-process, in turn."""
    frame = pd.DataFrame({"image": rows})
    encode, data = harness.timed(body, rows)
    times: dict[str, list[float]] = {"served": [], "floor": [], "local": []}
    for i in range(warmup + reps):
        served, remote = harness.timed(post, url, data)
        floor, _ = harness.timed(post, floor_url, data)
        local, ours = harness.timed(model.predict, frame)
        if i >= warmup:
            for name, t in (("served", served), ("floor", floor), ("local", local)):
                times[name].append(t)
    diff = float(np.abs(np.array([p["p_all"] for p in remote]) - ours["p_all"].to_numpy()).max())
    return {
        **{k: np.array(v) for k, v in times.items()},
        "diff": diff,
        "encode": encode,
        "mb": len(data) / 1e6,
    }


def main() -> None:
    args = harness.Parser(
        __doc__,
        size=(64, 32, "model input side"),
        file_size=(450, 64, "side of the BMP files sent, C-NMC's"),
        reps=(40, 3, "timed requests per batch size"),
    ).parse_args()
    size, file_size, reps = args.size, args.file_size, args.reps
    servers: list[subprocess.Popen] = []
    logs = {"model": WORK / "server.log", "floor": WORK / "floor.log"}
    try:
        data = harness.synthetic(WORK / "data", 40, file_size, n_all=24, subjects=4, seed=3)
        config = TrainConfig.of(data_dir=str(data), weights="none", image_size=size, epochs=1, batch_size=16)
        tracked_train(MlflowTracker("bench", URI), config)
        registry.promote(
            "bench", arch="vgg16", allow_test_selection=True, tracking_uri=URI, gradcam_per_class=1
        )
        mlflow.pyfunc.save_model(str(WORK / "empty"), python_model=EmptyClassifier(), signature=SIGNATURE)
        ports = {name: free_port() for name in logs}
        servers = [
            start_server(ports["model"], logs["model"]),
            start_server(ports["floor"], logs["floor"], str(WORK / "empty")),
        ]
        urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        mlflow.set_tracking_uri(URI)
        model = mlflow.pyfunc.load_model(MODEL)
        ready = wait_ready(servers[0], urls["model"], logs["model"])
        wait_ready(servers[1], urls["floor"], logs["floor"])
        files = sorted(data.rglob("*.bmp"))
        rows = [base64.b64encode(f.read_bytes()).decode("ascii") for f in files]
        rows = (rows * (32 // len(rows) + 1))[:32]
        print(
            f"{harness.machine(backend=False)}; VGG16 pyfunc at {size} px; BMP files "
            f"{file_size} px ({len(rows[0]) // 1024} KiB base64 each); server ready in {ready:.1f} s; "
            f"{reps} timed requests per batch size, alternating server / empty pyfunc's server / in-process",
            flush=True,
        )
        results = {n: measure(urls["model"], urls["floor"], model, rows[:n], reps) for n in (1, 32)}
        # a batch size no request had: the server must not trace its predict function again
        post(urls["model"], body(rows[:5]))
        retraced = logs["model"].read_text(errors="replace").count("triggered tf.function retracing")
    finally:
        for server in servers:
            harness.stop_group(server)
        shutil.rmtree(WORK, ignore_errors=True)
    report(results, retraced)


def report(results: dict, retraced: int) -> None:
    print()
    harness.table("images / request", "path", "p50 ms", "p95 ms", "images/s", "p50 / in-process")
    names = {
        "local": "in-process pyfunc",
        "served": "POST /invocations",
        "floor": "empty pyfunc, same server",
    }
    for n, r in results.items():
        local = np.median(r["local"])
        for path in ("local", "served", "floor"):
            t = r[path]
            ratio = {"local": "", "served": f"{np.median(t) / local:.2f}x", "floor": "(overhead only)"}[path]
            print(
                f"| {n} | {names[path]} | {1000 * np.median(t):.1f} | {1000 * np.percentile(t, 95):.1f} "
                f"| {n / t.mean():.1f} | {ratio} |"
            )
    print()
    for n, r in results.items():
        local, served, floor = (np.median(r[k]) for k in ("local", "served", "floor"))
        print(
            f"{n} image(s), {r['mb']:.1f} MB request (client's json.dumps {1000 * r['encode']:.1f} ms, "
            f"not timed; with it {(served + r['encode']) / local:.2f}x): "
            f"served / in-process {served / local:.2f}x, floor (in-process + empty "
            f"pyfunc's request) / in-process {(local + floor) / local:.2f}x, distance to the floor "
            f"{1000 * (served - local - floor):+.1f} ms"
        )
    print(f"largest |p_all| difference served vs in-process: {max(r['diff'] for r in results.values()):.1e}")
    print(f"'triggered tf.function retracing' warnings in the server's log: {retraced}")
    one, many = (np.median(results[n]["served"]) / np.median(results[n]["local"]) for n in (1, 32))
    floors = [
        (np.median(results[n]["local"]) + np.median(results[n]["floor"])) / np.median(results[n]["local"])
        for n in (1, 32)
    ]
    harness.headline(
        f"serving overhead, p50 POST /invocations / p50 in-process: {one:.2f}x for 1 image, "
        f"{many:.2f}x for 32 images (MLflow's server's floor: {floors[0]:.2f}x, {floors[1]:.2f}x)"
    )


if __name__ == "__main__":
    main()
