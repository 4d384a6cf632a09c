"""Did a change make leukml slower? Two workloads timed at another commit and at this working tree,
interleaved, in one script.

Workloads (untracked, ``weights=none``, the embedded synthetic data of `make demo`, 360 cells):
- ``train``: `make demo`'s training: VGG16 at 128 px, 100 epochs on cached features, milestones
  10..100 (bench/tracking.py's untracked side);
- ``tracked``: the same training tracked into MLflow (a SQLite store; bench/tracking.py's other side);
- ``grid``: the paper's grid as a search worker runs it (``leukml.experiments.search.run_search``: VGG16 and
  ResNet50 x Adam and RMSprop, 10 epochs, milestones 2..10, 64 px; bench/grid.py's side (b)).
Each run is a fresh Python process with ``PYTHONPATH`` on one checkout (the other commit's is a
temporary ``git worktree``) and that checkout's own warm caches (one untimed run of each workload
first); the child times the workload alone (not its imports). Reps alternate which side goes
first. Prints each time, a table of medians and the ratio, and a headline.

    .venv/bin/python bench/commits.py BASE_REV [--quick] [--reps 3] [--workloads train,tracked,grid]
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

import harness

ROOT = Path(__file__).resolve().parents[1]
CHILD = r"""
import os, sys, time
try:  # the layered package; a commit before it had flat modules
    from leukml.training.config import TrainConfig
    from leukml.training.trainer import train
except ImportError:
    from leukml.config import TrainConfig
    from leukml.training import train
workload, work, quick = sys.argv[1], sys.argv[2], sys.argv[3] == "quick"
if workload == "train":
    config = TrainConfig.of(arch="vgg16", weights="none", image_size=32 if quick else 128,
                            epochs=2 if quick else 100)
    start = time.perf_counter()
    train(config)
elif workload == "tracked":
    uri = f"sqlite:///{os.path.join(work, 'mlflow.db')}"
    try:  # the workflows layer, handed a tracker; before it, tracked_train took the store itself
        from leukml.tracking.mlflow_tracker import MlflowTracker
        from leukml.workflows.train import tracked_train as tracked_with

        def tracked_train(config, experiment, tracking_uri):
            return tracked_with(MlflowTracker(experiment, tracking_uri), config)
    except ImportError:
        try:
            from leukml.tracking.runs import tracked_train
        except ImportError:
            from leukml.runs import tracked_train
    config = TrainConfig.of(arch="vgg16", weights="none", image_size=32 if quick else 128,
                            epochs=2 if quick else 100)
    start = time.perf_counter()
    tracked_train(config, experiment="bench", tracking_uri=uri)
else:
    try:
        from leukml.experiments.search import SearchConfig, run_search
    except ImportError:
        from leukml.search import SearchConfig, run_search
    base = TrainConfig.of(weights="none", image_size=32 if quick else 64, epochs=2 if quick else 10,
                          eval_epochs=(2,) if quick else (2, 4, 6, 8, 10))
    db = os.path.join(work, f"optuna-{time.time_ns()}.db")
    search = SearchConfig(base=base, mode="grid", archs=("vgg16", "resnet50"),
                          optimizers=("adam", "rmsprop"), storage=f"sqlite:///{db}", study_name="grid")
    start = time.perf_counter()
    run_search(search, lambda config, tags, reporter, bases: ("untracked", train(config, reporter, bases)))
print(f"seconds {time.perf_counter() - start:.3f}")
"""


def run(checkout: Path, workload: str, work: Path, quick: bool) -> float:
    env = harness.child_env(
        ("MLFLOW_",),
        PYTHONPATH=str(checkout),
        LEUKML_CACHE=str(work / "cache"),
        LEUKML_QUIET="1",
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    argv = [workload, str(work), "quick" if quick else "full"]
    return float(harness.run_child(CHILD, argv, env, f"{workload} at {checkout} failed", cwd=work).split()[1])


def main() -> None:
    parser = harness.Parser(
        __doc__, "tiny workloads (32 px, 2 epochs): a smoke run", reps=(3, 1, "interleaved reps")
    )
    parser.add_argument("base", help="the commit to compare this working tree with")
    parser.add_argument("--workloads", default="train,tracked,grid")
    args = parser.parse_args()
    git = ["git", "-C", str(ROOT)]
    found = subprocess.run([*git, "rev-parse", "--short", args.base], capture_output=True, text=True)
    if found.returncode:
        raise SystemExit(f"{args.base}: not a commit of this repository ({found.stderr.strip()})")
    rev, tmp = found.stdout.strip(), Path(tempfile.mkdtemp(prefix="leukml-bench-commits-"))
    subprocess.run([*git, "worktree", "add", "-q", "--detach", str(tmp / "base"), rev], check=True)
    sides = {f"base {rev}": tmp / "base", "this tree": ROOT}
    try:
        works = {name: tmp / f"work-{i}" for i, name in enumerate(sides)}
        for work in works.values():
            work.mkdir()
        workloads = args.workloads.split(",")
        print(f"{os.cpu_count()} CPUs; workloads {workloads}; {args.reps} interleaved reps after a warm-up")
        times = {}
        for w in workloads:
            for s, checkout in sides.items():
                run(checkout, w, works[s], args.quick)  # warm-up: image and feature caches
            times[w] = harness.interleaved(
                list(sides), args.reps, lambda s, w=w: run(sides[s], w, works[s], args.quick), label=f"{w} "
            )
    finally:
        subprocess.run([*git, "worktree", "remove", "--force", str(tmp / "base")], check=False)
        shutil.rmtree(tmp, ignore_errors=True)
    base, this = list(sides)
    print()
    harness.table("workload", f"{base} median s", f"{this} median s", "this / base")
    ratios = []
    for w in workloads:
        b, t = statistics.median(times[w][base]), statistics.median(times[w][this])
        ratios.append(t / b)
        print(f"| {w} | {b:.2f} | {t:.2f} | {t / b:.3f} |")
    worst = max(ratios)
    harness.headline(f"this tree / {base}, median wall time, worst workload: {worst:.3f}")


if __name__ == "__main__":
    main()
