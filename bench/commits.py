"""Did a change make leukml slower? Two workloads timed at another commit and at this working tree,
interleaved, in one script.

Workloads (untracked, ``weights=none``, the embedded synthetic data of `make demo`, 360 cells):
- ``train``: `make demo`'s training: VGG16 at 128 px, 100 epochs on cached features, milestones
  10..100 (bench/tracking.py's untracked side);
- ``tracked``: the same training tracked into MLflow (a SQLite store; bench/tracking.py's other side);
- ``grid``: the paper's grid as a search worker runs it (``leukml.search.run_search``: VGG16 and
  ResNet50 x Adam and RMSprop, 10 epochs, milestones 2..10, 64 px; bench/grid.py's side (b)).
Each run is a fresh Python process with ``PYTHONPATH`` on one checkout (the other commit's is a
temporary ``git worktree``) and that checkout's own warm caches (one untimed run of each workload
first); the child times the workload alone (not its imports). Reps alternate which side goes
first. Prints each time, a table of medians and the ratio, and a headline.

    .venv/bin/python bench/commits.py BASE_REV [--quick] [--reps 3] [--workloads train,tracked,grid]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHILD = r"""
import os, sys, time
from leukml.config import TrainConfig
from leukml.training import train
workload, work, quick = sys.argv[1], sys.argv[2], sys.argv[3] == "quick"
if workload == "train":
    config = TrainConfig.of(arch="vgg16", weights="none", image_size=32 if quick else 128,
                            epochs=2 if quick else 100)
    start = time.perf_counter()
    train(config)
elif workload == "tracked":
    from leukml.runs import tracked_train
    config = TrainConfig.of(arch="vgg16", weights="none", image_size=32 if quick else 128,
                            epochs=2 if quick else 100)
    start = time.perf_counter()
    tracked_train(config, experiment="bench", tracking_uri=f"sqlite:///{os.path.join(work, 'mlflow.db')}")
else:
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
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(
        PYTHONPATH=str(checkout), LEUKML_CACHE=str(work / "cache"), LEUKML_QUIET="1", TF_CPP_MIN_LOG_LEVEL="2"
    )
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, workload, str(work), "quick" if quick else "full"],
        env=env,
        capture_output=True,
        text=True,
        cwd=work,
    )
    if proc.returncode:
        raise SystemExit(f"{workload} at {checkout} failed:\n{proc.stderr[-3000:]}")
    return float(proc.stdout.strip().splitlines()[-1].split()[1])


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("base", help="the commit to compare this working tree with")
    parser.add_argument("--reps", type=int, help="interleaved reps (default 3; quick 1)")
    parser.add_argument("--quick", action="store_true", help="tiny workloads (32 px, 2 epochs): a smoke run")
    parser.add_argument("--workloads", default="train,tracked,grid")
    args = parser.parse_args()
    args.reps = args.reps or (1 if args.quick else 3)
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
        times = {(w, s): [] for w in workloads for s in sides}
        for w in workloads:
            for s, checkout in sides.items():
                run(checkout, w, works[s], args.quick)  # warm-up: image and feature caches
            for i in range(args.reps):
                for s in list(sides) if i % 2 == 0 else list(sides)[::-1]:
                    times[w, s].append(run(sides[s], w, works[s], args.quick))
                    print(f"  {w} {s}: {times[w, s][-1]:.2f} s", flush=True)
    finally:
        subprocess.run([*git, "worktree", "remove", "--force", str(tmp / "base")], check=False)
        shutil.rmtree(tmp, ignore_errors=True)
    base, this = list(sides)
    print(f"\n| workload | {base} median s | {this} median s | this / base |")
    print("|---|---|---|---|")
    ratios = []
    for w in workloads:
        b, t = statistics.median(times[w, base]), statistics.median(times[w, this])
        ratios.append(t / b)
        print(f"| {w} | {b:.2f} | {t:.2f} | {t / b:.3f} |")
    worst = max(ratios)
    print(f"headline: this tree / {base}, median wall time, worst workload: {worst:.3f}")


if __name__ == "__main__":
    main()
