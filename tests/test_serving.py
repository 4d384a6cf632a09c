"""The served pyfunc's predict, in process (serving over HTTP: tests/test_registry_serving.py)."""

from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd
from PIL import Image

from leukml.data.augment import TestTime, dihedral
from leukml.model.archs import ModelConfig
from leukml.model.networks import build_network
from leukml.serving.pyfunc import SERVE_BATCH, CellClassifier


def test_predict_in_chunks_equals_one_keras_predict():
    """More images than one forward pass takes: the chunked probabilities are Keras' own."""
    net = build_network(ModelConfig(arch="vgg16", weights="none", image_size=32))
    classifier = CellClassifier()
    classifier.model, classifier.size, classifier.version = net.model, 32, "7"
    classifier.max_bytes, classifier.tta = 1 << 20, TestTime("none")
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (SERVE_BATCH + 5, 32, 32, 3), dtype=np.uint8)
    files = []
    for image in pixels:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="BMP")
        files.append(base64.b64encode(buffer.getvalue()).decode("ascii"))
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
