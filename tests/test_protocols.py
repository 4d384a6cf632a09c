"""The C-NMC challenge protocol and cross-validation by subject, on synthetic data laid out as the
official release: training folds, a labelled preliminary test set with its CSV, an unlabelled
final test set."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers import LEUKML, TINY_ARGS, mlflow_store
from mlflow.tracking import MlflowClient

from leukml.data.discovery import discover
from leukml.data.splits import SplitConfig, split_records
from leukml.data.synth import FINAL_DIR, PRELIM_CSV, SynthConfig, write_synthetic
from leukml.experiments.protocols import CvConfig, cv_summary

TINY = [*TINY_ARGS, "--epochs", "2"]


@pytest.fixture(scope="module")
def release(tmp_path_factory, leukml_cache) -> Path:
    """48 training cells of 6 subjects in 3 folds, 20 labelled preliminary cells and 6 final cells,
    each test set of 4 new subjects."""
    config = SynthConfig(n_all=32, n_hem=16, subjects=6, size=48, seed=11, n_prelim=20, n_final=6)
    return write_synthetic(tmp_path_factory.mktemp("release"), config)


def _subjects(records, idx) -> set[str]:
    return {records[i].subject for i in idx}


def test_official_split_tests_on_the_preliminary_set_and_no_test_subject_trains(release):
    dataset = discover(release)
    records = dataset.records
    rows = list(csv.DictReader((release / "C-NMC_Leukemia" / PRELIM_CSV).read_text().splitlines()))
    split = split_records(records, SplitConfig(method="official", val_fraction=0.2))
    test = {records[i].relpath.rsplit("/", 1)[1]: records[i] for i in split.test}
    # the test side is exactly the labelled preliminary set, its subjects from Patient_ID
    assert sorted(test) == sorted(r["new_names"] for r in rows)
    for row in rows:
        assert test[row["new_names"]].subject == row["Patient_ID"].split("_")[1].upper()
        assert test[row["new_names"]].label == int(row["labels"])
    # every other labelled image trains or validates; none of a test subject
    assert len(split.train) + len(split.val) + len(split.test) == len(records)
    assert not (_subjects(records, split.train) | _subjects(records, split.val)) & _subjects(
        records, split.test
    )
    assert not _subjects(records, split.train) & _subjects(records, split.val)  # validation by subject
    assert split.warning is None
    # the unlabelled final set is not used, and is named as unlabelled
    assert not any(r.relpath.startswith(f"C-NMC_Leukemia/{FINAL_DIR}") for r in records)
    assert sum(s.kind == "unlabelled" for s in dataset.skipped) == 6


def test_official_split_leaves_out_training_images_of_a_test_subject(release, tmp_path):
    """A copy of a preliminary subject's cell in a training fold must not train."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(release, data)
    rows = list(csv.DictReader((data / "C-NMC_Leukemia" / PRELIM_CSV).read_text().splitlines()))
    leaked = rows[0]
    prelim = data / "C-NMC_Leukemia" / "validation_data" / "C-NMC_test_prelim_phase_data"
    cls = "all" if leaked["labels"] == "1" else "hem"
    target = data / "C-NMC_Leukemia" / "training_data" / "fold_0" / cls / leaked["Patient_ID"]
    shutil.copy(prelim / leaked["new_names"], target)
    records = discover(data).records
    split = split_records(records, SplitConfig(method="official"))
    subject = leaked["Patient_ID"].split("_")[1].upper()
    assert subject not in _subjects(records, split.train)
    assert subject in _subjects(records, split.test)
    assert split.excluded_subjects == (subject,)
    assert f"subjects {subject} of the preliminary test set" in split.warning


@pytest.mark.parametrize("folds", [2, 3])
def test_kfold_splits_are_grouped_by_subject_stratified_and_cover_every_image(release, folds):
    records = discover(release).records
    tests = []
    for k in range(folds):
        split = split_records(records, SplitConfig(method="kfold", folds=folds, test_fold=k, seed=3))
        assert not _subjects(records, split.train) & _subjects(records, split.test)
        assert len(split.train) + len(split.test) == len(records)
        tests.append(split.test)
    merged = np.concatenate(tests)
    assert sorted(merged) == list(range(len(records)))  # each image tested exactly once
    # stratified: with 2 folds each holds ALL and hem subjects
    if folds == 2:
        assert all(len({records[i].label for i in t}) == 2 for t in tests)
    # the seed decides the assignment
    again = split_records(records, SplitConfig(method="kfold", folds=folds, test_fold=0, seed=3))
    assert list(again.test) == list(tests[0])
    others = [split_records(records, SplitConfig(method="kfold", folds=folds, seed=s)) for s in range(4, 9)]
    assert any(list(o.test) != list(tests[-1]) for o in others)


def test_kfold_needs_enough_subjects(tiny_data):
    with pytest.raises(ValueError, match="--folds 9 needs at least 9 subjects; this data has 6"):
        split_records(discover(tiny_data).records, SplitConfig(method="kfold", folds=9))


