"""Numbers with their uncertainty: intervals by subject, calibration, temperature scaling.

The tracked training on real cells is checked from what it logged, with formulas and a bootstrap
written here (not leukml's): every figure recomputed from the predictions file.
"""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from helpers import mlflow_store, tiny_config
from mlflow.tracking import MlflowClient
from sklearn.metrics import roc_auc_score

from leukml.analysis import calibration, uncertainty
from leukml.training.config import TrainConfig
from leukml.training.evaluation import classification_metrics

# ----------------------------------------------------------------------------- pure functions


def test_weighted_metrics_of_unit_weights_are_the_milestone_metrics():
    """The bootstrap's vectorised metrics at weight 1 per cell are the logged point metrics
    (scikit-learn's), ties in the scores and a class without cells included."""
    rng = np.random.default_rng(3)
    for labels in (rng.integers(0, 2, 60), np.ones(20, int)):
        p_all = np.round(rng.random(len(labels)), 1)  # many ties
        points, _ = classification_metrics(labels, p_all)
        ours = uncertainty.weighted_metrics(labels, p_all, np.ones((1, len(labels))))
        for name in uncertainty.CI_METRICS:
            np.testing.assert_allclose(ours[name][0], points[f"test_{name}"], rtol=1e-12, err_msg=name)


def test_wilson_interval_matches_published_values():
    """Wilson's interval (Newcombe 1998, table I): 0/10 -> [0, 0.2775], 5/10 -> [0.2366, 0.7634],
    10/10 -> [0.7225, 1]."""
    assert tuple(uncertainty.wilson(0, 10)) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert tuple(uncertainty.wilson(5, 10)) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert tuple(uncertainty.wilson(10, 10)) == pytest.approx((0.7225, 1.0), abs=1e-4)


