"""What a model sees: rows of the frozen base's cached features or images, as given or as one of
their 8 dihedral variants; test-time augmentation. (The feature cache that fills a
``FeatureSource`` is ``leukml.training.features``.)

A ``FeatureSource`` holds the base's output per image, one array per dihedral variant (only
variant 0, the image itself, without augmentation); an ``ImageSource`` holds the images and turns
them on the fly. Both ``gather`` the batch of the same record indices and variants, so a head
trained on either is the same model (tests/test_training.py proves it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from concurrent.futures import Future

import keras
import numpy as np

from leukml.common.errors import OptionError
from leukml.data.augment import VARIANTS, Augmentation, dihedral_each, draw_variants, jitter
from leukml.training import device

# (record indices of a batch, their positions in the epoch's order) -> the batch's float32 inputs
Take = Callable[[np.ndarray, slice], np.ndarray]


class FeatureSource:
    """Cached base features: ``arrays[v]`` holds dihedral variant ``v`` of every image (host
    arrays, memory-mapped); ``on_device`` the first variants as one device tensor, made once and kept
    until ``release``. ``extracted``: the variants' outputs still on the device from an extraction
    in this process (all or none), used by ``on_device`` instead of copying the host arrays.
    ``pending``: the cache files such an extraction is still writing (``cached_array_later``); the
    host arrays are read only once they are complete (``settle``), the device ones at once."""

    def __init__(
        self, arrays: Sequence[np.ndarray], extracted: Sequence[object] = (), pending: Sequence[Future] = ()
    ) -> None:
        self._arrays = list(arrays)
        self.extracted = list(extracted)
        self.pending = list(pending)
        self.variants, self.shape = len(self._arrays), tuple(self._arrays[0].shape)  # shape: one variant's
        self.device: dict[int, object] = {}  # number of variants -> their rows, variant after variant

    @property
    def arrays(self) -> list[np.ndarray]:
        """The host arrays, complete (this waits for the cache files still being written)."""
        self.settle()
        return self._arrays

    def settle(self) -> None:
        """Wait until the cache files are written; a failed write raises here."""
        while self.pending:
            self.pending[0].result()
            self.pending.pop(0)

    def gather(self, idx: np.ndarray, variants: np.ndarray | None = None) -> np.ndarray:
        """Rows ``idx`` as float32, row ``i`` from variant ``variants[i]`` (variant 0 when None)."""
        idx = np.asarray(idx)
        if variants is None:
            return np.asarray(self.arrays[0][idx], dtype=np.float32)
        if self.variants < VARIANTS:
            raise ValueError("these features hold no dihedral variants (extract them with feature_source)")
        out = np.empty((len(idx), *self.shape[1:]), np.float32)
        for v in np.unique(variants):
            chosen = variants == v
            out[chosen] = self.arrays[v][idx[chosen]]
        return out

    def on_device(self, count: int = 1):
        """Variants ``0 .. count - 1`` as one float32 device tensor: row ``i`` of variant ``v`` at
        ``v * n + i``. Made once (from ``extracted``, else copied from the host), then kept."""
        if count not in self.device:
            if count > self.variants:
                raise ValueError(f"{count} variants asked, these features hold {self.variants}")
            parts = [
                self.extracted[v]
                if v < len(self.extracted)
                else device.to_device(np.asarray(self.arrays[v], np.float32))
                for v in range(count)
            ]
            self.device[count] = parts[0] if count == 1 else keras.ops.concatenate(parts)
            self.extracted = self.extracted[count:] if count > 1 else self.extracted  # now held above
        return self.device[count]

    @property
    def variant_bytes(self) -> int:
        """Bytes of one variant's features as a float32 device tensor."""
        return math.prod(self.shape) * 4

    def device_need(self, count: int) -> int:
        """Bytes ``on_device(count)`` would add on the device (0 once made)."""
        return 0 if count in self.device else device_need(self.variant_bytes, count, len(self.extracted))

    @property
    def device_bytes(self) -> int:
        """Bytes of the device copies held."""
        held = {id(t): t for t in [*self.device.values(), *self.extracted]}  # variant 0 may be in both
        return sum(int(np.prod(t.shape)) * 4 for t in held.values())

    def release(self) -> None:
        """Free the device copies (the host arrays stay)."""
        self.device.clear()
        self.extracted = []


