"""GPU check: leukml's hot paths and the paper's whole study on C-NMC-sized data, on any Keras 3
backend (JAX on our GPUs).

Per architecture and precision: base feature extraction as a training does it
(``leukml.training.features.feature_source``: uint8 batches copied to the device on the read-ahead thread, the
outputs kept on the device and written to the cache file on a thread, batches sized from device
memory), in images/s until the features are on the device (a training starts then) and achieved
TFLOP/s against the card's peak, and in images/s until the cache file is complete; one end-to-end
frozen-base training epoch (leukml's epoch loop, batch 32, the paper's setting); and head epochs on cached
features two ways, in the same run: batch by batch (one ``train_on_batch`` call per batch of 32,
``--no-compiled-epoch``) and compiled (``leukml.training.compiled.CompiledEpoch``: the features on the
device, a whole epoch per call; leukml's default).

Then the paper's whole study at full scale, timed from an empty feature cache: for each of VGG16
and ResNet50 one frozen base and one extraction (a search worker's ``BaseCache``), for each of
Adam and RMSprop one training of 100 epochs through ``leukml.training.trainer.train`` with the test
metrics at each milestone 10..100: the 32 cells of the paper's tables (no MLflow: its cost is
bench/tracking.py's subject). Against it, the usual recipe, a separate end-to-end training per
cell (``--no-feature-cache``): one 2-epoch training per architecture (Adam) is run here, giving
its fixed cost F (to the end of epoch 1, less one epoch) and its cost per epoch P (epoch 2, with
the validation pass the paper ran on the test split); the 32 cells are extrapolated as
sum over (arch, optimizer, E in milestones) of F + E * P, RMSprop costing what Adam does.

Data: 10,661 random 224 px RGB images generated in memory (C-NMC's size), 68% ALL, the paper's 80/20
image split. Prints markdown tables, the targets of issue 15 with what was measured, and a last line
``gpu headline: ...``. ``--quick`` shrinks everything for a CPU smoke run; ``--head-only`` times
only the two head epochs, on random features of the base's output shape (no extraction, no study).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import time

import harness
import numpy as np

# Every cache this script makes lives under one folder, removed when it exits (a full run's features
# are gigabytes).
SCRATCH = tempfile.mkdtemp(prefix="leukml-gpu-")
atexit.register(shutil.rmtree, SCRATCH, True)
os.environ.setdefault("LEUKML_CACHE", os.path.join(SCRATCH, "cache"))
harness.quiet()

import keras  # noqa: E402

from leukml.data.discovery import Dataset, Record  # noqa: E402
from leukml.data.splits import split_records  # noqa: E402
from leukml.model.archs import ModelConfig  # noqa: E402
from leukml.model.networks import build_network  # noqa: E402
from leukml.training import device  # noqa: E402
from leukml.training.bases import BaseCache  # noqa: E402
from leukml.training.compiled import CompiledEpoch  # noqa: E402
from leukml.training.config import TrainConfig  # noqa: E402
from leukml.training.features import feature_source  # noqa: E402
from leukml.training.runtime import device_name  # noqa: E402
from leukml.training.sinks import NullSink  # noqa: E402
from leukml.training.sources import FeatureSource  # noqa: E402
from leukml.training.trainer import Prepared, train, train_epoch  # noqa: E402

# Forward GFLOP per 224 px image of the include_top=False base (2 x multiply-accumulates).
GFLOP_224 = {"vgg16": 30.7, "resnet50": 7.7}
# Dense peak TFLOP/s (SXM): fp32 (non tensor core) and bf16 tensor core.
PEAKS = {
    "H100": {"float32": 67.0, "mixed_bfloat16": 989.0},
    "H200": {"float32": 67.0, "mixed_bfloat16": 989.0},
}
ARCHS, OPTIMIZERS = ("vgg16", "resnet50"), ("adam", "rmsprop")
# issue 15's targets: extraction img/s (bf16), compiled head epoch samples/s, the study's seconds
EXTRACT_TARGET, HEAD_TARGETS, STUDY_TARGET = 8_000, {"vgg16": 200_000, "resnet50": 50_000}, 60.0


def peak(device: str, precision: str) -> float | None:
    return next((p[precision] for k, p in PEAKS.items() if k in device), None)


def epochs_per_s(epoch, min_s: float = 2.0) -> float:
    """Epochs per second of ``epoch()`` (already compiled), repeated for at least ``min_s``; every
    epoch returns host floats, so each has finished on the device when it returns."""
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < min_s or not count:
        epoch()
        count += 1
    return count / elapsed


def fresh_cache(name: str) -> None:
    """An empty feature cache from here on (leukml reads ``LEUKML_CACHE`` at call time)."""
    os.environ["LEUKML_CACHE"] = tempfile.mkdtemp(prefix=f"{name}-", dir=SCRATCH)


def paper_data(images: np.ndarray, labels: np.ndarray, size: int) -> Prepared:
    """The images as a dataset of their own, split as the paper did (80/20 by image, seed 42)."""
    records = tuple(
        Record(relpath=f"{i:05d}.bmp", label=int(c), subject=f"S{i % 118}", fold=None, size_bytes=0)
        for i, c in enumerate(labels)
    )
    dataset = Dataset(root=None, records=records, skipped=(), fingerprint=f"gpu-bench-{len(images)}-{size}")
    return Prepared(dataset, split_records(records, TrainConfig.of().split), images)


def head_rates(
    head: keras.Model, features: np.ndarray, labels: np.ndarray, order: np.ndarray, config
) -> dict:
    """Head-epoch samples/s over ``order`` in batches of 32: batch by batch, then compiled (each
    after one epoch that compiles it, from a freshly compiled optimizer), and the compiled epoch's
    one-off setup seconds (the features to the device, the first epoch with its compilation)."""
    harness.compile_for_training(head, config)
    train_epoch(head, features, labels, order, 32, None)  # compiles both batch shapes
    out = {
        "head_img_s": len(order) * epochs_per_s(lambda: train_epoch(head, features, labels, order, 32, None))
    }
    harness.compile_for_training(head, config)
    start = time.perf_counter()
    program = CompiledEpoch.build(head, FeatureSource([features]), labels, None, 32)
    if program is None:  # this backend has no compiled epoch (torch; JAX with jit off)
        return out | {"compiled_img_s": float("nan"), "setup_s": float("nan")}
    program.train(order)  # compiles the full-batch and the last-batch programs
    out["setup_s"] = time.perf_counter() - start  # the features to the device, compiling, 1 epoch
    return out | {"compiled_img_s": len(order) * epochs_per_s(lambda: program.train(order))}


def bench(arch: str, precision: str, prepared: Prepared, size: int) -> dict:
    keras.backend.clear_session()
    keras.mixed_precision.set_global_policy(precision)
    net = build_network(ModelConfig(arch=arch, weights="none", image_size=size))
    images, labels = prepared.images, prepared.dataset.labels
    config = TrainConfig.of(arch=arch, weights="none", image_size=size, precision=precision, epochs=1)
    batch = device.extraction_batch(net.extractor)
    for m in {batch, len(images) % batch or batch}:  # compile both batch shapes, as a warm worker has
        keras.ops.convert_to_numpy(device.forward(net.extractor)(images[:m]))
    fresh_cache(f"{arch}-{precision}")
    start = time.perf_counter()
    source = feature_source(net, prepared, config)  # as a training extracts: kept on the device
    keras.ops.convert_to_numpy(source.on_device()[-1])  # the last batch has finished there
    t_extract = time.perf_counter() - start
    source.settle()  # the cache file, written beside (a training goes on meanwhile)
    t_file = time.perf_counter() - start
    features = source.arrays[0]
    source.release()

    order = prepared.split.train
    out = {"arch": arch, "precision": precision, "batch": batch, "extract_img_s": len(images) / t_extract}
    out["file_img_s"] = len(images) / t_file
    target = keras.Model(net.model.input, net.model.output)
    harness.compile_for_training(target, config)
    train_epoch(target, images, labels, order[: 32 + len(order) % 32], 32, None)  # compile
    out["e2e_img_s"] = len(order) / harness.timed(train_epoch, target, images, labels, order, 32, None)[0]
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
    return {
        "arch": arch,
        "precision": precision,
        "batch": 0,
        "extract_img_s": nan,
        "file_img_s": nan,
        "e2e_img_s": nan,
    } | head_rates(net.head, features, labels, order, config)


class CompileCache:
    """JAX's persistent compilation cache hits and misses (its monitoring events) since ``__init__``;
    none on other backends. leukml keeps compiled programs there (``device.compilation_cache``): the
    study loads those the rows above compiled with the same shapes, as a user's second run would."""

    def __init__(self) -> None:
        self.events = {"hits": 0, "misses": 0}
        if keras.backend.backend() == "jax":
            from jax import monitoring

            monitoring.register_event_listener(self.count)

    def count(self, name: str, **kwargs) -> None:
        for kind in self.events:
            if name == f"/jax/compilation_cache/cache_{kind}":
                self.events[kind] += 1


