"""The feature cache: the frozen base's outputs per image (and per dihedral variant), extracted once
per (dataset fingerprint, arch, base weights, image size, dtype policy) into memory-mapped files
under ``$LEUKML_CACHE``, read ahead batch by batch, and kept on the device when it fits."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import keras
import numpy as np

from leukml.common.cachedir import cache_path, cached_array, cached_array_later
from leukml.common.console import Progress, silent
from leukml.data.augment import VARIANTS, dihedral
from leukml.model.networks import Network
from leukml.training import device
from leukml.training.bases import BaseCache, weights_id
from leukml.training.config import TrainConfig
from leukml.training.prepared import Prepared
from leukml.training.sources import FeatureSource, device_need

# flushes and renames the feature cache files an extraction kept on the device is still writing
_FINISHING = ThreadPoolExecutor(max_workers=1, thread_name_prefix="leukml-cache-finish")


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
    extractor: keras.Model,
    images: np.ndarray,
    variant: int,
    batch_size: int,
    out: np.ndarray,
    advance: Callable[[int], None],
) -> None:
    """``extractor``'s output for variant ``variant`` of every image, written into ``out`` (host)."""
    for start, x in read_ahead(images, batch_size, variant):
        out[start : start + len(x)] = keras.ops.convert_to_numpy(extractor.predict_on_batch(x))
        advance(len(x))


def _write_rows(out: np.ndarray, start: int, rows) -> None:
    """Device ``rows`` into ``out`` from row ``start`` (on the writer thread: it waits for them)."""
    out[start : start + len(rows)] = keras.ops.convert_to_numpy(rows)


def _extract_kept(
    extractor: keras.Model,
    images: np.ndarray,
    variant: int,
    batch_size: int,
    out: np.ndarray,
    advance: Callable[[int], None],
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
            advance(len(x))
    finally:
        writer.shutdown(wait=False)  # the queued writes go on
    if not parts:
        return None, writes
    whole = parts[0] if len(parts) == 1 else keras.ops.concatenate(parts)
    return keras.ops.cast(whole, "float32"), writes  # as the cache file holds them (a bfloat16 base's too)


def _cached_features(
    network: Network,
    prepared: Prepared,
    key: str,
    variant: int,
    batch_size: int | None,
    keep: bool,
    progress: Progress = silent,
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
        what = "extracting base features" + (f" (dihedral variant {variant})" if variant else "")
        with progress(what, len(prepared.images), "img") as advance:
            if not keep:
                return _extract(extractor, prepared.images, variant, batch, out, advance)
            features, writes = _extract_kept(extractor, prepared.images, variant, batch, out, advance)
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
    progress: Progress = silent,
) -> FeatureSource:
    """The cached features a run trains on: of the 8 dihedral variants of every image when its
    recipe draws them or tests with them (each extracted once, then cached), else of the images.

    Where the head trains in compiled epochs (``compiled_epoch`` on a backend that has them),
    features extracted now stay on the device for it. With ``bases`` (a search worker's), the
    source, its device copies included, is kept there for the worker's next trials on the same
    features (``BaseCache.features``). ``progress`` hears of an extraction."""
    key = _feature_key(network, prepared, config, bases)
    count = VARIANTS if config.recipe.variants_needed else 1
    variant_bytes = len(prepared.images) * math.prod(network.extractor.output_shape[1:]) * 4
    keep = (
        config.compiled_epoch
        and device.resident(config.jit_compile)
        and device.holds(device_need(variant_bytes, count))
    )

    def make() -> FeatureSource:
        made = [_cached_features(network, prepared, key, v, batch_size, keep, progress) for v in range(count)]
        extracted = [kept for _, kept, _ in made]
        pending = [done for _, _, done in made if done is not None]
        return FeatureSource(
            [host for host, _, _ in made], extracted if None not in extracted else (), pending
        )

    return make() if bases is None else bases.features(key, count, make)
