"""Grad-CAM over the cell: which regions of the base's last feature map drive the prediction.

Gradients are taken through the head only (base output -> class probability), so the code is a
few lines per backend and needs no gradient through the frozen base.
"""

from __future__ import annotations

import keras
import matplotlib
import numpy as np
from PIL import Image

from leukml.common.errors import LeukmlError
from leukml.model.networks import Network, split_network


def _head_gradients(head: keras.Model, features: np.ndarray, cls: int) -> np.ndarray:
    """d p[cls] / d features, per backend."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.convert_to_tensor(features)
        with tf.GradientTape() as tape:
            tape.watch(x)
            score = head(x, training=False)[:, cls]
        return tape.gradient(score, x).numpy()
    if backend == "jax":
        import jax

        def score(x):
            return head(x, training=False)[:, cls].sum()

        return np.asarray(jax.grad(score)(features))
    if backend == "torch":
        import torch

        x = torch.tensor(features, requires_grad=True)
        head(x, training=False)[:, cls].sum().backward()
        return x.grad.numpy()
    raise LeukmlError(f"Grad-CAM is not implemented for the {backend} backend")


def gradcam(network: Network, image: np.ndarray) -> tuple[np.ndarray, int, float]:
    """Heatmap in [0, 1] at the image's size, the predicted class, and p(ALL).

    Args:
        image: ``(S, S, 3)`` raw 0-255 RGB at the model's input size.
    """
    x = np.asarray(image, np.float32)[None]
    # predict_on_batch, not predict: predict's per-call set-up was most of one image's time
    features = np.asarray(network.extractor.predict_on_batch(x), np.float32)
    probs = np.asarray(network.head.predict_on_batch(features))[0]
    cls = int(probs.argmax())
    grads = _head_gradients(network.head, features, cls)[0]
    weights = grads.mean(axis=(0, 1))
    cam = np.maximum((features[0] * weights).sum(-1), 0.0)
    if cam.max() > 0:
        cam = cam / cam.max()
    size = image.shape[:2][::-1]
    heat = np.asarray(
        Image.fromarray(cam.astype(np.float32), mode="F").resize(size, Image.Resampling.BILINEAR)
    )
    return np.clip(heat, 0.0, 1.0), cls, float(probs[1])


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The heatmap (jet colours) blended over the cell image, uint8 RGB."""
    colours = matplotlib.colormaps["jet"](heat)[..., :3] * 255.0
    return (np.asarray(image, np.float32) * (1 - alpha) + colours * alpha).astype(np.uint8)


def explain_image(model: keras.Model, image: np.ndarray) -> tuple[np.ndarray, int, float]:
    """Grad-CAM overlay for a whole logged model; returns (overlay, class, p_all)."""
    network = split_network(model)
    heat, cls, p_all = gradcam(network, image)
    return overlay(image, heat), cls, p_all
