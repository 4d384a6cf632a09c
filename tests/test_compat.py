"""Every private framework API leukml uses sits in a compat module, works with the installed
version, and fails in one line naming the dependency and its version when an upgrade removes it."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import keras
import mlflow
import numpy as np
import optuna
import pytest

from leukml.experiments import optuna_compat
from leukml.model import keras_compat
from leukml.tracking import mlflow_compat

ROOT = Path(__file__).resolve().parents[1] / "leukml"
COMPAT = {"model/keras_compat.py", "experiments/optuna_compat.py", "tracking/mlflow_compat.py"}
# the private names leukml relies on; none may appear outside the compat modules
PRIVATE = re.compile(
    r"_symbolic_build|_Example\b|_SERVER_MODEL_PATH|\._storage\b|\._trial_id\b|__dict__\.get"
)


def test_private_framework_names_only_in_compat_modules():
    found = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in ROOT.rglob("*.py")
        if path.relative_to(ROOT).as_posix() not in COMPAT
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if PRIVATE.search(line)
    ]
    assert not found, f"private framework names outside the compat modules: {found}"


def _compiled() -> keras.Model:
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def test_keras_symbolic_build_and_an_untracked_attribute():
    model = _compiled()
    x, y = np.zeros((3, 4), np.float32), np.zeros(3, np.int64)
    assert "accuracy/total" not in [v.path for v in model.metrics_variables]
    keras_compat.symbolic_build(model, (x, y, None))
    assert "accuracy/total" in [v.path for v in model.metrics_variables]  # the compiled metrics, built
    weights = len(model.weights)
    made = keras_compat.kept_on(model, "_probe", lambda: object())
    assert keras_compat.kept_on(model, "_probe", lambda: pytest.fail("made twice")) is made
    assert len(model.weights) == weights  # nothing tracked


def test_keras_without_symbolic_build_names_its_version(monkeypatch):
    model = _compiled()
    for owner in type(model).__mro__:  # the trainer class that defines it, for this backend
        if "_symbolic_build" in vars(owner):
            monkeypatch.delattr(owner, "_symbolic_build")
    with pytest.raises(keras_compat.KerasChanged, match=rf"^keras {re.escape(keras.__version__)}: Model"):
        keras_compat.symbolic_build(model, (np.zeros((1, 4), np.float32), np.zeros(1), None))


def test_mlflow_example_flavor_and_scoring_server_variable(tmp_path, monkeypatch):
    example = mlflow_compat.input_example(np.zeros((1, 4, 4, 3), np.float32))
    example.save(str(tmp_path))
    assert example.info["artifact_path"] and (tmp_path / example.info["artifact_path"]).is_file()
    variable = mlflow_compat.server_model_variable()
    monkeypatch.delenv(variable, raising=False)
    assert not mlflow_compat.in_scoring_server()
    monkeypatch.setenv(variable, "/some/model")
    assert mlflow_compat.in_scoring_server()
    with pytest.raises(mlflow_compat.MlflowChanged, match=rf"^mlflow {re.escape(mlflow.__version__)}: "):
        mlflow_compat.KerasFlavor.save_model(example=example, model=None)


def test_mlflow_without_example_names_its_version(monkeypatch):
    monkeypatch.delattr(sys.modules["mlflow.models.utils"], "_Example")
    with pytest.raises(mlflow_compat.MlflowChanged, match=rf"^mlflow {re.escape(mlflow.__version__)}: "):
        mlflow_compat.input_example(np.zeros((1, 2), np.float32))


def test_optuna_trial_storage_and_id():
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage())
    trial = study.ask()
    stored = optuna_compat.storage_of(trial).get_trial(optuna_compat.trial_id(trial))
    assert stored.number == trial.number


def test_optuna_without_trial_id_names_its_version(monkeypatch):
    trial = optuna.create_study().ask()
    monkeypatch.delattr(trial, "_trial_id")
    with pytest.raises(optuna_compat.OptunaChanged, match=rf"^optuna {re.escape(optuna.__version__)}: "):
        optuna_compat.trial_id(trial)
