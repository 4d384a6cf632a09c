"""The served model: an ``mlflow.pyfunc`` that takes base64 image files, as a lab has them."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema

from leukml import CLASS_NAMES
from leukml.data.augment import TestTime, dihedral
from leukml.data.images import MAX_REQUEST_IMAGE_BYTES, decode_base64_batch

SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("string", "image")]),
    outputs=Schema(
        [ColSpec("string", "label"), ColSpec("double", "p_all"), ColSpec("string", "model_version")]
    ),
)
SERVE_BATCH = 32  # images per forward pass, whatever a request holds (x 8 variants with TTA)


def encode_file(path: str | Path) -> str:
    return base64.b64encode(Path(path).read_bytes()).decode("ascii")


class CellClassifier(mlflow.pyfunc.PythonModel):
    """Base64 image files in; ``label`` (ALL or hem), ``p_all`` and the model version out.

    With ``tta: dihedral`` in its model config, ``p_all`` is the mean over each image's 8 dihedral
    variants, all of a chunk's variants in one model call (as training's ``predict_tta``).
    """

    def load_context(self, context) -> None:
        import keras

        self.model = keras.saving.load_model(context.artifacts["keras_model"], compile=False)
        self.size = int(self.model.input_shape[1])
        config = context.model_config or {}
        self.version = str(config.get("model_version", "unregistered"))
        try:
            self.tta = TestTime(str(config.get("tta", "none")))
        except ValueError as exc:
            raise MlflowException.invalid_parameter_value(f"model config: {exc}") from None
        # the server's operator may tighten the per-image limit without re-registering
        self.max_bytes = int(
            os.environ.get("LEUKML_MAX_IMAGE_BYTES", config.get("max_image_bytes", MAX_REQUEST_IMAGE_BYTES))
        )

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        if not isinstance(model_input, pd.DataFrame) or "image" not in model_input.columns:
            raise MlflowException.invalid_parameter_value(
                "missing column 'image': send one base64-encoded image file per row"
            )
        if not len(model_input):
            raise MlflowException.invalid_parameter_value("no rows: send at least one image")
        try:
            images = decode_base64_batch(list(model_input["image"]), self.size, max_bytes=self.max_bytes)
        except ValueError as exc:
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
        probs = np.asarray(self.model.predict_on_batch(variants))[:, 1]
        return probs.reshape(n, len(images)).mean(axis=0)
