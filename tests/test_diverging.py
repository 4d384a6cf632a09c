"""A diverging training stops at its first non-finite loss, FAILED, naming the epoch and the options
that set its learning rate; numbers that are not finite, and options the chosen split or recipe
would ignore, are refused before anything trains."""

from __future__ import annotations

import pytest
from helpers import TINY_TRAIN, error_line, mlflow_store, run_leukml
from mlflow.tracking import MlflowClient

REFUSED = {
    "lr-nan": (["--lr", "nan"], "--lr nan: not a finite number"),
    "decay-rate-nan": (["--decay-rate", "nan"], "--decay-rate nan: not a finite number"),
    "dropout-inf": (["--dropout", "inf"], "--dropout inf: not a finite number"),
    "test-fold-with-image-split": (
        ["--split", "image", "--test-fold", "1"],
        "--test-fold 1 acts only with --split fold or kfold (this run: --split image)",
    ),
    "folds-with-subject-split": (
        ["--split", "subject", "--folds", "3"],
        "--folds 3 acts only with --split kfold",
    ),
    "fine-tune-from-without-layers": (
        ["--fine-tune-from", "2"],
        "--fine-tune-from 2 acts only with fine-tuning: give --fine-tune-layers N",
    ),
    "fine-tune-lr-without-layers": (
        ["--fine-tune-lr", "0.001"],
        "--fine-tune-lr 0.001 acts only with fine-tuning",
    ),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_an_option_that_cannot_act_is_refused_before_any_run(case, tmp_path, tiny_data, child_env):
    args, expected = REFUSED[case]
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"  # made by a run only
    proc = run_leukml(
        ["train", "--data-dir", str(tiny_data), *TINY_TRAIN, *args, "--tracking-uri", uri],
        child_env(),
        tmp_path,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert expected in error_line(proc.stderr)
    assert not (tmp_path / "mlflow.db").exists()  # no run was made


@pytest.mark.slow
def test_a_diverging_training_stops_failed_naming_the_epoch_and_the_rate(tmp_path, tiny_data, child_env):
    uri = mlflow_store(tmp_path)
    args = ["train", "--data-dir", str(tiny_data), *TINY_TRAIN, "--epochs", "6", "--eval-epochs", "6"]
    proc = run_leukml([*args, "--lr", "1e30", "--tracking-uri", uri], child_env(), tmp_path)
    assert proc.returncode == 1, proc.stderr[-3000:]
    line = error_line(proc.stderr)
    assert "the training diverged: train_loss is nan at epoch" in line, line
    assert "lower the learning rate (--lr 1e+30, --decay-rate 0.95, --decay-steps 900)" in line, line
    client = MlflowClient(uri)
    [run] = client.search_runs([client.get_experiment_by_name("leukml").experiment_id])
    assert run.info.status == "FAILED"
    assert run.data.tags["error"].startswith("Diverged: the training diverged")
    epoch = int(line.split("at epoch ")[1].split(";")[0])
    assert epoch < 6  # stopped there, not after all its epochs
    assert len(client.get_metric_history(run.info.run_id, "train_loss")) == epoch - 1
