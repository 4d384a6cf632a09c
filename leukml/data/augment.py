"""Input augmentation: the 8 dihedral variants of a cell image, and colour/scale jitter.

A cell on a black background has no preferred orientation, so its 4 quarter turns, each mirrored
or not, are equally valid pictures of it: the dihedral group of the square. ``dihedral`` maps a
variant number 0..7 to one of them (0 is the image itself). Stain and cell size vary between
patients, which ``jitter`` imitates. Everything is seeded by the caller's generator; nothing here
knows about Keras, so the same draws feed the cached-feature path and end-to-end training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from leukml.common.errors import OptionError

AUGMENTS = ("none", "dihedral", "full")
TTAS = ("none", "dihedral")
VARIANTS = 8  # 4 quarter turns x (as is, mirrored)


@dataclass(frozen=True)
class Augmentation:
    """``--augment`` decoded once: what the layers ask of it, instead of comparing its name."""

    name: str

    def __post_init__(self) -> None:
        if self.name not in AUGMENTS:
            raise OptionError(f"augment={self.name!r}; choose one of: {', '.join(AUGMENTS)}")

    @property
    def draws_variants(self) -> bool:
        """Each epoch draws one of the 8 dihedral variants per image (``dihedral``)."""
        return self.name == "dihedral"

    @property
    def jitters(self) -> bool:
        """Each epoch draws new pixels (zoom and colour jitter): no input is fixed, so nothing
        computed from the images can be cached and the base runs every epoch (``full``)."""
        return self.name == "full"

    @property
    def variants(self) -> int:
        """How many variants of every image an epoch may draw from: the features to extract."""
        return VARIANTS if self.draws_variants else 1


@dataclass(frozen=True)
class TestTime:
    """``--tta`` decoded once: how many variants of each test image are averaged."""

    __test__ = False  # not a pytest test class
    name: str

    def __post_init__(self) -> None:
        if self.name not in TTAS:
            raise OptionError(f"tta={self.name!r}; choose one of: {', '.join(TTAS)}")

    @property
    def averages(self) -> bool:
        """Probabilities are averaged over the 8 dihedral variants (``dihedral``)."""
        return self.name == "dihedral"

    @property
    def variants(self) -> int:
        """The variants of each test image whose probabilities are averaged (1: the image itself)."""
        return VARIANTS if self.averages else 1


NO_AUGMENTATION = Augmentation("none")  # the paper's

# full augmentation's jitter ranges: multiplicative brightness and contrast, hue angle in turns,
# zoom factor of the cell
BRIGHTNESS, CONTRAST, HUE_TURNS, SCALE = 0.1, 0.1, 0.03, 0.1


def dihedral(images: np.ndarray, variant: int) -> np.ndarray:
    """Variant ``variant`` (0..7) of a batch ``(n, h, w, c)`` of square images: ``variant % 4``
    quarter turns, mirrored left-right when ``variant >= 4``. Variant 0 is the batch itself."""
    if not 0 <= variant < VARIANTS:
        raise ValueError(f"variant={variant}; use 0..{VARIANTS - 1}")
    out = np.rot90(images, k=variant % 4, axes=(1, 2))
    return out[:, :, ::-1] if variant >= 4 else out


def dihedral_each(images: np.ndarray, variants: np.ndarray) -> np.ndarray:
    """Image ``i`` of the batch as its variant ``variants[i]``."""
    out = np.empty_like(images)
    for v in np.unique(variants):
        chosen = variants == v
        out[chosen] = dihedral(images[chosen], int(v))
    return out


def draw_variants(rng: np.random.Generator, n: int) -> np.ndarray:
    """One dihedral variant per image of an epoch, from the augmentation's own generator (so the
    batch order does not depend on whether a run augments)."""
    return rng.integers(0, VARIANTS, size=n)


def _hue_matrix(turns: float) -> np.ndarray:
    """RGB -> RGB rotation of the hue by ``turns`` of a circle (around the grey axis)."""
    angle = 2 * np.pi * turns
    cos, sin = np.cos(angle), np.sin(angle)
    k = np.full((3, 3), (1 - cos) / 3)
    k += np.eye(3) * cos
    s = sin / np.sqrt(3)
    k += np.array([[0, -s, s], [s, 0, -s], [-s, s, 0]])
    return k.astype(np.float32)


def _zoom(image: np.ndarray, factor: float) -> np.ndarray:
    """The image scaled about its centre by ``factor``, same size, black where nothing is."""
    size = image.shape[0]
    new = max(1, round(size * factor))
    scaled = np.asarray(Image.fromarray(image).resize((new, new), Image.Resampling.BILINEAR))
    out = np.zeros_like(image)
    if new >= size:
        start = (new - size) // 2
        out[:] = scaled[start : start + size, start : start + size]
    else:
        start = (size - new) // 2
        out[start : start + new, start : start + new] = scaled
    return out


def jitter(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``full`` augmentation of a uint8 batch: a dihedral variant, then zoom, brightness, contrast
    and hue jitter per image (the black background stays black); float32 in 0..255."""
    n = len(images)
    variants = draw_variants(rng, n)
    scales = rng.uniform(1 - SCALE, 1 + SCALE, n)
    brightness = rng.uniform(1 - BRIGHTNESS, 1 + BRIGHTNESS, n)
    contrast = rng.uniform(1 - CONTRAST, 1 + CONTRAST, n)
    hues = rng.uniform(-HUE_TURNS, HUE_TURNS, n)
    turned = dihedral_each(np.asarray(images), variants)
    out = np.empty(turned.shape, np.float32)
    for i in range(n):
        x = _zoom(turned[i], scales[i]).astype(np.float32)
        cell = x.max(axis=-1, keepdims=True) > 0
        mean = x[cell[..., 0]].mean(axis=0) if cell.any() else np.zeros(3, np.float32)
        x = ((x - mean) * contrast[i] + mean) * brightness[i]
        x = x @ _hue_matrix(hues[i]).T
        out[i] = np.clip(x, 0, 255) * cell
    return out
