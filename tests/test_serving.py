"""The served pyfunc's predict, in process (serving over HTTP: tests/test_registry_serving.py)."""

from __future__ import annotations

import base64
import io
import warnings

import keras
import numpy as np
import pandas as pd
import pytest
from helpers import tiny_model
from PIL import Image

from leukml.data.augment import TestTime, dihedral
from leukml.model.networks import build_network
from leukml.serving.pyfunc import SERVE_BATCH, CellClassifier, tune_scoring_server


def _classifier(model: keras.Model) -> CellClassifier:
    """A classifier as ``load_context`` makes it (no warm-up), around ``model``."""
    classifier = CellClassifier()
    classifier.model, classifier.size, classifier.version = model, 32, "7"
    classifier.max_bytes, classifier.tta = 1 << 20, TestTime("none")
    return classifier


def _bmp_files(pixels: np.ndarray) -> list[str]:
    files = []
    for image in pixels:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="BMP")
        files.append(base64.b64encode(buffer.getvalue()).decode("ascii"))
    return files


@pytest.mark.slow
def test_predict_in_chunks_equals_one_keras_predict():
    """More images than one forward pass takes: the chunked probabilities are Keras' own."""
    net = build_network(tiny_model(arch="vgg16"))
    classifier = _classifier(net.model)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (SERVE_BATCH + 5, 32, 32, 3), dtype=np.uint8)
    files = _bmp_files(pixels)
    out = classifier.predict(None, pd.DataFrame({"image": files}))
    expected = np.asarray(net.model.predict(pixels.astype(np.float32), verbose=0))[:, 1]
    assert len(out) == SERVE_BATCH + 5 and set(out["model_version"]) == {"7"}
    np.testing.assert_allclose(out["p_all"].to_numpy(), expected, rtol=1e-5, atol=1e-6)
    assert list(out["label"]) == ["ALL" if p > 0.5 else "hem" for p in expected]

    classifier.tta = TestTime(
        "dihedral"
    )  # promote --tta dihedral: the mean over the 8 variants, chunk by chunk
    averaged = classifier.predict(None, pd.DataFrame({"image": files}))
    turns = [
        np.asarray(net.model.predict(dihedral(pixels, v).astype(np.float32), verbose=0))[:, 1]
        for v in range(8)
    ]
    np.testing.assert_allclose(averaged["p_all"].to_numpy(), np.mean(turns, axis=0), rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="counts tf.function traces")
def test_warm_up_at_load_leaves_no_batch_size_to_trace_and_changes_no_prediction():
    """After ``warm_up`` (load time), requests of new batch sizes trace nothing (no stall, no
    "triggered tf.function retracing" warning in the server's log), and each prediction equals that
    of a model that never saw another batch size (a graph traced for exactly that shape)."""
    net = build_network(tiny_model(arch="vgg16"))
    warm = _classifier(net.model)
    warm.warm_up()
    traced = net.model.predict_function.experimental_get_tracing_count()
    pixels = np.random.default_rng(1).integers(0, 256, (SERVE_BATCH + 5, 32, 32, 3), dtype=np.uint8)
    for n in (3, 1, 12, SERVE_BATCH + 5):  # 37 = a chunk of 32 and one of 5
        files = _bmp_files(pixels[:n])
        served = warm.predict(None, pd.DataFrame({"image": files}))["p_all"].to_numpy()
        assert net.model.predict_function.experimental_get_tracing_count() == traced, n
        exact = []
        for start in range(0, n, SERVE_BATCH):
            fresh = keras.models.clone_model(net.model)
            fresh.set_weights(net.model.get_weights())
            exact.append(
                _classifier(fresh).predict(None, pd.DataFrame({"image": files[start : start + SERVE_BATCH]}))
            )
        np.testing.assert_allclose(served, pd.concat(exact)["p_all"].to_numpy(), rtol=1e-6, atol=1e-7)


def test_scoring_server_gets_plain_string_columns_and_others_keep_theirs(monkeypatch):
    """MLflow's scoring server (it sets ``__pyfunc_model_path__``) builds the request's DataFrame
    with Python strings, not Arrow; a process that loads the model itself keeps pandas' default."""
    default = pd.get_option("future.infer_string")
    monkeypatch.delenv("__pyfunc_model_path__", raising=False)
    tune_scoring_server()
    assert pd.get_option("future.infer_string") == default
    try:
        monkeypatch.setenv("__pyfunc_model_path__", "/some/model")
        tune_scoring_server()
        assert pd.DataFrame({"image": ["aGVsbG8="]})["image"].dtype == object
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pandas 3 deprecates the option
            pd.set_option("future.infer_string", default)
