"""What a model sees: rows of the frozen base's cached features or images, as given or as one of
their 8 dihedral variants; the feature cache; test-time augmentation.

A ``FeatureSource`` holds the base's output per image, one array per dihedral variant (only
variant 0, the image itself, without augmentation); an ``ImageSource`` holds the images and turns
them on the fly. Both ``gather`` the batch of the same record indices and variants, so a head
trained on either is the same model (tests/test_training.py proves it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

import keras
import numpy as np

from leukml import device
from leukml.augment import VARIANTS, dihedral, dihedral_each, draw_variants, jitter
from leukml.bases import BaseCache, weights_id
from leukml.cachedir import cache_path, cached_array, cached_array_later
from leukml.config import TrainConfig
from leukml.models import Network

if TYPE_CHECKING:
    from leukml.training import Prepared

# flushes and renames the feature cache files an extraction kept on the device is still writing
_FINISHING = ThreadPoolExecutor(max_workers=1, thread_name_prefix="leukml-cache-finish")
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


def epoch_inputs(source: Source, augment: str, rng: np.random.Generator, n: int) -> Take:
    """How the ``n`` training images of one epoch are gathered under ``augment``. ``dihedral`` draws
    one variant per image of the epoch's order up front, from ``rng`` (the augmentation's own
    generator), so features and images see the same draws; ``full`` draws per batch, as they come."""
    if augment == "dihedral":
        variants = draw_variants(rng, n)
        return lambda idx, pos: source.gather(idx, variants[pos])
    if augment == "full":
        if not isinstance(source, ImageSource):
            raise ValueError("augment=full trains end to end: it needs the images, not cached features")
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


def _feature_key(network: Network, prepared: Prepared, config: TrainConfig, bases: BaseCache | None) -> str:
    wid = bases.weights_id(network.base) if bases is not None else weights_id(network.base)
    key = f"{prepared.dataset.fingerprint}-{config.model.arch}-{wid}-{config.model.image_size}"
    policy = network.base.dtype_policy.name
    if policy != "float32":  # a mixed-precision base computes other features
        key += f"-{policy}"
    return key


def read_ahead(
    images: np.ndarray, batch_size: int, variant: int = 0, on_device: bool = False
) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, batch)`` over ``images`` in order, each batch uint8 (as dihedral ``variant``), the
    next one read (from the memory-mapped cache), turned and (``on_device``) copied to the device on
    a thread while the caller's device works on this one: double buffering. uint8, not float32: a
    quarter of the bytes to copy, cast by the model (its first layer; the same features as a
    float32 batch, tests/test_extraction.py)."""

    def read(start: int):
        x = np.asarray(images[start : start + batch_size])
        x = np.ascontiguousarray(dihedral(x, variant)) if variant else x
        return device.to_device(x) if on_device else x

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="leukml-read-ahead") as pool:
        ahead = pool.submit(read, 0) if len(images) else None
        for start in range(0, len(images), batch_size):
            batch = ahead.result()
            if start + batch_size < len(images):
                ahead = pool.submit(read, start + batch_size)
            yield start, batch


def _extract(
    extractor: keras.Model, images: np.ndarray, variant: int, batch_size: int, out: np.ndarray
) -> None:
    """``extractor``'s output for variant ``variant`` of every image, written into ``out`` (host)."""
    for start, x in read_ahead(images, batch_size, variant):
        out[start : start + len(x)] = keras.ops.convert_to_numpy(extractor.predict_on_batch(x))


def _write_rows(out: np.ndarray, start: int, rows) -> None:
    """Device ``rows`` into ``out`` from row ``start`` (on the writer thread: it waits for them)."""
    out[start : start + len(rows)] = keras.ops.convert_to_numpy(rows)


