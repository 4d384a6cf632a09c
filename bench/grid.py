"""The paper's grid two ways, in one run: separate trainings per cell against leukml's grid search.

(a) The usual recipe, as the paper ran it: one fresh frozen-base training per (arch, optimizer,
    epochs) cell, end to end through the base every epoch (``TrainConfig.of(no_feature_cache=True)``),
    i.e. for every milestone m a new training of m epochs, evaluated once at its last epoch.
(b) leukml: ``leukml.experiments.search.run_search`` in grid mode: one training per (arch, optimizer) to the
    last milestone, evaluated at every milestone (nested milestones), heads trained on cached base
    features (one extraction per arch, shared by both optimizers).
Both in this process, on the same synthetic images, seeds and settings, each with its own empty
image/feature cache, and **without MLflow on either side** (tracking costs are bench/tracking.py's
subject). With ``--cli`` the same grid also runs as ``leukml search --mode grid``
in a new process with MLflow tracking into a throwaway SQLite store: a conservative extra row in
which only leukml pays start-up and tracking.

The test accuracy of every cell is compared between (a) and (b): the model after epoch m of the
nested run is the m-epoch model (same start, batch order and per-step learning rate), so they
agree up to float rounding (tests/test_training.py checks the predictions).

Model of the cost (per arch; ``Ntr``/``Nte`` train/test images, the test split doubles as the
per-epoch validation split as in the paper, ``M`` the milestones, ``E = max(M)``, ``O`` optimizers):
    T_a = O * sum_{m in M} [ F_a + m * (Ntr * c_step + Nte * c_fwd) + Nte * c_fwd ]
    T_b = N * c_fwd + O * [ F_b + E * (Ntr * c_head + Nte * c_hfwd) + |M| * Nte * c_hfwd ]
with measured per-image costs: ``c_step`` an end-to-end frozen-base train step, ``c_fwd`` a base
forward (extraction, validation and test passes), ``c_head`` a head train step on cached
features, ``c_hfwd`` a head forward; ``F_a``/``F_b`` are the fixed costs of one training (build,
compile/trace, ...) taken from this run's measured times minus the per-image part. The paper's
scale (10,661 images, 224 px, milestones 10..100, two optimizers) uses per-image costs measured
at 224 px in this run (``--paper-size``; the base passes on one batch of 16 images to keep the
run short) and the fixed costs from the reduced run.
The last printed line is the headline: measured (a) / (b) wall time.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import harness

WORK = harness.workdir("grid", cache="cache-warmup")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from leukml.data.discovery import discover  # noqa: E402
from leukml.data.splits import split_records  # noqa: E402
from leukml.experiments.search import SearchConfig, run_search  # noqa: E402
from leukml.model.networks import build_network  # noqa: E402
from leukml.training.config import TrainConfig  # noqa: E402
from leukml.training.sinks import FanoutSink, NullSink  # noqa: E402
from leukml.training.trainer import predict_probs, train, train_epoch  # noqa: E402

PAPER_N, PAPER_TRAIN, PAPER_TEST = 10_661, 8_529, 2_132
PAPER_MILESTONES = (10, 20, 30, 40, 50, 60, 80, 100)


def fresh_cache(name: str) -> None:
    """Each side starts with empty image and feature caches (read at call time by leukml)."""
    os.environ["LEUKML_CACHE"] = str(WORK / f"cache-{name}")


class Clock(NullSink):
    """Wall-clock seconds since the training started, at each milestone."""

    def __init__(self) -> None:
        self.start, self.at = time.perf_counter(), {}

    def log_milestone(self, milestone) -> None:
        self.at[milestone.epoch] = time.perf_counter() - self.start


def run_recipe(base: TrainConfig, archs, optimizers) -> tuple[float, dict, dict]:
    """(a): a fresh end-to-end training per (arch, optimizer, milestone)."""
    fresh_cache("recipe")
    acc, took = {}, {}
    start = time.perf_counter()
    for arch in archs:
        for opt in optimizers:
            for m in base.milestones:
                keras.backend.clear_session()  # as leukml's search does before each trial
                cell = {"arch": arch, "optimizer": opt, "epochs": m, "eval_epochs": (m,)}
                config = base.replace(**cell, feature_cache=False)
                took[arch, opt, m], result = harness.timed(train, config)
                acc[arch, opt, m] = result.milestones[m]
                print(
                    f"  (a) {arch}+{opt} {m:>3} epochs: {took[arch, opt, m]:6.1f} s, "
                    f"test acc {acc[arch, opt, m]['test_accuracy']:.4f}",
                    flush=True,
                )
    return time.perf_counter() - start, acc, took


def run_leukml(base: TrainConfig, archs, optimizers) -> tuple[float, dict, dict]:
    """(b): leukml's grid search, untracked (its optuna storage is a throwaway SQLite file)."""
    fresh_cache("leukml")
    acc, clocks = {}, {}

    def run_trial(config, tags, reporter, bases):
        clock = clocks[config.model.arch, config.optimizer] = Clock()
        result = train(config, FanoutSink(reporter, clock), bases)
        clock.end = time.perf_counter() - clock.start
        for m, scores in result.milestones.items():
            acc[config.model.arch, config.optimizer, m] = scores
        return "untracked", result

    search = SearchConfig(
        base=base,
        mode="grid",
        archs=tuple(archs),
        optimizers=tuple(optimizers),
        storage=f"sqlite:///{WORK / 'optuna.db'}",
        study_name="bench-grid",
    )
    start = time.perf_counter()
    run_search(search, run_trial)
    return time.perf_counter() - start, acc, clocks