def test_cv_summary_is_mean_and_std_per_epoch_without_nan_folds():
    folds = [
        {5: {"test_accuracy": 0.5, "test_auc": float("nan")}, 10: {"test_accuracy": 0.6, "test_auc": 0.7}},
        {5: {"test_accuracy": 0.7, "test_auc": 0.8}, 10: {"test_accuracy": 0.8, "test_auc": 0.9}},
    ]
    summary = cv_summary(folds)
    assert summary["cv_mean_test_accuracy"] == pytest.approx({5: 0.6, 10: 0.7})
    assert summary["cv_std_test_accuracy"] == pytest.approx({5: 0.1, 10: 0.1})
    assert summary["cv_mean_test_auc"] == pytest.approx({5: 0.8, 10: 0.8})
    assert summary["cv_std_test_auc"] == pytest.approx({5: 0.0, 10: 0.1})


def test_cv_folds_option_is_a_number_or_official():
    assert CvConfig.of(folds="official").folds == "official"
    with pytest.raises(ValueError, match="give a number of folds"):
        CvConfig.of(folds="1")
    plan = CvConfig.of(base={"arch": "resnet50"}, folds="official").fold_configs([0, 1, 2])
    assert [(k, c.split.method, c.split.test_fold, c.model.arch) for k, c in plan] == [
        (0, "fold", 0, "resnet50"),
        (1, "fold", 1, "resnet50"),
        (2, "fold", 2, "resnet50"),
    ]


def _history(client: MlflowClient, run_id: str, metric: str) -> dict[int, float]:
    return {m.step: m.value for m in client.get_metric_history(run_id, metric)}


