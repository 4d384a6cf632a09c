"""Counts of a set of records: images and subjects per class (a split's sides, a dataset)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from leukml import CLASS_NAMES
from leukml.data.discovery import Record


def summarize(records: Sequence[Record], idx: np.ndarray | None = None) -> dict:
    """Counts and subjects per class: ``{n_images, classes: {all, hem}, subjects: {all, hem}}``."""
    chosen = [records[i] for i in idx] if idx is not None else list(records)
    classes = {name: 0 for name in reversed(CLASS_NAMES)}
    subjects: dict[str, set[str]] = {name: set() for name in reversed(CLASS_NAMES)}
    for r in chosen:
        name = CLASS_NAMES[r.label]
        classes[name] += 1
        if r.subject is not None:
            subjects[name].add(r.subject)
    return {
        "n_images": len(chosen),
        "classes": classes,
        "subjects": {k: sorted(v, key=natural_order) for k, v in subjects.items()},
    }


def natural_order(subject: str) -> tuple:
    """A sort key of subject ids in natural order (``UID_2`` before ``UID_10``)."""
    digits = "".join(ch for ch in subject if ch.isdigit())
    return (subject.rstrip("0123456789"), int(digits) if digits else -1, subject)


def n_subjects(counts: dict) -> int:
    """Distinct subjects of a ``summarize`` result (a subject may have cells of both classes)."""
    return len({s for names in counts["subjects"].values() for s in names})