def _extract_kept(
    extractor: keras.Model, images: np.ndarray, variant: int, batch_size: int, out: np.ndarray
) -> tuple[object | None, list[Future]]:
    """``_extract`` for a training that follows on the device: batches go through ``device.forward``
    and their outputs stay there; each is written into ``out`` on a thread (which waits for it
    there), so the device is never left idle for the host's copy. Returns at once: the outputs,
    joined on the device (None for no images), and the writes still going on."""
    forward, parts, writes = device.forward(extractor), [], []
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="leukml-write")
    try:
        for start, x in read_ahead(images, batch_size, variant, on_device=True):
            parts.append(forward(x))
            writes.append(writer.submit(_write_rows, out, start, parts[-1]))
    finally:
        writer.shutdown(wait=False)  # the queued writes go on
    if not parts:
        return None, writes
    whole = parts[0] if len(parts) == 1 else keras.ops.concatenate(parts)
    return keras.ops.cast(whole, "float32"), writes  # as the cache file holds them (a bfloat16 base's too)


def _cached_features(
    network: Network, prepared: Prepared, key: str, variant: int, batch_size: int | None, keep: bool
) -> tuple[np.ndarray, object | None, Future | None]:
    """The base's output for variant ``variant`` of every image, cached under ``key``; with
    ``keep``, when it was extracted now, the same on the device and the cache file's completion
    (``cached_array_later``: the training need not wait for it). Variant 0 is the image itself: its
    file is the plain features'; the others have their own (``-dihedralV``). ``batch_size`` None: as
    much as the device's memory allows (``device.extraction_batch``)."""
    extractor, kept = network.extractor, []
    name = f"{key}-dihedral{variant}.npy" if variant else f"{key}.npy"
    path, shape = cache_path("features", name), (len(prepared.images), *extractor.output_shape[1:])

    def extract_all(out: np.ndarray):
        batch = batch_size or device.extraction_batch(extractor)
        if not keep:
            return _extract(extractor, prepared.images, variant, batch, out)
        features, writes = _extract_kept(extractor, prepared.images, variant, batch, out)
        kept.append(features)
        return writes

    if not keep:
        return cached_array(path, shape, np.float32, extract_all), None, None
    host, done = cached_array_later(path, shape, np.float32, extract_all, _FINISHING)
    return host, kept[0] if kept else None, done


def extract_features(
    network: Network,
    prepared: Prepared,
    config: TrainConfig,
    batch_size: int | None = None,
    bases: BaseCache | None = None,
) -> np.ndarray:
    """The frozen base's output for every image, cached per (arch, weights, size, dataset).
    ``bases``: the cache that built ``network.base``, which remembers its weights' hash."""
    key = _feature_key(network, prepared, config, bases)
    return _cached_features(network, prepared, key, 0, batch_size, keep=False)[0]


def feature_source(
    network: Network,
    prepared: Prepared,
    config: TrainConfig,
    batch_size: int | None = None,
    bases: BaseCache | None = None,
) -> FeatureSource:
    """The cached features a run trains on: of the 8 dihedral variants of every image when its
    recipe draws them or tests with them (each extracted once, then cached), else of the images.

    Where the head trains in compiled epochs (``compiled_epoch`` on a backend that has them),
    features extracted now stay on the device for it. With ``bases`` (a search worker's), the
    source, its device copies included, is kept there for the worker's next trials on the same
    features (``BaseCache.features``)."""
    key = _feature_key(network, prepared, config, bases)
    count = VARIANTS if config.recipe.variants_needed else 1
    variant_bytes = len(prepared.images) * math.prod(network.extractor.output_shape[1:]) * 4
    keep = (
        config.compiled_epoch
        and device.resident(config.jit_compile)
        and device.holds(device_need(variant_bytes, count))
    )

    def make() -> FeatureSource:
        made = [_cached_features(network, prepared, key, v, batch_size, keep) for v in range(count)]
        extracted = [kept for _, kept, _ in made]
        pending = [done for _, _, done in made if done is not None]
        return FeatureSource(
            [host for host, _, _ in made], extracted if None not in extracted else (), pending
        )

    return make() if bases is None else bases.features(key, count, make)