def study(prepared: Prepared, size: int, epochs: int) -> tuple[float, dict, dict]:
    """The paper's study as a search worker runs it, untracked, from an empty feature cache: the
    wall seconds, per (arch, optimizer) its seconds and the test accuracy at its last epoch, and
    the compilation cache's hits and misses during it."""
    fresh_cache("study")
    keras.backend.clear_session()
    keras.mixed_precision.set_global_policy("float32")  # each training sets its own (precision auto)
    bases, cells, compiled = BaseCache(), {}, CompileCache()
    start = time.perf_counter()
    for arch in ARCHS:
        for optimizer in OPTIMIZERS:
            config = TrainConfig.of(
                arch=arch, optimizer=optimizer, weights="none", image_size=size, epochs=epochs
            )
            t0 = time.perf_counter()
            result = train(config, NullSink(), bases, prepared=prepared)
            cells[arch, optimizer] = (time.perf_counter() - t0, result.milestones[epochs]["test_accuracy"])
    return time.perf_counter() - start, cells, compiled.events


class EpochClock(NullSink):
    """Wall seconds since it was made, at the end of each epoch."""

    def __init__(self) -> None:
        self.start, self.at = time.perf_counter(), []

    def log_epoch(self, epoch, metrics) -> None:
        self.at.append(time.perf_counter() - self.start)


