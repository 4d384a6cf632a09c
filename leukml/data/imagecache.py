"""Decode once, train many: decoded images cached as a memory-mapped uint8 array per dataset."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from leukml.common.cachedir import cache_path, cached_array
from leukml.common.console import Progress, silent
from leukml.common.errors import LeukmlError
from leukml.data.discovery import Dataset, Record
from leukml.data.filehash import HASH_THREADS, hashed_reader
from leukml.data.images import DEFAULT_RESIZE, RESIZE_METHODS, ImageError, decode_image


def load_images(
    dataset: Dataset, size: int, method: str = DEFAULT_RESIZE, progress: Progress = silent
) -> np.ndarray:
    """All of ``dataset``'s images as a read-only ``(N, size, size, 3)`` uint8 array.

    The first call decodes and resizes every image into ``$LEUKML_CACHE/images/`` (keyed by the
    dataset fingerprint, size and resize method); later calls memory-map that file. A partial file
    from an interrupted run is never used: it is written under a temp name and renamed when done.
    Each image is decoded from bytes checked to be those its digest was taken from
    (``filehash.hashed_reader``), so the cache holds what its fingerprint names even when a file
    changes after discovery. ``progress`` hears of the decoding.

    Raises:
        ImageError: an image became unreadable since discovery (the message names it).
        DataChanged: an image's bytes changed since discovery (the message names it).
    """
    if method not in RESIZE_METHODS:
        raise LeukmlError(f"resize method {method!r}; choose one of: {', '.join(RESIZE_METHODS)}")
    path = cache_path("images", f"{dataset.fingerprint}-{size}-{method}.npy")

    read = hashed_reader(dataset.root)

    def decode(record: Record) -> np.ndarray:
        path = dataset.root / record.relpath
        try:
            return decode_image(read(record.relpath, record.digest), size, method)
        except (ImageError, OSError) as exc:
            raise ImageError(f"{path}: {exc}; run `leukml inspect` on the data dir") from None

    def decode_all(out: np.ndarray) -> None:
        # hashing and decoding release the GIL: reading, hashing and decoding overlap
        pool = ThreadPoolExecutor(HASH_THREADS)
        try:
            with progress(f"decoding images at {size} px", len(dataset), "img") as advance:
                for i, pixels in enumerate(pool.map(decode, dataset.records)):
                    out[i] = pixels
                    advance(1)
        finally:  # a failure (or Ctrl-C) stops here, not after decoding the rest
            pool.shutdown(wait=True, cancel_futures=True)

    return cached_array(path, (len(dataset), size, size, 3), np.uint8, decode_all)