def test_paired_difference_holds_zero_for_a_tie_and_not_for_a_clear_winner():
    rng = np.random.default_rng(0)
    subjects = [f"s{i // 10}" for i in range(200)]  # 20 subjects of 10 cells
    labels = np.array([i // 10 % 2 for i in range(200)])
    noisy = np.clip(labels * 0.3 + rng.random(200) * 0.7, 0, 1)  # about 70% right
    perfect = labels * 0.8 + 0.1
    point, interval, unit = uncertainty.paired_difference(labels, noisy, noisy, subjects, "accuracy")
    assert unit == "subjects" and point == 0.0 and tuple(interval) == (0.0, 0.0) and interval.holds(0.0)
    point, interval, _ = uncertainty.paired_difference(labels, perfect, noisy, subjects, "accuracy")
    assert point > 0.2 and interval.low > 0 and not interval.holds(0.0)


def test_temperature_fitted_on_over_confident_logits_lowers_the_validation_log_loss():
    """A model whose logits are 3x too large: the fitted temperature is near 3, the calibrated
    validation log loss is lower, and no cell changes its predicted class."""
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 2, 4000)
    labels = (rng.random(4000) < 1 / (1 + np.exp(-logits))).astype(int)  # well calibrated at T = 1
    over_confident = 1 / (1 + np.exp(-3 * logits))
    temperature = calibration.fit_temperature(labels, over_confident)
    calibrated = calibration.apply_temperature(over_confident, temperature)
    assert temperature == pytest.approx(3.0, rel=0.15)
    assert calibration.log_loss(labels, calibrated) < calibration.log_loss(labels, over_confident) - 0.05
    np.testing.assert_array_equal(calibrated > 0.5, over_confident > 0.5)
    assert calibration.ece(labels, calibrated) < calibration.ece(labels, over_confident)


def test_calibrating_without_a_validation_split_is_refused_in_one_line():
    with pytest.raises(ValueError, match="no validation split: add --val-fraction"):
        TrainConfig.of(calibrate="temperature")
    assert TrainConfig.of(calibrate="temperature", val_fraction=0.25).recipe.calibrates


# ----------------------------------------------------------------------------- a run on real cells


_REAL = TrainConfig.of(
    weights="none",
    image_size=32,
    epochs=2,
    eval_epochs=(1, 2),
    batch_size=16,
    split="subject",
    test_fraction=0.4,
    val_fraction=0.25,
    calibrate="temperature",
)


@pytest.fixture(scope="module")
def real_run(tmp_path_factory, real_sample):
    """The issue's training on real cells (subject split, validation 0.25, temperature), 2 epochs
    of 32 px with milestones 1 and 2: (tracking URI, run id, result)."""
    from leukml.tracking.mlflow_tracker import MlflowTracker
    from leukml.workflows.train import tracked_train

    uri = mlflow_store(tmp_path_factory.mktemp("real-run"))
    run_id, result = tracked_train(MlflowTracker(tracking_uri=uri), _REAL.replace(data_dir=str(real_sample)))
    return uri, run_id, result


def _file(uri: str, run_id: str, epoch: int, tmp_path) -> list[dict]:
    path = MlflowClient(uri).download_artifacts(run_id, f"predictions/epoch_{epoch:03d}.csv", str(tmp_path))
    with open(path) as f:
        return list(csv.DictReader(f))


def _metric_at(client: MlflowClient, run_id: str, name: str, step: int) -> float:
    (value,) = [m.value for m in client.get_metric_history(run_id, name) if m.step == step]
    return value


def _ece_by_hand(labels: np.ndarray, p_all: np.ndarray) -> float:
    """Guo et al.'s ECE, 10 bins of the predicted class's confidence, written out here."""
    confidence = np.where(p_all > 0.5, p_all, 1 - p_all)
    right = (p_all > 0.5) == (labels == 1)
    total = 0.0
    for m in range(10):
        low, high = m / 10, (m + 1) / 10
        inside = (confidence > low) & (confidence <= high) if m else (confidence <= high)
        if inside.any():
            total += inside.mean() * abs(right[inside].mean() - confidence[inside].mean())
    return total


@pytest.mark.slow
def test_every_milestone_metric_is_recomputed_from_its_predictions_file(real_run, tmp_path):
    uri, run_id, result = real_run
    client = MlflowClient(uri)
    prepared = result.prepared
    records = [prepared.dataset.records[i] for i in prepared.split.test]
    for epoch in (1, 2):
        rows = _file(uri, run_id, epoch, tmp_path / str(epoch))
        assert [r["file"] for r in rows] == [r.relpath for r in records]
        assert [r["subject"] for r in rows] == [r.subject for r in records]
        labels = np.array([int(r["label"]) for r in rows])
        assert labels.tolist() == [r.label for r in records]
        p_all = np.array([float(r["p_all"]) for r in rows])
        raw = np.array([float(r["p_all_uncalibrated"]) for r in rows])

        def logged(name: str, epoch: int = epoch) -> float:
            return _metric_at(client, run_id, name, epoch)

        assert np.mean((p_all > 0.5) == labels) == pytest.approx(logged("test_accuracy"), abs=1e-12)
        assert np.mean((raw > 0.5) == labels) == pytest.approx(logged("test_accuracy"), abs=1e-12)
        assert roc_auc_score(labels, p_all) == pytest.approx(logged("test_auc"), abs=1e-9)
        assert np.mean((p_all - labels) ** 2) == pytest.approx(logged("test_brier"), abs=1e-12)
        assert np.mean((raw - labels) ** 2) == pytest.approx(logged("test_brier_uncalibrated"), abs=1e-12)
        assert _ece_by_hand(labels, p_all) == pytest.approx(logged("test_ece"), abs=1e-12)
        assert _ece_by_hand(labels, raw) == pytest.approx(logged("test_ece_uncalibrated"), abs=1e-12)
        # the calibrated probabilities are the model's divided by the logged temperature
        t = logged("temperature")
        assert t > 0 and np.exp(np.log(raw / (1 - raw)) / t) == pytest.approx(p_all / (1 - p_all), rel=1e-6)
    tags = client.get_run(run_id).data.tags
    assert tags["test_ci_resampled"] == "subjects" and int(tags["test_ci_draws"]) >= 2000
    assert {a.path for a in client.list_artifacts(run_id, "reliability")} == {
        f"reliability/epoch_00{e}.png" for e in (1, 2)
    }


def _subject_bootstrap(labels, p_all, subjects, metric, draws=4000, seed=11) -> tuple[float, float]:
    """A cluster bootstrap written out plainly: draw as many subjects as there are, with
    replacement; pool their cells; compute the metric; the 2.5th and 97.5th percentiles."""
    rng = np.random.default_rng(seed)
    names = sorted(set(subjects))
    cells = {s: np.flatnonzero(np.asarray(subjects) == s) for s in names}
    values = []
    for _ in range(draws):
        idx = np.concatenate([cells[s] for s in rng.choice(names, size=len(names), replace=True)])
        y, p = labels[idx], p_all[idx]
        if metric == "accuracy":
            values.append(np.mean((p > 0.5) == y))
        elif len(set(y)) == 2:  # the AUC of a draw with one class is undefined: left out
            values.append(roc_auc_score(y, p))
    return tuple(np.percentile(values, [2.5, 97.5]))


def test_ece_by_hand_where_both_classes_are_predicted():
    """The confidence is the predicted class's: a hem call at p_all 0.1 is 90% sure (the real run's
    model above calls every cell ALL, where p_all is that confidence anyway)."""
    rng = np.random.default_rng(5)
    p_all = rng.random(300)
    labels = (rng.random(300) < p_all**2).astype(int)
    assert calibration.ece(labels, p_all) == pytest.approx(_ece_by_hand(labels, p_all), abs=1e-12)
    assert calibration.brier(labels, p_all) == pytest.approx(np.mean((p_all - labels) ** 2), abs=1e-12)


def test_logged_intervals_agree_with_a_subject_bootstrap_written_here(real_run, tmp_path):
    """The logged 95% intervals are those of resampling subjects, not cells: an independent
    bootstrap (its own draws, so within Monte Carlo error) finds the same ends."""
    uri, run_id, _ = real_run
    client = MlflowClient(uri)
    rows = _file(uri, run_id, 2, tmp_path)
    labels = np.array([int(r["label"]) for r in rows])
    p_all = np.array([float(r["p_all"]) for r in rows])
    subjects = [r["subject"] for r in rows]
    assert len(set(subjects)) >= 5
    for metric in ("accuracy", "auc"):
        low, high = _subject_bootstrap(labels, p_all, subjects, metric)
        logged = (_metric_at(client, run_id, f"test_{metric}_ci_{end}", 2) for end in ("low", "high"))
        assert tuple(logged) == pytest.approx((low, high), abs=0.04), metric
        point = _metric_at(client, run_id, f"test_{metric}", 2)
        assert low - 0.04 <= point <= high + 0.04


def test_predictions_file_reads_back_exactly():
    from leukml.analysis.predictions import predictions_csv, read_predictions
    from leukml.training.evaluation import Predictions

    p = np.array([1 / 3, 0.5, 1e-17, 0.9999999999])
    made = Predictions(
        ("a.bmp", "b.bmp", "c.bmp", "d.bmp"), ("1", None, "H2", "1"), np.array([1, 0, 0, 1]), p
    )
    back = read_predictions(predictions_csv(made))
    assert back.files == made.files and back.subjects == made.subjects
    np.testing.assert_array_equal(back.p_all, p)
    assert next(csv.reader(io.StringIO(predictions_csv(made)))) == ["file", "subject", "label", "p_all"]


@pytest.fixture(scope="module")
def promoted(real_run, tmp_path_factory):
    """``leukml promote`` of the real run against a rival on the same test set (another learning
    rate, same seed: same split): (the command's output, the promoted run's id)."""
    from click.testing import CliRunner

    from leukml.cli import main
    from leukml.tracking.mlflow_tracker import MlflowTracker
    from leukml.workflows.train import tracked_train

    uri, run_id, result = real_run
    rival, _ = tracked_train(
        MlflowTracker(tracking_uri=uri), _REAL.replace(data_dir=str(result.prepared.dataset.root), lr=3e-4)
    )
    done = CliRunner().invoke(main, ["promote", "--tracking-uri", uri, "--experiment", "leukml"])
    assert done.exit_code == 0, done.output
    (line,) = [line for line in done.output.splitlines() if line.startswith("run ")]
    chosen = line.split()[1]
    assert chosen in (run_id, rival)
    return done.output, chosen, rival if chosen == run_id else run_id


def test_promote_prints_the_interval_the_runner_up_and_a_paired_difference(promoted, real_run):
    output, chosen, other = promoted
    uri, _, _ = real_run
    client = MlflowClient(uri)
    metrics = client.get_run(chosen).data.metrics
    low, high = metrics["test_accuracy_ci_low"], metrics["test_accuracy_ci_high"]
    assert f"chosen: test_accuracy {metrics['test_accuracy']:.3f} [{low:.2f}, {high:.2f}]" in output
    assert f"runner-up: run {other}, test_accuracy" in output
    (line,) = [line for line in output.splitlines() if line.startswith("difference: ")]
    difference, interval = line.split()[1], line[line.index("[") + 1 : line.index("]")]
    their = client.get_run(other).data.metrics["test_accuracy"]
    assert float(difference) == pytest.approx(metrics["test_accuracy"] - their, abs=1e-3)
    ends = [float(x) for x in interval.split(",")]
    holds_zero = ends[0] <= 0 <= ends[1]
    assert ("not distinguishable from the runner-up" in output) == holds_zero
    (version,) = client.search_model_versions("name = 'leukml-all-classifier'")
    assert version.tags["metric_ci_low"] == f"{low:.6g}" and version.tags["runner_up_run_id"] == other
    assert version.tags["distinguishable_from_runner_up"] == str(not holds_zero).lower()


def test_the_promoted_model_serves_the_runs_calibrated_p_all(promoted, real_run, tmp_path):
    """The registered classifier carries the run's temperature (model config ``temperature``):
    for the test cells, the served ``p_all`` is the calibrated one of the run's predictions file at
    the model's epoch, not the model's own."""
    import mlflow
    import pandas as pd

    from leukml.serving.pyfunc import encode_file

    _, run_id, _ = promoted
    uri, _, result = real_run
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model("models:/leukml-all-classifier@champion")
    client = MlflowClient(uri)
    epoch = int(client.get_run(run_id).data.tags["model_epoch"])
    temperature = _metric_at(client, run_id, "temperature", epoch)
    assert model.model_config["temperature"] == temperature != 1.0
    rows = _file(uri, run_id, epoch, tmp_path)[:12]
    root = result.prepared.dataset.root
    served = model.predict(pd.DataFrame({"image": [encode_file(root / r["file"]) for r in rows]}))
    calibrated = np.array([float(r["p_all"]) for r in rows])
    raw = np.array([float(r["p_all_uncalibrated"]) for r in rows])
    np.testing.assert_allclose(served["p_all"].to_numpy(), calibrated, atol=1e-5)
    assert np.abs(served["p_all"].to_numpy() - raw).max() > 1e-3


def test_the_pages_evaluation_panel_shows_intervals_flags_and_calibration(promoted, real_run):
    """The page's panel reads the promoted version's source run: each number with its interval,
    the run's one-class flag at the served epoch first (with the AUC's reading where it is high),
    and whether p_all is calibrated (here: yes, with the temperature)."""
    from leukml.serving.app.evaluation import GOOD_AUC, evaluation
    from leukml.serving.app.source import resolve_version

    _, run_id, _ = promoted
    uri, _, _ = real_run
    client = MlflowClient(uri)
    run = client.get_run(run_id)
    told = evaluation(client, resolve_version(client, "models:/leukml-all-classifier@champion"))
    metrics, tags = run.data.metrics, run.data.tags
    shown = {label: (value, interval) for label, value, interval in told.numbers}
    low, high = metrics["test_accuracy_ci_low"], metrics["test_accuracy_ci_high"]
    assert shown["accuracy"] == (metrics["test_accuracy"], f"[{low:.2f}, {high:.2f}]")
    one_class = tags["model_epoch"] in tags.get("test_one_class_predicted_epochs", "").split(",")
    assert any(f.startswith("Degenerate on its own test set") for f in told.flags) == one_class
    good_ranking = one_class and metrics["test_auc"] >= GOOD_AUC
    assert any("0.5 threshold is not right" in f for f in told.flags) == good_ranking
    temperature = _metric_at(client, run_id, "temperature", int(tags["model_epoch"]))
    assert told.calibration.startswith("Its p_all is calibrated") and f"{temperature:.3g}" in told.calibration


def test_the_panel_flags_a_one_class_model_and_reads_its_high_auc_as_a_ranking():
    """The issue's case: every test cell called ALL at the served epoch, AUC 0.955: the panel says
    the model is degenerate and that the ranking is good but the threshold is not; a one-class
    milestone that is not the served epoch is no flag; a flat loss is."""
    from types import SimpleNamespace

    from leukml.serving.app.evaluation import _flags

    def run(**tags):
        return SimpleNamespace(info=SimpleNamespace(run_id="r"), data=SimpleNamespace(params={}, tags=tags))

    collapsed = run(
        model_epoch="30", test_one_class_predicted_epochs="10,30", test_one_class_predicted_class="ALL"
    )
    flags = _flags(collapsed, {"test_auc": 0.955})
    assert len(flags) == 2 and "called every test cell ALL" in flags[0] and "AUC is 0.955" in flags[1]
    assert _flags(collapsed, {"test_auc": 0.5}) == flags[:1]
    assert _flags(run(model_epoch="30", test_one_class_predicted_epochs="10"), {"test_auc": 0.955}) == ()
    (flat,) = _flags(run(model_epoch="5", warning_flat_loss="the training loss stayed at 0.6931"), {})
    assert "stayed at 0.6931" in flat


def test_a_kept_best_epoch_between_milestones_gets_its_own_temperature(tmp_path, tiny_data):
    """With --keep best the logged model may be of an epoch that is no milestone: its temperature
    (what promote serves) is fitted after training on that model's validation predictions."""
    from leukml.tracking.mlflow_tracker import MlflowTracker
    from leukml.workflows.train import tracked_train

    uri = mlflow_store(tmp_path)
    config = tiny_config(
        tiny_data,
        epochs=4,
        eval_epochs=(4,),
        val_fraction=0.25,
        keep="best",
        calibrate="temperature",
        lr=3e-3,
    )
    run_id, result = tracked_train(MlflowTracker(tracking_uri=uri), config)
    client = MlflowClient(uri)
    steps = {m.step: m.value for m in client.get_metric_history(run_id, "temperature")}
    val = result.prepared.split.val
    probs = np.asarray(result.network.model.predict_on_batch(result.prepared.images[val].astype(np.float32)))
    expected = calibration.fit_temperature(result.prepared.dataset.labels[val], probs[:, 1])
    assert result.model_epoch != 4, "the premise: the best epoch is not the milestone"
    assert steps[result.model_epoch] == pytest.approx(expected, rel=1e-3) and 4 in steps
    assert client.get_run(run_id).data.tags["model_epoch"] == str(result.model_epoch)