def usual(prepared: Prepared, size: int, milestones: tuple[int, ...]) -> dict:
    """The usual recipe per arch, from a 2-epoch end-to-end training (Adam): fixed cost F, cost per
    epoch P, and the extrapolated seconds of its cells, both optimizers, every milestone."""
    out = {}
    for arch in ARCHS:
        fresh_cache(f"usual-{arch}")
        keras.backend.clear_session()
        config = TrainConfig.of(arch=arch, weights="none", image_size=size, epochs=2, no_feature_cache=True)
        clock = EpochClock()
        train(config, clock, prepared=prepared)
        per_epoch = clock.at[1] - clock.at[0]
        fixed = clock.at[0] - per_epoch
        cells = sum(fixed + m * per_epoch for m in milestones) * len(OPTIMIZERS)
        out[arch] = {"fixed_s": fixed, "epoch_s": per_epoch, "cells_s": cells}
    return out


def main() -> None:
    parser = harness.Parser(__doc__, "tiny CPU smoke run")
    parser.add_argument("--archs", default="vgg16,resnet50")
    parser.add_argument("--precisions", default="float32,mixed_bfloat16")
    parser.add_argument("--head-only", action="store_true", help="only the two head epochs, random features")
    args = parser.parse_args()
    n, size, epochs = (96, 32, 4) if args.quick else (10_661, 224, 100)
    milestones = (2, 4) if args.quick else (10, 20, 30, 40, 50, 60, 80, 100)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    images = None if args.head_only else rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    labels = (rng.random(n) < 0.68).astype(np.int64)
    card = device_name()
    print(
        f"device {card}, backend {keras.backend.backend()} {keras.__version__}, {n} images "
        f"{size}px{' (head only: random features)' if args.head_only else ''} generated in "
        f"{time.perf_counter() - t0:.1f} s",
        flush=True,
    )
    harness.table(
        "arch",
        "precision",
        "extract batch",
        "extract img/s",
        "extract TFLOP/s",
        "% of peak",
        "img/s to the cache file's end",
        "e2e epoch img/s",
        "head epoch img/s, per batch",
        "head epoch img/s, compiled",
        "compiled / per batch",
        "compiled 1st epoch s",
    )
    rows = []
    prepared = None if args.head_only else paper_data(images, labels, size)
    for arch in args.archs.split(","):
        for precision in args.precisions.split(","):
            r = (
                bench_head(arch, precision, labels, size)
                if args.head_only
                else bench(arch, precision, prepared, size)
            )
            tflops = r["extract_img_s"] * GFLOP_224[arch] * (size / 224) ** 2 / 1000
            top = peak(card, precision)
            share = f"{100 * tflops / top:.1f}%" if top and tflops == tflops else "–"
            rows.append(r)
            print(
                f"| {arch} | {precision} | {r['batch'] or '–'} | {r['extract_img_s']:.0f} | {tflops:.1f} "
                f"| {share} | {r['file_img_s']:.0f} | {r['e2e_img_s']:.0f} | {r['head_img_s']:.0f} "
                f"| {r['compiled_img_s']:.0f} "
                f"| {r['compiled_img_s'] / r['head_img_s']:.1f}x | {r['setup_s']:.1f} |",
                flush=True,
            )
    keras.mixed_precision.set_global_policy("float32")
    if args.head_only:
        return
    report_study(prepared, size, epochs, milestones, rows, card, t0)


