from __future__ import annotations

import contextlib

import numpy as np

import leukml.data.imagecache as imagecache
from leukml.data.discovery import discover
from leukml.data.imagecache import load_images
from leukml.data.synth import SynthConfig, write_synthetic


def test_synthetic_is_deterministic_and_real_layout(tmp_path):
    config = SynthConfig(n_all=6, n_hem=3, subjects=3, size=32, seed=1)
    a, b = write_synthetic(tmp_path / "a", config), write_synthetic(tmp_path / "b", config)
    files = sorted(p.relative_to(a) for p in a.rglob("*.bmp"))
    assert len(files) == 9
    assert all(p.parts[:2] == ("C-NMC_Leukemia", "training_data") for p in files)
    assert all((a / p).read_bytes() == (b / p).read_bytes() for p in files)
    ds = discover(a)
    assert {r.subject for r in ds.records if r.label == 0} == {"H1"}
    other = write_synthetic(tmp_path / "c", SynthConfig(n_all=6, n_hem=3, subjects=3, size=32, seed=2))
    assert (other / files[0]).read_bytes() != (a / files[0]).read_bytes()


def test_synthetic_classes_differ_in_nucleus(tiny_data):
    ds = discover(tiny_data)
    images = load_images(ds, 48).astype(np.float32)
    # dark (nucleus) area per cell: ALL blasts have the larger nucleus, with overlap
    dark = (images.sum(-1) > 30) & (images[..., 1] < np.median(images[..., 1][images[..., 1] > 10]))
    area = dark.reshape(len(ds), -1).mean(1)
    assert area[ds.labels == 1].mean() > area[ds.labels == 0].mean()


def test_image_cache_reused_without_decoding(tiny_data, monkeypatch):
    ds = discover(tiny_data)
    first = np.array(load_images(ds, 40))
    assert first.shape == (48, 40, 40, 3) and first.dtype == np.uint8

    def fail(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(imagecache, "decode_image", fail)
    second = load_images(ds, 40)
    assert isinstance(second, np.memmap)
    np.testing.assert_array_equal(first, second)


def test_interrupted_cache_is_never_used(tiny_data, monkeypatch):
    ds = discover(tiny_data)
    calls = {"n": 0}
    real = imagecache.decode_image

    def interrupt_after_three(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(imagecache, "decode_image", interrupt_after_three)
    with contextlib.suppress(KeyboardInterrupt):
        load_images(ds, 24)
    monkeypatch.setattr(imagecache, "decode_image", real)
    images = load_images(ds, 24)
    assert images[-1].any()  # the last image was decoded by the complete run
