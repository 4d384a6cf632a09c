"""The team stack, for real: infra/local/up.sh starts PostgreSQL, SeaweedFS (S3) and the MLflow
server with basic auth on loopback; training, search workers and faults run against it."""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import boto3
import optuna
import pytest
import requests
from gates import GATED, PAUSED
from helpers import TINY_ARGS, leukml_popen

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
LOCAL = ROOT / "infra" / "local"


def _read_env(path: Path) -> dict[str, str]:
    pairs = (
        line.removeprefix("export ").split("=", 1)
        for line in path.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    return {k: v for k, v in pairs}


def _up(root: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        ["bash", str(LOCAL / "up.sh"), str(root)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


class Stack:
    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root, self.env = root, env
        self.client = _read_env(root / "env.sh")  # what env.sh exports to clients
        self.credentials = _read_env(root / "credentials.env")
        self.settings = _read_env(root / "stack.env")

    @property
    def url(self) -> str:
        return self.client["MLFLOW_TRACKING_URI"]

    def child_env(self, **extra: str) -> dict[str, str]:
        return {**self.env, **self.client, **extra}

    def up(self) -> str:
        return _up(self.root, self.env)

    def pids(self) -> dict[str, str]:
        return {
            name: (self.root / "pids" / f"{name}.pid").read_text().strip()
            for name in ("postgres", "seaweedfs", "mlflow")
        }

    def mlflow_client(self):
        from mlflow.tracking import MlflowClient

        os.environ.update(
            {k: self.client[k] for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
        )
        return MlflowClient(self.url)

    def storage(self) -> optuna.storages.RDBStorage:
        return optuna.storages.RDBStorage(self.client["OPTUNA_STORAGE"])


@pytest.fixture(scope="module")
def stack():
    # Not under pytest's private tmp dirs: the postgres user must reach the cluster's folder.
    root = Path(tempfile.mkdtemp(prefix="leukml-stack-", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_", "OPTUNA_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["LEUKML_QUIET"] = "1"
    try:
        _up(root, env)
        yield Stack(root, env)
    finally:
        for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):  # set by mlflow_client()
            os.environ.pop(name, None)
        subprocess.run(["bash", str(LOCAL / "down.sh"), str(root)], timeout=120)
        shutil.rmtree(root, ignore_errors=True)


def _finish(proc: subprocess.Popen, timeout: float = 600) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-4000:]
    return out


def _run_id(output: str) -> str:
    return next(
        line.split()[1]
        for line in output.splitlines()
        if line.startswith("run ") and line.endswith(" finished")
    )


def _gated(stack: Stack, pause_at: int, *args: str, env: dict[str, str] | None = None, **popen):
    """``leukml *args`` whose first training pauses at epoch ``pause_at``: see ``_until_paused``."""
    return subprocess.Popen(
        [sys.executable, "-c", GATED, str(pause_at), *args],
        env=stack.child_env(**(env or {})),
        cwd=stack.root,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **popen,
    )


@pytest.fixture
def gated(stack):
    """Starts ``_gated`` processes; one still running when its test ends (a failed test) is killed,
    so it cannot go on training beside the next tests."""
    procs: list[subprocess.Popen] = []

    def start(pause_at: int, *args: str, **kwargs) -> subprocess.Popen:
        procs.append(_gated(stack, pause_at, *args, **kwargs))
        return procs[-1]

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=60)
        proc.stdin.close()
        proc.stdout.close()


def _until_paused(proc: subprocess.Popen, timeout: float = 600) -> str:
    """The output of a ``_gated`` process up to its pause; it holds there until ``_release``.
    Read from the pipe itself (not through the file object's buffer) so ``_finish`` loses nothing."""
    out, deadline = b"", time.monotonic() + timeout
    while PAUSED.encode() not in out:
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        chunk = os.read(proc.stdout.fileno(), 65536) if ready else b""
        if not chunk:
            raise AssertionError(
                f"no pause (exit code {proc.poll()}):\n{out.decode(errors='replace')[-4000:]}"
            )
        out += chunk
    return out.decode(errors="replace")


def _release(proc: subprocess.Popen) -> None:
    proc.stdin.write("go\n")
    proc.stdin.flush()


def test_up_is_loopback_only_and_rerunnable(stack):
    listening = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, timeout=60).stdout
    pids = stack.pids()
    ours = [line for line in listening.splitlines() if any(f"pid={p}," in line for p in pids.values())]
    assert len(ours) >= 3, listening
    assert all(" 127.0.0.1:" in line for line in ours), ours
    out = stack.up()  # a second up.sh finds everything running: starts nothing, rewrites env.sh
    assert stack.pids() == pids and "MLflow" not in out and "ready" in out


def test_training_run_lands_in_postgres_and_s3(stack, tiny_data):
    train = ["train", "--data-dir", str(tiny_data), "--epochs", "2", *TINY_ARGS]
    out = _finish(leukml_popen(train, stack.child_env(), stack.root))
    run_id = _run_id(out)

    import psycopg

    pg = stack.settings
    with psycopg.connect(
        host="127.0.0.1", port=int(pg["PG_PORT"]), user="leukml", password=pg["PG_PASSWORD"], dbname="mlflow"
    ) as conn:
        params = dict(conn.execute("SELECT key, value FROM params WHERE run_uuid = %s", (run_id,)))
        steps = [
            s
            for (s,) in conn.execute(
                "SELECT step FROM metrics WHERE run_uuid = %s AND key = 'train_loss' ORDER BY step", (run_id,)
            )
        ]
    assert params["arch"] == "vgg16" and params["epochs"] == "2"
    assert steps == [1, 2]

    s3 = boto3.client(
        "s3",
        endpoint_url=stack.client["MLFLOW_S3_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id=stack.client["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=stack.client["AWS_SECRET_ACCESS_KEY"],
    )
    keys = [
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket="leukml")
        for o in page.get("Contents", [])
    ]
    assert any(f"/{run_id}/artifacts/confusion_matrix/epoch_002.png" in k for k in keys), keys
    model_keys = [k for k in keys if "/models/m-" in k and k.endswith("/artifacts/MLmodel")]
    assert model_keys, keys

    # A second process loads the model through models:/ (artifacts come through the server).
    loader = textwrap.dedent(f"""
        import mlflow, numpy as np
        run = mlflow.get_run("{run_id}")
        [model] = mlflow.search_logged_models(experiment_ids=[run.info.experiment_id],
                                              filter_string="source_run_id = '{run_id}'",
                                              output_format="list")
        keras_model = mlflow.keras.load_model(f"models:/{{model.model_id}}")
        print("probs", keras_model.predict(np.zeros((1, 32, 32, 3), "float32"), verbose=0).shape)
    """)
    env = {k: v for k, v in stack.child_env().items() if not k.startswith("AWS_")}  # proxied
    done = subprocess.run(
        [sys.executable, "-c", loader], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "probs (1, 2)" in done.stdout


def test_authentication_refuses_strangers_and_readers_cannot_write(stack):
    api = f"{stack.url}/api/2.0/mlflow/experiments/search"
    body = {"max_results": 10}
    user = stack.client["MLFLOW_TRACKING_USERNAME"]
    assert requests.post(api, json=body, timeout=30).status_code == 401
    assert requests.post(api, json=body, auth=(user, "wrong"), timeout=30).status_code == 401
    assert requests.post(api, json=body, auth=("admin", "password1234"), timeout=30).status_code == 401
    assert (
        requests.post(
            api, json=body, auth=(user, stack.client["MLFLOW_TRACKING_PASSWORD"]), timeout=30
        ).status_code
        == 200
    )

    writer = stack.mlflow_client()
    experiment_id = writer.create_experiment("auth-check")
    writer.create_run(experiment_id)
    reader = (stack.credentials["MLFLOW_READER_USERNAME"], stack.credentials["MLFLOW_READER_PASSWORD"])
    runs = requests.post(
        f"{stack.url}/api/2.0/mlflow/runs/search",
        auth=reader,
        timeout=30,
        json={"experiment_ids": [experiment_id]},
    )
    assert runs.status_code == 200 and len(runs.json()["runs"]) == 1  # reading is allowed
    create = requests.post(
        f"{stack.url}/api/2.0/mlflow/runs/create",
        auth=reader,
        timeout=30,
        json={"experiment_id": experiment_id},
    )
    assert create.status_code == 403, create.text
    assert "permission denied" in create.text.lower()
    assert len(writer.search_runs([experiment_id])) == 1


def _trials(stack: Stack, study_name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=study_name, storage=stack.storage()).get_trials(deepcopy=False)


def _assert_grid_done(stack: Stack, study_name: str) -> list[optuna.trial.FrozenTrial]:
    complete = [t for t in _trials(stack, study_name) if t.state == optuna.trial.TrialState.COMPLETE]
    cells = [(t.params["arch"], t.params["optimizer"]) for t in complete]
    assert sorted(cells) == sorted({(a, o) for a in ("vgg16", "resnet50") for o in ("adam", "rmsprop")})
    client = stack.mlflow_client()
    for trial in complete:
        run = client.get_run(trial.user_attrs["mlflow_run_id"])
        assert run.info.status == "FINISHED"
        assert run.data.tags["trial_number"] == str(trial.number)
    return complete


SEARCH = ("search", "--mode", "grid", "--epochs", "2", "--heartbeat", "2", *TINY_ARGS)


def test_two_workers_share_one_grid(stack, tiny_data, gated):
    args = (*SEARCH, "--data-dir", str(tiny_data), "--study-name", "two-workers")
    # Each worker holds its first trial until both hold one: both claim a cell, whichever starts first.
    workers = [gated(1, *args) for _ in range(2)]
    heads = [_until_paused(w) for w in workers]
    running = [t for t in _trials(stack, "two-workers") if t.state == optuna.trial.TrialState.RUNNING]
    assert len(running) == 2 and running[0].params != running[1].params, running
    for worker in workers:
        _release(worker)
    outputs = [head + _finish(w) for head, w in zip(heads, workers, strict=True)]
    trials = _trials(stack, "two-workers")
    assert len(trials) == 4, [(t.number, t.state, t.params) for t in trials]  # no cell trained twice
    _assert_grid_done(stack, "two-workers")
    # both did some of the work: each worker's parent run has finished trial runs under it
    parents = [re.search(r"parent run (\w+)", out).group(1) for out in outputs]
    client = stack.mlflow_client()
    for parent in parents:
        experiment = client.get_run(parent).info.experiment_id
        children = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent}'")
        assert any(run.info.status == "FINISHED" for run in children), (parent, outputs)


def _wait_for(what: str, check, seconds: float = 240):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def test_killed_worker_trial_is_retried_by_the_survivor(stack, tiny_data, gated):
    args = (*SEARCH, "--data-dir", str(tiny_data), "--study-name", "crash", "--checkpoint-every", "1")
    doomed = gated(2, *args, start_new_session=True)  # after its checkpoint at epoch 1
    _until_paused(doomed)  # mid-trial, and never released: killed there
    client = stack.mlflow_client()
    experiment = client.get_experiment_by_name("leukml")
    [orphan] = client.search_runs(
        [experiment.experiment_id],
        filter_string="tags.study_name = 'crash' and tags.trial_number = '0' "
        "and attributes.status = 'RUNNING'",
    )
    [trial] = [t for t in _trials(stack, "crash") if t.state == optuna.trial.TrialState.RUNNING]
    assert trial.number == 0
    # checkpoints are stored beside the training: killed once epoch 1's is in the run
    _wait_for("the checkpoint", lambda: client.get_run(orphan.info.run_id).data.tags.get("checkpoint_epoch"))
    os.killpg(doomed.pid, signal.SIGKILL)
    doomed.wait(timeout=60)
    survivor = leukml_popen(args, stack.child_env(), stack.root)
    out = _finish(survivor)

    trials = _trials(stack, "crash")
    first = next(t for t in trials if t.number == 0)
    assert first.state == optuna.trial.TrialState.FAIL
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == 0]
    assert len(retried) == 1 and retried[0].state == optuna.trial.TrialState.COMPLETE, out
    assert retried[0].params == first.params
    _assert_grid_done(stack, "crash")
    assert len(trials) == 5  # 4 cells + the one retry
    # the retry continued the dead worker's run from its checkpoint instead of starting again
    assert retried[0].user_attrs["mlflow_run_id"] == orphan.info.run_id
    orphan = client.get_run(orphan.info.run_id)
    assert orphan.info.status == "FINISHED" and "error" not in orphan.data.tags
    assert "worker lost" in orphan.data.tags["error_before_resume"]
    assert orphan.data.tags["resumed_from_epoch"] == "1"
    assert orphan.data.tags["trial_number"] == str(retried[0].number)
    steps = [m.step for m in client.get_metric_history(orphan.info.run_id, "train_loss")]
    assert steps == [1, 2]


def test_server_restart_mid_run_loses_no_metric(stack, tiny_data, gated):
    epochs, pause_at = 12, 3
    args = ("train", "--data-dir", str(tiny_data), "--epochs", str(epochs), *TINY_ARGS)
    args += ("--experiment", "restart")
    # Every epoch's metrics are sent as it ends; the training waits after epoch 3 until the server is
    # down, so epochs 4-12 are sent to a dead server and must arrive once it is back.
    proc = gated(pause_at, *args, env={"LEUKML_METRIC_FLUSH_S": "0"})
    head = _until_paused(proc)
    client = stack.mlflow_client()

    def logged_steps():
        experiment = client.get_experiment_by_name("restart")
        runs = client.search_runs([experiment.experiment_id]) if experiment else []
        return runs and len(client.get_metric_history(runs[0].info.run_id, "train_loss")) == pause_at

    _wait_for("the first epochs on the server", logged_steps)
    server = int((stack.root / "pids" / "mlflow.pid").read_text())
    os.killpg(server, signal.SIGTERM)
    _wait_for(
        "the server to stop",
        lambda: subprocess.run(["kill", "-0", str(server)], capture_output=True, timeout=30).returncode != 0,
        60,
    )
    _release(proc)
    stack.up()  # starts only the MLflow server again, same port and secrets
    out = head + _finish(proc)

    run = client.get_run(_run_id(out))
    assert run.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")]
    assert sorted(steps) == list(range(1, epochs + 1))
