"""Train / validation / test splits: stratified by class, seeded, a pure function of the records."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from leukml import CLASS_NAMES
from leukml.discovery import Record

SPLIT_METHODS = ("image", "subject", "fold")


@dataclass(frozen=True)
class SplitConfig:
    """How to split. ``val_fraction`` and ``test_fraction`` are fractions of all images.

    ``image`` is the paper's protocol (random by image; it leaks patients across sides),
    ``subject`` keeps each person on one side, ``fold`` uses C-NMC's official folds.
    """

    method: str = "image"
    test_fraction: float = 0.2
    val_fraction: float = 0.0
    test_fold: int | None = None
    seed: int = 42

    def __post_init__(self) -> None:
        if self.method not in SPLIT_METHODS:
            raise ValueError(f"split={self.method!r}; choose one of: {', '.join(SPLIT_METHODS)}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction={self.test_fraction}; use a value between 0 and 1")
        if not 0.0 <= self.val_fraction < 1.0 - self.test_fraction:
            raise ValueError(
                f"val_fraction={self.val_fraction}; use 0 <= val_fraction < "
                f"1 - test_fraction ({1 - self.test_fraction:g})"
            )


@dataclass(frozen=True)
class Split:
    """Sorted record indices per side."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    config: SplitConfig

    def sides(self) -> dict[str, np.ndarray]:
        return {"train": self.train, "val": self.val, "test": self.test}


def _groups(records: Sequence[Record], idx: np.ndarray, by_subject: bool) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for i in idx:
        r = records[i]
        key = r.subject if by_subject and r.subject is not None else f"#{r.relpath}"
        groups.setdefault(key, []).append(int(i))
    return groups


def _take(
    records: Sequence[Record], idx: np.ndarray, fraction: float, by_subject: bool, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``idx`` into (rest, taken) with ~``fraction`` of each class's images taken.

    Whole groups (subjects, or single images) move together; a group's class is its majority.
    """
    taken: list[int] = []
    groups = _groups(records, idx, by_subject)
    for label in range(len(CLASS_NAMES)):
        mine = sorted(
            k for k, members in groups.items() if round(np.mean([records[i].label for i in members])) == label
        )
        target = fraction * sum(len(groups[k]) for k in mine)
        count = 0
        for k in (mine[j] for j in rng.permutation(len(mine))):
            size = len(groups[k])
            # take a group when it brings the count closer to the target
            if abs(count + size - target) < abs(count - target):
                taken += groups[k]
                count += size
    taken_arr = np.array(sorted(taken), dtype=np.int64)
    return np.setdiff1d(idx, taken_arr), taken_arr


def split_records(records: Sequence[Record], config: SplitConfig) -> Split:
    """Split records by ``config``.

    Raises:
        ValueError: ``fold`` split on data without folds, or an unknown ``test_fold``.
    """
    rng = np.random.default_rng(config.seed)
    all_idx = np.arange(len(records), dtype=np.int64)
    if config.method == "fold":
        folds = sorted({r.fold for r in records if r.fold is not None})
        if not folds:
            raise ValueError(
                "split='fold' needs the C-NMC layout .../fold_<k>/{all,hem}/; this "
                "data has no folds: use split=image or split=subject"
            )
        if len(folds) < 2:
            raise ValueError(
                f"split='fold' needs at least two folds; this data has only fold "
                f"{folds[0]}: use split=image or split=subject"
            )
        test_fold = folds[-1] if config.test_fold is None else config.test_fold
        if test_fold not in folds:
            raise ValueError(f"test_fold={test_fold} is not in the data; folds present: {folds}")
        test = np.array([i for i in all_idx if records[i].fold == test_fold], dtype=np.int64)
        train = np.array([i for i in all_idx if records[i].fold not in (None, test_fold)], dtype=np.int64)
    else:
        train, test = _take(records, all_idx, config.test_fraction, config.method == "subject", rng)
    val = np.array([], dtype=np.int64)
    if config.val_fraction > 0 and len(train):
        relative = min(config.val_fraction * len(records) / len(train), 0.9)
        train, val = _take(records, train, relative, config.method != "image", rng)
    return Split(train, val, test, config)


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
        "subjects": {k: sorted(v, key=_natural) for k, v in subjects.items()},
    }


def _natural(subject: str) -> tuple:
    digits = "".join(ch for ch in subject if ch.isdigit())
    return (subject.rstrip("0123456789"), int(digits) if digits else -1, subject)


def manifest(records: Sequence[Record], split: Split) -> dict:
    """The split as data: its options and the relative paths on each side."""
    return {
        "config": asdict(split.config),
        **{side: [records[i].relpath for i in idx] for side, idx in split.sides().items()},
    }
