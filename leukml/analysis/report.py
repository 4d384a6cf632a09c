"""`leukml report`: the leakage gap between evaluation protocols, and the paper's tables and
Figure 9 rebuilt from tracked runs beside its numbers.

Opens with a summary (``leukml.analysis.leakage``), then each configuration under every protocol it was run
with, then the paper's tables from the image-split runs. Works on plain run records (the tracking
layer fetches them), so it needs no MLflow itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from leukml.analysis import leakage, plots
from leukml.analysis.comparison import REFERENCE, describe_split, protocol_entries
from leukml.analysis.page import Bullets, Image, Section, Table, write_page
from leukml.analysis.page import fmt as _fmt
from leukml.analysis.records import RunRecord
from leukml.analysis.uncertainty import Interval
from leukml.common import runschema as schema
from leukml.common.errors import LeukmlError
from leukml.reference import paper

PAPER_ARCHS, PAPER_OPTIMIZERS = paper.ARCHS, paper.OPTIMIZERS
_arch_order = paper.arch_order


def _delta(ours: float | None, theirs: float | None) -> str:
    return "–" if ours is None or theirs is None else f"{ours - theirs:+.4f}"


def _with_interval(run: RunRecord, metric: str, epoch: int) -> str:
    """The run's ``metric`` at ``epoch`` with its logged 95% interval: ``0.6500 [0.52, 0.78]``."""
    value = run.curves.get(metric, {}).get(epoch)
    low = run.curves.get(f"{metric}_ci_low", {}).get(epoch)
    high = run.curves.get(f"{metric}_ci_high", {}).get(epoch)
    if value is None or low is None or high is None or np.isnan([value, low, high]).any():
        return _fmt(value)
    return f"{_fmt(value)} {Interval(low, high)}"


def pick_runs(runs: list[RunRecord]) -> dict[tuple[str, str], RunRecord]:
    """Per (arch, optimizer) the newest image-split run (the paper's protocol), else the newest run
    of any protocol (the tables then name it); ``runs`` come newest first."""
    chosen: dict[tuple[str, str], RunRecord] = {}
    for run in runs:
        held = chosen.get(run.cell)
        if held is None or (run.split_protocol == REFERENCE and held.split_protocol != REFERENCE):
            chosen[run.cell] = run
    return chosen


def _not_image(runs: list[RunRecord]) -> str:
    """A title's note on the runs not on the paper's protocol: " — adam: subject split (...)"."""
    off = [f"{run.cell[1]}: {describe_split(run)}" for run in runs if run.split_protocol != REFERENCE]
    return f" — {', '.join(off)} (no {REFERENCE}-split run)" if off else ""


def _column(cell: tuple[str, str], run: RunRecord) -> str:
    """A configuration's column heading, with its protocol when it is not the paper's."""
    return f"{cell[0]} + {cell[1]}" + ("" if run.split_protocol == REFERENCE else f" ({run.split_protocol})")


def train_tables(cells: dict[tuple[str, str], RunRecord]) -> list[Table]:
    """Tables 1-2: train accuracy per milestone x optimizer, one table per arch."""
    tables = []
    for arch in sorted({a for a, _ in cells}, key=_arch_order):
        opts = sorted({o for a, o in cells if a == arch} | set(PAPER_OPTIMIZERS))
        epochs = sorted({e for (a, _), r in cells.items() if a == arch for e in r.milestones})
        header = ["Epoch"] + [f"{o} {what}" for o in opts for what in ("ours", "paper", "Δ")]
        rows = []
        for epoch in epochs:
            row = [str(epoch)]
            for opt in opts:
                run = cells.get((arch, opt))
                ours = run.curves.get("train_accuracy", {}).get(epoch) if run else None
                theirs = paper.train_accuracy(arch, opt, epoch)
                row += [_fmt(ours), _fmt(theirs), _delta(ours, theirs)]
            rows.append(row)
        runs = [r for (a, _), r in sorted(cells.items()) if a == arch]
        tables.append(Table(f"Train accuracy, {arch} (paper Tables 1-2){_not_image(runs)}", header, rows))
    return tables


def rpf_tables(cells: dict[tuple[str, str], RunRecord]) -> list[Table]:
    """Tables 3-6: macro recall, precision, F1 per milestone with their mean ("Totals")."""
    names = ("test_recall_macro", "test_precision_macro", "test_f1_macro")
    tables = []
    for (arch, opt), run in sorted(cells.items(), key=lambda kv: (_arch_order(kv[0][0]), kv[0][1])):
        header = ["Epoch", "Recall", "paper", "Prec.", "paper", "F1", "paper"]
        rows, ours_all, ours_paired, theirs_all, paired = [], [], [], [], []
        for epoch in run.milestones:
            ours = [run.curves.get(n, {}).get(epoch) for n in names]
            shown = [_with_interval(run, n, epoch) for n in names]
            theirs = paper.rpf(arch, opt, epoch) or (None, None, None)
            rows.append(
                [str(epoch)] + [c for o, t in zip(shown, theirs, strict=True) for c in (o, _fmt(t, 2))]
            )
            ours_all.append(ours)
            if theirs[0] is not None:
                theirs_all.append(theirs)
                ours_paired.append(ours)
                paired.append(epoch)
        rows.append(_totals_row(ours_paired or ours_all, theirs_all, paired, len(run.milestones)))
        tables.append(
            Table(
                f"Recall, precision, F1 (macro), {arch} + {opt} (paper Tables 3-6){_not_image([run])}",
                header,
                rows,
            )
        )
    return tables


