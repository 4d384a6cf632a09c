"""Feature extraction and the image cache: leukml's paths against the plain way, same data.

1. Decode + resize: ``leukml.imagecache.load_images`` on synthetic BMP files with an empty
   image cache (decodes every file, writes the cache) against a second call that memory-maps the
   cache (read in full here, so the lazy map is not flattered). Both read files the OS has in its
   page cache, as a second training on the same machine would.
2. Base feature extraction per architecture: ``leukml.training.extract_features`` (uint8 batches
   read ahead on a thread, cast on the device inside the model, ``predict_on_batch``, features
   written to a memory-mapped cache file; the cache
   file is deleted before every timed call, so each call extracts) against a bare
   ``extractor.predict`` on the same uint8 image array with the same batch size. Repetitions are
   interleaved; the median is reported. Both give the same features (checked).

Data: synthetic cells from ``leukml.synth`` written as BMP files into a temp dir; a temp
``LEUKML_CACHE``; ``weights=none`` (the FLOPs of ImageNet weights). Prints a markdown table whose
last line is the headline: leukml's extraction throughput over the bare predict's (>= 0.9 wanted).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

WORK = Path(tempfile.mkdtemp(prefix="leukml-bench-extract-"))
os.environ["LEUKML_CACHE"] = str(WORK / "cache")
os.environ.setdefault("LEUKML_QUIET", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from leukml.cachedir import cache_root  # noqa: E402
from leukml.config import TrainConfig  # noqa: E402
from leukml.discovery import discover  # noqa: E402
from leukml.imagecache import load_images  # noqa: E402
from leukml.models import build_network  # noqa: E402
from leukml.runtime import device_name  # noqa: E402
from leukml.splits import split_records  # noqa: E402
from leukml.synth import SynthConfig, write_synthetic  # noqa: E402
from leukml.training import Prepared, extract_features  # noqa: E402


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - start, out


def bench_cache(dataset, size: int) -> tuple[float, float, np.ndarray]:
    """Seconds for the first (decode) and second (cached) ``load_images``, and the images."""
    t_decode, _ = timed(load_images, dataset, size)
    t_cached, images = timed(lambda: np.array(load_images(dataset, size)))  # read every byte
    return t_decode, t_cached, images


def bench_extract(arch: str, prepared: Prepared, size: int, batch: int, reps: int) -> dict:
    keras.backend.clear_session()
    config = TrainConfig.of(arch=arch, weights="none", image_size=size)
    net = build_network(config.model)
    images = prepared.images
    n = len(images)
    for m in {batch, n % batch or batch}:  # compile both batch shapes outside the timing
        net.extractor.predict_on_batch(np.asarray(images[:m], dtype=np.float32))
    net.extractor.predict(images[:batch], batch_size=batch, verbose=0)
    features_dir = cache_root() / "features"
    leukml_s, bare_s = [], []
    for _ in range(reps):
        shutil.rmtree(features_dir, ignore_errors=True)
        t, ours = timed(extract_features, net, prepared, config, batch)
        leukml_s.append(t)
        t, bare = timed(net.extractor.predict, images, batch_size=batch, verbose=0)
        bare_s.append(t)
    diff = float(np.abs(np.asarray(ours) - np.asarray(bare)).max())
    scale = float(np.abs(np.asarray(bare)).max()) or 1.0
    return {
        "leukml": n / statistics.median(leukml_s),
        "bare": n / statistics.median(bare_s),
        "rel_diff": diff / scale,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (seconds)")
    parser.add_argument("--images", type=int, help="synthetic images (default 400; quick 48)")
    parser.add_argument("--size", type=int, help="image side in pixels (default 64; quick 32)")
    parser.add_argument("--archs", help="default vgg16,resnet50 (quick: vgg16)")
    parser.add_argument("--batch", type=int, default=64, help="extraction batch (leukml's default)")
    parser.add_argument("--reps", type=int, help="interleaved repetitions (default 3; quick 1)")
    args = parser.parse_args()
    n = args.images or (48 if args.quick else 400)
    size = args.size or (32 if args.quick else 64)
    reps = args.reps or (1 if args.quick else 3)
    try:
        n_all = max(1, round(n * 0.68))
        data = write_synthetic(
            WORK / "data", SynthConfig(n_all=n_all, n_hem=n - n_all, subjects=6, size=max(size, 96), seed=1)
        )
        dataset = discover(data)
        print(
            f"device {device_name()}, {os.cpu_count()} CPUs, backend {keras.backend.backend()}, "
            f"{len(dataset)} synthetic BMP files ({max(size, 96)} px) -> {size} px, batch "
            f"{args.batch}, {reps} interleaved rep(s), median",
            flush=True,
        )
        t_decode, t_cached, images = bench_cache(dataset, size)
        prepared = Prepared(
            dataset, split_records(dataset.records, TrainConfig.of().split), load_images(dataset, size)
        )
        rows = [
            (arch, bench_extract(arch, prepared, size, args.batch, reps))
            for arch in (args.archs or ("vgg16" if args.quick else "vgg16,resnet50")).split(",")
        ]
    finally:
        shutil.rmtree(WORK, ignore_errors=True)
    print()
    print("| what | leukml img/s | plain img/s | leukml / plain |")
    print("|---|---|---|---|")
    print(
        f"| decode+resize BMP (1st run) vs image cache (2nd run) | {n / t_cached:.0f} (cache) "
        f"| {n / t_decode:.0f} (decode) | {t_decode / t_cached:.1f}x |"
    )
    for arch, r in rows:
        print(
            f"| {arch} extraction vs bare predict (max rel. diff {r['rel_diff']:.1e}) "
            f"| {r['leukml']:.1f} | {r['bare']:.1f} | {r['leukml'] / r['bare']:.2f}x |"
        )
    worst = min(r["leukml"] / r["bare"] for _, r in rows)
    print(
        f"headline: leukml extraction throughput / bare predict, worst arch: {worst:.2f}x "
        f"({'within 10%' if worst >= 0.9 else 'SLOWER than 10%'}); image cache "
        f"{t_decode / t_cached:.0f}x faster than decoding"
    )


if __name__ == "__main__":
    main()