@pytest.mark.slow
def test_cv_command_logs_each_fold_as_a_nested_run_and_their_mean_and_std(release, tmp_path, child_env):
    uri = mlflow_store(tmp_path)
    args = [str(LEUKML), "cv", "--data-dir", str(release), *TINY, "--eval-epochs", "1,2", "--folds", "3"]
    args += ["--val-fraction", "0.15", "--tracking-uri", uri]
    done = subprocess.run(args, env=child_env(), cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("leukml")
    (parent,) = client.search_runs([exp.experiment_id], "tags.leukml_cv = 'true'")
    folds = client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(r.data.tags["cv_fold"] for r in folds) == ["0", "1", "2"]
    assert {r.data.params["split"] for r in folds} == {"kfold"}
    assert all(r.info.status == "FINISHED" for r in folds + [parent])
    for metric in ("test_f1_weighted", "test_accuracy", "test_balanced_accuracy"):
        per_fold = [_history(client, r.info.run_id, metric) for r in folds]
        mean = _history(client, parent.info.run_id, f"cv_mean_{metric}")
        std = _history(client, parent.info.run_id, f"cv_std_{metric}")
        assert sorted(mean) == [1, 2]  # step = epoch
        for epoch in (1, 2):
            values = [f[epoch] for f in per_fold]
            assert mean[epoch] == pytest.approx(np.mean(values))
            assert std[epoch] == pytest.approx(np.std(values))
    table = client.download_artifacts(parent.info.run_id, "cv_folds.csv", str(tmp_path))
    rows = list(csv.DictReader(Path(table).read_text().splitlines()))
    assert sorted(row["run_id"] for row in rows) == sorted(r.info.run_id for r in folds)
    # each fold's test subjects are its own, and its validation came out of its training side
    for row in rows:
        fold_run = next(r for r in folds if r.info.run_id == row["run_id"])
        assert float(row["test_accuracy"]) == pytest.approx(fold_run.data.metrics["test_accuracy"])
        assert int(row["n_val"]) > 0
    assert f"cv parent run {parent.info.run_id}: 3 folds" in done.stdout
    assert any(line.startswith("mean ") for line in done.stdout.splitlines())
    # pooled: every fold's test cells together (recomputed from their predictions files), with an interval
    cells = []
    for fold in folds:
        path = client.download_artifacts(
            fold.info.run_id, "predictions/epoch_002.csv", str(tmp_path / fold.info.run_id)
        )
        cells += list(csv.DictReader(Path(path).read_text().splitlines()))
    right = [(float(c["p_all"]) > 0.5) == (c["label"] == "1") for c in cells]
    pooled = _history(client, parent.info.run_id, "cv_pooled_accuracy")
    low, high = (
        _history(client, parent.info.run_id, f"cv_pooled_accuracy_ci_{e}")[2] for e in ("low", "high")
    )
    assert len(cells) == sum(int(r.data.tags["n_test"]) for r in folds) and pooled[2] == pytest.approx(
        np.mean(right)
    )
    assert low <= pooled[2] <= high and high - low > 0
    assert f"acc {pooled[2]:.3f} [{low:.2f}, {high:.2f}]" in done.stdout


@pytest.mark.slow
def test_protocols_trains_each_split_and_writes_the_report(release, tmp_path, child_env):
    uri = mlflow_store(tmp_path)
    args = [str(LEUKML), "protocols", "--data-dir", str(release), *TINY, "--tracking-uri", uri]
    args += ["--out", str(tmp_path / "report")]
    done = subprocess.run(args, env=child_env(), cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("leukml")
    (parent,) = client.search_runs([exp.experiment_id], "tags.leukml_protocols = 'true'")
    runs = client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(r.data.params["split"] for r in runs) == ["image", "official", "subject"]
    assert {r.data.tags["protocol"] for r in runs} == {"image", "official", "subject"}
    official = next(r for r in runs if r.data.params["split"] == "official")
    assert official.data.tags["n_test"] == "20"
    # one pool: the image and subject splits draw from the 48 training cells, as official trains on
    # them; the 20 preliminary cells are official's test set only
    for run in runs:
        sides = sum(int(run.data.tags[f"n_{s}"]) for s in ("train", "val", "test"))
        assert sides == (68 if run.data.params["split"] == "official" else 48), run.data.params["split"]
        assert run.data.params.get("pool") == (None if run.data.params["split"] == "official" else "training")
    assert "folds" not in official.data.params and "test_fraction" not in official.data.params
    assert (tmp_path / "report" / "report.html").is_file()
    assert "report/report.html" in [
        f"report/{a.path.split('/')[-1]}" for a in client.list_artifacts(parent.info.run_id, "report")
    ]
    lines = done.stdout.splitlines()
    sizes = [line.strip() for line in lines if line.strip().startswith("train ")]
    assert sizes[2] == "train 48 cells / 6 subjects, test 20 / 4", done.stdout  # official
    assert "train 48 cells / 6 subjects, test 20 / 4" in (tmp_path / "report" / "report.md").read_text()
    assert [
        line.split()[0] for line in lines if line.split()[:1] in (["image"], ["subject"], ["official"])
    ] == [
        "image",
        "subject",
        "official",
    ]


@pytest.mark.slow
def test_protocols_without_a_preliminary_set_compares_image_and_subject(tiny_data, tmp_path, child_env):
    uri = mlflow_store(tmp_path)
    args = [str(LEUKML), "protocols", "--data-dir", str(tiny_data), *TINY, "--epochs", "1"]
    args += ["--tracking-uri", uri, "--out", str(tmp_path / "r")]
    done = subprocess.run(args, env=child_env(), cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("leukml")
    runs = client.search_runs([exp.experiment_id], "tags.protocol != ''")
    assert sorted(r.data.params["split"] for r in runs) == ["image", "subject"]


@pytest.mark.slow
def test_cv_official_folds_holds_out_each_release_fold_in_turn(release, tmp_path, child_env):
    uri = mlflow_store(tmp_path)
    args = [str(LEUKML), "cv", "--data-dir", str(release), *TINY, "--epochs", "1", "--folds", "official"]
    args += ["--tracking-uri", uri]
    done = subprocess.run(args, env=child_env(), cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("leukml")
    (parent,) = client.search_runs([exp.experiment_id], "tags.leukml_cv = 'true'")
    assert parent.data.tags["cv_folds"] == "official"
    folds = client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(r.data.tags["cv_fold"] for r in folds) == ["0", "1", "2"]
    training = release / "C-NMC_Leukemia" / "training_data"
    for run in folds:
        k = run.data.tags["cv_fold"]
        assert (run.data.params["split"], run.data.params["test_fold"]) == ("fold", k)
        # the test side is that fold of the release, the other two folds train; the preliminary set
        # (official's test set) takes no part
        held_out = sum(1 for p in (training / f"fold_{k}").rglob("*.bmp"))
        assert held_out > 0 and run.data.tags["n_test"] == str(held_out)
        assert int(run.data.tags["n_train"]) + int(run.data.tags["n_val"]) == 48 - held_out
    table = client.download_artifacts(parent.info.run_id, "cv_folds.csv", str(tmp_path))
    rows = {row["fold"]: row for row in csv.DictReader(Path(table).read_text().splitlines())}
    assert {k: row["run_id"] for k, row in rows.items()} == {
        f.data.tags["cv_fold"]: f.info.run_id for f in folds
    }
    for metric in ("test_accuracy", "test_f1_weighted"):
        values = [_history(client, r.info.run_id, metric)[1] for r in folds]
        mean = _history(client, parent.info.run_id, f"cv_mean_{metric}")
        std = _history(client, parent.info.run_id, f"cv_std_{metric}")
        assert mean == {1: pytest.approx(np.mean(values))} and std == {1: pytest.approx(np.std(values))}
    assert f"cv parent run {parent.info.run_id}: 3 folds" in done.stdout
    printed = [line.split()[0] for line in done.stdout.splitlines() if line[:4].strip().isdigit()]
    assert printed == ["0", "1", "2"]  # a row per fold