def _totals_row(ours: list, theirs: list, paired: list[int], n_rows: int) -> list[str]:
    """The means of both sides over the same epochs: the paper's where it has any (a milestone it
    never reported would otherwise move our mean and not its), named when that is not every row."""
    mean_ours = np.mean(np.array(ours, dtype=float), axis=0) if ours else [None] * 3
    mean_theirs = np.mean(theirs, axis=0) if theirs else [None] * 3
    label = "Totals" if len(paired) in (0, n_rows) else f"Totals (epochs {', '.join(map(str, paired))})"
    return [label] + [c for o, t in zip(mean_ours, mean_theirs, strict=True) for c in (_fmt(o), _fmt(t, 2))]


def test_accuracy_table(cells: dict[tuple[str, str], RunRecord]) -> Table:
    configs = sorted(cells, key=lambda c: (_arch_order(c[0]), c[1]))
    epochs = sorted({e for r in cells.values() for e in r.milestones})
    rows = []
    for epoch in epochs:
        row = [str(epoch)]
        for cell in configs:
            theirs = paper.TEST_ACCURACY.get(cell, {}).get(epoch)
            shown = _with_interval(cells[cell], "test_accuracy", epoch)
            row.append(shown + (f" (paper {theirs:.2f})" if theirs is not None else ""))
        rows.append(row)
    header = ["Epoch"] + [_column(c, cells[c]) for c in configs]
    return Table("Test accuracy per milestone (paper Figure 9)", header, rows)


def missing(cells: dict[tuple[str, str], RunRecord]) -> list[str]:
    """The paper's grid cells (and epoch milestones) this set of runs lacks."""
    notes = [
        f"{a} + {o}: no finished run" for a in PAPER_ARCHS for o in PAPER_OPTIMIZERS if (a, o) not in cells
    ]
    for (arch, opt), run in cells.items():
        lacking = [e for e in paper.EPOCHS if e not in run.milestones]
        if lacking:
            notes.append(f"{arch} + {opt}: no milestone at epoch(s) {', '.join(map(str, lacking))}")
    return notes


def provenance(cells: dict[tuple[str, str], RunRecord]) -> list[str]:
    lines = []
    for (arch, opt), run in sorted(cells.items()):
        n = run.n_images
        warn = (
            ""
            if n == paper.N_IMAGES
            else (f" — NOT the C-NMC 2019 training set ({paper.N_IMAGES} images): not comparable")
        )
        if run.split_protocol != REFERENCE:
            warn += f" — not the paper's {REFERENCE} split (no {REFERENCE}-split run of this cell)"
        if run.test_one_class:
            warn += " — its test split has one class (no AUC; metrics describe one class)"
        if one := run.one_class_predicted:
            epochs = ", ".join(one.epochs) or "?"
            warn += f" — predicts one class ({one.label}) for every test image at epoch(s) {epochs}"
        lines.append(
            f"{arch} + {opt}: run {run.run_id}, {describe_split(run)}, "
            f"{schema.SELECTION_ON_TEST}={run.tag(schema.SELECTION_ON_TEST)}, dataset "
            f"{run.dataset_fingerprint} ({n} images: train "
            f"{run.tag(schema.N_TRAIN)}, val {run.tag(schema.N_VAL)}, test "
            f"{run.tag(schema.N_TEST)}), weights={run.params.get('weights', '?')}, "
            f"image_size={run.params.get('image_size', '?')}{warn}"
        )
    seen = sorted({run.dataset_fingerprint for run in cells.values()})
    if len(seen) > 1:  # a fingerprint hashes the files' bytes: another one is another dataset
        lines.append(
            f"NOT comparable with each other: these runs saw {len(seen)} different datasets "
            f"(fingerprints {', '.join(seen)}); train every cell on the same data"
        )
    return lines


def figure9_figure(cells: dict[tuple[str, str], RunRecord]) -> Figure:
    """Our test accuracy per milestone as lines, the paper's as markers of the same colour."""
    series, theirs = {}, {}
    for cell, run in sorted(cells.items(), key=lambda kv: (_arch_order(kv[0][0]), kv[0][1])):
        label = _column(cell, run)
        series[label] = run.curves.get("test_accuracy", {})
        if cell in paper.TEST_ACCURACY:
            theirs[label] = paper.TEST_ACCURACY[cell]
    return plots.milestone_figure(series, "test accuracy", reference=theirs, reference_name="paper")


def figure9(cells: dict[tuple[str, str], RunRecord]) -> Image:
    caption = "Figure 9: test accuracy per milestone, ours (lines) and the paper's (open diamonds)"
    return Image("figure9_test_accuracy.png", caption, plots.png_bytes(figure9_figure(cells)))


def write_report(runs: list[RunRecord], out: Path, title: str) -> Path:
    """Write ``out/report.md``, ``out/report.html`` (self-contained), ``out/figure9_test_accuracy.png``
    and a ``confusion_*.png`` per configuration and protocol.

    Raises:
        ValueError: no runs to report on.
    """
    if not runs:
        raise LeukmlError(f"no finished training runs for {title}; train or search first")
    out.mkdir(parents=True, exist_ok=True)
    entries = protocol_entries(runs)
    cells = pick_runs(runs)
    tables = [*train_tables(cells), *rpf_tables(cells), test_accuracy_table(cells)]
    gaps = missing(cells)
    sections = [
        leakage.summary_section(entries),
        leakage.protocols_section(entries),
        Section("Runs in the paper's tables", [Bullets(provenance(cells))]),
        Section("Missing", [Bullets(gaps or ["nothing: every cell of the paper's grid"])]),
        Section(
            "The paper's tables",
            [
                f"From the newest {REFERENCE}-split run per (arch, optimizer), the paper's protocol; "
                "a cell without one uses its newest run of another protocol, named in the titles.",
                *tables,
                figure9(cells),
            ],
        ),
    ]
    return write_page(out, f"leukml report: {title}", sections)
