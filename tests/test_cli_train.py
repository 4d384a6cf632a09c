"""`leukml train` as a person runs it: progress on the console (a sink like MLflow's), a table at the end."""

from __future__ import annotations

import subprocess

import pytest
from helpers import EPOCH_LINE, LEUKML, mlflow_store


@pytest.mark.slow
def test_train_prints_each_epoch(tmp_path, tiny_data, child_env):
    """With LEUKML_QUIET unset; a quiet training prints none (tests/test_study.py's)."""
    args = [str(LEUKML), "train", "--data-dir", str(tiny_data), "--weights", "none", "--image-size", "32"]
    args += ["--epochs", "2", "--batch-size", "8", "--tracking-uri", mlflow_store(tmp_path)]
    env = child_env()
    del env["LEUKML_QUIET"]
    loud = subprocess.run(args, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert loud.returncode == 0, loud.stderr[-3000:]
    epochs = [line for line in loud.stdout.splitlines() if EPOCH_LINE.match(line)]
    assert [line.split("  ")[0] for line in epochs] == ["epoch 1/2", "epoch 2/2"]
    assert all("train_loss" in line and "val_accuracy" in line for line in epochs)
    assert any(line.startswith("run ") and line.endswith(" finished") for line in loud.stdout.splitlines())
