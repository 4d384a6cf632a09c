"""A synthetic C-NMC-like dataset: one stained cell per image on black, in the real folder layout.

ALL lymphoblasts and normal B-lymphoid precursors differ here the way they do on real slides,
with overlap: blasts have a larger, rounder nucleus (high nucleus-to-cytoplasm ratio) with fine
chromatin; normal cells a smaller, less regular nucleus with coarse, clumped chromatin. Each subject
has its own stain hue and cell size, so image-wise splits look better than subject-wise ones.
"""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from leukml.common.cachedir import cache_root
from leukml.common.errors import OptionError

N_FOLDS = 3
# the C-NMC release's test sets, relative to C-NMC_Leukemia/
PRELIM_DIR = "validation_data/C-NMC_test_prelim_phase_data"
PRELIM_CSV = "validation_data/C-NMC_test_prelim_phase_data_labels.csv"
FINAL_DIR = "testing_data/C-NMC_test_final_phase_data"


@dataclass(frozen=True)
class SynthConfig:
    n_all: int = 240
    n_hem: int = 120
    subjects: int = 12
    size: int = 128
    seed: int = 42
    # the official release's test sets: a labelled preliminary set and an unlabelled final set,
    # each of its own subjects (none of them in training_data)
    n_prelim: int = 0
    n_final: int = 0
    test_subjects: int = 4

    def __post_init__(self) -> None:
        if min(self.n_prelim, self.n_final) < 0:
            raise OptionError(f"n_prelim={self.n_prelim}, n_final={self.n_final}; use 0 or more")
        if (self.n_prelim or self.n_final) and self.test_subjects < 2:
            raise OptionError(f"test_subjects={self.test_subjects}; use at least 2 (one per class)")
        if self.n_all < 1 or self.n_hem < 1:
            raise OptionError(f"n_all={self.n_all}, n_hem={self.n_hem}; both classes need >= 1 image")
        if self.subjects < 2:
            raise OptionError(f"subjects={self.subjects}; use at least 2 (one per class)")
        if self.size < 16:
            raise OptionError(f"size={self.size}; use at least 16 pixels")

    def subject_counts(self) -> tuple[int, int]:
        """(ALL subjects, normal subjects), in proportion to the images, at least one each."""
        k_hem = round(self.subjects * self.n_hem / (self.n_all + self.n_hem))
        k_hem = min(max(k_hem, 1), self.subjects - 1, self.n_hem)
        return min(self.subjects - k_hem, self.n_all), k_hem


def _smooth_noise(rng: np.random.Generator, size: int, grain: int) -> np.ndarray:
    """Zero-mean, unit-ish noise with blobs about ``size / grain`` pixels wide."""
    low = rng.standard_normal((grain, grain)).astype(np.float32)
    return np.asarray(Image.fromarray(low, mode="F").resize((size, size), Image.Resampling.BICUBIC))


def _blob(
    r: np.ndarray, theta: np.ndarray, radius: float, wobble: float, rng: np.random.Generator
) -> np.ndarray:
    edge = np.full_like(theta, radius)
    for k in (2, 3, 5):
        edge += radius * wobble * rng.uniform(0.3, 1.0) / k * np.cos(k * theta + rng.uniform(0, 6.3))
    return r < edge


