"""GPU check: leukml's hot paths on C-NMC-sized data, on any Keras 3 backend (JAX on our GPUs).

Measures, per architecture and precision: base feature extraction through leukml (images/s and
achieved TFLOP/s against the card's peak), one end-to-end frozen-base training epoch (leukml's
epoch loop, batch 32, the paper's setting), and head epochs on cached features two ways, in the
same run: batch by batch (one ``train_on_batch`` call per batch of 32, ``--no-compiled-epoch``) and
compiled (``leukml.compiled.CompiledEpoch``: the features on the device, a whole epoch per call;
leukml's default). Data: 10,661 random 224 px RGB images generated in memory (C-NMC's size), 68% ALL.
Prints a markdown table; `--quick` shrinks everything for a CPU smoke run; `--head-only` times only
the two head epochs, on random features of the base's output shape (no extraction, no images).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

os.environ.setdefault("LEUKML_CACHE", tempfile.mkdtemp(prefix="leukml-gpu-"))
os.environ.setdefault("LEUKML_QUIET", "1")

import keras  # noqa: E402

from leukml.archs import ModelConfig  # noqa: E402
from leukml.compiled import CompiledEpoch  # noqa: E402
from leukml.config import TrainConfig  # noqa: E402
from leukml.discovery import Dataset  # noqa: E402
from leukml.inputs import FeatureSource  # noqa: E402
from leukml.models import build_network  # noqa: E402
from leukml.runtime import device_name  # noqa: E402
from leukml.splits import Split, SplitConfig  # noqa: E402
from leukml.training import (  # noqa: E402
    Prepared,
    binary_crossentropy,
    extract_features,
    make_optimizer,
    train_epoch,
)

# Forward GFLOP per 224 px image of the include_top=False base (2 x multiply-accumulates).
GFLOP_224 = {"vgg16": 30.7, "resnet50": 7.7}
# Dense peak TFLOP/s (SXM): fp32 (non tensor core) and bf16 tensor core.
PEAKS = {
    "H100": {"float32": 67.0, "mixed_bfloat16": 989.0},
    "H200": {"float32": 67.0, "mixed_bfloat16": 989.0},
}


def peak(device: str, precision: str) -> float | None:
    return next((p[precision] for k, p in PEAKS.items() if k in device), None)


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def epochs_per_s(epoch, min_s: float = 2.0) -> float:
    """Epochs per second of ``epoch()`` (already compiled), repeated for at least ``min_s``; every
    epoch returns host floats, so each has finished on the device when it returns."""
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < min_s or not count:
        epoch()
        count += 1
    return count / elapsed


def compile_for_training(head: keras.Model, config: TrainConfig) -> None:
    head.compile(
        optimizer=make_optimizer(config),
        loss=binary_crossentropy,
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )


def head_rates(
    head: keras.Model, features: np.ndarray, labels: np.ndarray, order: np.ndarray, config
) -> dict:
    """Head-epoch samples/s over ``order`` in batches of 32: batch by batch, then compiled (each
    after one epoch that compiles it, from a freshly compiled optimizer), and the compiled epoch's
    one-off setup seconds (the features to the device, the first epoch with its compilation)."""
    compile_for_training(head, config)
    train_epoch(head, features, labels, order, 32, None)  # compiles both batch shapes
    out = {
        "head_img_s": len(order) * epochs_per_s(lambda: train_epoch(head, features, labels, order, 32, None))
    }
    compile_for_training(head, config)
    start = time.perf_counter()
    program = CompiledEpoch.build(head, FeatureSource([features]), labels, None, 32)
    if program is None:  # this backend has no compiled epoch (torch; JAX with jit off)
        return out | {"compiled_img_s": float("nan"), "setup_s": float("nan")}
    program.train(order)  # compiles the full-batch and the last-batch programs
    out["setup_s"] = time.perf_counter() - start  # the features to the device, compiling, 1 epoch
    return out | {"compiled_img_s": len(order) * epochs_per_s(lambda: program.train(order))}


def bench(
    arch: str, precision: str, images: np.ndarray, labels: np.ndarray, size: int, extract_batch: int
) -> dict:
    keras.backend.clear_session()
    keras.mixed_precision.set_global_policy(precision)
    net = build_network(ModelConfig(arch=arch, weights="none", image_size=size))
    n = len(images)
    config = TrainConfig.of(arch=arch, weights="none", image_size=size, epochs=1)
    idx = np.arange(n)
    cut = int(n * 0.8)
    prepared = Prepared(
        Dataset(root=None, records=(), skipped=(), fingerprint=f"gpu-bench-{n}-{size}-{precision}"),
        Split(idx[:cut], idx[:0], idx[cut:], SplitConfig(), ("hem", "all")),
        images,
    )
    for m in {extract_batch, n % extract_batch or extract_batch}:  # compile both batch shapes
        net.extractor.predict_on_batch(images[:m])  # uint8, as extraction sends them
    t_extract = timed(extract_features, net, prepared, config, extract_batch)
    features = extract_features(net, prepared, config, extract_batch)  # cached now

    order = idx[:cut]
    out = {"arch": arch, "precision": precision, "extract_img_s": n / t_extract}
    target = keras.Model(net.model.input, net.model.output)
    compile_for_training(target, config)
    train_epoch(target, images, labels, order[: 32 + len(order) % 32], 32, None)  # compile
    out["e2e_img_s"] = len(order) / timed(train_epoch, target, images, labels, order, 32, None)
    return out | head_rates(net.head, features, labels, order, config)


def bench_head(arch: str, precision: str, labels: np.ndarray, size: int) -> dict:
    """``--head-only``: the two head epochs on random features of ``arch``'s output shape."""
    keras.backend.clear_session()
    keras.mixed_precision.set_global_policy(precision)
    net = build_network(ModelConfig(arch=arch, weights="none", image_size=size))
    config = TrainConfig.of(arch=arch, weights="none", image_size=size, epochs=1)
    shape = (len(labels), *net.extractor.output_shape[1:])
    features = np.random.default_rng(1).standard_normal(shape, dtype=np.float32)
    order = np.arange(int(len(labels) * 0.8))
    nan = float("nan")
    return {"arch": arch, "precision": precision, "extract_img_s": nan, "e2e_img_s": nan} | head_rates(
        net.head, features, labels, order, config
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny CPU smoke run")
    parser.add_argument("--archs", default="vgg16,resnet50")
    parser.add_argument("--precisions", default="float32,mixed_bfloat16")
    parser.add_argument("--head-only", action="store_true", help="only the two head epochs, random features")
    args = parser.parse_args()
    n, size, batch = (96, 64, 32) if args.quick else (10_661, 224, 256)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    images = None if args.head_only else rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    labels = (rng.random(n) < 0.68).astype(np.int64)
    device = device_name()
    print(
        f"device {device}, backend {keras.backend.backend()} {keras.__version__}, {n} images "
        f"{size}px{' (head only: random features)' if args.head_only else ''} generated in "
        f"{time.perf_counter() - t0:.1f} s",
        flush=True,
    )
    print(
        "| arch | precision | extract img/s | extract TFLOP/s | % of peak | e2e epoch img/s "
        "| head epoch img/s, per batch | head epoch img/s, compiled | compiled / per batch "
        "| compiled 1st epoch s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for arch in args.archs.split(","):
        for precision in args.precisions.split(","):
            if args.head_only:
                r = bench_head(arch, precision, labels, size)
            else:
                r = bench(arch, precision, images, labels, size, batch)
            tflops = r["extract_img_s"] * GFLOP_224[arch] * (size / 224) ** 2 / 1000
            top = peak(device, precision)
            share = f"{100 * tflops / top:.1f}%" if top and tflops == tflops else "–"
            print(
                f"| {arch} | {precision} | {r['extract_img_s']:.0f} | {tflops:.1f} | {share} "
                f"| {r['e2e_img_s']:.0f} | {r['head_img_s']:.0f} | {r['compiled_img_s']:.0f} "
                f"| {r['compiled_img_s'] / r['head_img_s']:.1f}x | {r['setup_s']:.1f} |",
                flush=True,
            )
    keras.mixed_precision.set_global_policy("float32")


if __name__ == "__main__":
    main()
