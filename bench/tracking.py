"""MLflow tracking overhead: the same training with and without logging, interleaved.

``leukml.workflows.train.tracked_train`` (params, tags, config and split manifest, per-epoch curves,
per-milestone metrics + confusion matrices, curves figure, the logged Keras model; SQLite store in
a temp dir) against ``leukml.training.trainer.train`` with its default null sink, same config and seed.
The default run is `make demo`'s (the embedded 360-cell synthetic dataset, VGG16 at 128 px,
100 epochs, milestones 10..100), leukml's shortest realistic run. One untimed run of each first
fills the image and feature caches and pays one-time start-up; then ``--reps`` pairs alternate the
order (tracked first, then untracked first, ...); a third run in each rep is tracked with a
checkpoint every 10 epochs (``--checkpoint-every 10``, the default before checkpoints by time), to
show what they cost. After each untracked run the trained model is saved as Keras writes it
(``model.save`` + ``os.sync``), untimed in the run: the floor, the bytes of the model that a
tracked run must store. Medians are reported. Tracking costs a roughly fixed time per run, so its
share falls as runs get longer: the run length at which it is 5% is printed too. Use ``--reps 5``
or more on a noisy machine.

The last printed line is the headline: the median over the pairs of (tracked - untracked), over
the median untracked run, against the 5% target, and the floor's share. The tracked runs' own
account (``leukml.tracking.tracker.Cost``, the line ``leukml train`` prints: the seconds the
training's thread spent in tracking) is printed too: it does not see the background thread's
share of the CPU, but neither does it see another process's load, which the pairs' differences do.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import time

import harness

WORK = harness.workdir("tracking")

import keras  # noqa: E402

from leukml.tracking.mlflow_tracker import MlflowTracker  # noqa: E402
from leukml.tracking.tracker import Cost  # noqa: E402
from leukml.tracking.writer import servable  # noqa: E402
from leukml.training.config import TrainConfig  # noqa: E402
from leukml.training.trainer import train  # noqa: E402
from leukml.workflows.train import tracked_train  # noqa: E402

URI = f"sqlite:///{WORK / 'mlflow.db'}"
MODEL_BYTES: list[int] = []


def model_floor(result) -> float:
    """Seconds to write the trained model's bytes as Keras saves it, synced: what no tracking of a
    servable model can skip (MLflow's keras flavor writes the same ``.keras`` file, ``servable``:
    without the optimizer's state)."""
    path = WORK / "floor.keras"
    os.sync()
    start = time.perf_counter()
    with servable(result.network.model) as model:
        model.save(path)
    os.sync()
    seconds = time.perf_counter() - start
    MODEL_BYTES.append(path.stat().st_size)
    path.unlink()
    return seconds


def timed(fn, config: TrainConfig, after=None) -> float:
    """Wall seconds of one run, including writing back to disk what it wrote (``os.sync``): a
    tracked run writes its model (~76 MB at 128 px) and figures, and the kernel's deferred
    write-back is charged to it, not to the next run (bench/RESULTS.md: without this, two runs
    that followed tracked ones were 15 s slower)."""
    keras.backend.clear_session()
    os.sync()
    start = time.perf_counter()
    out = fn(config)
    os.sync()
    seconds = time.perf_counter() - start
    if after is not None:
        after(out)
    return seconds


def tracked(config: TrainConfig, costs: list[Cost] | None = None) -> None:
    cost = Cost()
    tracked_train(MlflowTracker("bench", URI, cost), config)
    if costs is not None:
        costs.append(cost)


def parse_args() -> argparse.Namespace:
    """The command line: ``--size``, ``--epochs``, ``--reps`` (``--quick`` shrinks them), ``--arch``."""
    parser = harness.Parser(
        __doc__,
        size=(128, 32, "image side, as `make demo`"),
        epochs=(100, 2, "epochs, as `make demo`"),
        reps=(3, 1, "interleaved pairs"),
    )
    parser.add_argument("--arch", default="vgg16")
    return parser.parse_args()


def bench_config(args: argparse.Namespace) -> TrainConfig:
    """`make demo`'s training (quick: on a few synthetic cells), announced in one line."""
    data = ""  # full: the embedded synthetic dataset of `make demo` (360 cells)
    if args.quick:
        data = str(harness.synthetic(WORK / "data", 48, 48, n_all=32, subjects=6, seed=2))
    config = TrainConfig.of(
        data_dir=data, arch=args.arch, weights="none", image_size=args.size, epochs=args.epochs
    )
    n = 48 if args.quick else 360
    print(
        f"{harness.machine()}; {args.arch} at {args.size} px on {n} synthetic images, {args.epochs} "
        f"epochs on cached features, milestones {config.milestones}; {args.reps} interleaved pair(s)"
        f"{'' if args.quick else ' after one warm-up each'}",
        flush=True,
    )
    return config


def measure(args: argparse.Namespace) -> tuple[dict[str, list[float]], list[float], list[Cost]]:
    """Each kind of run's seconds, in interleaved rounds after a warm-up; the untracked runs' model
    floors; the tracked runs' own account. The work folder is removed."""
    try:
        config = bench_config(args)
        costs: list[Cost] = []  # the tracked runs' own account (what `leukml train` prints)
        runs = {
            "untracked": train,
            "tracked": lambda c: tracked(c, costs),
            "every 10 epochs": lambda c: tracked(c.replace(checkpoint_every=10)),
        }
        for fn in runs.values() if not args.quick else ():
            timed(fn, config)  # warm-up: caches and one-time start-up
        costs.clear()
        floors: list[float] = []

        def run(name: str) -> float:
            return timed(
                runs[name], config, (lambda r: floors.append(model_floor(r))) if name == "untracked" else None
            )

        # tracked before untracked in the first pair
        times = harness.interleaved(list(runs)[::-1], args.reps, run)
    finally:
        shutil.rmtree(WORK, ignore_errors=True)
    return times, floors, costs


def print_runs(times: dict[str, list[float]]) -> None:
    """One row per kind of run: its median and every run's seconds."""
    harness.table("run", "median s", "all runs s")
    labels = {
        "untracked": "train(), null sink",
        "tracked": "tracked_train(), MLflow",
        "every 10 epochs": "tracked_train(), MLflow, --checkpoint-every 10 (the old default)",
    }
    for name, label in labels.items():
        print(
            f"| {label} | {statistics.median(times[name]):.2f} "
            f"| {', '.join(f'{t:.2f}' for t in times[name])} |"
        )


def report(times: dict[str, list[float]], floors: list[float], costs: list[Cost]) -> None:
    """The runs' table, tracking's cost against the checkpoints', the floor and its own account;
    the headline."""
    plain = statistics.median(times["untracked"])
    # the median of the pairs' differences: this shared machine's run-to-run noise (several
    # seconds) hits both runs of a pair alike, but not both medians
    cost = statistics.median(t - u for t, u in zip(times["tracked"], times["untracked"], strict=True))
    overhead = cost / plain
    print()
    print_runs(times)
    diffs = ", ".join(f"{t - u:+.2f}" for t, u in zip(times["tracked"], times["untracked"], strict=True))
    print(f"| tracking cost per run: median of the pairs' differences | {cost:.2f} | {diffs} |")
    print(f"| untracked run length at which that cost is 5% | {cost / 0.05:.0f} | |")
    pairs = list(zip(times["every 10 epochs"], times["tracked"], strict=True))
    saving = ", ".join(f"{e - t:+.2f}" for e, t in pairs)
    checkpoints = statistics.median(e - t for e, t in pairs)
    print(f"| checkpoints every 10 epochs: median of (every 10 - tracked) | {checkpoints:.2f} | {saving} |")
    floor, model_mb = statistics.median(floors), MODEL_BYTES[-1] / 1e6
    print(
        f"| floor: the model's bytes (Keras save + sync, {model_mb:.0f} MB) | {floor:.2f} | "
        f"{', '.join(f'{f:.2f}' for f in floors)} |"
    )
    print(f"| tracking cost above the floor | {cost - floor:.2f} | |")
    own = [c.tracking_s for c in costs]
    print(
        f"| the tracked runs' own account: seconds in tracking in the training's thread | "
        f"{statistics.median(own):.2f} | {', '.join(f'{s:.2f}' for s in own)} |"
    )
    verdict = "within" if overhead <= 0.05 else "OVER"
    harness.headline(
        f"MLflow tracking overhead {100 * overhead:.1f}% of the untracked run ({verdict} the 5% target); "
        f"the model's bytes alone {100 * floor / plain:.1f}%, tracking {cost - floor:+.2f} s above them"
    )


def main() -> None:
    report(*measure(parse_args()))


if __name__ == "__main__":
    main()
