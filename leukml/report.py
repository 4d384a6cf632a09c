"""`leukml report`: the paper's tables and Figure 9 rebuilt from tracked runs, beside its numbers.

Works on plain run records (the tracking layer fetches them), so it needs no MLflow itself.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from leukml import paper, plots

PAPER_ARCHS, PAPER_OPTIMIZERS = ("vgg16", "resnet50"), ("adam", "rmsprop")


@dataclass
class RunRecord:
    """One finished training run as plain data."""

    run_id: str
    params: dict[str, str]
    tags: dict[str, str]
    curves: dict[str, dict[int, float]]  # metric -> {epoch: value}

    @property
    def cell(self) -> tuple[str, str]:
        return self.params.get("arch", "?"), self.params.get("optimizer", "?")

    @property
    def milestones(self) -> list[int]:
        return sorted(self.curves.get("test_accuracy", {}))


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]


def _fmt(value: float | None, digits: int = 4) -> str:
    return "–" if value is None or np.isnan(value) else f"{value:.{digits}f}"


def _delta(ours: float | None, theirs: float | None) -> str:
    return "–" if ours is None or theirs is None else f"{ours - theirs:+.4f}"


def pick_runs(runs: list[RunRecord]) -> dict[tuple[str, str], RunRecord]:
    """The newest finished run per (arch, optimizer); ``runs`` come newest first."""
    chosen: dict[tuple[str, str], RunRecord] = {}
    for run in runs:
        chosen.setdefault(run.cell, run)
    return chosen


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
                ours = run.curves["train_accuracy"].get(epoch) if run else None
                theirs = paper.train_accuracy(arch, opt, epoch)
                row += [_fmt(ours), _fmt(theirs), _delta(ours, theirs)]
            rows.append(row)
        tables.append(Table(f"Train accuracy, {arch} (paper Tables 1-2)", header, rows))
    return tables


def rpf_tables(cells: dict[tuple[str, str], RunRecord]) -> list[Table]:
    """Tables 3-6: macro recall, precision, F1 per milestone with their mean ("Totals")."""
    names = ("test_recall_macro", "test_precision_macro", "test_f1_macro")
    tables = []
    for (arch, opt), run in sorted(cells.items(), key=lambda kv: (_arch_order(kv[0][0]), kv[0][1])):
        header = ["Epoch", "Recall", "paper", "Prec.", "paper", "F1", "paper"]
        rows, ours_all, theirs_all = [], [], []
        for epoch in run.milestones:
            ours = [run.curves[n].get(epoch) for n in names]
            theirs = paper.rpf(arch, opt, epoch) or (None, None, None)
            rows.append(
                [str(epoch)] + [c for o, t in zip(ours, theirs, strict=True) for c in (_fmt(o), _fmt(t, 2))]
            )
            ours_all.append(ours)
            if theirs[0] is not None:
                theirs_all.append(theirs)
        mean_ours = np.mean(np.array(ours_all, dtype=float), axis=0) if ours_all else [None] * 3
        mean_theirs = np.mean(theirs_all, axis=0) if theirs_all else [None] * 3
        rows.append(
            ["Totals"]
            + [c for o, t in zip(mean_ours, mean_theirs, strict=True) for c in (_fmt(o), _fmt(t, 2))]
        )
        tables.append(
            Table(f"Recall, precision, F1 (macro), {arch} + {opt} (paper Tables 3-6)", header, rows)
        )
    return tables


def test_accuracy_table(cells: dict[tuple[str, str], RunRecord]) -> Table:
    configs = sorted(cells, key=lambda c: (_arch_order(c[0]), c[1]))
    epochs = sorted({e for r in cells.values() for e in r.milestones})
    rows = []
    for epoch in epochs:
        row = [str(epoch)]
        for cell in configs:
            theirs = paper.TEST_ACCURACY.get(cell, {}).get(epoch)
            ours = cells[cell].curves["test_accuracy"].get(epoch)
            row.append(_fmt(ours) + (f" (paper {theirs:.2f})" if theirs is not None else ""))
        rows.append(row)
    return Table(
        "Test accuracy per milestone (paper Figure 9)", ["Epoch"] + [f"{a} + {o}" for a, o in configs], rows
    )


def _arch_order(arch: str) -> tuple[int, str]:
    return (PAPER_ARCHS.index(arch) if arch in PAPER_ARCHS else len(PAPER_ARCHS), arch)


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
        t = run.tags
        n = int(t.get("n_images", "0") or 0)
        warn = (
            ""
            if n == paper.N_IMAGES
            else (f" — NOT the C-NMC 2019 training set ({paper.N_IMAGES} images): not comparable")
        )
        if t.get("test_one_class") == "true":
            warn += " — its test split has one class (no AUC; metrics describe one class)"
        lines.append(
            f"{arch} + {opt}: run {run.run_id}, split {t.get('split_protocol', '?')}, "
            f"selection_on_test={t.get('selection_on_test', '?')}, dataset "
            f"{t.get('dataset_fingerprint', '?')} ({n} images: train "
            f"{t.get('n_train', '?')}, val {t.get('n_val', '?')}, test "
            f"{t.get('n_test', '?')}), weights={run.params.get('weights', '?')}, "
            f"image_size={run.params.get('image_size', '?')}{warn}"
        )
    seen = sorted({run.tags.get("dataset_fingerprint", "?") for run in cells.values()})
    if len(seen) > 1:  # a fingerprint hashes the files' bytes: another one is another dataset
        lines.append(
            f"NOT comparable with each other: these runs saw {len(seen)} different datasets "
            f"(fingerprints {', '.join(seen)}); train every cell on the same data"
        )
    return lines


def _md_table(table: Table) -> str:
    lines = [
        f"### {table.title}",
        "",
        "| " + " | ".join(table.header) + " |",
        "|" + "---|" * len(table.header),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in table.rows]
    return "\n".join(lines) + "\n"


def _html_table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in table.rows
    )
    return f"<h3>{html.escape(table.title)}</h3><table><tr>{head}</tr>{body}</table>"


def write_report(runs: list[RunRecord], out: Path, title: str) -> Path:
    """Write ``out/report.md``, ``out/report.html`` and ``out/figure9_test_accuracy.png``.

    Raises:
        ValueError: no runs to report on.
    """
    if not runs:
        raise ValueError(f"no finished training runs for {title}; train or search first")
    out.mkdir(parents=True, exist_ok=True)
    cells = pick_runs(runs)
    tables = [*train_tables(cells), *rpf_tables(cells), test_accuracy_table(cells)]
    fig = plots.milestone_figure(
        {f"{a} + {o}": r.curves["test_accuracy"] for (a, o), r in sorted(cells.items())}, "test accuracy"
    )
    fig.savefig(out / "figure9_test_accuracy.png")
    gaps, origin = missing(cells), provenance(cells)
    md = [
        f"# leukml report: {title}",
        "",
        "## Runs",
        *[f"- {line}" for line in origin],
        "",
        "## Missing",
        *([f"- {g}" for g in gaps] or ["- nothing: every cell of the paper's grid"]),
        "",
        "## Tables",
        *map(_md_table, tables),
        "![Figure 9](figure9_test_accuracy.png)",
        "",
    ]
    (out / "report.md").write_text("\n".join(md))
    page = [
        f"<h1>leukml report: {html.escape(title)}</h1><h2>Runs</h2><ul>",
        *[f"<li>{html.escape(line)}</li>" for line in origin],
        "</ul><h2>Missing</h2><ul>",
        *[f"<li>{html.escape(g)}</li>" for g in gaps or ["nothing"]],
        "</ul><h2>Tables</h2>",
        *map(_html_table, tables),
        '<img src="figure9_test_accuracy.png" alt="Figure 9">',
    ]
    style = "<style>table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}</style>"
    (out / "report.html").write_text(f"<!doctype html><meta charset=utf-8>{style}" + "".join(page))
    return out / "report.md"