def report_study(
    prepared: Prepared, size: int, epochs: int, milestones, rows: list[dict], card: str, t0: float
) -> None:
    seconds, cells, compiled = study(prepared, size, epochs)
    print_study(prepared, epochs, milestones, seconds, cells, compiled)
    ratio = print_usual(usual(prepared, size, milestones), seconds, len(milestones) * len(cells))
    print_targets(rows, seconds)
    print(f"bench/gpu.py wall time: {time.perf_counter() - t0:.0f} s (bench/gpu.sh's budget: 6 minutes)")
    harness.headline(
        f"study {seconds:.1f} s, vgg16 extract {rate(rows, 'vgg16', 'extract_img_s'):.0f} img/s, "
        f"vgg16 head {rate(rows, 'vgg16', 'compiled_img_s'):.0f} samples/s, ratio {ratio:.0f}x, card {card}",
        name="gpu",
    )


def print_study(
    prepared: Prepared, epochs: int, milestones, seconds: float, cells: dict, compiled: dict
) -> None:
    """The study's table: each (arch, optimizer) training's seconds and last accuracy, the whole."""
    print(
        f"\nThe paper's study: {len(ARCHS)} archs x {len(OPTIMIZERS)} optimizers, {epochs} epochs, "
        f"test metrics at {','.join(map(str, milestones))} ({len(milestones) * len(cells)} cells), "
        f"{len(prepared.split.train)} train / {len(prepared.split.test)} test images\n"
    )
    harness.table("training", "seconds", "test accuracy at the last epoch")
    for (arch, optimizer), (took, accuracy) in cells.items():
        print(f"| {arch} + {optimizer} | {took:.1f} | {accuracy:.4f} |")
    print(f"| **whole study** (bases, extraction, compiling included) | **{seconds:.1f}** | |")
    if keras.backend.backend() == "jax":
        import jax

        print(
            f"\nJAX's compilation cache ({jax.config.jax_compilation_cache_dir}) during the study: "
            f"{compiled['hits']} programs loaded from it (the rows above compiled them), "
            f"{compiled['misses']} compiled"
        )


def print_usual(recipe: dict, seconds: float, n_cells: int) -> float:
    """The usual recipe's table; returns its extrapolated seconds / the study's."""
    print()
    harness.table(
        "usual recipe: an end-to-end training per cell", "F s", "P s/epoch", "its cells, extrapolated s"
    )
    for arch, r in recipe.items():
        print(f"| {arch}: 2 epochs measured | {r['fixed_s']:.1f} | {r['epoch_s']:.2f} | {r['cells_s']:.0f} |")
    usual_s = sum(r["cells_s"] for r in recipe.values())
    ratio = usual_s / seconds
    print(f"| **all {n_cells} cells** | | | **{usual_s:.0f}** ({ratio:.0f}x the study) |")
    return ratio


def rate(rows: list[dict], arch: str, key: str, precision: str = "mixed_bfloat16") -> float:
    """``key`` of the table's row for ``arch`` at ``precision``; NaN when it was not measured."""
    found = [r[key] for r in rows if r["arch"] == arch and r["precision"] == precision]
    return found[0] if found else float("nan")


def print_targets(rows: list[dict], seconds: float) -> None:
    """The GPU targets (issue 15): each measured and whether it is met."""
    print()
    harness.table("target (issue 15)", "measured", "met")
    checks = [
        (
            f"{arch} extraction, bf16 >= {EXTRACT_TARGET:,} img/s",
            rate(rows, arch, "extract_img_s"),
            EXTRACT_TARGET,
        )
        for arch in ARCHS
    ] + [
        (
            f"{arch} head epoch, bf16, compiled >= {HEAD_TARGETS[arch]:,} samples/s",
            rate(rows, arch, "compiled_img_s"),
            HEAD_TARGETS[arch],
        )
        for arch in ARCHS
    ]
    for name, value, goal in checks:
        print(f"| {name} | {value:,.0f} | {'yes' if value >= goal else 'NO'} |")
    met = "yes" if seconds <= STUDY_TARGET else "NO"
    print(f"| the study <= {STUDY_TARGET:.0f} s | {seconds:.1f} s | {met} |")


if __name__ == "__main__":
    main()
