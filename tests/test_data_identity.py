"""A dataset is its bytes: no cache entry (scan verdicts, decoded images, features) is ever used
for other bytes, and the per-file digest memo only skips files whose stat is unchanged."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import tiny_config

from leukml.data import filehash
from leukml.data.discovery import discover
from leukml.data.imagecache import load_images
from leukml.data.synth import SynthConfig, write_synthetic
from leukml.training.trainer import train

TINY = {"n_all": 16, "n_hem": 8, "subjects": 4, "size": 40}


def _relpaths(root: Path) -> list[tuple[str, int]]:
    return sorted((p.relative_to(root).as_posix(), p.stat().st_size) for p in root.rglob("*.bmp"))


@pytest.fixture(autouse=True)
def short_racy_window(monkeypatch):
    """Files changed less than ``RACY_S`` before they are looked at are always re-hashed (2 s by
    default); 0.2 s keeps these tests short, and ``_settle`` waits it out."""
    monkeypatch.setattr(filehash, "RACY_S", 0.2)


def _settle() -> None:
    """Wait out the racy window (a clock interval, not a machine-speed assumption)."""
    time.sleep(0.3)


def _feature_files(cache: Path) -> set[str]:
    return {p.name for p in (cache / "features").glob("*.npy")}


@pytest.fixture
def two_seeds(tmp_path) -> tuple[Path, Path]:
    a = write_synthetic(tmp_path / "a", SynthConfig(seed=1, **TINY))
    b = write_synthetic(tmp_path / "b", SynthConfig(seed=2, **TINY))
    assert _relpaths(a) == _relpaths(b)  # the same names and byte sizes: only the bytes differ
    return a, b


def test_same_names_and_sizes_other_bytes_train_on_their_own_pixels(two_seeds, leukml_cache):
    a, b = two_seeds
    ds_a, ds_b = discover(a), discover(b)
    assert ds_a.fingerprint != ds_b.fingerprint
    pixels_a, pixels_b = load_images(ds_a, 32), load_images(ds_b, 32)
    assert not np.array_equal(pixels_a, pixels_b)

    runs = {}
    for root in (a, b):
        before = _feature_files(leukml_cache)
        config = tiny_config(root, epochs=2)
        runs[root] = (train(config), _feature_files(leukml_cache) - before)
    (result_a, new_a), (result_b, new_b) = runs[a], runs[b]
    assert len(new_a) == 1 and len(new_b) == 1 and new_a != new_b  # b extracted its own features
    features_a = np.load(leukml_cache / "features" / new_a.pop())
    features_b = np.load(leukml_cache / "features" / new_b.pop())
    assert not np.array_equal(features_a, features_b)
    assert result_a.history["train_loss"] != result_b.history["train_loss"]


def _rewrite_keeping_size_and_mtime(path: Path, data: bytes) -> None:
    """Change a file's bytes in place, as an editor or a stain-normalising tool that preserves
    timestamps would: same size, same mtime (only the ctime, which no user can set, moves)."""
    info = path.stat()
    assert len(data) == info.st_size
    with open(path, "r+b") as fh:
        fh.write(data)
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))


def test_bytes_changed_in_place_rebuild_scan_images_and_features(tmp_path, leukml_cache):
    root = write_synthetic(tmp_path / "cells", SynthConfig(seed=5, **TINY))
    _settle()
    config = tiny_config(root, epochs=1)
    first = discover(root)
    images_first = np.array(load_images(first, 32))
    features_before = _feature_files(leukml_cache)
    train(config)
    features_first = _feature_files(leukml_cache) - features_before

    # one image's pixels replaced by another image's (same size), timestamps restored
    donor, target = first.paths()[0], first.paths()[-1]
    _rewrite_keeping_size_and_mtime(target, donor.read_bytes())
    second = discover(root)
    assert second.fingerprint != first.fingerprint
    images_second = load_images(second, 32)
    i = second.paths().index(target)
    np.testing.assert_array_equal(images_second[i], images_first[0])
    train(config)
    assert _feature_files(leukml_cache) - features_before - features_first  # features rebuilt

    # the same file's header broken (same size): the cached "good" verdict must not be reused
    broken = b"XX" + target.read_bytes()[2:]
    _rewrite_keeping_size_and_mtime(target, broken)
    third = discover(root)
    assert target.relative_to(root).as_posix() in {s.path for s in third.skipped}
    assert len(third) == len(first) - 1


def test_copied_folder_with_one_broken_file_gets_its_own_scan(tmp_path):
    good = write_synthetic(tmp_path / "good", SynthConfig(seed=6, **TINY))
    discover(good)
    copy = tmp_path / "copy"
    shutil.copytree(good, copy)
    victim = sorted(copy.rglob("*.bmp"))[3]
    victim.write_bytes(b"XX" + victim.read_bytes()[2:])
    dataset = discover(copy)
    assert victim.relative_to(copy).as_posix() in {s.path for s in dataset.skipped}


def test_digest_memo_skips_unchanged_files_only(tmp_path, monkeypatch):
    root = write_synthetic(tmp_path / "cells", SynthConfig(seed=8, **TINY))
    _settle()
    hashed: list[Path] = []
    real = filehash.file_digest
    monkeypatch.setattr(filehash, "file_digest", lambda p, *seen: hashed.append(p) or real(p, *seen))
    first = discover(root)
    assert len(hashed) == len(first)
    hashed.clear()
    assert discover(root).fingerprint == first.fingerprint
    assert hashed == []  # a second discovery reads no file

    victim = first.paths()[1]
    _rewrite_keeping_size_and_mtime(victim, first.paths()[2].read_bytes())
    assert discover(root).fingerprint != first.fingerprint
    assert hashed == [victim]  # only the changed file was read again


def test_fresh_files_are_rehashed_until_they_are_old(tmp_path, monkeypatch):
    """A file hashed within RACY_S of its last change may change again within the same timestamp
    tick without any visible stat change, so its digest is not memoised yet."""
    monkeypatch.setattr(filehash, "RACY_S", 3600.0)  # every file is "just changed"
    root = write_synthetic(tmp_path / "cells", SynthConfig(seed=9, **TINY))
    hashed: list[Path] = []
    real = filehash.file_digest
    monkeypatch.setattr(filehash, "file_digest", lambda p, *seen: hashed.append(p) or real(p, *seen))
    n = len(discover(root))
    discover(root)
    assert len(hashed) == 2 * n
