"""Dihedral augmentation two ways, same model: the 8 variants' cached features vs end to end.

(a) ``leukml.training.train`` with ``--augment dihedral`` and the feature cache: the frozen base's
    output for all 8 dihedral variants of every image is extracted once (timed, from an empty
    cache), then each epoch trains the head on one drawn variant per image; a second run on the
    warm cache shows what a later training of the same data pays;
(b) the same config with ``feature_cache=False``: each epoch turns the images with the same draws
    and runs them through the frozen base.

Same seed, hence the same base, head start, batch order and variant draws: the two must give the
same model (DESIGN.md, "Exact shortcuts only"); the bench prints the largest difference in test
accuracy at any milestone and in the final models' predicted probabilities. Data: synthetic cells
from ``leukml.synth`` in a temp dir with its own ``LEUKML_CACHE``; VGG16 with ``weights=none``
(the FLOPs of ImageNet weights). The last line is the headline: (b) / (a) wall time and the
differences.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

WORK = Path(tempfile.mkdtemp(prefix="leukml-bench-augment-"))
os.environ["LEUKML_CACHE"] = str(WORK / "cache")
os.environ.setdefault("LEUKML_QUIET", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from leukml.config import TrainConfig  # noqa: E402
from leukml.runtime import device_name  # noqa: E402
from leukml.synth import SynthConfig, write_synthetic  # noqa: E402
from leukml.training import TrainResult, train  # noqa: E402


def timed_train(config: TrainConfig) -> tuple[float, TrainResult]:
    keras.backend.clear_session()
    start = time.perf_counter()
    result = train(config)
    return time.perf_counter() - start, result


def test_probs(result: TrainResult) -> np.ndarray:
    prepared = result.prepared
    images = np.asarray(prepared.images[prepared.split.test], dtype=np.float32)
    return np.asarray(result.network.model.predict(images, batch_size=64, verbose=0))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (seconds)")
    parser.add_argument("--images", type=int, help="synthetic images (default 400; quick 48)")
    parser.add_argument("--size", type=int, help="image side in pixels (default 64; quick 32)")
    parser.add_argument("--epochs", type=int, help="epochs (default 20; quick 2)")
    args = parser.parse_args()
    n = args.images or (48 if args.quick else 400)
    size = args.size or (32 if args.quick else 64)
    epochs = args.epochs or (2 if args.quick else 20)
    try:
        n_all = max(1, round(n * 0.68))
        data = write_synthetic(
            WORK / "data", SynthConfig(n_all=n_all, n_hem=n - n_all, subjects=6, size=max(size, 96), seed=1)
        )
        config = TrainConfig.of(
            data_dir=str(data), arch="vgg16", weights="none", image_size=size, epochs=epochs,
            eval_epochs=(max(1, epochs // 2),), lr=1e-4, seed=11, augment="dihedral",
        )  # fmt: skip
        print(
            f"device {device_name()}, {os.cpu_count()} CPUs, backend {keras.backend.backend()}, {n} "
            f"synthetic cells at {size} px, VGG16, {epochs} epochs, milestones {config.milestones}",
            flush=True,
        )
        train(config.replace(epochs=1, eval_epochs=(), augment="none"))  # image cache, start-up
        shutil.rmtree(WORK / "cache" / "features", ignore_errors=True)
        t_cold, cached = timed_train(config)
        t_warm, _ = timed_train(config)
        t_e2e, e2e = timed_train(config.replace(feature_cache=False))
    finally:
        shutil.rmtree(WORK, ignore_errors=True)
    d_acc = max(
        abs(cached.milestones[m]["test_accuracy"] - e2e.milestones[m]["test_accuracy"])
        for m in cached.milestones
    )
    d_p = float(np.abs(test_probs(cached) - test_probs(e2e)).max())
    print()
    print("| path | wall s | test accuracy at the last milestone |")
    print("|---|---|---|")
    last = config.milestones[-1]
    print(f"| (a) 8 variants' cached features, cold cache (extracts 8 x {n} images) | {t_cold:.1f} "
          f"| {cached.milestones[last]['test_accuracy']:.4f} |")  # fmt: skip
    print(f"| (a) same, warm cache | {t_warm:.1f} | |")
    print(f"| (b) end to end, same draws | {t_e2e:.1f} | {e2e.milestones[last]['test_accuracy']:.4f} |")
    print(
        f"headline: dihedral augmentation, end to end / cached variants: {t_e2e / t_cold:.1f}x cold, "
        f"{t_e2e / t_warm:.1f}x warm; largest difference: test accuracy {d_acc:.4f}, "
        f"probability {d_p:.1e}"
    )


if __name__ == "__main__":
    main()
