"""Every expected failure of the installed `leukml` command is one line on stderr that names the
input and the fix, with a non-zero exit: no traceback, no TensorFlow start-up lines before it.

The real script runs in a subprocess: Click's CliRunner catches exceptions itself, so a traceback
(or a line TensorFlow writes to file descriptor 2) would never show there."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from helpers import LEUKML, TF_NOISE, TINY_TRAIN, error_line, free_port, mlflow_store, run_leukml
from PIL import Image

HANG_S = 600  # how long a test waits for a child at most: only a hang reaches it (pytest-timeout 900 s)


class RefusingTracker(BaseHTTPRequestHandler):
    """An MLflow server with authentication that knows the experiment but lets this user do
    nothing in it: 403 on everything else."""

    def _answer(self) -> None:
        if "/experiments/get" in self.path:
            experiment = {"experiment_id": "1", "name": "leukml", "lifecycle_stage": "active"}
            status, body = 200, {"experiment": experiment}
        else:
            status, body = 403, {"error_code": "PERMISSION_DENIED", "message": "Permission denied"}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _answer

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def refusing_tracker() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), RefusingTracker)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@dataclass
class Inputs:
    tmp: Path
    image: Path
    port: int
    tracker: str


def _text_file(i: Inputs) -> list[str]:
    (i.tmp / "notes.txt").write_text("not an image\n")
    return ["predict", "notes.txt", "--model-uri", "models:/leukml-all-classifier@champion"]


def _symlink_loop(i: Inputs) -> list[str]:
    (i.tmp / "loop.bmp").symlink_to("loop.bmp")
    return ["predict", "loop.bmp", "--url", f"http://127.0.0.1:{i.port}"]


def _no_class_hem(i: Inputs) -> list[str]:
    (i.tmp / "data" / "all").mkdir(parents=True)
    Image.new("RGB", (40, 40), (120, 60, 160)).save(i.tmp / "data" / "all" / "x.bmp")
    return ["train", "--data-dir", "data", *TINY_TRAIN]


def _subject_search(i: Inputs) -> list[str]:
    """An extended search (validation: 10% of the training side) split by subject on 6 subjects."""
    data, storage = str(i.image.parents[3]), f"sqlite:///{i.tmp / 'optuna.db'}"
    search = ["search", "--mode", "extended", "--storage", storage]
    return [*search, "--data-dir", data, "--split", "subject", *TINY_TRAIN]


# case -> (command line, what the line must say); {port} and {tracker} are filled in
CASES: dict[str, tuple[Callable[[Inputs], list[str]], tuple[str, ...]]] = {
    "predict-text-file": (_text_file, ("notes.txt", "not a readable image", "BMP")),
    "predict-closed-port": (
        lambda i: ["predict", str(i.image), "--url", f"http://127.0.0.1:{i.port}"],
        ("http://127.0.0.1:{port}", "mlflow models serve"),
    ),
    "predict-symlink-loop": (_symlink_loop, ("loop.bmp", "symbolic link")),
    "predict-csv-missing-folder": (  # refused before the server is asked (its port is closed)
        lambda i: ["predict", str(i.image), "--url", f"http://127.0.0.1:{i.port}", "--csv", "nope/out.csv"],
        ("nope/out.csv", "No such file or directory", "check the path"),
    ),
    "predict-missing-model": (
        lambda i: ["predict", str(i.image), "--model-uri", "models:/nope@champion"],
        ("'models:/nope@champion' not found", "leukml promote", "--model-uri"),
    ),
    "explain-missing-model": (
        lambda i: ["explain", str(i.image), "--model-uri", "models:/nope@champion", "--out", "cam.png"],
        ("'models:/nope@champion' not found", "leukml promote"),
    ),
    "report-dead-server": (
        lambda i: ["report", "--tracking-uri", f"http://127.0.0.1:{i.port}"],
        ("cannot reach", "http://127.0.0.1:{port}", "start the server", "--tracking-uri"),
    ),
    "report-refusing-server": (
        lambda i: ["report", "--tracking-uri", i.tracker],
        ("{tracker}", "refuses", "MLFLOW_TRACKING_USERNAME"),
    ),
    "train-refusing-server": (
        lambda i: ["train", "--tracking-uri", i.tracker, *TINY_TRAIN],
        ("refuses new runs", "MLFLOW_TRACKING_USERNAME"),
    ),
    "search-dead-storage": (
        lambda i: ["search", "--storage", f"postgresql://u:p@127.0.0.1:{i.port}/optuna", *TINY_TRAIN],
        ("cannot use the database", "port {port}", "--storage"),
    ),
    "inspect-missing-folder": (lambda i: ["inspect", "nope"], ("nope", "does not exist", "fold_<k>")),
    "train-one-class": (_no_class_hem, ("only class 'all'",)),
    "train-official-without-preliminary-set": (
        lambda i: ["train", "--data-dir", str(i.image.parents[3]), "--split", "official", *TINY_TRAIN],
        ("--split official tests on the labelled preliminary test set", "_labels.csv", "--split subject"),
    ),
    "search-subject-split-without-validation": (  # refused once, before any trial or run
        _subject_search,
        ("--val-fraction 0.1 gave no validation images with --split subject", "--split image"),
    ),
    "cv-too-many-folds": (
        lambda i: ["cv", "--data-dir", str(i.image.parents[3]), "--folds", "9", *TINY_TRAIN],
        ("--folds 9 needs at least 9 subjects; this data has 6",),
    ),
}
SLOW = {"train-refusing-server", "search-dead-storage", "train-one-class"}
# refused before the backend's seconds of import: run where importing Keras or TensorFlow fails
BEFORE_BACKEND = {c for c in CASES if c.split("-")[0] in ("predict", "explain", "report", "inspect")}


@pytest.mark.parametrize(
    "case", [pytest.param(c, marks=[pytest.mark.slow] if c in SLOW else []) for c in CASES]
)
def test_expected_failure_is_one_line(case, tmp_path, tiny_data, child_env, refusing_tracker, no_backend):
    if case == "search-dead-storage":
        pytest.importorskip("psycopg")
    make_args, expected = CASES[case]
    port = free_port()
    image = next(tiny_data.rglob("*.bmp"))
    uri = mlflow_store(tmp_path)
    # no retries: MLflow's default backs off for minutes before giving up on a dead server
    env = child_env(MLFLOW_TRACKING_URI=uri, MLFLOW_HTTP_REQUEST_MAX_RETRIES="0")
    env |= no_backend if case in BEFORE_BACKEND else {}
    proc = run_leukml(make_args(Inputs(tmp_path, image, port, refusing_tracker)), env, tmp_path)
    assert proc.returncode not in (0, None), proc.stderr[-3000:]
    line = error_line(proc.stderr)
    assert line.startswith("Error: ")
    for text in expected:
        assert text.format(port=port, tracker=refusing_tracker) in line, line
    if case == "search-subject-split-without-validation":
        from mlflow.tracking import MlflowClient

        assert MlflowClient(uri).get_experiment_by_name("leukml") is None  # no parent run, no trial
    if case == "train-one-class":  # the CLI's one line comes after the run was marked FAILED
        from mlflow.tracking import MlflowClient

        client = MlflowClient(uri)
        [run] = client.search_runs([client.get_experiment_by_name("leukml").experiment_id])
        assert run.info.status == "FAILED"
        assert "only class" in run.data.tags["error"]


def _accept_from(server: socket.socket, child: subprocess.Popen) -> socket.socket:
    """The child's connection to ``server``; a failure at once if the child exits first, or after
    ``HANG_S`` seconds without one."""
    server.settimeout(0.5)
    deadline = time.monotonic() + HANG_S
    while True:
        try:
            return server.accept()[0]
        except TimeoutError:
            if child.poll() is not None:
                said = child.stderr.read()[-3000:]
                pytest.fail(f"the child exited ({child.returncode}) before connecting:\n{said}")
            if time.monotonic() > deadline:
                child.kill()
                child.communicate(timeout=60)
                pytest.fail(f"the child did not connect within {HANG_S} s")


@pytest.mark.parametrize(
    ("signum", "code", "text"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated (SIGTERM)")],
    ids=["ctrl-c", "sigterm"],
)
def test_interrupted_is_one_line(signum, code, text, tmp_path, tiny_data, child_env):
    """Ctrl-C or SIGTERM while waiting on a server that never answers."""
    image = next(tiny_data.rglob("*.bmp"))
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        child = subprocess.Popen(
            [str(LEUKML), "predict", str(image), "--url", url],
            env=child_env(),
            cwd=tmp_path,
            stderr=subprocess.PIPE,
            text=True,
            # as from a terminal: a test run started in the background (a non-interactive shell's
            # `&`) inherits an ignored SIGINT, and Python keeps ignoring what it starts ignoring
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        connection = _accept_from(silent, child)  # the request is on its way: the child waits for an answer
        with connection:
            child.send_signal(signum)
            _, stderr = child.communicate(timeout=60)
    assert child.returncode == code, stderr
    assert text in error_line(stderr)


@pytest.mark.slow
def test_terminated_training_is_one_line_and_failed(tmp_path, tiny_data, child_env):
    from mlflow.tracking import MlflowClient

    uri = mlflow_store(tmp_path)
    child = subprocess.Popen(
        [str(LEUKML), "train", "--data-dir", str(tiny_data), *TINY_TRAIN, "--epochs", "300"],
        env=child_env(MLFLOW_TRACKING_URI=uri),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    client = MlflowClient(uri)

    def runs() -> list:
        exp = (tmp_path / "mlflow.db").exists() and client.get_experiment_by_name("leukml")
        return client.search_runs([exp.experiment_id]) if exp else []

    deadline = time.monotonic() + HANG_S
    try:
        while not any(r.data.params for r in runs()):  # then SIGTERM lands inside the training
            if child.poll() is not None:
                said = child.stderr.read()[-3000:]
                pytest.fail(f"the training ended ({child.returncode}) before the signal:\n{said}")
            if time.monotonic() > deadline:
                pytest.fail(f"the training's run had no params after {HANG_S} s")
            time.sleep(0.2)
    except BaseException:
        child.kill()
        child.communicate(timeout=60)
        raise
    child.send_signal(signal.SIGTERM)
    _, stderr = child.communicate(timeout=120)
    assert child.returncode == 143, stderr[-3000:]
    assert "terminated (SIGTERM)" in error_line(stderr)
    [run] = runs()
    assert run.info.status == "FAILED"
    assert run.data.tags["error"].startswith("Terminated")


# Loaded by the child's Python at start (sitecustomize on PYTHONPATH): once the leukml command has
# its signal handlers, the process signals itself from where a raised exception goes wrong. "gc":
# inside the garbage collector's callback on the main thread, as the training loop runs (outside
# MLflow's calls), where Python reports what the handler raises as "Exception ignored in ..." and
# goes on (the signal would be lost). "sql": as SQLAlchemy writes the run's params into the SQLite
# store, where a cut write can keep its transaction's lock (the run could not be marked FAILED).
SIGNAL_FROM = {
    "gc": """
