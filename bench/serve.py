"""Serving latency: POST /invocations on a real `mlflow models serve` against the same model in-process.

A small tracked training (VGG16, ``weights=none``, small images, 1 epoch) is promoted with
``leukml.serving.registry.promote`` into a throwaway SQLite registry, which logs leukml's image-taking
pyfunc. That model is served by ``mlflow models serve --env-manager local`` on a free 127.0.0.1
port and, in this process, loaded with ``mlflow.pyfunc.load_model``. For 1 and for 32 images per
request (synthetic cell BMP files, base64, ``dataframe_split``), requests alternate between the
server (urllib, one connection per request) and the in-process ``predict`` on the same rows, after
warm-up; p50 / p95 latency and sequential throughput (images/s) are reported, and the predictions
of both are checked to agree. The server's process group is always stopped at the end.

The last printed line is the headline: the server's p50 over the in-process p50 (HTTP, JSON and
the server's request handling on top of the model call).
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import shutil
import signal
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
from leukml.tracking.runs import tracked_train  # noqa: E402
from leukml.tracking.uri import serve_command  # noqa: E402
from leukml.training.config import TrainConfig  # noqa: E402

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


def start_server(port: int) -> subprocess.Popen:
    argv, variables = serve_argv(port)
    return subprocess.Popen(
        argv,
        env=harness.child_env(venv_path=True, **variables),
        stdout=subprocess.DEVNULL,
        stderr=open(WORK / "server.log", "wb"),
        start_new_session=True,
    )


def wait_ready(server: subprocess.Popen, url: str, timeout: float = 300) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        try:
            urllib.request.urlopen(url + "/ping", timeout=2)
            return time.perf_counter() - start
        except OSError as exc:
            if server.poll() is not None:
                log = (WORK / "server.log").read_text()[-2000:]
                raise RuntimeError(f"server exited: {log}") from exc
            time.sleep(0.5)
    raise RuntimeError(f"server not ready after {timeout} s")


def stop_server(server: subprocess.Popen) -> None:
    """SIGTERM the whole process group (mlflow -> uvicorn workers); SIGKILL if it lingers."""
    if server.poll() is not None:
        return
    try:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=10)
    except ProcessLookupError:
        pass


def post(url: str, rows: list[str]) -> list[dict]:
    body = json.dumps({"dataframe_split": {"columns": ["image"], "data": [[r] for r in rows]}})
    request = urllib.request.Request(
        url + "/invocations", data=body.encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=300) as response:
        return json.loads(response.read())["predictions"]


def measure(url: str, model, rows: list[str], reps: int, warmup: int = 2) -> dict:
    frame = pd.DataFrame({"image": rows})
    served, local = [], []
    for i in range(warmup + reps):
        t0 = time.perf_counter()
        remote = post(url, rows)
        t1 = time.perf_counter()
        ours = model.predict(frame)
        t2 = time.perf_counter()
        if i >= warmup:
            served.append(t1 - t0)
            local.append(t2 - t1)
    diff = float(np.abs(np.array([p["p_all"] for p in remote]) - ours["p_all"].to_numpy()).max())
    return {"served": np.array(served), "local": np.array(local), "diff": diff}


def main() -> None:
    args = harness.Parser(
        __doc__,
        size=(64, 32, "model input side"),
        file_size=(450, 64, "side of the BMP files sent, C-NMC's"),
        reps=(40, 3, "timed requests per batch size"),
    ).parse_args()
    size, file_size, reps = args.size, args.file_size, args.reps
    server = None
    try:
        data = harness.synthetic(WORK / "data", 40, file_size, n_all=24, subjects=4, seed=3)
        config = TrainConfig.of(data_dir=str(data), weights="none", image_size=size, epochs=1, batch_size=16)
        tracked_train(config, experiment="bench", tracking_uri=URI)
        registry.promote(
            "bench", arch="vgg16", allow_test_selection=True, tracking_uri=URI, gradcam_per_class=1
        )
        port = free_port()
        server = start_server(port)
        url = f"http://127.0.0.1:{port}"
        mlflow.set_tracking_uri(URI)
        model = mlflow.pyfunc.load_model(MODEL)
        ready = wait_ready(server, url)
        files = sorted(data.rglob("*.bmp"))
        rows = [base64.b64encode(f.read_bytes()).decode("ascii") for f in files]
        rows = (rows * (32 // len(rows) + 1))[:32]
        print(
            f"{harness.machine(backend=False)}; VGG16 pyfunc at {size} px; BMP files "
            f"{file_size} px ({len(rows[0]) // 1024} KiB base64 each); server ready in {ready:.1f} s; "
            f"{reps} timed requests per batch size, alternating server / in-process",
            flush=True,
        )
        results = {n: measure(url, model, rows[:n], reps) for n in (1, 32)}
    finally:
        if server is not None:
            stop_server(server)
        shutil.rmtree(WORK, ignore_errors=True)
    report(results)


def report(results: dict) -> None:
    print()
    harness.table("images / request", "path", "p50 ms", "p95 ms", "images/s", "p50 served / in-process")
    for n, r in results.items():
        ratio = np.median(r["served"]) / np.median(r["local"])
        for path in ("local", "served"):
            t = r[path]
            name = "in-process pyfunc" if path == "local" else "POST /invocations"
            print(
                f"| {n} | {name} | {1000 * np.median(t):.1f} | {1000 * np.percentile(t, 95):.1f} "
                f"| {n / t.mean():.1f} | {f'{ratio:.2f}x' if path == 'served' else ''} |"
            )
    print(f"largest |p_all| difference served vs in-process: {max(r['diff'] for r in results.values()):.1e}")
    one, many = (np.median(results[n]["served"]) / np.median(results[n]["local"]) for n in (1, 32))
    harness.headline(
        f"serving overhead, p50 POST /invocations / p50 in-process: {one:.2f}x for 1 image, "
        f"{many:.2f}x for 32 images"
    )


if __name__ == "__main__":
    main()
