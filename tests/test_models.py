from __future__ import annotations

import subprocess
import sys

import keras
import numpy as np
import pytest
from helpers import tiny_model

from leukml.model.archs import ARCHS, ModelConfig
from leukml.model.networks import build_base, build_network

# The keras.applications module whose preprocess_input each architecture's weights were trained with.
KERAS_MODULES = {
    "vgg16": keras.applications.vgg16,
    "resnet50": keras.applications.resnet50,
    "mobilenetv2": keras.applications.mobilenet_v2,
    "efficientnetb0": keras.applications.efficientnet,
    "densenet121": keras.applications.densenet,
}


@pytest.fixture(scope="module")
def network():
    """Each architecture's network (random weights, 32 px) built once for the module's tests."""
    built = {}

    def get(arch: str):
        if arch not in built:
            built[arch] = build_network(tiny_model(arch=arch))
        return built[arch]

    return get


@pytest.mark.parametrize("arch", list(ARCHS))
def test_every_arch_takes_raw_images(arch, network):
    net = network(arch)
    images = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    probs = np.asarray(net.model.predict(images, verbose=0))
    assert probs.shape == (3, 2)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    assert net.base.trainable is False
    assert net.head.trainable_weights  # only the head learns


@pytest.mark.parametrize("arch", list(ARCHS))
def test_built_in_preprocessing_is_keras_preprocess_input(arch, network):
    """Raw images through the model's own preprocessing reach the base exactly as Keras'
    ``preprocess_input`` would hand them over: what the ImageNet weights expect."""
    net = network(arch)
    images = np.random.default_rng(1).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    ours = np.asarray(net.extractor.predict(images, verbose=0))
    expected = KERAS_MODULES[arch].preprocess_input(images.copy())
    theirs = np.asarray(net.base.predict(expected, verbose=0))
    assert np.abs(theirs).max() > 0
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5 * np.abs(theirs).max())


def test_weights_file_roundtrip_and_wrong_arch(tmp_path):
    net = build_network(tiny_model(arch="vgg16"))
    path = tmp_path / "vgg16_notop.weights.h5"
    net.base.save_weights(str(path))
    loaded = build_base("vgg16", str(path), 32)
    for a, b in zip(net.base.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="does not fit the resnet50 base"):
        build_base("resnet50", str(path), 32)
    with pytest.raises(FileNotFoundError, match="weights=none"):
        build_base("vgg16", str(tmp_path / "missing.weights.h5"), 32)


OFFLINE_PROBE = """
import time
from leukml.model.networks import build_base

start = time.monotonic()
try:
    build_base("vgg16", "imagenet", 32)
except ValueError as exc:
    print(f"refused after {time.monotonic() - start:.3f} s: {exc}")
else:
    print("downloaded")
"""


@pytest.mark.slow
def test_imagenet_offline_fails_fast_naming_alternatives(tmp_path, child_env):
    # Keras reads KERAS_HOME when it is imported: a fresh process, so no cached download is found.
    done = subprocess.run(
        [sys.executable, "-c", OFFLINE_PROBE],
        env=child_env(KERAS_HOME=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "models").is_dir()  # the download was tried into the empty KERAS_HOME
    outcome = done.stdout.strip().splitlines()[-1]  # after Keras' "Downloading data from ..."
    if outcome == "downloaded":
        pytest.skip("ImageNet weights were downloadable: this machine is online")
    seconds, message = outcome.removeprefix("refused after ").split(" s: ", 1)
    assert "weights=none" in message and "weights=<path" in message
    assert float(seconds) < 30


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"arch": "vgg17"}, "choose one of: vgg16, resnet50"),
        ({"pooling": "max"}, "flatten, avg"),
        ({"image_size": 16}, "at least 32"),
    ],
)
def test_bad_model_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ModelConfig(**kwargs)