import gc, os, signal, sys, threading

fired, threshold = [], gc.get_threshold()

def run_active():
    active_run = getattr(sys.modules.get("mlflow"), "active_run", None)  # None while mlflow imports
    return active_run is not None and active_run() is not None

def training_outside_mlflow():
    modules, frame = set(), sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_name != "<module>":  # not a module's import
            modules.add(frame.f_globals.get("__name__", ""))
        frame = frame.f_back
    outside = not any(m.startswith(("mlflow.", "sqlalchemy.")) for m in modules)
    return "leukml.training.loop" in modules and outside

def signal_inside_gc(phase, info):
    if fired or phase != "start" or threading.current_thread() is not threading.main_thread():
        return
    handler = getattr(signal.getsignal(signal.SIGTERM), "__module__", None) or ""
    if not handler.startswith("leukml.") or not run_active():
        return
    gc.set_threshold(10)  # collections often enough that one comes while the loop runs
    if training_outside_mlflow():
        fired.append(True)
        gc.set_threshold(*threshold)
        os.kill(os.getpid(), signal.{name})  # its handler runs here, inside this callback

gc.callbacks.append(signal_inside_gc)
""",
    "sql": """
import os, signal, sqlite3

fired = []

def maybe_signal(sql):
    handler = getattr(signal.getsignal(signal.SIGTERM), "__module__", None) or ""
    if not fired and handler.startswith("leukml.") and sql.lstrip().upper().startswith("INSERT INTO PARAMS"):
        fired.append(True)
        os.kill(os.getpid(), signal.{name})  # its handler runs here, SQLAlchemy's frames below

