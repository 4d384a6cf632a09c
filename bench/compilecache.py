"""JAX's persistent compilation cache (``leukml.training.device.compilation_cache``): what a later trial
and a later process save by loading compiled programs instead of compiling them.

The same sequence of untracked trainings (``weights=none``, synthetic data, a search worker's
``BaseCache``): VGG16 + Adam, VGG16 + RMSprop, VGG16 + Adam again (a later trial with the same
programs), ResNet50 + Adam. It runs in fresh JAX processes (``KERAS_BACKEND=jax``), each with its
own empty feature cache, so every process extracts its features again:

- (a) ``JAX_ENABLE_COMPILATION_CACHE=false``: every process compiles everything;
- (b) the cache on, first process: it compiles and fills an empty cache;
- (c) the cache on, a second process with (b)'s cache: what a user's next run pays.

Each training is timed in its process. Reps interleave (a), then (b) and (c) with a new cache
folder each. Prints a table of medians and a headline: (a) / (c) for the whole sequence.

    .venv/bin/python bench/compilecache.py   # [--quick] [--reps R --size S --images N --epochs E]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
from pathlib import Path

import harness

ROOT = Path(__file__).resolve().parents[1]
SEQUENCE = [("vgg16", "adam"), ("vgg16", "rmsprop"), ("vgg16", "adam"), ("resnet50", "adam")]
CHILD = r"""
import json, sys, time
from leukml.training.bases import BaseCache
from leukml.training.config import TrainConfig
from leukml.training.trainer import train
data, size, epochs, sequence = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
bases, seconds = BaseCache(), []
for arch, optimizer in sequence:
    config = TrainConfig.of(data_dir=data, arch=arch, optimizer=optimizer, weights="none", image_size=size,
                            epochs=epochs)
    start = time.perf_counter()
    train(config, bases=bases)
    seconds.append(time.perf_counter() - start)
print(json.dumps(seconds))
"""


def run(work: Path, data: Path, args: argparse.Namespace, programs: Path | None) -> list[float]:
    """One process's seconds per training of ``SEQUENCE``; ``programs``: the compilation cache
    folder it shares (leukml's own place, ``$LEUKML_CACHE/xla``, links there), None: cache off."""
    cache = Path(tempfile.mkdtemp(dir=work))  # no features from another process
    child = harness.child_env(
        ("MLFLOW_", "JAX_"),
        PYTHONPATH=str(ROOT),
        KERAS_BACKEND="jax",
        LEUKML_CACHE=str(cache),
        LEUKML_QUIET="1",
    )
    if programs is None:
        child["JAX_ENABLE_COMPILATION_CACHE"] = "false"
    else:
        programs.mkdir(exist_ok=True)
        (cache / "xla").symlink_to(programs, target_is_directory=True)
    argv = [str(data), str(args.size), str(args.epochs), json.dumps(SEQUENCE)]
    return json.loads(harness.run_child(CHILD, argv, child, "the training process failed"))


def main() -> None:
    args = harness.Parser(
        __doc__,
        reps=(3, 1, "interleaved reps"),
        size=(64, 32),
        images=(360, 48, "synthetic cells"),
        epochs=(20, 2, "epochs per training"),
    ).parse_args()
    images = args.images

    work = harness.workdir("compilecache")
    try:
        data = harness.synthetic(work / "data", images, args.size, n_all=images * 2 // 3)
        print(
            f"{os.cpu_count()} CPUs, KERAS_BACKEND=jax; {images} synthetic cells at {args.size} px, "
            f"{args.epochs} epochs per training; {args.reps} rep(s)",
            flush=True,
        )
        sides = {"off": [], "first": [], "second": []}
        for rep in range(args.reps):
            sides["off"].append(run(work, data, args, None))
            programs = work / f"xla-{rep}"
            sides["first"].append(run(work, data, args, programs))
            sides["second"].append(run(work, data, args, programs))
            for side, runs in sides.items():
                print(f"  rep {rep + 1} {side}: " + ", ".join(f"{s:.2f}" for s in runs[-1]), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def median(side: str, i: int | None) -> float:
        return statistics.median(sum(r) if i is None else r[i] for r in sides[side])

    names = {"off": "(a) cache off", "first": "(b) cache on, first process", "second": "(c) second process"}
    print()
    harness.table("training", *names.values(), "(a) / (c)")
    rows = [(f"{i + 1}. {arch} + {opt}", i) for i, (arch, opt) in enumerate(SEQUENCE)] + [("all four", None)]
    for label, i in rows:
        cells = [median(side, i) for side in names]
        print(f"| {label} | " + " | ".join(f"{c:.2f} s" for c in cells) + f" | {cells[0] / cells[2]:.2f}x |")
    off, second = median("off", None), median("second", None)
    harness.headline(
        f"a later process with JAX's compilation cache: {off / second:.2f}x faster over "
        f"the four trainings ({off:.1f} s without, {second:.1f} s with; medians)"
    )


if __name__ == "__main__":
    main()
