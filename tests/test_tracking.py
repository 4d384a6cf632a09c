"""Training tracked in MLflow, read back the way a user's tools would read it."""

from __future__ import annotations

import csv
import dataclasses
import io
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import h5py
import mlflow
import numpy as np
import pytest
from click.testing import CliRunner
from helpers import mlflow_store, run_leukml, tiny_config
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

import leukml.tracking.recovery
import leukml.tracking.sink
import leukml.tracking.writer
import leukml.training.prepared
import leukml.training.trainer
from leukml import CLASS_NAMES
from leukml.cli import main
from leukml.tracking.mlflow_tracker import MlflowTracker
from leukml.training.config import TrainConfig
from leukml.training.sinks import ConsoleSink, NullSink
from leukml.workflows.train import tracked_train

ROOT = Path(__file__).resolve().parents[1]
HANG_S = 600  # how long a test waits on a background thread at most: only a hang reaches it
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


# the design card's command: no experiment and no store named
CARD = ["mlflow", "run", str(ROOT), "--env-manager", "local", "-P", "arch=resnet50", "-P", "optimizer=adam"]


@dataclasses.dataclass(frozen=True)
class CardRun:
    folder: Path  # where it ran: its ./mlflow.db holds the run
    env: dict[str, str]  # as the user's shell: no MLFLOW_TRACKING_URI
    client: MlflowClient
    run: mlflow.entities.Run  # as it finished, before any promotion


