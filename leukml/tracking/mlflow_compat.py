"""MLflow's private names that leukml relies on, in one place, each failing loudly with MLflow's
version when an upgrade takes it away (``tests/test_compat.py`` calls every one).

- ``mlflow.models.utils._Example``: an input example made once (on a background thread, while the
  training runs) and written into the logged model later.
- ``KerasFlavor``: ``mlflow.keras`` as ``Model.log`` calls a flavor, with that example and without
  MLflow's serving-input check (see its docstring); it relies on ``Model.log`` handing the flavor
  ``path``, ``mlflow_model`` and ``validate_serving_input``.
- ``mlflow.pyfunc.scoring_server._SERVER_MODEL_PATH``: the variable by which a process knows it is
  MLflow's scoring server. The served model imports this module: it only needs MLflow.
"""

from __future__ import annotations

import os
from typing import Any

import mlflow

Example = Any
"""``mlflow.models.utils._Example``: ``info`` (what MLmodel records) and ``save(path)``."""


class MlflowChanged(RuntimeError):
    """A private MLflow API that leukml uses is gone or changed."""


def _changed(what: str, exc: Exception) -> MlflowChanged:
    return MlflowChanged(
        f"mlflow {mlflow.__version__}: {what} is gone or changed ({type(exc).__name__}: {exc}); "
        "leukml/tracking/mlflow_compat.py needs updating for this MLflow"
    )


def input_example(value) -> Example:
    """MLflow's input example of ``value`` (as ``log_model(input_example=...)`` makes it)."""
    try:
        from mlflow.models.utils import _Example
    except ImportError as exc:
        raise _changed("mlflow.models.utils._Example", exc) from exc
    return _Example(value)


def server_model_variable() -> str:
    """The environment variable MLflow's scoring server sets to the model it serves."""
    try:
        from mlflow.pyfunc.scoring_server import _SERVER_MODEL_PATH
    except ImportError as exc:
        raise _changed("mlflow.pyfunc.scoring_server._SERVER_MODEL_PATH", exc) from exc
    return _SERVER_MODEL_PATH


def in_scoring_server() -> bool:
    """Whether this process is MLflow's scoring server (``mlflow models serve``), which names the
    model it serves before it loads it."""
    return bool(os.environ.get(server_model_variable()))


class KerasFlavor:
    """``mlflow.keras`` as ``Model.log`` calls it, without MLflow's serving-input check: that
    check reloads the whole model from disk to predict the input example (2-4 s a run, the largest
    share of tracking's cost in bench/tracking.py). The logged example is loaded and predicted in
    tests/test_tracking.py instead. ``mlflow.keras.log_model`` cannot turn the check off."""

    __name__ = "mlflow.keras"

    @staticmethod
    def save_model(validate_serving_input: bool = True, example: Example | None = None, **kwargs):
        """``mlflow.keras.save_model`` with an input example made already (``input_example``),
        written as MLflow writes one.

        Raises:
            MlflowChanged: ``Model.log`` no longer hands a flavor ``path`` and ``mlflow_model``.
        """
        try:
            path, model = kwargs["path"], kwargs["mlflow_model"]
        except KeyError as exc:
            raise _changed("Model.log's call of a flavor's save_model(path=, mlflow_model=)", exc) from exc
        if example is not None:
            os.makedirs(path, exist_ok=True)
            example.save(path)
            model.saved_input_example_info = example.info
        return mlflow.keras.save_model(**kwargs)
