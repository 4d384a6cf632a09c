"""A training killed by SIGKILL (or the out-of-memory killer) leaves its run RUNNING: its heartbeat
stops, and `leukml train --resume` takes it over once the beat is stale, never while the process
lives and never in two processes at once."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from gates import GATED, PAUSED
from helpers import LEUKML, mlflow_store
from mlflow.tracking import MlflowClient

BEAT_S = 2  # stale after 3 beats: 6 s


def _gated(pause_at: int, args: list[str], env: dict, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", GATED, str(pause_at), *args],
        env=env,
        cwd=cwd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _until_paused(proc: subprocess.Popen, timeout: float = 600) -> str:
    out, deadline = b"", time.monotonic() + timeout
    while PAUSED.encode() not in out:
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        chunk = os.read(proc.stdout.fileno(), 65536) if ready else b""
        if not chunk:
            raise AssertionError(f"no pause (exit {proc.poll()}):\n{out.decode(errors='replace')[-4000:]}")
        out += chunk
    return out.decode(errors="replace")


def _wait_for(condition, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def _resume(run_id: str, uri: str, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LEUKML), "train", "--resume", run_id, "--tracking-uri", uri],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow  # three trainings in subprocesses
def test_a_killed_training_is_taken_over_by_one_resume(tiny_data, tmp_path, child_env):
    uri = mlflow_store(tmp_path)
    env = child_env(LEUKML_HEARTBEAT_S=str(BEAT_S), LEUKML_METRIC_FLUSH_S="0")
    args = ["train", "--data-dir", str(tiny_data), "--weights", "none", "--image-size", "32"]
    args += ["--epochs", "4", "--eval-epochs", "4", "--batch-size", "8", "--checkpoint-every", "1"]
    doomed = _gated(3, [*args, "--tracking-uri", uri], env, tmp_path)  # after its checkpoint at 2
    resumer = None
    try:
        _until_paused(doomed)
        client = MlflowClient(uri)
        [run] = client.search_runs([client.get_experiment_by_name("leukml").experiment_id])
        run_id = run.info.run_id
        # epoch 2's checkpoint is stored beside the training: killed once it is in the run
        _wait_for(lambda: client.get_run(run_id).data.tags.get("checkpoint_epoch") == "2", "no checkpoint")

        os.killpg(doomed.pid, signal.SIGKILL)
        doomed.wait(timeout=60)
        assert client.get_run(run_id).info.status == "RUNNING"  # nobody marked it
        last = float(client.get_run(run_id).data.tags["heartbeat"])
        _wait_for(lambda: time.time() > last + 3 * BEAT_S + 0.5, "heartbeat not stale")

        resumer = _gated(3, ["train", "--resume", run_id, "--tracking-uri", uri], env, tmp_path)
        _until_paused(resumer)  # it took the run over and trains it: a second resume is refused
        second = _resume(run_id, uri, env, tmp_path)
        assert second.returncode == 1, second.stderr[-3000:]
        assert "the run is RUNNING, its last heartbeat" in second.stderr.strip().splitlines()[-1]

        resumer.stdin.write(b"go\n")
        resumer.stdin.flush()
        out = resumer.communicate(timeout=600)[0].decode(errors="replace")
        assert resumer.returncode == 0, out[-3000:]
        assert f"run {run_id} finished" in out
    finally:
        for proc in (doomed, resumer):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=60)
    done = client.get_run(run_id)
    assert done.info.status == "FINISHED"
    assert done.data.tags["resumed_from_epoch"] == "2"
    assert done.data.tags["error_before_resume"].startswith("process lost: no heartbeat for")
    assert [s.step for s in client.get_metric_history(run_id, "train_loss")] == [1, 2, 3, 4]


def test_of_two_claims_of_one_failure_one_wins(tmp_path):
    from leukml.tracking import heartbeat

    client = MlflowClient(mlflow_store(tmp_path))
    run = client.create_run(client.create_experiment("claims"))
    client.set_terminated(run.info.run_id, "FAILED")
    failed = client.get_run(run.info.run_id)
    heartbeat.claim(client, failed)
    with pytest.raises(ValueError, match="another `leukml train --resume` took this run over first"):
        heartbeat.claim(client, failed)


@pytest.mark.slow  # two searches in subprocesses
def test_a_grid_cell_interrupted_by_ctrl_c_is_trained_by_the_rerun(tiny_data, tmp_path, child_env):
    uri = mlflow_store(tmp_path)
    env = child_env(LEUKML_METRIC_FLUSH_S="0")
    args = ["search", "--mode", "grid", "--archs", "vgg16", "--optimizers", "adam", "--study-name", "cut"]
    args += ["--storage", f"sqlite:///{tmp_path / 'optuna.db'}", "--tracking-uri", uri]
    args += ["--data-dir", str(tiny_data), "--weights", "none", "--image-size", "32", "--epochs", "3"]
    args += ["--eval-epochs", "3", "--batch-size", "8", "--checkpoint-every", "1"]
    cut = _gated(2, args, env, tmp_path)  # after its checkpoint at epoch 1
    try:
        _until_paused(cut)
        client = MlflowClient(uri)
        experiment_id = client.get_experiment_by_name("leukml").experiment_id
        [run] = client.search_runs([experiment_id], "tags.trial_number = '0'")
        run_id = run.info.run_id
        _wait_for(lambda: client.get_run(run_id).data.tags.get("checkpoint_epoch") == "1", "no checkpoint")
        os.killpg(cut.pid, signal.SIGINT)  # Ctrl-C
        out = cut.communicate(timeout=300)[0].decode(errors="replace")
    finally:
        if cut.poll() is None:
            os.killpg(cut.pid, signal.SIGKILL)
            cut.wait(timeout=60)
    assert cut.returncode == 130, out[-3000:]
    assert client.get_run(run_id).info.status == "FAILED"

    rerun = subprocess.run(
        [str(LEUKML), *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "study cut: 2 trials" in rerun.stdout  # the interrupted one, and its retry
    done = client.get_run(run_id)
    assert done.info.status == "FINISHED"
    assert done.data.tags["resumed_from_epoch"] == "1"
