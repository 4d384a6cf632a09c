"""A failed training continues from its last checkpoint in the same MLflow run, exactly: the same
curves (each step once) and the same model as a run that was never interrupted."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import mlflow
import numpy as np
import pytest
from gates import GATED, PAUSED
from helpers import mlflow_store, run_leukml, tiny_config
from mlflow.tracking import MlflowClient

from leukml.tracking.mlflow_tracker import MlflowTracker
from leukml.training.checkpoint import Schedule
from leukml.training.config import TrainConfig
from leukml.training.sinks import FanoutSink, NullSink
from leukml.training.trainer import train
from leukml.workflows.train import tracked_train

RECIPES = {
    # dropout and dihedral draws: the generators' and the dropout seed's states must come back
    "head": {"dropout": 0.3, "augment": "dihedral", "val_fraction": 0.15, "keep": "best"},
    # the checkpoint falls in the fine-tuning stage: the whole model and its own optimizer
    "fine-tune": {"fine_tune_layers": 1, "fine_tune_from": 3, "val_fraction": 0.15},
}


class Crash(NullSink):
    """An observer that fails the training as epoch ``at`` ends (after the run has its metrics)."""

    def __init__(self, at: int) -> None:
        self.at = at

    def log_epoch(self, epoch, metrics) -> None:
        if epoch == self.at:
            raise RuntimeError(f"worker lost at epoch {epoch}")


def _curves(client: MlflowClient, run_id: str) -> dict[str, list[tuple[int, float]]]:
    run = client.get_run(run_id)
    return {
        key: sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))
        for key in run.data.metrics
    }


def _six_epochs(data_dir: Path, recipe: str) -> TrainConfig:
    """6 epochs, milestones 3 and 6, a checkpoint every 2 epochs."""
    return tiny_config(
        data_dir,
        epochs=6,
        eval_epochs="3,6",
        batch_size=8,
        checkpoint_every=2,
        **RECIPES[recipe],
    )


class Uninterrupted:
    """One store for the module and, in it, each recipe's uninterrupted six epochs, trained once
    (experiment ``resume-<recipe>``) for every test that compares with it or needs a FINISHED run."""

    def __init__(self, folder: Path, data_dir: Path) -> None:
        self.uri, self.data_dir, self.runs = mlflow_store(folder), data_dir, {}

    def run(self, recipe: str) -> str:
        if recipe not in self.runs:
            with pytest.MonkeyPatch.context() as mp:
                mp.setenv("LEUKML_QUIET", "1")
                config = _six_epochs(self.data_dir, recipe)
                self.runs[recipe], _ = tracked_train(MlflowTracker(f"resume-{recipe}", self.uri), config)
        return self.runs[recipe]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_data) -> Uninterrupted:
    return Uninterrupted(tmp_path_factory.mktemp("resume-store"), tiny_data)


@pytest.mark.parametrize("recipe", list(RECIPES))
@pytest.mark.slow
def test_resumed_run_equals_an_uninterrupted_one(recipe, uninterrupted, tmp_path, child_env, monkeypatch):
    monkeypatch.setenv("LEUKML_QUIET", "1")
    uri, experiment = uninterrupted.uri, f"resume-{recipe}"
    config = _six_epochs(uninterrupted.data_dir, recipe)
    whole = uninterrupted.run(recipe)
    with pytest.raises(RuntimeError, match="worker lost at epoch 5"):
        tracked_train(MlflowTracker(experiment, uri), config, observer=Crash(5))
    client = MlflowClient(uri)
    (broken,) = client.search_runs(
        [client.get_experiment_by_name(experiment).experiment_id], "attributes.status = 'FAILED'"
    )
    broken_id = broken.info.run_id
    # two runs of one configuration: told apart in the UI, each name saying its split and seed
    names = [client.get_run(whole).info.run_name, broken.info.run_name]
    assert names[0] != names[1] and all(n.startswith("vgg16-adam-image-s42-") for n in names), names
    assert broken.data.tags["checkpoint_epoch"] == "4"
    assert max(s for s, _ in _curves(client, broken_id)["train_loss"]) == 5  # logged past its checkpoint

    done = run_leukml(["train", "--resume", broken_id, "--tracking-uri", uri], child_env(), tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"run {broken_id} finished" in done.stdout

    resumed = client.get_run(broken_id)
    assert resumed.info.status == "FINISHED"
    assert resumed.data.tags["resumed_from_epoch"] == "4"
    assert "error" not in resumed.data.tags
    _assert_same_run(client, uri, whole, broken_id)


def _assert_same_run(client: MlflowClient, uri: str, whole: str, resumed: str) -> None:
    """The resumed run has every curve of the uninterrupted run, each step once, and its model."""
    expected, got = _curves(client, whole), _curves(client, resumed)
    assert set(got) == set(expected)
    for key, series in expected.items():
        steps = [s for s, _ in got[key]]
        assert steps == [s for s, _ in series], key  # every step once, none missing
        assert np.allclose([v for _, v in got[key]], [v for _, v in series], atol=1e-5, equal_nan=True), key

    images = np.random.default_rng(0).integers(0, 255, (6, 32, 32, 3)).astype(np.float32)
    mlflow.set_tracking_uri(uri)
    a = mlflow.keras.load_model(f"runs:/{whole}/model").predict_on_batch(images)
    b = mlflow.keras.load_model(f"runs:/{resumed}/model").predict_on_batch(images)
    assert np.allclose(np.asarray(a), np.asarray(b), atol=1e-5)


@pytest.mark.slow
def test_a_checkpoint_cut_off_while_stored_leaves_the_one_before(
    uninterrupted, tmp_path, child_env, monkeypatch
):
    """Checkpoints are stored while training goes on; the worker dies while the epoch-4 one is half
    uploaded (its arrays are in the store, its state is not). The run resumes from epoch 2's."""
    monkeypatch.setenv("LEUKML_QUIET", "1")
    uri = uninterrupted.uri
    config = _six_epochs(uninterrupted.data_dir, "head")
    whole = uninterrupted.run("head")
    upload, uploads = MlflowClient.log_artifacts, []

    def cut_off(client, run_id, local_dir, artifact_path=None):
        uploads.append(artifact_path)
        if len(uploads) < 2:
            return upload(client, run_id, local_dir, artifact_path)
        client.log_artifact(run_id, str(Path(local_dir) / "arrays.npz"), artifact_path)
        raise ConnectionError("connection reset while uploading state.json")

    monkeypatch.setattr(MlflowClient, "log_artifacts", cut_off)
    with pytest.raises(RuntimeError, match="worker lost at epoch 5"):
        tracked_train(MlflowTracker("cut", uri), config, observer=Crash(5))
    monkeypatch.setattr(MlflowClient, "log_artifacts", upload)
    assert uploads == ["checkpoint/a", "checkpoint/b"]
    client = MlflowClient(uri)
    (broken,) = client.search_runs(
        [client.get_experiment_by_name("cut").experiment_id], "attributes.status = 'FAILED'"
    )
    broken_id = broken.info.run_id
    assert broken.data.tags["checkpoint_epoch"] == "2"
    assert broken.data.tags["checkpoint_path"] == "checkpoint/a"

    done = run_leukml(["train", "--resume", broken_id, "--tracking-uri", uri], child_env(), tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    resumed = client.get_run(broken_id)
    assert resumed.data.tags["resumed_from_epoch"] == "2"
    assert resumed.data.tags["checkpoint_epoch"] == "4"  # its own checkpoint went to the other slot
    assert resumed.data.tags["checkpoint_path"] == "checkpoint/b"
    _assert_same_run(client, uri, whole, broken_id)


@pytest.mark.slow
def test_resume_refusals_are_one_line(uninterrupted, tiny_data, tmp_path, child_env, no_backend):
    """Said before the backend's import."""
    uri = uninterrupted.uri
    finished = uninterrupted.run("head")  # FINISHED
    config = tiny_config(tiny_data, epochs=3)
    with pytest.raises(RuntimeError):
        tracked_train(MlflowTracker("refused", uri), config, observer=Crash(1))
    client = MlflowClient(uri)
    (early,) = client.search_runs(
        [client.get_experiment_by_name("refused").experiment_id], "attributes.status = 'FAILED'"
    )
    cases = {
        finished: "the run is FINISHED; only FAILED or KILLED runs continue",
        early.info.run_id: "no checkpoint (it failed before its first, after 10 minutes of training)",
        "0" * 32: "no such run",
    }
    for run_id, expected in cases.items():
        done = run_leukml(
            ["train", "--resume", run_id, "--tracking-uri", uri], child_env(**no_backend), tmp_path
        )
        assert done.returncode == 1
        assert "Traceback" not in done.stderr
        assert expected in done.stderr.strip().splitlines()[-1], done.stderr
    mixed = run_leukml(
        ["train", "--resume", finished, "--epochs", "5", "--tracking-uri", uri],
        child_env(**no_backend),
        tmp_path,
    )
    assert mixed.returncode == 2
    assert "--resume continues the run with its own options; drop --epochs" in mixed.stderr


@pytest.mark.slow
def test_checkpoint_every_0_stores_none_and_resume_says_so(
    tiny_data, tmp_path, child_env, monkeypatch, no_backend
):
    """--checkpoint-every 0: no checkpoint in the run, even one that fails late; --resume of it
    says there is none to continue from, in one line."""
    monkeypatch.setenv("LEUKML_QUIET", "1")
    uri = mlflow_store(tmp_path)
    config = tiny_config(tiny_data, epochs=3, checkpoint_every=0)
    with pytest.raises(RuntimeError, match="worker lost at epoch 3"):
        tracked_train(MlflowTracker("never", uri), config, observer=Crash(3))
    client = MlflowClient(uri)
    (broken,) = client.search_runs(
        [client.get_experiment_by_name("never").experiment_id], "attributes.status = 'FAILED'"
    )
    broken_id = broken.info.run_id
    assert broken.data.params["checkpoint_every"] == "0"
    # epochs 1 and 2 ended before the failure: any period would have saved one of them
    assert max(s for s, _ in _curves(client, broken_id)["train_loss"]) == 3
    assert not {"checkpoint_epoch", "checkpoint_path"} & broken.data.tags.keys()
    assert not client.list_artifacts(broken_id, "checkpoint")
    assert [a.path for a in client.list_artifacts(broken_id) if a.path.startswith("checkpoint")] == []

    done = run_leukml(
        ["train", "--resume", broken_id, "--tracking-uri", uri], child_env(**no_backend), tmp_path
    )
    assert done.returncode == 1, done.stdout + done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert "the run saved no checkpoint" in done.stderr.strip().splitlines()[-1], done.stderr
    assert client.get_run(broken_id).info.status == "FAILED"  # left as it was


class Minutes(NullSink):
    """A clock the training advances by ``per_epoch`` minutes as each epoch ends: the time rule
    tested on any machine's speed."""

    def __init__(self, per_epoch: float) -> None:
        self.per_epoch, self.now = per_epoch, 0.0

    def __call__(self) -> float:
        return self.now

    def log_epoch(self, epoch, metrics) -> None:
        self.now += 60 * self.per_epoch


class Stored(NullSink):
    """Takes the checkpoints a training hands its sinks."""

    stores_checkpoints = True

    def __init__(self) -> None:
        self.snapshots = []

    def log_checkpoint(self, snapshot) -> None:
        self.snapshots.append(snapshot)


def test_schedule_by_time_and_by_epochs():
    """A checkpoint once 10 minutes passed since the last one, or on a multiple of --checkpoint-every,
    whichever comes first; none after the last epoch or an early stop; both 0: never."""
    clock = Minutes(4)

    def due_epochs(schedule: Schedule, epochs: int) -> list[int]:
        due = []
        for epoch in range(1, epochs + 1):
            clock.log_epoch(epoch, {})
            if schedule.due(SimpleNamespace(epoch=epoch, stopped_epoch=None)):
                due.append(epoch)
                schedule.taken()
        return due

    assert due_epochs(Schedule(0, 10, 9, clock), 9) == [3, 6]  # at 12 and 24 minutes; 9 is the last
    assert due_epochs(Schedule(5, 10, 9, clock), 9) == [3, 5, 8]  # 5 by epochs restarts the minutes
    assert due_epochs(Schedule(2, 0, 9, clock), 9) == [2, 4, 6, 8]
    assert due_epochs(Schedule(0, 0, 9, clock), 9) == [] and Schedule(0, 0, 9, clock).never
    stopped = Schedule(1, 10, 9, clock)
    assert not stopped.due(SimpleNamespace(epoch=4, stopped_epoch=4))


def test_checkpoints_by_minutes_of_training(tiny_data):
    """The training stores checkpoints by its clock: with 4 minutes an epoch, after epochs 3 and 6
    of 7; a run of seconds on the real clock stores none."""
    config = tiny_config(tiny_data, epochs=7)
    clock, stored = Minutes(4), Stored()
    train(config, FanoutSink(clock, stored), clock=clock)
    assert [s.epoch for s in stored.snapshots] == [3, 6]
    stored.snapshots.clear()
    train(config, stored)
    assert stored.snapshots == []


@pytest.mark.slow
def test_sigterm_stores_a_checkpoint_of_the_epoch_under_way(tiny_data, tmp_path, child_env):
    """SIGTERM in epoch 2 of a run that has stored no checkpoint yet (a run of seconds): epoch 2 ends,
    its checkpoint is stored, the run is FAILED (exit 143), and --resume continues it from there."""
    uri = mlflow_store(tmp_path)
    args = ["train", "--data-dir", str(tiny_data), "--weights", "none", "--image-size", "32"]
    args += ["--epochs", "4", "--batch-size", "8", "--tracking-uri", uri]
    # a bound no slow machine reaches: the test decides when the epoch ends
    env = child_env(LEUKML_TERM_GRACE_S="600")
    child = subprocess.Popen(
        [sys.executable, "-c", GATED, "2", *args],
        env=env,
        cwd=tmp_path,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for line in child.stdout:
            if line.startswith(PAUSED):
                break
        else:
            pytest.fail(f"no pause (exit code {child.wait(timeout=60)}): {child.stderr.read()[-3000:]}")
        child.send_signal(signal.SIGTERM)
        child.stdin.write("go\n")
        child.stdin.flush()
        _, stderr = child.communicate(timeout=300)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate(timeout=60)
    assert child.returncode == 143, stderr[-3000:]
    assert "terminated (SIGTERM)" in stderr.strip().splitlines()[-1]
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("leukml").experiment_id])
    assert run.info.status == "FAILED"
    assert run.data.tags["checkpoint_epoch"] == "2"
    assert max(s for s, _ in _curves(client, run.info.run_id)["train_loss"]) == 2

    done = run_leukml(["train", "--resume", run.info.run_id, "--tracking-uri", uri], env, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    resumed = client.get_run(run.info.run_id)
    assert resumed.info.status == "FINISHED"
    assert resumed.data.tags["resumed_from_epoch"] == "2"
    assert [s for s, _ in _curves(client, run.info.run_id)["train_loss"]] == [1, 2, 3, 4]
