"""`leukml inspect`: what discovery and splitting see, as data and as text."""

from __future__ import annotations

import os

from leukml.common import runschema as schema
from leukml.data.discovery import discover, skip_counts
from leukml.data.splits import SplitConfig, split_records, summarize

MAX_SKIPPED_SHOWN = 50


def describe(data_dir: str | os.PathLike, split: SplitConfig | None = None, strict: bool = False) -> dict:
    """Counts, subjects, folds and skipped files of a data dir, plus the split when asked."""
    dataset = discover(data_dir, strict=strict)
    report = {
        "data_dir": str(dataset.root),
        "fingerprint": dataset.fingerprint,
        **summarize(dataset.records),
        "preliminary_test_set": sum(r.listed for r in dataset.records),
        "folds": sorted({r.fold for r in dataset.records if r.fold is not None}),
        "skipped": [{"path": s.path, "reason": s.reason} for s in dataset.skipped],
        "skipped_counts": skip_counts(dataset.skipped),
    }
    if split is not None:
        result = split_records(dataset.records, split)
        report["split"] = {
            "method": split.method,
            "seed": split.seed,
            "test_fraction": split.test_fraction,
            "val_fraction": split.val_fraction,
            "test_fold": split.test_fold,
            "folds": split.folds,
            schema.SELECTION_ON_TEST: result.selection_on_test,  # as the run's tags say them
            schema.TEST_ONE_CLASS: result.test_one_class,
        }
        report["splits"] = {side: summarize(dataset.records, idx) for side, idx in result.sides().items()}
        report["warnings"] = [result.warning] if result.warning else []
    return report


def _line(label: str, summary: dict) -> list[str]:
    lines = [f"{label}: {summary['n_images']} images"]
    for cls in ("all", "hem"):
        subjects = summary["subjects"][cls]
        shown = ", ".join(subjects) if len(subjects) <= 20 else ", ".join(subjects[:20]) + ", ..."
        lines.append(f"  {cls:<4}{summary['classes'][cls]:>7} images  {len(subjects):>4} subjects  {shown}")
    return lines


def render_text(report: dict) -> str:
    lines = _line(f"{report['data_dir']} (fingerprint {report['fingerprint']})", report)
    if report["folds"]:
        lines.append(f"  folds: {', '.join(map(str, report['folds']))}")
    if report["preliminary_test_set"]:
        lines.append(
            f"  labelled preliminary test set (--split official): {report['preliminary_test_set']} images"
        )
    skipped = report["skipped"]
    counts = ", ".join(f"{n} {kind}" for kind, n in report["skipped_counts"].items())
    lines.append(f"skipped {len(skipped)} file(s)" + (f": {counts}" if counts else ""))
    lines += [f"  {s['path']}: {s['reason']}" for s in skipped[:MAX_SKIPPED_SHOWN]]
    if len(skipped) > MAX_SKIPPED_SHOWN:
        lines.append(f"  ... and {len(skipped) - MAX_SKIPPED_SHOWN} more (see --json)")
    if "splits" in report:
        s = report["split"]
        lines.append(
            f"split {s['method']} (seed {s['seed']}, test {s['test_fraction']:g}, "
            f"val {s['val_fraction']:g}"
            + (f", test fold {s['test_fold']})" if s["test_fold"] is not None else ")")
        )
        for side, summary in report["splits"].items():
            lines += ["  " + line for line in _line(side, summary)]
        if s[schema.SELECTION_ON_TEST]:
            lines.append("  no validation images: per-epoch validation would use test (selection_on_test)")
        lines += [f"warning: {w}" for w in report["warnings"]]
    return "\n".join(lines)