def render_cell(
    malignant: bool, stain: np.ndarray, scale: float, size: int, rng: np.random.Generator
) -> np.ndarray:
    """One ``(size, size, 3)`` uint8 cell image."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    cy, cx = (size / 2 + rng.normal(0, size * 0.03, 2)).astype(np.float32)
    cell_r = size * 0.36 * scale * rng.uniform(0.9, 1.1)
    r, theta = np.hypot(yy - cy, xx - cx), np.arctan2(yy - cy, xx - cx)
    cell = _blob(r, theta, cell_r, 0.08, rng)

    nc_ratio = rng.normal(0.84, 0.06) if malignant else rng.normal(0.75, 0.07)
    elong = rng.normal(0.93, 0.04) if malignant else rng.normal(0.86, 0.06)
    shift = cell_r * (rng.uniform(0.0, 0.08) if malignant else rng.uniform(0.05, 0.18))
    angle = rng.uniform(0, 2 * np.pi)
    ny, nx = cy + shift * np.sin(angle), cx + shift * np.cos(angle)
    # elongate the nucleus along a random axis
    rot = rng.uniform(0, np.pi)
    u = (xx - nx) * np.cos(rot) + (yy - ny) * np.sin(rot)
    v = -(xx - nx) * np.sin(rot) + (yy - ny) * np.cos(rot)
    nr, ntheta = np.hypot(u, v / np.clip(elong, 0.5, 1.0)), np.arctan2(v, u)
    nucleus = (
        _blob(nr, ntheta, cell_r * np.clip(nc_ratio, 0.35, 0.95), 0.05 if malignant else 0.15, rng) & cell
    )

    grain, amp = (size // 4, 0.10) if malignant else (max(size // 12, 3), 0.16)
    chromatin = _smooth_noise(rng, size, grain) * amp
    cyto_tex = _smooth_noise(rng, size, max(size // 8, 2)) * 0.05

    cyto_color = stain * np.array([0.95, 0.85, 1.0])
    nuc_color = stain * np.array([0.62, 0.42, 0.82])
    img = np.zeros((size, size, 3), np.float32)
    img[cell] = cyto_color * (1 + cyto_tex[cell, None])
    img[nucleus] = nuc_color * (1 + chromatin[nucleus, None])
    img += rng.normal(0, 3.0, img.shape) * cell[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


def _subjects(
    config: SynthConfig, counts: tuple[int, int] | None = None, first: int = 1, stream: int = 0
) -> list[tuple[str, bool, int, np.ndarray, float]]:
    """(id, malignant, fold, stain RGB, size scale) per subject; ids count from ``first``."""
    k_all, k_hem = counts or config.subject_counts()
    rng = np.random.default_rng([config.seed, stream])
    out = []
    for malignant, count, prefix in ((True, k_all, ""), (False, k_hem, "H")):
        for i in range(count):
            stain = np.array([150.0, 110.0, 170.0]) * rng.uniform(0.85, 1.15, 3)
            scale = rng.uniform(0.85, 1.15)
            out.append((f"{prefix}{first + i}", malignant, i % N_FOLDS, stain, scale))
    return out


def _test_set(
    config: SynthConfig, folder: Path, n: int, stream: int, first: int
) -> list[tuple[str, str, int]]:
    """Write ``n`` cells of new subjects as ``folder/<k>.bmp`` (k = 1..n, shuffled classes), as the
    C-NMC test sets are; returns their (Patient_ID, new_names, labels) rows in file order."""
    share_all = config.n_all / (config.n_all + config.n_hem)
    k_all = min(max(round(config.test_subjects * share_all), 1), config.test_subjects - 1)
    subjects = _subjects(config, (k_all, config.test_subjects - k_all), first, stream)
    n_all = min(max(round(n * share_all), 1), n - 1) if n > 1 else n
    classes = np.random.default_rng([config.seed, stream, 0]).permutation(
        [True] * n_all + [False] * (n - n_all)
    )
    folder.mkdir(parents=True, exist_ok=True)
    rows, seen = [], {True: 0, False: 0}
    for k, malignant in enumerate(classes, start=1):
        mine = [s for s in subjects if s[1] == malignant]
        i = seen[malignant]
        seen[malignant] += 1
        sid, _, _, stain, scale = mine[i % len(mine)]
        rng = np.random.default_rng([config.seed, stream, int(malignant) + 1, i])
        Image.fromarray(render_cell(bool(malignant), stain, scale, config.size, rng)).save(
            folder / f"{k}.bmp"
        )
        cls = "all" if malignant else "hem"
        rows.append((f"UID_{sid}_{i // len(mine) + 1}_{1 + i % 3}_{cls}.bmp", f"{k}.bmp", int(malignant)))
    return rows


def write_synthetic(out: str | os.PathLike, config: SynthConfig = SynthConfig()) -> Path:
    """Write the dataset under ``out/C-NMC_Leukemia/training_data/fold_<k>/{all,hem}/``, and the
    official release's test sets when asked: ``n_prelim`` labelled cells in ``PRELIM_DIR`` with their
    labels CSV (``Patient_ID,new_names,labels``), ``n_final`` unlabelled cells in ``FINAL_DIR``.

    Deterministic for a config. Returns ``out``.
    """
    out = Path(out)
    subjects = _subjects(config)
    for malignant, n_images in ((True, config.n_all), (False, config.n_hem)):
        mine = [s for s in subjects if s[1] == malignant]
        cls = "all" if malignant else "hem"
        for i in range(n_images):
            sid, _, fold, stain, scale = mine[i % len(mine)]
            rng = np.random.default_rng([config.seed, int(malignant) + 1, i])
            pixels = render_cell(malignant, stain, scale, config.size, rng)
            folder = out / "C-NMC_Leukemia" / "training_data" / f"fold_{fold}" / cls
            folder.mkdir(parents=True, exist_ok=True)
            name = f"UID_{sid}_{i // len(mine) + 1}_{1 + i % 3}_{cls}.bmp"
            Image.fromarray(pixels).save(folder / name)
    release = out / "C-NMC_Leukemia"
    k_all, k_hem = config.subject_counts()
    if config.n_prelim:
        rows = _test_set(config, release / PRELIM_DIR, config.n_prelim, 1, max(k_all, k_hem) + 1)
        with (release / PRELIM_CSV).open("w", newline="") as fh:
            csv.writer(fh).writerows([("Patient_ID", "new_names", "labels"), *rows])
    if config.n_final:
        first = max(k_all, k_hem) + config.test_subjects + 1
        _test_set(config, release / FINAL_DIR, config.n_final, 2, first)
    return out


def embedded_dataset(config: SynthConfig = SynthConfig()) -> Path:
    """The default dataset: synthetic, written once into the cache and reused."""
    name = f"v1-{config.n_all}-{config.n_hem}-{config.subjects}-{config.size}-{config.seed}"
    if config.n_prelim or config.n_final:
        name += f"-official-{config.n_prelim}-{config.n_final}-{config.test_subjects}"
    target = cache_root() / "synthetic" / name
    if not target.is_dir():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=target.parent))
        write_synthetic(tmp, config)
        try:
            os.rename(tmp, target)
        except OSError:  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
    return target
