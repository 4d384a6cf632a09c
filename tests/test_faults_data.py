"""Faults a real lab meets in its data (issue 29): files that change between hashing and decoding,
a full cache disk, and files leukml leaves out, each said in a line and counted."""

from __future__ import annotations

import base64
import os
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import LEUKML, mlflow_store
from PIL import Image

from leukml.data import discovery, filehash
from leukml.data.discovery import discover
from leukml.data.imagecache import load_images
from leukml.data.images import ImageError, decode_base64_batch, decode_image
from leukml.data.synth import SynthConfig, write_synthetic

TINY = {"n_all": 8, "n_hem": 4, "subjects": 4, "size": 40}


@pytest.fixture
def cells(tmp_path, monkeypatch, request) -> Path:
    """12 synthetic cells of their own (a seed per test: no cache of another test's applies),
    older than the (shortened) racy window, so their digests are memoised."""
    monkeypatch.setattr(filehash, "RACY_S", 0.2)
    seed = sum(map(ord, request.node.name))
    root = write_synthetic(tmp_path / "cells", SynthConfig(seed=seed, **TINY))
    time.sleep(0.3)  # a clock interval: files this old are memoised
    return root


def _change_after_hashing(monkeypatch, change) -> list[dict[str, str]]:
    """Call ``change()`` right after discovery takes the digests (as a sync tool might); returns
    the digests taken."""
    real, taken = discovery.content_digests, []

    def hashed_then_changed(*args, **kwargs):
        digests, errors = real(*args, **kwargs)
        taken.append(dict(digests))
        change()
        return digests, errors

    monkeypatch.setattr(discovery, "content_digests", hashed_then_changed)
    return taken


def _swap(a: Path, b: Path) -> None:
    data_a, data_b = a.read_bytes(), b.read_bytes()
    assert len(data_a) == len(data_b)  # the same names and sizes: only the bytes differ
    a.write_bytes(data_b)
    b.write_bytes(data_a)


def test_image_cache_holds_the_bytes_its_fingerprint_names(cells, monkeypatch):
    first = discover(cells)  # the scan verdicts are cached: only the decode reads the files again
    a, b = first.paths()[0], first.paths()[-1]
    taken = _change_after_hashing(monkeypatch, lambda: _swap(a, b))
    with pytest.raises(filehash.DataChanged, match=a.name):
        load_images(discover(cells), 32)
    monkeypatch.undo()
    _swap(a, b)  # the files as they were hashed
    again = discover(cells)
    assert {r.relpath: r.digest for r in again.records} == taken[0]
    assert again.fingerprint == first.fingerprint
    images = load_images(again, 32)
    for i, path in enumerate(again.paths()):
        np.testing.assert_array_equal(images[i], decode_image(path, 32), err_msg=path.name)


def test_scan_verdict_is_of_the_bytes_that_were_hashed(cells, monkeypatch):
    discover(cells)  # every digest memoised: a later scan reads the files again
    target = sorted(cells.rglob("*.bmp"))[0]
    shutil.copy(target, target.with_name("UID_7_7_7_" + target.name.rsplit("_", 1)[-1]))  # a new scan
    good = target.read_bytes()
    _change_after_hashing(monkeypatch, lambda: target.write_bytes(b"XX" + good[2:]))
    with pytest.raises(filehash.DataChanged, match=target.name):
        discover(cells)
    monkeypatch.undo()
    target.write_bytes(good)
    dataset = discover(cells)
    assert not dataset.skipped and len(dataset) == 13


def test_files_read_to_be_hashed_are_checked_from_those_bytes(cells, monkeypatch):
    target = sorted(cells.rglob("*.bmp"))[0]
    good = target.read_bytes()
    _change_after_hashing(monkeypatch, lambda: target.write_bytes(b"XX" + good[2:]))
    dataset = discover(cells)  # the verdict is of the (good) bytes that were hashed
    assert not dataset.skipped and len(dataset) == 12
    with pytest.raises(filehash.DataChanged, match=target.name):
        load_images(dataset, 32)


@pytest.fixture
def full_disk(tmp_path) -> Path:
    """A 2 MB tmpfs with 64 KiB left: room for discovery's small JSON files, not for decoded images."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (as in CI)")
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], check=True, timeout=30)
    try:
        free = shutil.disk_usage(disk).free
        (disk / "filler").write_bytes(b"\0" * (free - 64 * 1024))
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True, timeout=30)


@pytest.mark.slow
def test_cache_on_a_full_disk_fails_in_one_line_and_the_run_fails(tmp_path, tiny_data, full_disk, child_env):
    store = tmp_path / "mlflow.db"
    args = [str(LEUKML), "train", "--data-dir", str(tiny_data), "--weights", "none", "--image-size", "40"]
    args += ["--epochs", "1", "--batch-size", "8", "--tracking-uri", f"sqlite:///{store}"]
    env = child_env(LEUKML_CACHE=str(full_disk / "cache"))
    done = subprocess.run(args, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    images = full_disk / "cache" / "images"
    assert f"no space left in the cache folder {images}" in last, last
    assert f"{48 * 40 * 40 * 3:,} bytes needed" in last and "LEUKML_CACHE" in last, last
    assert not list(full_disk.rglob("*.tmp"))  # no partial file left behind
    with sqlite3.connect(store) as db:
        assert db.execute("select status from runs").fetchall() == [("FAILED",)]


@pytest.fixture(scope="module")
def messy(tmp_path_factory) -> Path:
    """12 good cells and, beside them, one file of each kind a lab's folder holds by mistake."""
    root = write_synthetic(tmp_path_factory.mktemp("messy"), SynthConfig(seed=3, **TINY))
    cells = sorted(root.rglob("*.bmp"))
    good_all = next(p for p in cells if p.parent.name == "all")
    hem = next(p for p in cells if p.parent.name == "hem").parent
    prelim = root / "prelim"
    prelim.mkdir()
    (prelim / "labels.csv").write_text(
        "Patient_ID,new_names,labels\n" + "".join(f"P{i},{i}.bmp,2\n" for i in (1, 2))
    )
    for i in (1, 2):
        shutil.copy(good_all, prelim / f"{i}.bmp")
    (good_all.parent / "UID_9_1_1_all.bmp").write_bytes(b"")  # zero bytes
    (good_all.parent / "UID_9_2_1_all.bmp").write_bytes(good_all.read_bytes()[:300])  # truncated
    (hem / "UID_H9_3_1_hem.bmp").symlink_to(root / "gone.bmp")  # broken link
    shutil.copy(good_all, hem / "UID_9_4_1_all.bmp")  # an ALL cell filed under hem/
    other = root / "other"
    other.mkdir()
    (other / "labels.csv").write_text("file,class\nx.bmp,1\n")
    shutil.copy(good_all, other / "x.bmp")
    return root


