"""The design card's command, `mlflow run` from a fresh folder, and what a user does next with its run
(`leukml report`, `leukml promote`): apart from tests/test_tracking.py so that this long test starts
early and the two test workers end together."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "-P",
    "weights=none",
    "-P",
    "image_size=32",
    "-P",
    "epochs=3",
    "-P",
    "eval_epochs=1,3",
    "-P",
    "batch_size=8",
]


def _only_run(tracking_uri: str, experiment: str = "leukml"):
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    return client, runs[0]


def _leukml(*args: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    """The installed `leukml` script, as a user runs it."""
    leukml = str(Path(sys.executable).parent / "leukml")
    return subprocess.run([leukml, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_mlflow_run_end_to_end(tmp_path, tiny_data, child_env):
    """The design card's command from a fresh folder, no experiment and no store named: the run goes
    to MLflow's Default experiment in ./mlflow.db, where `leukml report` and `leukml promote` (no
    option naming either) find it; promotion leaves the training run as it ran."""
    env = {k: v for k, v in child_env().items() if k != "MLFLOW_TRACKING_URI"}
    card = [
        "mlflow",
        "run",
        str(ROOT),
        "--env-manager",
        "local",
        "-P",
        "arch=resnet50",
        "-P",
        "optimizer=adam",
    ]
    proc = subprocess.run(
        [*card, "-P", f"data_dir={tiny_data}", "-P", "val_fraction=0.2", *TINY],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client, run = _only_run(env["MLFLOW_TRACKING_URI"], "Default")
    assert run.info.status == "FINISHED"
    assert run.data.params["arch"] == "resnet50" and run.data.params["optimizer"] == "adam"
    assert run.data.params["milestones"] == "1,3"
    assert run.data.tags["selection_on_test"] == "false"
    assert run.data.tags["keras_backend"] == "tensorflow"
    assert len(run.data.tags["dataset_fingerprint"]) == 16
    history = client.get_metric_history(run.info.run_id, "train_loss")
    assert [m.step for m in history] == [1, 2, 3]
    for name in ("val_accuracy", "train_accuracy", "val_loss"):
        assert len(client.get_metric_history(run.info.run_id, name)) == 3
    for name in ("test_accuracy", "test_f1_macro", "test_tp", "test_auc"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, name)] == [1, 3]
    m = run.data.metrics
    assert m["test_tp"] + m["test_tn"] + m["test_fp"] + m["test_fn"] == int(run.data.tags["n_test"])
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "confusion_matrix")}
    assert artifacts == {f"confusion_matrix/epoch_00{e}.{x}" for e in (1, 3) for x in ("png", "json")}
    top = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"curves.png", "config.json", "split_manifest.json"} <= top

    del env["MLFLOW_TRACKING_URI"]  # as the user's shell: nothing set, the folder's mlflow.db
    report = _leukml("report", "--out", "r", cwd=tmp_path, env=env)
    assert report.returncode == 0, report.stderr
    assert "from 1 run(s)" in report.stdout
    assert "# leukml report: experiment Default" in (tmp_path / "r" / "report.md").read_text()
    before = client.get_run(run.info.run_id)
    for tta in ("none", "dihedral"):
        promoted = _leukml(
            "promote", "--arch", "any", "--metric", "val_accuracy", "--tta", tta, cwd=tmp_path, env=env
        )
        assert promoted.returncode == 0, promoted.stderr
        assert "experiment Default: best of 1 run(s) under the image protocol" in promoted.stdout
    serve = promoted.stdout.splitlines()[-1]
    assert serve.startswith(
        f"serve: MLFLOW_TRACKING_URI=sqlite:///{tmp_path / 'mlflow.db'} mlflow models serve"
    )
    after = client.get_run(run.info.run_id)
    assert after.data.params == before.data.params and after.info.end_time == before.info.end_time
    assert after.data.metrics == before.data.metrics
    tags = dict(after.data.tags)
    assert tags.pop("registered_versions") == "leukml-all-classifier/1,leukml-all-classifier/2"
    assert tags == before.data.tags
    exp = client.get_experiment_by_name("Default")
    mine = client.search_logged_models(
        [exp.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'"
    )
    assert [m.name for m in mine] == ["model"]  # the classifiers live in the promotions' own runs
    promotions = client.search_runs([exp.experiment_id], "tags.leukml_promotion = 'true'")
    assert {p.data.tags["source_run_id"] for p in promotions} == {run.info.run_id} and len(promotions) == 2
    version = client.get_model_version("leukml-all-classifier", "2")
    assert (version.tags["ranked_protocol"], version.tags["ranked_runs"]) == ("image", "1")

    refused = subprocess.run(
        [*card, "-P", "experiment=elsewhere"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert refused.returncode != 0
    assert "mlflow run decides the experiment (mlflow run --experiment-name)" in refused.stderr

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    raw = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3)).astype(np.float32)
    probs = np.asarray(model.predict(raw))
    assert probs.shape == (4, 2)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
