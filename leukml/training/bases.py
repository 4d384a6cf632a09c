"""Frozen bases, and their features on the device, kept by whoever runs many trainings (a search
worker): an object its owner passes in.

Building a ResNet50 costs seconds, loading its ImageNet weights more, and hashing a base's weights
(the key of its cached features) ~0.1 s for VGG16. A ``BaseCache`` builds each distinct frozen base
once and hashes its weights once. Frozen bases never change, and a head's initial weights depend on
the seed alone (``models.build_network``), so trainings that share a base give the same results as
with a base built afresh. Its ``features`` keep each base's cached features, with their device
copies, for the worker's later trials: a trial on them copies nothing to the device again.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable

import keras
import numpy as np

from leukml.model.archs import resolve_weights
from leukml.model.networks import build_base
from leukml.training import device
from leukml.training.config import TrainConfig
from leukml.training.sources import FeatureSource


def weights_id(base: keras.Model) -> str:
    """A hash of the base's actual weights: features are reused only for the very same base,
    whatever the weights option, seed or backend that produced it."""
    digest = hashlib.sha256()
    for w in base.get_weights():
        digest.update(np.ascontiguousarray(w).tobytes())
    return digest.hexdigest()[:16]


class BaseCache:
    """Built frozen bases by (arch, weights, image size, dtype policy, seed), and their weight
    hashes. The cache holds every base it built, so an ``id`` it remembers is never reused."""

    def __init__(self) -> None:
        self._bases: dict[tuple, keras.Model] = {}
        self._weights_ids: dict[int, str] = {}
        self._features: OrderedDict[str, FeatureSource] = OrderedDict()  # least recently used first

    def __len__(self) -> int:
        return len(self._bases)

    def base(self, config: TrainConfig) -> keras.Model:
        """The config's frozen base under the current dtype policy: built on first use."""
        key = (
            config.model.arch,
            resolve_weights(config.model.weights).key,
            config.model.image_size,
            keras.config.dtype_policy().name,
            config.seed,
        )
        if key not in self._bases:
            self._bases[key] = build_base(config.model.arch, config.model.weights, config.model.image_size)
        return self._bases[key]

    def weights_id(self, base: keras.Model) -> str:
        """``weights_id(base)``, computed once per base this cache built."""
        if not any(b is base for b in self._bases.values()):
            return weights_id(base)
        if id(base) not in self._weights_ids:
            self._weights_ids[id(base)] = weights_id(base)
        return self._weights_ids[id(base)]

    def features(self, key: str, count: int, make: Callable[[], FeatureSource]) -> FeatureSource:
        """The cached features under ``key`` with ``count`` variants: ``make()`` on first use, then
        the same source, device copies and all, for every later training on them. Beside the one
        returned, device copies of others are kept while they fit ``device.keep_limit()`` together,
        the least recently used released first (their host arrays stay: a later use copies again)."""
        source = self._features.pop(key, None)
        if source is None or source.variants < count:
            source = make()
        self._features[key] = source
        others = [s for k, s in self._features.items() if k != key]
        held, limit = sum(s.device_bytes for s in others), device.keep_limit()
        for other in others:  # oldest first
            if held <= limit:
                break
            held -= other.device_bytes
            other.release()
        return source