@pytest.fixture(scope="module")
def card_run(tmp_path_factory, tiny_data, child_env) -> CardRun:
    """The design card's command run once from a fresh folder: the run goes to MLflow's Default
    experiment in ./mlflow.db."""
    folder = tmp_path_factory.mktemp("card")
    env = {k: v for k, v in child_env().items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.run(
        [*CARD, "-P", f"data_dir={tiny_data}", "-P", "val_fraction=0.2", *TINY],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    client, run = _only_run(f"sqlite:///{folder / 'mlflow.db'}", "Default")
    return CardRun(folder, env, client, run)


@pytest.mark.slow
def test_mlflow_run_logs_the_training_to_the_default_experiment(card_run):
    """Params, tags, per-epoch curves, per-milestone test metrics and the run's artifacts."""
    client, run = card_run.client, card_run.run
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


@pytest.mark.slow
def test_report_and_promote_find_the_run_and_leave_it_as_it_ran(card_run):
    """`leukml report` and `leukml promote`, no option naming the experiment or the store, find
    the run in the folder's mlflow.db; promotion changes nothing of the training run but the
    versions it registered, and a report after it still reads the one training."""
    env, folder, client, run = card_run.env, card_run.folder, card_run.client, card_run.run
    report = run_leukml(["report", "--out", "r"], env, folder)
    assert report.returncode == 0, report.stderr
    assert "from 1 run(s)" in report.stdout
    assert "# leukml report: experiment Default" in (folder / "r" / "report.md").read_text()
    before = client.get_run(run.info.run_id)
    for tta in ("none", "dihedral"):
        promoted = run_leukml(
            ["promote", "--arch", "any", "--metric", "val_accuracy", "--tta", tta], env, folder
        )
        assert promoted.returncode == 0, promoted.stderr
        assert "experiment Default: best of 1 run(s) under the image protocol" in promoted.stdout
        # the input example is a cell the model accepts: MLflow's check of it says nothing
        assert "Got error" not in promoted.stderr and "not a usable image" not in promoted.stderr
    serve = promoted.stdout.splitlines()[-1]
    assert serve.startswith(
        f"serve: MLFLOW_TRACKING_URI=sqlite:///{folder / 'mlflow.db'} mlflow models serve"
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
    # folded under the training they promote in the UI; the report still reads the one training
    assert {p.data.tags["mlflow.parentRunId"] for p in promotions} == {run.info.run_id}
    again = run_leukml(["report", "--out", "r2"], env, folder)
    assert again.returncode == 0 and "from 1 run(s)" in again.stdout, again.stderr
    version = client.get_model_version("leukml-all-classifier", "2")
    assert (version.tags["ranked_protocol"], version.tags["ranked_runs"]) == ("image", "1")


@pytest.mark.slow
def test_mlflow_run_refuses_an_experiment_parameter(tmp_path, child_env):
    """mlflow run names the experiment; the card's `experiment` parameter is refused, saying so."""
    env = {k: v for k, v in child_env().items() if k != "MLFLOW_TRACKING_URI"}
    refused = subprocess.run(
        [*CARD, "-P", "experiment=elsewhere"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert refused.returncode != 0
    assert "mlflow run decides the experiment (mlflow run --experiment-name)" in refused.stderr


@pytest.mark.slow
def test_the_logged_model_predicts_raw_pixels_through_pyfunc(card_run):
    """The run's model loads as a pyfunc and answers raw 0..255 pixels with probabilities."""
    mlflow.set_tracking_uri(f"sqlite:///{card_run.folder / 'mlflow.db'}")
    model = mlflow.pyfunc.load_model(f"runs:/{card_run.run.info.run_id}/model")
    raw = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3)).astype(np.float32)
    probs = np.asarray(model.predict(raw))
    assert probs.shape == (4, 2)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory, tiny_data):
    """One tracked training of 2 epochs (milestones 1 and 2) on its own store, for the tests that
    read what it logged: (tracking URI, run id, the training's result)."""
    uri = mlflow_store(tmp_path_factory.mktemp("two-epochs"))
    config = tiny_config(tiny_data, epochs=2, eval_epochs=(1, 2), batch_size=8)
    run_id, result = tracked_train(MlflowTracker(tracking_uri=uri), config)
    return uri, run_id, result


@pytest.mark.slow
def test_logged_model_carries_a_servable_example(tmp_path, two_epochs):
    """MLflow's own serving-input check is off (leukml.tracking.mlflow_compat.KerasFlavor), so this is it: the
    example and signature that were logged load back and predict through pyfunc."""
    uri, run_id, result = two_epochs
    mlflow.set_tracking_uri(uri)
    uri_model = f"runs:/{run_id}/model"
    local = mlflow.artifacts.download_artifacts(uri_model, dst_path=str(tmp_path / "dl"))
    example = mlflow.models.Model.load(local).load_input_example(local)
    assert example.shape == (1, 32, 32, 3) and example.dtype == np.float32
    # made while the training ran, from the image file: the first test image as the training saw it
    first = result.prepared.images[result.prepared.split.test[:1]]
    np.testing.assert_array_equal(example, first.astype(np.float32))
    served = np.asarray(mlflow.pyfunc.load_model(uri_model).predict(example))
    direct = np.asarray(result.network.model.predict_on_batch(example))
    np.testing.assert_allclose(served, direct, rtol=1e-5, atol=1e-6)
    # served without the optimizer's state (a checkpoint's business), which the training keeps
    (keras_file,) = Path(local).rglob("*.keras")
    with (
        zipfile.ZipFile(keras_file) as archive,
        h5py.File(io.BytesIO(archive.read("model.weights.h5"))) as h5,
    ):
        saved: list[str] = []
        h5.visit(saved.append)
    assert saved and not [name for name in saved if "optimizer" in name]
    assert result.network.head.optimizer is not None and result.network.head.compiled
    # the signature written from the model's shapes is the one MLflow infers from a prediction
    assert mlflow.models.get_model_info(uri_model).signature == infer_signature(example, direct)
    client = MlflowClient(uri)
    assert {a.path for a in client.list_artifacts(run_id, "confusion_matrix")} == {
        f"confusion_matrix/epoch_00{e}.{x}" for e in (1, 2) for x in ("png", "json")
    }
    assert client.get_run(run_id).info.status == "FINISHED"
    # the logged model carries the run's metrics of the epoch it is from (the models table's)
    model = client.get_logged_model(mlflow.models.get_model_info(uri_model).model_id)
    linked = {m.key: m for m in model.metrics}
    assert result.model_epoch == 2 and {m.step for m in model.metrics} == {2}
    assert {"train_loss", "val_accuracy", "test_accuracy", "test_f1_weighted"} <= set(linked)
    assert linked["test_accuracy"].value == result.milestones[2]["test_accuracy"]


CHALLENGE_METRICS = ("test_f1_weighted", "test_balanced_accuracy", "test_sensitivity", "test_specificity")


def test_milestones_log_the_challenge_metrics_and_a_per_subject_table(tmp_path, two_epochs):
    """What a hematologist asks for first: each milestone logs the C-NMC challenge's metrics and
    a per-subject table (one row per test subject, its cells adding up to the test split) with
    its figure."""
    uri, run_id, result = two_epochs
    client = MlflowClient(uri)
    for name in CHALLENGE_METRICS:
        assert [m.step for m in client.get_metric_history(run_id, name)] == [1, 2], name
    m = client.get_run(run_id).data.metrics
    assert m["test_sensitivity"] == pytest.approx(m["test_tp"] / (m["test_tp"] + m["test_fn"]))
    assert m["test_specificity"] == pytest.approx(m["test_tn"] / (m["test_tn"] + m["test_fp"]))
    assert {a.path for a in client.list_artifacts(run_id, "per_subject")} == {
        f"per_subject/epoch_00{e}.{x}" for e in (1, 2) for x in ("csv", "png")
    }
    with open(client.download_artifacts(run_id, "per_subject/epoch_002.csv", str(tmp_path))) as f:
        table = list(csv.DictReader(f))
    prepared = result.prepared
    test = [prepared.dataset.records[i] for i in prepared.split.test]
    assert sorted(row["subject"] for row in table) == sorted({r.subject for r in test})
    assert {row["subject"]: row["class"] for row in table} == {r.subject: CLASS_NAMES[r.label] for r in test}
    assert (
        sum(int(row["cells"]) for row in table)
        == len(test)
        == int(client.get_run(run_id).data.tags["n_test"])
    )
    right = sum(int(row["cells"]) * float(row["accuracy"]) for row in table)
    assert right / len(test) == pytest.approx(m["test_accuracy"], abs=1e-5)


def test_metric_flush_interval_is_set_by_the_environment(tmp_path, tiny_data, monkeypatch):
    """LEUKML_METRIC_FLUSH_S=0: each epoch's metrics are in the store while the next epoch runs."""
    uri = mlflow_store(tmp_path)
    made, sent = [], []  # each sink's flush interval; the steps of each metric batch it sent

    class RecordedSink(leukml.tracking.sink.MlflowSink):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            made.append(self.flush_s)

        def in_background(self, fn, *args) -> None:
            if getattr(fn, "__name__", None) == "log_batch":
                sent.append({metric.step for metric in args[1]})
            super().in_background(fn, *args)

    class WaitForEpoch1(NullSink):
        def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
            if epoch == 2:  # nothing more is queued until this returns: epoch 1 must be out already
                assert {1} in sent, f"epoch 1's metrics were held back, not sent: batches {sent}"
                # sent: the background thread writes them; the bound only ends a write that hangs
                run_id, deadline = mlflow.active_run().info.run_id, time.monotonic() + HANG_S
                while not MlflowClient(uri).get_metric_history(run_id, "train_loss"):
                    assert time.monotonic() < deadline, f"epoch 1's metrics, sent, not stored in {HANG_S} s"
                    time.sleep(0.05)

    monkeypatch.setattr(leukml.tracking.sink, "MlflowSink", RecordedSink)
    monkeypatch.setenv("LEUKML_METRIC_FLUSH_S", "0")
    config = tiny_config(tiny_data, epochs=2)
    tracked_train(MlflowTracker(tracking_uri=uri), config, observer=WaitForEpoch1())
    assert made == [0.0]
    monkeypatch.setenv("LEUKML_METRIC_FLUSH_S", "soon")
    with pytest.raises(ValueError, match="LEUKML_METRIC_FLUSH_S='soon'; use a number of seconds >= 0"):
        tracked_train(MlflowTracker(tracking_uri=uri), config)
    _only_run(uri)  # the refused one made no run
    monkeypatch.delenv("LEUKML_METRIC_FLUSH_S")
    assert leukml.tracking.sink.metric_flush_s() == leukml.tracking.sink.METRIC_FLUSH_S


def test_failed_upload_fails_the_run(tmp_path, tiny_data, monkeypatch):
    """A figure that cannot be uploaded (background thread) is an error of the run, not lost."""
    import leukml.analysis.raster

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(leukml.analysis.raster, "curves_image", broken)
    uri = mlflow_store(tmp_path)
    config = tiny_config(tiny_data, epochs=1)
    with pytest.raises(OSError, match="disk full"):
        tracked_train(MlflowTracker(tracking_uri=uri), config)
    _, run = _only_run(uri)
    assert run.info.status == "FAILED"
    assert "disk full" in run.data.tags["error"]


def test_interrupted_training_is_failed_not_running(tmp_path, tiny_data, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(leukml.training.trainer, "fit", interrupt)
    uri = mlflow_store(tmp_path)
    config = tiny_config(tiny_data, epochs=1)
    with pytest.raises(KeyboardInterrupt):
        tracked_train(MlflowTracker(tracking_uri=uri), config)
    _, run = _only_run(uri)
    assert run.info.status == "FAILED"
    assert run.data.tags["error"].startswith("KeyboardInterrupt")


@pytest.mark.slow
def test_jax_backend_training(tmp_path, tiny_data, child_env):
    env = child_env(MLFLOW_TRACKING_URI=mlflow_store(tmp_path), KERAS_BACKEND="jax")
    core = (
        "import sys, leukml.training.trainer, leukml.model.networks, leukml.data.imagecache; "
        "bad = {'tensorflow', 'mlflow'} & set(sys.modules); assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", core], env=env, check=True, timeout=120)
    proc = subprocess.run(
        [
            "leukml",
            "train",
            "--data-dir",
            str(tiny_data),
            "--weights",
            "none",
            "--image-size",
            "32",
            "--epochs",
            "2",
            "--batch-size",
            "8",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    _, run = _only_run(env["MLFLOW_TRACKING_URI"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["keras_backend"] == "jax"
    assert 0.0 <= run.data.metrics["test_accuracy"] <= 1.0


@pytest.mark.slow
def test_short_training_on_the_real_sample(tmp_path, real_sample):
    uri = mlflow_store(tmp_path)
    result = CliRunner().invoke(
        main,
        [
            "train",
            "--data-dir",
            str(real_sample),
            "--weights",
            "none",
            "--image-size",
            "32",
            "--epochs",
            "2",
            "--split",
            "subject",
            "--val-fraction",
            "0.1",
            "--tracking-uri",
            uri,
        ],
    )
    assert result.exit_code == 0, result.output
    _, run = _only_run(uri)
    assert run.info.status == "FINISHED"
    assert run.data.tags["selection_on_test"] == "false"
    assert int(run.data.tags["n_images"]) == 310


def test_one_class_test_split_is_tagged_and_its_auc_is_nan(tmp_path, tiny_data, capsys):
    """A test split with one class trains (it used to crash or silently drop test_auc): tagged,
    warned about, AUC logged as NaN, and report and promote read the run without breaking."""
    from leukml.analysis.report import write_report
    from leukml.serving.registry import promote
    from leukml.tracking.reader import fetch_runs

    uri = mlflow_store(tmp_path)
    config = tiny_config(tiny_data, epochs=1, test_fraction=0.03)
    run_id, _ = tracked_train(MlflowTracker(tracking_uri=uri), config, observer=ConsoleSink())
    assert "warning: the test split has only all images" in capsys.readouterr().err
    _, run = _only_run(uri)
    assert run.data.tags["test_one_class"] == "true" and run.data.tags["selection_on_test"] == "true"
    assert np.isnan(run.data.metrics["test_auc"]) and run.data.metrics["test_accuracy"] in (0.0, 1.0)
    assert np.isnan(run.data.metrics["test_specificity"]) and np.isnan(
        run.data.metrics["test_balanced_accuracy"]
    )
    md = write_report(fetch_runs("leukml", tracking_uri=uri), tmp_path / "report", "t").read_text()
    assert "its test split has one class" in md
    with pytest.raises(ValueError, match="'test_auc' is NaN"):
        promote("leukml", metric="test_auc", allow_test_selection=True, tracking_uri=uri)


def test_selection_on_test_is_read_from_the_split_made(tmp_path, tiny_data, monkeypatch):
    """Whatever the options asked for, a split without validation images means validation on
    test: the run's tag, its curves and the search's objective all say so (one definition)."""
    from leukml.experiments.search import SearchConfig
    from leukml.workflows.search import tracked_search

    real = leukml.training.prepared.split_records

    def no_val(records, config):
        return dataclasses.replace(real(records, config), val=np.array([], dtype=np.int64))

    monkeypatch.setattr(leukml.training.prepared, "split_records", no_val)
    uri = mlflow_store(tmp_path)
    base = tiny_config(tiny_data, epochs=1, val_fraction=0.2)
    search = SearchConfig(
        base=base, archs=("vgg16",), optimizers=("adam",), storage=f"sqlite:///{tmp_path / 'o.db'}"
    )
    parent, study = tracked_search(MlflowTracker(tracking_uri=uri), search)
    client = MlflowClient(uri)
    (child,) = client.search_runs(
        [client.get_experiment_by_name("leukml").experiment_id], f"tags.mlflow.parentRunId = '{parent}'"
    )
    assert child.data.tags["selection_on_test"] == "true"
    (trial,) = study.trials
    assert trial.user_attrs["selection_metric"] == "test_accuracy"
    assert trial.value == child.data.metrics["test_accuracy"]


class _WaitForSystemMetrics(NullSink):
    """Holds the training at its first epoch until MLflow's monitor has logged a sample of the
    machine into the run (a gate the test controls, not a run long enough), failing the training
    if none comes within ``HANG_S``; ``watch_s``: only watch that long (a run that logs none)."""

    def __init__(self, uri: str, watch_s: float | None = None) -> None:
        self.client, self.seen, self.watch_s = MlflowClient(uri), set(), watch_s

    def log_epoch(self, epoch, metrics) -> None:
        if epoch != 1:
            return
        run_id = mlflow.active_run().info.run_id
        deadline = time.monotonic() + (self.watch_s or HANG_S)
        while not self.seen and time.monotonic() < deadline:
            self.seen = {k for k in self.client.get_run(run_id).data.metrics if k.startswith("system/")}
            time.sleep(0.2)
        assert self.seen or self.watch_s, f"MLflow's monitor logged no system/ metric in {HANG_S} s"


@pytest.mark.slow
def test_system_metrics_are_logged_only_when_asked(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.5")
    uri = mlflow_store(tmp_path)
    base = {"data_dir": str(tiny_data), "weights": "none", "image_size": 32, "epochs": 2, "batch_size": 8}
    gate = _WaitForSystemMetrics(uri)
    tracker = MlflowTracker("sys", uri)
    watched, _ = tracked_train(tracker, TrainConfig.of(system_metrics=True, **base), observer=gate)
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= gate.seen
    # unasked, none in 6 sampling intervals (a run that samples shows one within the first)
    unasked = _WaitForSystemMetrics(uri, watch_s=3)
    plain, _ = tracked_train(tracker, TrainConfig.of(**base), observer=unasked)
    client = MlflowClient(uri)
    assert not [k for k in client.get_run(plain).data.metrics if k.startswith("system/")]
    assert client.get_run(watched).data.params["system_metrics"] == "true"


def test_a_study_link_written_by_two_workers_at_once_is_retried_not_fatal(tmp_path, monkeypatch):
    """On PostgreSQL two workers' first writes of a parent's link tag collide (HTTP 400): the loser
    writes again, and a link that cannot be written does not fail the search."""
    mlflow.set_tracking_uri(mlflow_store(tmp_path))
    mlflow.set_experiment("links")
    original, calls = MlflowClient.set_tag, []

    def collide_once(self, run_id, key, value, *args, **kwargs):
        calls.append(key)
        if len(calls) == 1:
            raise mlflow.exceptions.MlflowException("duplicate key value violates unique constraint")
        return original(self, run_id, key, value, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "set_tag", collide_once)
    with mlflow.start_run(tags={"study_name": "s", "leukml_search": "true"}) as run:
        assert leukml.tracking.recovery.link_study_parents("s") == [run.info.run_id]
    assert MlflowClient().get_run(run.info.run_id).data.tags["study_parent_runs"] == run.info.run_id

    def always(self, *args, **kwargs):
        raise mlflow.exceptions.MlflowException("still colliding")

    monkeypatch.setattr(MlflowClient, "set_tag", always)
    with mlflow.start_run(tags={"study_name": "t", "leukml_search": "true"}):
        leukml.tracking.recovery.link_study_parents("t")  # no exception: the search goes on


def _documented(name: str, page: str) -> bool:
    """A name a run writes is on the runs reference: as itself, or as the pattern it follows
    (``skipped_<reason>``, ``confusion_matrix/epoch_NNN.png``, ``test_<metric>_ci_low`` of a
    metric the page lists)."""
    generic = re.sub(r"_\d{3}\.", "_NNN.", name)
    if name.startswith("skipped_"):
        generic = "skipped_<reason>"
    if interval := re.fullmatch(r"test_(\w+)_ci_(low|high)", name):  # of a metric named there too
        generic = f"test_<metric>_ci_{interval[2]}" if f"`{interval[1]}`" in page else name
    stem = generic.rsplit(".", 1)[0]  # an artifact listed as `name.png`, `.json`
    return f"`{name}`" in page or f"`{generic}`" in page or ("." in generic and f"`{stem}." in page)


def test_the_runs_reference_names_what_a_training_writes(two_epochs, runs_reference):
    """docs/reference/runs.md names every tag, metric and artifact of a real training run; its
    params are the training options' fields or named there too."""
    from leukml.common.options import options_of

    uri, run_id, _ = two_epochs
    client = MlflowClient(uri)
    run = client.get_run(run_id)
    page = runs_reference
    fields = {o.name for o in options_of(TrainConfig)}
    names = {
        "tag": [t for t in run.data.tags if not t.startswith("mlflow.")],
        "metric": list(run.data.metrics),
        "param": [p for p in run.data.params if p not in fields],
    }
    folders, names["artifact"] = [None], []
    while folders:
        for entry in client.list_artifacts(run_id, folders.pop()):
            (folders if entry.is_dir else names["artifact"]).append(entry.path)
    names["artifact"] += ["model"]  # the logged model, beside the run's artifacts
    assert len(names["tag"]) > 20 and len(names["metric"]) > 15
    missing = {kind: [n for n in found if not _documented(n, page)] for kind, found in names.items()}
    assert not any(missing.values()), f"not on docs/reference/runs.md: {missing}"
