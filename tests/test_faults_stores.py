"""Broken and full stores, as a lab meets them, through the installed `leukml`: each is one line
naming the store and what to do, never a traceback; a run the store could not mark FAILED is
said to be left RUNNING, and the next `leukml train --resume` marks it."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import TINY_TRAIN, error_line, free_port, mlflow_store, run_leukml
from mlflow.tracking import MlflowClient


@contextlib.contextmanager
def tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """A small tmpfs at ``folder`` (tests run as root here and in CI), unmounted at the end."""
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True, timeout=60
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode(errors='replace').strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, timeout=60)


def _store(path: Path) -> str:
    """An MLflow store with its schema and its Default experiment, as a training leaves it."""
    uri = mlflow_store(path.parent, path.name)
    MlflowClient(uri).search_experiments()
    return uri


def _corrupted(path: Path) -> str:
    uri = _store(path)
    with open(path, "r+b") as db:  # pages after the first two: the schema's tables
        db.seek(3 * 4096)
        db.write(b"\xde\xad" * 20000)
    return uri


def _one_line(args: list[str], env: dict, cwd: Path) -> str:
    proc = run_leukml(args, env, cwd)
    assert proc.returncode == 1, proc.stderr[-3000:]
    return error_line(proc.stderr)


@pytest.mark.parametrize("fault", ["not-a-database", "corrupted"])
@pytest.mark.slow
def test_a_broken_tracking_store_is_one_line(fault, tmp_path, tiny_data, child_env):
    path = tmp_path / "mlflow.db"
    if fault == "not-a-database":
        path.write_text("notes of the lab, not a database\n")
        uri, expected = f"sqlite:///{path}", "is not a database: move that file away"
    else:
        uri, expected = (
            _corrupted(path),
            "is corrupted (database disk image is malformed): move that file away",
        )
    line = _one_line(
        ["train", "--data-dir", str(tiny_data), *TINY_TRAIN, "--tracking-uri", uri], child_env(), tmp_path
    )
    assert f"the store {uri} (file {path})" in line and expected in line, line
    assert "--tracking-uri" in line


def test_a_read_only_tracking_store_is_one_line(tmp_path, tiny_data, child_env):
    with tmpfs(tmp_path / "ro", "8m") as folder:
        _store(tmp_path / "made.db")  # made outside: an open connection would keep the mount busy
        shutil.copy(tmp_path / "made.db", folder / "mlflow.db")
        uri = f"sqlite:///{folder / 'mlflow.db'}"
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True, timeout=60)
        line = _one_line(
            ["train", "--data-dir", str(tiny_data), *TINY_TRAIN, "--tracking-uri", uri], child_env(), tmp_path
        )
        assert f"the store {uri}" in line and "is read-only" in line and "permissions" in line, line


@pytest.mark.parametrize("fault", ["unknown-scheme", "not-a-database"])
@pytest.mark.slow
def test_a_broken_optuna_storage_is_one_line(fault, tmp_path, tiny_data, child_env):
    storage = "garbage://nowhere"
    if fault == "not-a-database":
        (tmp_path / "optuna.db").write_text("not a database\n")
        storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    uri = mlflow_store(tmp_path)
    args = ["search", "--storage", storage, "--data-dir", str(tiny_data), *TINY_TRAIN, "--tracking-uri", uri]
    line = _one_line(args, child_env(), tmp_path)
    if fault == "unknown-scheme":
        assert "--storage garbage://nowhere: no database driver for 'garbage'; give sqlite:///FILE" in line
    else:
        assert f"the store {storage}" in line and "is not a database" in line and "--storage" in line, line
    client = MlflowClient(uri)
    [parent] = client.search_runs([client.get_experiment_by_name("leukml").experiment_id])
    assert parent.info.status == "FAILED"


@pytest.mark.slow  # a training, then a resume, in subprocesses
def test_a_full_disk_under_the_store_is_one_line_and_the_next_resume_marks_the_run(
    tmp_path, tiny_data, child_env
):
    with tmpfs(tmp_path / "full", "3m") as folder:  # mlflow.db and mlruns: the model cannot fit
        uri = mlflow_store(folder)
        line = _one_line(
            ["train", "--data-dir", str(tiny_data), *TINY_TRAIN], child_env(MLFLOW_TRACKING_URI=uri), folder
        )
        assert "no space left" in line.lower(), line
        client = MlflowClient(uri)
        [run] = client.search_runs([client.get_experiment_by_name("leukml").experiment_id])
        if "left RUNNING" not in line:  # the store still took the run's end
            assert run.info.status == "FAILED"
            return
        assert run.info.status == "RUNNING" and f"run {run.info.run_id} is left RUNNING" in line, line
        subprocess.run(["mount", "-o", "remount,size=64m", str(folder)], check=True, timeout=60)
        last = float(run.data.tags["heartbeat"])
        while time.time() < last + 3 * 0.5 + 0.5:  # stale for a resume beating every 0.5 s
            time.sleep(0.2)
        env = child_env(MLFLOW_TRACKING_URI=uri, LEUKML_HEARTBEAT_S="0.5")
        line = _one_line(["train", "--resume", run.info.run_id], env, folder)
        assert "the run saved no checkpoint" in line, line
        failed = client.get_run(run.info.run_id)
        assert failed.info.status == "FAILED"
        assert failed.data.tags["error"].startswith("process lost: no heartbeat")


@pytest.mark.parametrize("server", ["closed-port", "never-answers"])
@pytest.mark.slow
def test_a_tracking_server_that_does_not_answer_is_said_at_once(
    server, tmp_path, tiny_data, child_env, no_backend
):
    """MLflow retries a dead server for minutes in silence: the command says at once that it does and
    how to change that, then fails in one line (retries and timeouts made small here), before the
    backend's seconds of import."""
    import socket

    with socket.socket() as silent:  # takes connections (the kernel's backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = free_port() if server == "closed-port" else silent.getsockname()[1]
        env = child_env(
            MLFLOW_HTTP_REQUEST_MAX_RETRIES="1" if server == "closed-port" else "0",
            MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR="1",
            MLFLOW_HTTP_REQUEST_TIMEOUT="2",
            **no_backend,
        )
        uri = f"http://127.0.0.1:{port}"
        proc = run_leukml(
            ["train", "--data-dir", str(tiny_data), *TINY_TRAIN, "--tracking-uri", uri], env, tmp_path
        )
    assert proc.returncode == 1, proc.stderr[-3000:]
    notice, line = [x for x in proc.stderr.splitlines() if x.strip()][-2:]
    assert notice.startswith(f"the MLflow server at {uri} does not answer"), proc.stderr[-3000:]
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" in notice and "MLFLOW_HTTP_REQUEST_TIMEOUT" in notice
    assert line.startswith(f"Error: cannot reach the MLflow server at {uri}: "), line
    assert "Traceback" not in proc.stderr
