"""Feature extraction and the image cache: leukml's paths against the plain way, same data.

1. Decode + resize: ``leukml.data.imagecache.load_images`` on synthetic BMP files with an empty
   image cache (decodes every file, writes the cache) against a second call that memory-maps the
   cache (read in full here, so the lazy map is not flattered). Both read files the OS has in its
   page cache, as a second training on the same machine would.
2. Base feature extraction per architecture: ``leukml.training.trainer.extract_features`` (uint8 batches
   read ahead on a thread, cast on the device inside the model, ``predict_on_batch``, features
   written to a memory-mapped cache file; the cache
   file is deleted before every timed call, so each call extracts) against a bare
   ``extractor.predict`` on the same uint8 image array with the same batch size. Repetitions are
   interleaved; the median is reported. Both give the same features (checked).

Data: synthetic cells from ``leukml.data.synth`` written as BMP files into a temp dir; a temp
``LEUKML_CACHE``; ``weights=none`` (the FLOPs of ImageNet weights). Prints a markdown table whose
last line is the headline: leukml's extraction throughput over the bare predict's (>= 0.9 wanted).
"""

from __future__ import annotations

import shutil
import statistics

import harness

WORK = harness.workdir("extract")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from leukml.common.cachedir import cache_root  # noqa: E402
from leukml.data.discovery import discover  # noqa: E402
from leukml.data.imagecache import load_images  # noqa: E402
from leukml.data.splits import split_records  # noqa: E402
from leukml.model.networks import build_network  # noqa: E402
from leukml.training.config import TrainConfig  # noqa: E402
from leukml.training.trainer import Prepared, extract_features  # noqa: E402


def bench_cache(dataset, size: int) -> tuple[float, float, np.ndarray]:
    """Seconds for the first (decode) and second (cached) ``load_images``, and the images."""
    t_decode, _ = harness.timed(load_images, dataset, size)
    t_cached, images = harness.timed(lambda: np.array(load_images(dataset, size)))  # read every byte
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
        t, ours = harness.timed(extract_features, net, prepared, config, batch)
        leukml_s.append(t)
        t, bare = harness.timed(net.extractor.predict, images, batch_size=batch, verbose=0)
        bare_s.append(t)
    diff = float(np.abs(np.asarray(ours) - np.asarray(bare)).max())
    scale = float(np.abs(np.asarray(bare)).max()) or 1.0
    return {
        "leukml": n / statistics.median(leukml_s),
        "bare": n / statistics.median(bare_s),
        "rel_diff": diff / scale,
    }


def main() -> None:
    parser = harness.Parser(
        __doc__,
        "tiny smoke run (seconds)",
        images=(400, 48),
        size=(64, 32),
        archs=("vgg16,resnet50", "vgg16"),
        reps=(3, 1),
    )
    parser.add_argument("--batch", type=int, default=64, help="extraction batch (leukml's default)")
    args = parser.parse_args()
    n, size, reps = args.images, args.size, args.reps
    try:
        data = harness.synthetic(WORK / "data", n, max(size, 96), subjects=6, seed=1)
        dataset = discover(data)
        print(
            f"{harness.machine()}, {len(dataset)} synthetic BMP files ({max(size, 96)} px) -> {size} px, "
            f"batch {args.batch}, {reps} interleaved rep(s), median",
            flush=True,
        )
        t_decode, t_cached, images = bench_cache(dataset, size)
        prepared = Prepared(
            dataset, split_records(dataset.records, TrainConfig.of().split), load_images(dataset, size)
        )
        rows = [
            (arch, bench_extract(arch, prepared, size, args.batch, reps)) for arch in args.archs.split(",")
        ]
    finally:
        shutil.rmtree(WORK, ignore_errors=True)
    print()
    harness.table("what", "leukml img/s", "plain img/s", "leukml / plain")
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
    harness.headline(
        f"leukml extraction throughput / bare predict, worst arch: {worst:.2f}x "
        f"({'within 10%' if worst >= 0.9 else 'SLOWER than 10%'}); image cache "
        f"{t_decode / t_cached:.0f}x faster than decoding"
    )


if __name__ == "__main__":
    main()