def run_cli(base: TrainConfig, archs, optimizers) -> float:
    """(b) as users run it: `leukml search --mode grid` in a new process, MLflow-tracked."""
    env = harness.child_env(venv_path=True, LEUKML_CACHE=str(WORK / "cache-cli"), LEUKML_QUIET="1")
    cmd = [
        str(Path(sys.executable).parent / "leukml"),
        "search",
        "--mode",
        "grid",
        "--archs",
        ",".join(archs),
        "--optimizers",
        ",".join(optimizers),
        "--data-dir",
        base.data_dir,
        "--epochs",
        str(base.epochs),
        "--eval-epochs",
        ",".join(map(str, base.milestones)),
        "--image-size",
        str(base.model.image_size),
        "--weights",
        "none",
        "--seed",
        str(base.seed),
        "--experiment",
        "bench",
        "--tracking-uri",
        f"sqlite:///{WORK / 'mlflow.db'}",
        "--storage",
        f"sqlite:///{WORK / 'optuna-cli.db'}",
        "--study-name",
        "bench-grid-cli",
    ]
    took, proc = harness.timed(subprocess.run, cmd, env=env, cwd=WORK, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"leukml search failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return took


def per_image_costs(arch: str, size: int, n: int, batch: int, n_head: int = 256) -> dict[str, float]:
    """Seconds per image at ``size`` px, each timed on a second pass (the first pays the tracing):
    c_fwd and c_step through the base on ``n`` random images in batches of ``batch``; c_head and
    c_hfwd on ``n_head`` base outputs (the ``n`` tiled) in batches of 32, through leukml's loops."""
    keras.backend.clear_session()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    config = TrainConfig.of(arch=arch, weights="none", image_size=size)
    net = build_network(config.model)

    def per_image(fn, count: int) -> float:
        fn()
        start = time.perf_counter()
        fn()
        return (time.perf_counter() - start) / count

    out = {"c_fwd": per_image(lambda: predict_probs(net.extractor, images, np.arange(n), batch), n)}
    features = np.tile(predict_probs(net.extractor, images, np.arange(n), batch), (-(-n_head // n), 1, 1, 1))
    trainer = keras.Model(net.model.input, net.model.output)
    for target, inputs, count, step_batch, name in (
        (trainer, images, n, batch, "c_step"),
        (net.head, features[:n_head], n_head, 32, "c_head"),
    ):
        harness.compile_for_training(target, config)
        labels, order = rng.integers(0, 2, count), np.arange(count)
        out[name] = per_image(
            lambda t=target, x=inputs, y=labels, o=order, b=step_batch: train_epoch(t, x, y, o, b, None),
            count,
        )
    out["c_hfwd"] = per_image(
        lambda: predict_probs(net.head, features[:n_head], np.arange(n_head), 32), n_head
    )
    return out


def model_time(
    c: dict, n_train: int, n_test: int, milestones, optimizers: int, f_a: float, f_b: float
) -> tuple[float, float]:
    """(T_a, T_b) of one arch from the docstring's formula."""
    t_a = optimizers * sum(
        f_a + m * (n_train * c["c_step"] + n_test * c["c_fwd"]) + n_test * c["c_fwd"] for m in milestones
    )
    e = max(milestones)
    t_b = (n_train + n_test) * c["c_fwd"] + optimizers * (
        f_b + e * (n_train * c["c_head"] + n_test * c["c_hfwd"]) + len(milestones) * n_test * c["c_hfwd"]
    )
    return t_a, t_b


def parse_args() -> argparse.Namespace:
    """The command line: sizes (``--quick`` shrinks them), ``--paper-size`` and ``--cli``."""
    parser = harness.Parser(
        __doc__,
        "tiny smoke run (seconds)",
        images=(64, 40),
        size=(64, 32),
        epochs=(10, 2, "last milestone"),
        archs=("vgg16,resnet50", "vgg16"),
        optimizers=("adam,rmsprop", "adam"),
    )
    parser.add_argument(
        "--paper-size",
        type=int,
        help="image side for the paper-scale per-image costs (default 224; quick: --size)",
    )
    parser.add_argument(
        "--cli",
        action=argparse.BooleanOptionalAction,
        help="also time `leukml search` in a new process, MLflow-tracked (default off)",
    )
    return parser.parse_args()


def grid_base(data: Path, size: int, epochs: int, milestones: tuple[int, ...]) -> TrainConfig:
    """The training every cell starts from."""
    return TrainConfig.of(
        data_dir=str(data),
        weights="none",
        image_size=size,
        epochs=epochs,
        eval_epochs=milestones,
        seed=42,
    )


def measure(args: argparse.Namespace) -> Measured:
    """Both sides of the grid (and ``--cli``'s), then the per-image costs; the work folder removed."""
    n, size, epochs = args.images, args.size, args.epochs
    archs, optimizers = args.archs.split(","), args.optimizers.split(",")
    paper_size = args.paper_size or (size if args.quick else 224)
    milestones = tuple(range(2, epochs + 1, 2)) if epochs >= 2 else (epochs,)
    try:
        data = harness.synthetic(WORK / "data", n, max(size, 96), subjects=8, seed=1)
        base = grid_base(data, size, epochs, milestones)
        split = split_records(discover(data).records, base.split)
        split_sizes = len(split.train), len(split.test)
        print(
            f"{harness.machine()}; {n} synthetic images at {size} px; archs {archs} x optimizers "
            f"{optimizers}; milestones {milestones}; batch {base.batch_size}; {split_sizes[0]} train / "
            f"{split_sizes[1]} test images; no MLflow on (a) or (b)",
            flush=True,
        )
        build_network(base.model).extractor.predict_on_batch(  # one-time TF start-up
            np.zeros((1, size, size, 3), np.float32)
        )
        t_b, acc_b, clocks = run_leukml(base, archs, optimizers)
        print(f"  (b) leukml grid search: {t_b:.1f} s", flush=True)
        t_a, acc_a, took = run_recipe(base, archs, optimizers)
        t_cli = run_cli(base, archs, optimizers) if args.cli else None
        costs = {arch: per_image_costs(arch, size, 64, 32) for arch in archs}
        paper_costs = (
            costs
            if paper_size == size
            else {arch: per_image_costs(arch, paper_size, 16, 16) for arch in archs}
        )
    finally:
        shutil.rmtree(WORK, ignore_errors=True)
    sides = dict(t_a=t_a, t_b=t_b, t_cli=t_cli, acc_a=acc_a, acc_b=acc_b, took=took, clocks=clocks)
    return Measured(
        base,
        archs,
        optimizers,
        n,
        size,
        paper_size,
        split_sizes,
        **sides,
        costs=costs,
        paper_costs=paper_costs,
    )


def main() -> None:
    report(measure(parse_args()))


@dataclasses.dataclass
class Measured:
    base: TrainConfig
    archs: list[str]
    optimizers: list[str]
    n: int
    size: int
    paper_size: int
    split_sizes: tuple[int, int]
    t_a: float
    t_b: float
    t_cli: float | None
    acc_a: dict
    acc_b: dict
    took: dict
    clocks: dict
    costs: dict
    paper_costs: dict

    @property
    def cells(self) -> int:
        """(arch, optimizer) pairs: the grid's trainings on side (b)."""
        return len(self.archs) * len(self.optimizers)


def report(r: Measured) -> None:
    """The tables (measured, per prefix of the grid, per-image costs, the model's predictions) and
    the headline."""
    print_measured(r)
    print_prefixes(r)
    f_a, f_b = fixed_costs(r)
    print_costs(r, f_a, f_b)
    print_predictions(r, f_a, f_b)
    t_a, t_b = r.t_a, r.t_b
    target = "reaches" if t_a / t_b >= 30 else "does NOT reach"
    harness.headline(
        f"usual recipe / leukml grid, measured, both untracked: {t_a / t_b:.1f}x "
        f"({t_a:.0f} s / {t_b:.0f} s; {target} the 30x goal at this scale)"
    )


def print_measured(r: Measured) -> None:
    """Wall time of each side, and the largest difference in the cells' test scores."""
    t_a, t_b, t_cli, acc_a, acc_b = r.t_a, r.t_b, r.t_cli, r.acc_a, r.acc_b
    worst, worst_auc = (
        max(abs(acc_a[k][name] - acc_b[k][name]) for k in acc_a) for name in ("test_accuracy", "test_auc")
    )
    print()
    harness.table("measured", "wall s", "(a) / this")
    print(
        f"| (a) usual recipe: {r.cells * len(r.base.milestones)} separate end-to-end trainings "
        f"| {t_a:.1f} | 1.0x |"
    )
    print(
        f"| (b) leukml grid search: {r.cells} nested trainings on cached features | {t_b:.1f} "
        f"| {t_a / t_b:.1f}x |"
    )
    if t_cli is not None:
        print(
            f"| (b) as `leukml search --mode grid`: new process + MLflow tracking (only here) "
            f"| {t_cli:.1f} | {t_a / t_cli:.1f}x |"
        )
    print(f"| largest test-accuracy difference (a) vs (b) over {len(acc_a)} cells | {worst:.4f} | |")
    print(f"| largest test-AUC difference (a) vs (b) (finer: AUC ranks all scores) | {worst_auc:.4f} | |")


def print_prefixes(r: Measured) -> None:
    """Each side's wall time had the grid stopped at each milestone E."""
    print()
    harness.table("grid to E epochs (measured)", "(a) s", "(b) s", "(a) / (b)")
    for e in r.base.milestones:
        a_e = sum(t for (_, _, m), t in r.took.items() if m <= e)
        b_e = r.t_b - sum(c.end - c.at[e] for c in r.clocks.values())  # (b) to E = this run's prefix
        print(f"| {e} | {a_e:.1f} | {b_e:.1f} | {a_e / b_e:.1f}x |")


def fixed_costs(r: Measured) -> tuple[float, float]:
    """(F_a, F_b): each side's measured time less its per-image part, per training."""
    n_train, n_test = r.split_sizes
    milestones, n_opt = r.base.milestones, len(r.optimizers)
    model_a = {a: model_time(r.costs[a], n_train, n_test, milestones, n_opt, 0, 0) for a in r.archs}
    f_a = (r.t_a - sum(x[0] for x in model_a.values())) / (r.cells * len(milestones))
    f_b = (r.t_b - sum(x[1] for x in model_a.values())) / r.cells
    return f_a, f_b


def print_costs(r: Measured, f_a: float, f_b: float) -> None:
    """The per-image costs at this run's size (and the paper's, when another) and the fixed ones."""
    size, paper_size = r.size, r.paper_size
    print()
    print(
        f"per-image seconds (base: batch 32 at {size} px, 16 at {paper_size} px; head: batch 32 on 256 "
        f"samples; fixed per training: F_a {f_a:.2f} s, F_b {f_b:.2f} s):"
    )
    harness.table("arch", "px", "c_step", "c_fwd", "c_head", "c_hfwd")
    tables = ((r.costs, size), (r.paper_costs, paper_size)) if paper_size != size else ((r.costs, size),)
    for table, px in tables:
        for arch in r.archs:
            c = table[arch]
            print(
                f"| {arch} | {px} | {c['c_step']:.2e} | {c['c_fwd']:.2e} | {c['c_head']:.2e} "
                f"| {c['c_hfwd']:.2e} |"
            )


def print_predictions(r: Measured, f_a: float, f_b: float) -> None:
    """The model's (a) / (b) for this run, more images, more epochs and the paper's full scale."""
    n, size, paper_size, costs, milestones = r.n, r.size, r.paper_size, r.costs, r.base.milestones
    n_train, n_test = r.split_sizes

    def predicted(table, n_tr, n_te, ms) -> float:
        times = [
            model_time(table[a], n_tr, n_te, ms, len(r.optimizers), max(f_a, 0), max(f_b, 0)) for a in r.archs
        ]
        return sum(t[0] for t in times) / sum(t[1] for t in times)

    print()
    harness.table("model: images x epochs", "px", "predicted (a) / (b)")
    print(
        f"| {n} x {max(milestones)} (this run; measured {r.t_a / r.t_b:.1f}x) | {size} "
        f"| {predicted(costs, n_train, n_test, milestones):.1f}x |"
    )
    for k in (4, 16):
        print(
            f"| {k * n} x {max(milestones)} | {size} "
            f"| {predicted(costs, k * n_train, k * n_test, milestones):.1f}x |"
        )
    for e in (20, 50, 100):
        ms = tuple(range(e // 5, e + 1, e // 5))
        print(
            f"| {n} x {e} (milestones {ms[0]}..{e} step {e // 5}) | {size} "
            f"| {predicted(costs, n_train, n_test, ms):.1f}x |"
        )
    paper = predicted(r.paper_costs, PAPER_TRAIN, PAPER_TEST, PAPER_MILESTONES)
    print(f"| paper: {PAPER_N} x 100 (milestones 10..100) | {paper_size} | {paper:.0f}x |")
    print()
    print(
        f"predicted at the paper's full scale ({PAPER_N} images, {paper_size} px, epochs "
        f"{','.join(map(str, PAPER_MILESTONES))}): {paper:.0f}x"
    )


if __name__ == "__main__":
    main()
