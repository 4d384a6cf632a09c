"""The served model: an ``mlflow.pyfunc`` that takes base64 image files, as a lab has them."""

from __future__ import annotations

import base64
import contextlib
import os
import sys
import warnings
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema

from leukml import CLASS_NAMES
from leukml.analysis.calibration import apply_temperature
from leukml.common.errors import LeukmlError
from leukml.data.augment import TestTime, dihedral
from leukml.data.images import MAX_REQUEST_IMAGE_BYTES, decode_base64_batch
from leukml.tracking.mlflow_compat import in_scoring_server

SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("string", "image")]),
    outputs=Schema(
        [ColSpec("string", "label"), ColSpec("double", "p_all"), ColSpec("string", "model_version")]
    ),
)
SERVE_BATCH = 32  # images per forward pass, whatever a request holds (x 8 variants with TTA)
# two batch sizes at load: Keras' predict function (reduce_retracing) traces the second one with a
# free batch dimension, so no request's batch size traces again (no "retracing" warning, no stall)
WARM_BATCHES = (1, 2)


def encode_file(path: str | Path) -> str:
    return base64.b64encode(Path(path).read_bytes()).decode("ascii")


def tune_scoring_server() -> None:
    """In MLflow's scoring server only: plain Python strings in the DataFrames it builds.

    pandas 3 stores a string column in Arrow; the server builds the request's DataFrame before
    ``predict`` and ``predict`` needs Python strings back, two copies of every base64 image (about
    0.1 s for 32 C-NMC BMPs, 25 MB). Objects cost nothing. A process that loads the model itself
    (``leukml predict --model-uri``, the page) keeps its own pandas settings. pandas 3 deprecates
    the option (gone in pandas 4, where this does nothing).
    """
    if not in_scoring_server():
        return
    # pandas' OptionError (an option it no longer has) is a KeyError and an AttributeError
    with warnings.catch_warnings(), contextlib.suppress(KeyError, AttributeError):
        warnings.simplefilter("ignore")  # the option's deprecation notice, once per server
        pd.set_option("future.infer_string", False)


class CellClassifier(mlflow.pyfunc.PythonModel):
    """Base64 image files in; ``label`` (ALL or hem), ``p_all`` and the model version out.

    With ``tta: dihedral`` in its model config, ``p_all`` is the mean over each image's 8 dihedral
    variants, all of a chunk's variants in one model call (as training's ``predict_tta``). With a
    ``temperature`` in it (the source run's calibration), each probability is temperature-scaled.
    """

    temperature = 1.0  # uncalibrated, until the model config says otherwise

    def load_context(self, context) -> None:
        config = context.model_config or {}
        # the backend the model was logged with, where nothing chose one (a fresh serving
        # environment has only that backend installed; Keras would default to TensorFlow)
        if "keras" not in sys.modules and config.get("keras_backend"):
            os.environ.setdefault("KERAS_BACKEND", str(config["keras_backend"]))
        import keras

        self.model = keras.saving.load_model(context.artifacts["keras_model"], compile=False)
        self.size = int(self.model.input_shape[1])
        self.version = str(config.get("model_version", "unregistered"))
        self.temperature = float(config.get("temperature", 1.0))  # 1.0: uncalibrated
        try:
            self.tta = TestTime(str(config.get("tta", "none")))
        except LeukmlError as exc:
            raise MlflowException.invalid_parameter_value(f"model config: {exc}") from None
        # the server's operator may tighten the per-image limit without re-registering
        self.max_bytes = int(
            os.environ.get("LEUKML_MAX_IMAGE_BYTES", config.get("max_image_bytes", MAX_REQUEST_IMAGE_BYTES))
        )
        self.warm_up()
        tune_scoring_server()

    def warm_up(self) -> None:
        """Trace the model's predict function at load for any batch size (``WARM_BATCHES``), so a
        request never traces it: the same weights and operations, the batch dimension left free.
        (On JAX a new batch size still compiles once; this covers 1 and 2 images.)"""
        for n in WARM_BATCHES:
            self._p_all(np.zeros((n, self.size, self.size, 3), np.float32))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        if not isinstance(model_input, pd.DataFrame) or "image" not in model_input.columns:
            raise MlflowException.invalid_parameter_value(
                "missing column 'image': send one base64-encoded image file per row"
            )
        if not len(model_input):
            raise MlflowException.invalid_parameter_value("no rows: send at least one image")
        try:
            images = decode_base64_batch(list(model_input["image"]), self.size, max_bytes=self.max_bytes)
        except LeukmlError as exc:
            raise MlflowException.invalid_parameter_value(str(exc)) from None
        # predict_on_batch, not predict: predict's per-call set-up (data adapter, callbacks) was
        # most of a one-image request's time (bench/serve.py); chunks bound the memory of a pass
        p_all = np.concatenate(
            [self._p_all(images[i : i + SERVE_BATCH]) for i in range(0, len(images), SERVE_BATCH)]
        )
        labels = np.where(p_all > 0.5, "ALL", CLASS_NAMES[0])
        return pd.DataFrame({"label": labels, "p_all": p_all.astype(float), "model_version": self.version})

    def _p_all(self, images: np.ndarray) -> np.ndarray:
        n = self.tta.variants
        variants = np.concatenate([dihedral(images, v) for v in range(n)]) if n > 1 else images
        probs = apply_temperature(np.asarray(self.model.predict_on_batch(variants))[:, 1], self.temperature)
        return probs.reshape(n, len(images)).mean(axis=0)
