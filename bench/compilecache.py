"""JAX's persistent compilation cache (``leukml.device.compilation_cache``): what a later trial
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
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEQUENCE = [("vgg16", "adam"), ("vgg16", "rmsprop"), ("vgg16", "adam"), ("resnet50", "adam")]
CHILD = r"""
import json, sys, time
from leukml.bases import BaseCache
from leukml.config import TrainConfig
from leukml.training import train
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
    child = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "JAX_"))}
    child.update(PYTHONPATH=str(ROOT), KERAS_BACKEND="jax", LEUKML_CACHE=str(cache), LEUKML_QUIET="1")
    if programs is None:
        child["JAX_ENABLE_COMPILATION_CACHE"] = "false"
    else:
        programs.mkdir(exist_ok=True)
        (cache / "xla").symlink_to(programs, target_is_directory=True)
    argv = [str(data), str(args.size), str(args.epochs), json.dumps(SEQUENCE)]
    proc = subprocess.run([sys.executable, "-c", CHILD, *argv], env=child, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"the training process failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--reps", type=int, default=None, help="interleaved reps (default 3; quick 1)")
    parser.add_argument("--size", type=int, default=None, help="image side (default 64; quick 32)")
    parser.add_argument("--images", type=int, default=None, help="synthetic cells (default 360; quick 48)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per training (default 20; quick 2)")
    args = parser.parse_args()
    args.reps = args.reps or (1 if args.quick else 3)
    args.size = args.size or (32 if args.quick else 64)
    args.epochs = args.epochs or (2 if args.quick else 20)
    images = args.images or (48 if args.quick else 360)

    from leukml.synth import SynthConfig, write_synthetic

    work = Path(tempfile.mkdtemp(prefix="leukml-bench-compilecache-"))
    try:
        n_all = images * 2 // 3
        data = write_synthetic(work / "data", SynthConfig(n_all=n_all, n_hem=images - n_all, size=args.size))
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
    print("\n| training | " + " | ".join(names.values()) + " | (a) / (c) |")
    print("|---|---|---|---|---|")
    rows = [(f"{i + 1}. {arch} + {opt}", i) for i, (arch, opt) in enumerate(SEQUENCE)] + [("all four", None)]
    for label, i in rows:
        cells = [median(side, i) for side in names]
        print(f"| {label} | " + " | ".join(f"{c:.2f} s" for c in cells) + f" | {cells[0] / cells[2]:.2f}x |")
    off, second = median("off", None), median("second", None)
    print(
        f"headline: a later process with JAX's compilation cache: {off / second:.2f}x faster over "
        f"the four trainings ({off:.1f} s without, {second:.1f} s with; medians)"
    )


if __name__ == "__main__":
    main()