def test_discovery_names_misfiled_cells_and_the_csv_it_cannot_read(messy):
    skipped = {s.path: s for s in discover(messy).skipped}
    misfiled = skipped[next(p for p in skipped if p.endswith("UID_9_4_1_all.bmp"))]
    assert misfiled.kind == "name and folder disagree"
    assert "name says all" in misfiled.reason and "hem/" in misfiled.reason
    assert "other/labels.csv" in skipped["other/x.bmp"].reason
    assert "'file,class'" in skipped["other/x.bmp"].reason
    assert skipped["prelim/1.bmp"].kind == "bad label"


@pytest.mark.slow
def test_training_says_what_it_skipped_and_tags_the_run(tmp_path, messy, child_env):
    store = tmp_path / "mlflow.db"
    args = [str(LEUKML), "train", "--data-dir", str(messy), "--weights", "none", "--image-size", "32"]
    args += ["--epochs", "1", "--batch-size", "8", "--tracking-uri", f"sqlite:///{store}"]
    env = child_env()
    del env["LEUKML_QUIET"]
    done = subprocess.run(args, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    said = [line for line in done.stderr.splitlines() if line.startswith("warning: skipped")]
    assert len(said) == 1, done.stderr[-3000:]
    line = said[0]
    assert f"skipped 7 of 19 files under {messy}: " in line, line
    for count in (
        "2 bad label",
        "2 unusable image",
        "1 broken link",
        "1 name and folder disagree",
        "1 unlabelled",
    ):
        assert count in line, line
    assert line.endswith(f"run `leukml inspect {messy}` for the rest"), line
    with sqlite3.connect(store) as db:
        tags = dict(db.execute("select key, value from tags where key like 'skipped%'").fetchall())
    assert tags == {
        "skipped": "7",
        "skipped_bad_label": "2",
        "skipped_unusable_image": "2",
        "skipped_broken_link": "1",
        "skipped_name_and_folder_disagree": "1",
        "skipped_unlabelled": "1",
    }


def _float_tiff(path: Path, pixels: np.ndarray) -> Path:
    Image.fromarray(pixels.astype(np.float32), mode="F").save(path)
    return path


def test_float_tiff_is_scaled_not_decoded_black(tmp_path):
    pixels = np.random.default_rng(0).random((40, 40))  # a microscope's 0..1 floats
    decoded = decode_image(_float_tiff(tmp_path / "cell.tif", pixels), 40)
    np.testing.assert_array_equal(decoded[..., 0], np.rint(pixels.astype(np.float32) * 255))
    with pytest.raises(ImageError, match="NaN, infinite or negative"):
        decode_image(_float_tiff(tmp_path / "nan.tif", np.full((40, 40), np.nan)), 40)


def test_served_model_refuses_a_blank_image(tmp_path):
    _float_tiff(tmp_path / "black.tif", np.zeros((40, 40)))
    encoded = base64.b64encode((tmp_path / "black.tif").read_bytes()).decode()
    with pytest.raises(ValueError, match="row 0: not a usable image: blank image"):
        decode_base64_batch([encoded], 32)


def test_predict_refuses_a_blank_image_in_one_line(tmp_path, child_env):
    _float_tiff(tmp_path / "black.tif", np.zeros((40, 40)))
    args = [str(LEUKML), "predict", "black.tif", "--model-uri", "models:/leukml-all-classifier@champion"]
    env = child_env(MLFLOW_TRACKING_URI=mlflow_store(tmp_path))
    done = subprocess.run(args, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr[-3000:]
    assert done.stderr.strip().splitlines() == [
        "Error: black.tif: blank image (every pixel is 0): there is no cell to classify; "
        "give BMP, PNG, JPEG or TIFF images of single cells"
    ]


def test_inspect_counts_the_skipped_files_per_reason(messy, child_env):
    done = subprocess.run(
        [str(LEUKML), "inspect", str(messy)], env=child_env(), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(line for line in done.stdout.splitlines() if line.startswith("skipped "))
    assert line == (
        "skipped 7 file(s): 2 unusable image, 2 bad label, 1 name and folder disagree, 1 broken link, "
        "1 unlabelled"
    )
