"""The model zoo: a frozen Keras Applications base with the paper's head, raw 0-255 RGB in; the
base's top layers unfrozen for fine-tuning.

Only ``keras`` and numpy are used here, so models build on any Keras 3 backend.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import keras
import numpy as np

from leukml.common.errors import LeukmlError, OptionError
from leukml.model.archs import ARCHS, ModelConfig, resolve_weights

# ImageNet statistics behind keras.applications' preprocess_input modes.
_CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], np.float32)
_TORCH_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_TORCH_STD = np.array([0.229, 0.224, 0.225], np.float32)


@dataclass
class Network:
    """``model`` = ``head(extractor(image))``; ``head`` shares its layers with ``model``."""

    model: keras.Model
    base: keras.Model
    extractor: keras.Model
    head: keras.Model


def _preprocess_affine(mode: str) -> tuple[np.ndarray, np.ndarray]:
    """``preprocess_input`` as a 1x1 convolution (kernel, bias): exact, and it serialises as a
    plain Keras layer, so a logged model loads anywhere without leukml installed."""
    kernel = np.zeros((1, 1, 3, 3), np.float32)
    if mode == "caffe":  # RGB -> BGR, minus the ImageNet mean
        for c in range(3):
            kernel[0, 0, 2 - c, c] = 1.0
        return kernel, -_CAFFE_MEAN_BGR
    if mode == "torch":  # /255, minus mean, over std
        for c in range(3):
            kernel[0, 0, c, c] = 1.0 / (255.0 * _TORCH_STD[c])
        return kernel, -_TORCH_MEAN / _TORCH_STD
    if mode == "tf":  # to [-1, 1]
        for c in range(3):
            kernel[0, 0, c, c] = 1.0 / 127.5
        return kernel, -np.ones(3, np.float32)
    raise ValueError(f"unknown preprocess mode {mode!r}")


def _weights_help(arch: str) -> str:
    return (
        f"use weights=none (random init) or weights=<path to a Keras weights file for the "
        f"{arch} base> (docs/training.md: 'ImageNet weights on an air-gapped machine')"
    )


def build_base(arch: str, weights: str, image_size: int) -> keras.Model:
    """The frozen ``include_top=False`` base with the requested weights.

    Raises:
        ValueError: ImageNet weights cannot be downloaded, or a weights file does not fit ``arch``.
        FileNotFoundError: a weights path that does not exist.
    """
    constructor = getattr(keras.applications, ARCHS[arch].constructor)
    shape = (image_size, image_size, 3)
    source = resolve_weights(weights)
    if source.kind == "imagenet":
        try:
            base = constructor(include_top=False, weights="imagenet", input_shape=shape)
        except Exception as exc:  # keras.utils.get_file raises a bare Exception when offline
            if "URL fetch failure" not in str(exc) and not isinstance(exc, OSError):
                raise
            raise OptionError(
                f"weights=imagenet: cannot download {arch}'s ImageNet weights "
                f"(offline?); {_weights_help(arch)}"
            ) from None
    elif source.kind == "none":
        base = constructor(include_top=False, weights=None, input_shape=shape)
    else:
        path = source.path
        if not path.is_file():
            raise FileNotFoundError(f"weights={weights!r}: no such file; {_weights_help(arch)}")
        base = constructor(include_top=False, weights=None, input_shape=shape)
        try:
            with warnings.catch_warnings():  # a mismatch also warns once per layer; we raise
                warnings.simplefilter("ignore")
                base.load_weights(str(path))
        except Exception as exc:
            raise LeukmlError(
                f"weights file {path} does not fit the {arch} base (made for another "
                f"architecture?): {str(exc).splitlines()[0][:200]}"
            ) from None
    base.trainable = False
    return base


def copy_base(base: keras.Model) -> keras.Model:
    """A frozen copy of ``base`` with the same weights: fine-tuning changes a base, and one that a
    ``BaseCache`` shares with other trainings must stay as it was."""
    copy = keras.models.clone_model(base)
    copy.set_weights(base.get_weights())
    copy.trainable = False
    return copy


def unfreeze_top(base: keras.Model, n: int) -> list[str]:
    """Make the top ``n`` layers of ``base`` that have weights trainable, every other layer frozen;
    returns their names, top first.

    BatchNormalization layers are not counted and stay frozen: a frozen BatchNormalization layer
    runs in inference mode (Keras' fine-tuning practice), so its statistics, fitted on ImageNet,
    are not dragged around by small batches. VGG16's top 2 are ``block5_conv3``, ``block5_conv2``.

    Raises:
        ValueError: ``n`` exceeds the base's layers with weights.
    """
    weighted = [
        layer
        for layer in base.layers
        if layer.weights and not isinstance(layer, keras.layers.BatchNormalization)
    ]
    if n > len(weighted):
        raise OptionError(
            f"fine_tune_layers={n}; the {base.name} base has {len(weighted)} layers with weights "
            f"(BatchNormalization not counted): use 0..{len(weighted)}"
        )
    chosen = weighted[len(weighted) - n :]
    base.trainable = True  # a model's trainable flag gates its layers' own
    for layer in base.layers:
        layer.trainable = any(layer is c for c in chosen)
    return [layer.name for layer in reversed(chosen)]


def build_head(feature_shape: tuple[int, ...], config: ModelConfig) -> keras.Model:
    """Pooling -> Dense(units, ReLU) -> Dropout -> Dense(2, softmax); index 1 is ALL."""
    features = keras.Input(feature_shape, name="features")
    pool = keras.layers.Flatten() if config.pooling == "flatten" else (keras.layers.GlobalAveragePooling2D())
    x = pool(features)
    x = keras.layers.Dense(config.dense_units, activation="relu", name="dense")(x)
    if config.dropout:
        x = keras.layers.Dropout(config.dropout, name="dropout")(x)
    # float32 probabilities even under a mixed-precision policy: the loss needs them exact
    probs = keras.layers.Dense(2, activation="softmax", name="probs", dtype="float32")(x)
    return keras.Model(features, probs, name="head")


def build_network(config: ModelConfig, base: keras.Model | None = None, seed: int | None = None) -> Network:
    """The whole classifier, taking raw 0-255 RGB at ``config.image_size``.

    ``base``: a frozen base already built for this config (a search worker shares one between
    trials). ``seed``: the head's initial weights are drawn from it alone, whatever building or
    reusing the base took from the random state before.
    """
    base = base or build_base(config.arch, config.weights, config.image_size)
    image = keras.Input((config.image_size, config.image_size, 3), name="image")
    x = image
    mode = ARCHS[config.arch].preprocess
    if mode != "none":
        layer = keras.layers.Conv2D(3, 1, name="preprocess", trainable=False)
        x = layer(x)
        layer.set_weights(list(_preprocess_affine(mode)))
    features = base(x, training=False)
    if seed is not None:
        keras.utils.set_random_seed(seed)
    head = build_head(tuple(features.shape[1:]), config)
    model = keras.Model(image, head(features), name=f"leukml_{config.arch}")
    return Network(model=model, base=base, extractor=keras.Model(image, features), head=head)


def split_network(model: keras.Model) -> Network:
    """A loaded leukml model taken apart again: extractor (image -> base features) and head."""
    head = model.get_layer("head")
    base = next(layer for layer in model.layers if isinstance(layer, keras.Model) and layer is not head)
    image = keras.Input(model.input_shape[1:])
    x = image
    if any(layer.name == "preprocess" for layer in model.layers):
        x = model.get_layer("preprocess")(x)
    extractor = keras.Model(image, base(x, training=False))
    return Network(model=model, base=base, extractor=extractor, head=head)
