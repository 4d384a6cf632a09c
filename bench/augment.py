"""Dihedral augmentation two ways, same model: the 8 variants' cached features vs end to end.

(a) ``leukml.training.trainer.train`` with ``--augment dihedral`` and the feature cache: the frozen base's
    output for all 8 dihedral variants of every image is extracted once (timed, from an empty
    cache), then each epoch trains the head on one drawn variant per image; a second run on the
    warm cache shows what a later training of the same data pays;
(b) the same config with ``feature_cache=False``: each epoch turns the images with the same draws
    and runs them through the frozen base.

Same seed, hence the same base, head start, batch order and variant draws: the two must give the
same model (DESIGN.md, "Exact shortcuts only"); the bench prints the largest difference in test
accuracy at any milestone and in the final models' predicted probabilities. Data: synthetic cells
from ``leukml.data.synth`` in a temp dir with its own ``LEUKML_CACHE``; VGG16 with ``weights=none``
(the FLOPs of ImageNet weights). The last line is the headline: (b) / (a) wall time and the
differences.
"""

from __future__ import annotations

import shutil

import harness

WORK = harness.workdir("augment")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from leukml.training.config import TrainConfig  # noqa: E402
from leukml.training.trainer import TrainResult, train  # noqa: E402


def timed_train(config: TrainConfig) -> tuple[float, TrainResult]:
    keras.backend.clear_session()
    return harness.timed(train, config)


def test_probs(result: TrainResult) -> np.ndarray:
    prepared = result.prepared
    images = np.asarray(prepared.images[prepared.split.test], dtype=np.float32)
    return np.asarray(result.network.model.predict(images, batch_size=64, verbose=0))


def main() -> None:
    args = harness.Parser(
        __doc__, "tiny smoke run (seconds)", images=(400, 48), size=(64, 32), epochs=(20, 2)
    ).parse_args()
    n, size, epochs = args.images, args.size, args.epochs
    try:
        data = harness.synthetic(WORK / "data", n, max(size, 96), subjects=6, seed=1)
        config = TrainConfig.of(
            data_dir=str(data), arch="vgg16", weights="none", image_size=size, epochs=epochs,
            eval_epochs=(max(1, epochs // 2),), lr=1e-4, seed=11, augment="dihedral",
        )  # fmt: skip
        print(
            f"{harness.machine()}, {n} synthetic cells at {size} px, VGG16, {epochs} epochs, "
            f"milestones {config.milestones}",
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
    harness.table("path", "wall s", "test accuracy at the last milestone")
    last = config.milestones[-1]
    print(f"| (a) 8 variants' cached features, cold cache (extracts 8 x {n} images) | {t_cold:.1f} "
          f"| {cached.milestones[last]['test_accuracy']:.4f} |")  # fmt: skip
    print(f"| (a) same, warm cache | {t_warm:.1f} | |")
    print(f"| (b) end to end, same draws | {t_e2e:.1f} | {e2e.milestones[last]['test_accuracy']:.4f} |")
    harness.headline(
        f"dihedral augmentation, end to end / cached variants: {t_e2e / t_cold:.1f}x cold, "
        f"{t_e2e / t_warm:.1f}x warm; largest difference: test accuracy {d_acc:.4f}, "
        f"probability {d_p:.1e}"
    )


if __name__ == "__main__":
    main()