class Cursor(sqlite3.Cursor):  # the write done, its transaction still open (and locked)
    def execute(self, sql, *args):
        done = super().execute(sql, *args)
        maybe_signal(sql)
        return done

    def executemany(self, sql, *args):
        done = super().executemany(sql, *args)
        maybe_signal(sql)
        return done

class Connection(sqlite3.Connection):
    def cursor(self, factory=Cursor):
        return super().cursor(factory)

def connect(*args, _connect=sqlite3.connect, **kwargs):
    return _connect(*args, **{{"factory": Connection, **kwargs}})

sqlite3.connect = sqlite3.dbapi2.connect = connect  # SQLAlchemy calls the second
""",
}


@pytest.mark.slow
@pytest.mark.parametrize("where", ["gc", "sql"])
@pytest.mark.parametrize(
    "name, code, text", [("SIGTERM", 143, "terminated (SIGTERM)"), ("SIGINT", 130, "interrupted")]
)
def test_a_signal_where_an_exception_goes_wrong_still_stops_the_training_and_fails_its_run(
    where, name, code, text, tmp_path, tiny_data, child_env
):
    from mlflow.tracking import MlflowClient

    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SIGNAL_FROM[where].format(name=name))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"  # the child makes it: a first training's SQL
    env = child_env(MLFLOW_TRACKING_URI=uri, PYTHONPATH=str(site))
    child = subprocess.run(  # epochs enough that a lost signal shows: the training would go on to its end
        [str(LEUKML), "train", "--data-dir", str(tiny_data), *TINY_TRAIN, "--epochs", "30"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as from a terminal
    )
    assert child.returncode == code, child.stderr[-3000:]
    assert text in error_line(child.stderr)
    client = MlflowClient(uri)
    [run] = client.search_runs([client.get_experiment_by_name("leukml").experiment_id])
    assert run.info.status == "FAILED"


@pytest.mark.slow
def test_training_beside_a_symlink_loop_never_shows_a_traceback(tmp_path, tiny_data, child_env):
    """Discovery may skip the looping file (with its reason) or refuse it: either way, no traceback."""
    import shutil

    data = shutil.copytree(tiny_data, tmp_path / "data")
    next(data.rglob("all")).joinpath("loop.bmp").symlink_to("loop.bmp")
    env = child_env(MLFLOW_TRACKING_URI=mlflow_store(tmp_path))
    proc = run_leukml(["train", "--data-dir", str(data), *TINY_TRAIN], env, tmp_path)
    if proc.returncode:
        assert "loop.bmp" in error_line(proc.stderr)
    assert "Traceback" not in proc.stderr and not TF_NOISE.search(proc.stderr), proc.stderr[-3000:]


@pytest.mark.slow
def test_the_backends_cuda_start_up_happens_inside_the_filtered_import(child_env):
    """TensorFlow tries CUDA (cuInit) when devices are first listed; on a machine without a GPU that
    logs an error line. import_backend does it inside its filtered window, so no later device query
    (the run's device tag, the precision) puts that line on a command's output."""
    code = (
        "from leukml.common.console import import_backend\n"
        "import_backend()\n"
        "import tensorflow as tf\n"
        "print(tf.config.list_physical_devices('GPU'))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env=child_env(), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not TF_NOISE.search(proc.stderr), proc.stderr[-3000:]