def device_need(variant_bytes: int, count: int, ready: int = 0) -> int:
    """Bytes the device needs to hold ``count`` variants' features as one tensor when ``ready`` of
    them are there already: the others' copies and, for several variants, the joined tensor."""
    if count == 1:
        return 0 if ready else variant_bytes
    return variant_bytes * (count - min(ready, count) + count)


class ImageSource:
    """Images (uint8, memory-mapped), turned into their variants as they are gathered."""

    def __init__(self, images: np.ndarray) -> None:
        self.images = images

    def gather(self, idx: np.ndarray, variants: np.ndarray | None = None) -> np.ndarray:
        """Images ``idx`` as float32 0..255, image ``i`` as its variant ``variants[i]`` when given."""
        x = np.asarray(self.images[np.asarray(idx)])
        if variants is not None:
            x = dihedral_each(x, np.asarray(variants))
        return x.astype(np.float32)

    def jittered(self, idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Images ``idx`` under ``full`` augmentation, drawn from ``rng``."""
        return jitter(np.asarray(self.images[np.asarray(idx)]), rng)


Source = FeatureSource | ImageSource


def as_source(inputs: Source | np.ndarray) -> Source:
    """A source as is; a plain array as one whose rows are gathered as given (float32)."""
    return inputs if isinstance(inputs, FeatureSource | ImageSource) else FeatureSource([inputs])


def epoch_inputs(source: Source, augment: Augmentation, rng: np.random.Generator, n: int) -> Take:
    """How the ``n`` training images of one epoch are gathered under ``augment``. An augmentation
    that draws variants draws one per image of the epoch's order up front, from ``rng`` (the
    augmentation's own generator), so features and images see the same draws; one that jitters
    draws per batch, as they come."""
    if augment.draws_variants:
        variants = draw_variants(rng, n)
        return lambda idx, pos: source.gather(idx, variants[pos])
    if augment.jitters:
        if not isinstance(source, ImageSource):
            raise OptionError("augment=full trains end to end: it needs the images, not cached features")
        return lambda idx, pos: source.jittered(idx, rng)
    return lambda idx, pos: source.gather(idx)


def _predict(target: keras.Model, source: Source, idx: np.ndarray, batch_size: int, variant: int | None):
    idx = np.asarray(idx)
    parts = []
    for start in range(0, len(idx), batch_size):
        chosen = idx[start : start + batch_size]
        variants = None if variant is None else np.full(len(chosen), variant)
        parts.append(keras.ops.convert_to_numpy(target.predict_on_batch(source.gather(chosen, variants))))
    return np.concatenate(parts)


def predict_probs(
    target: keras.Model,
    inputs: Source | np.ndarray,
    idx: np.ndarray,
    batch_size: int,
    variant: int | None = None,
) -> np.ndarray:
    """``target``'s output for rows ``idx`` of ``inputs``, in batches (each image as it is, or as
    its dihedral ``variant``)."""
    return _predict(target, as_source(inputs), idx, batch_size, variant)


def variant_average(predict: Callable[[int], np.ndarray], n: int) -> np.ndarray:
    """The mean of ``predict(v)`` (``n`` rows of two probabilities) over the 8 dihedral variants."""
    total = np.zeros((n, 2), np.float64)
    for v in range(VARIANTS):
        total += predict(v)
    return (total / VARIANTS).astype(np.float32)


def tta_probs(target: keras.Model, source: Source, idx: np.ndarray, batch_size: int) -> np.ndarray:
    """``target``'s output for rows ``idx`` averaged over their 8 dihedral variants: the same
    numbers from a source of images or of the 8 variants' features."""
    return variant_average(lambda v: _predict(target, source, idx, batch_size, v), len(idx))


def predict_tta(
    model: keras.Model, images: np.ndarray, batch_size: int = 32, idx: np.ndarray | None = None
) -> np.ndarray:
    """Test-time augmentation: the whole ``model``'s probabilities for ``images`` (``(n, S, S, 3)``,
    0..255; only rows ``idx`` when given) averaged over each image's 8 dihedral variants. The
    average over the whole group is the same for any turned or mirrored copy of an image."""
    idx = np.arange(len(images)) if idx is None else np.asarray(idx)
    return tta_probs(model, ImageSource(images), idx, batch_size)
