"""Train / validation / test splits: stratified by class, seeded, a pure function of the records."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from leukml import CLASS_NAMES
from leukml.common.errors import LeukmlError, OptionError
from leukml.common.options import option, options_of
from leukml.data.counts import n_subjects as n_subjects  # re-exported: the counts of a split's sides
from leukml.data.counts import natural_order
from leukml.data.counts import summarize as summarize
from leukml.data.discovery import PRELIM_HELP, Record

SPLIT_METHODS = ("image", "subject", "fold", "official", "kfold")
POOLS = ("all", "training")


@dataclass(frozen=True)
class SplitConfig:
    """How to split. ``val_fraction`` and ``test_fraction`` are fractions of all images.

    ``image`` is the paper's protocol (random by image; it leaks patients across sides),
    ``subject`` keeps each person on one side, ``fold`` holds out one of C-NMC's official folds,
    ``official`` is the C-NMC 2019 challenge's protocol (train on the training folds, test on the
    labelled preliminary test set), ``kfold`` holds out one of ``folds`` subject-grouped,
    class-stratified folds (what ``leukml cv`` runs).
    """

    method: str = option(
        "image",
        "image: the paper's random split (leaks patients); subject: each person on one side; "
        "fold: hold out an official C-NMC fold; official: the C-NMC challenge's protocol (test on "
        "the labelled preliminary test set); kfold: hold out one of --folds subject-grouped folds.",
        choices=SPLIT_METHODS,
        cli="split",
        set_by=("cv", "protocols"),
    )
    test_fraction: float = option(
        0.2, "Test share of all images (image/subject splits).", used_by=("image", "subject")
    )
    val_fraction: float = option(
        0.0,
        "Validation share of all images, carved from the training side.",
        unset="0; 0.1 for extended searches",
        parse=float,
        used_by=SPLIT_METHODS,
    )
    test_fold: int | None = option(
        None,
        "Fold held out with --split fold or kfold.",
        unset="the last fold",
        parse=int,
        used_by=("fold", "kfold"),
        set_by=("cv", "protocols"),
    )
    folds: int = option(
        5,
        "Folds of --split kfold: grouped by subject, stratified by class.",
        used_by=("kfold",),
        set_by=("cv", "protocols"),
    )
    pool: str = option(
        "all",
        "The cells the image, subject and kfold splits draw from: all labelled cells, or training: "
        "C-NMC's training_data only, without the labelled preliminary test set (what leukml protocols "
        "uses beside the official split, so every protocol draws from one pool).",
        choices=POOLS,
        used_by=("image", "subject", "kfold"),
        set_by=("protocols",),
    )
    # not an option of its own: the training config owns the seed and hands it over (TrainConfig.seed)
    seed: int = 42

    def __post_init__(self) -> None:
        if self.method not in SPLIT_METHODS:
            raise OptionError(f"split={self.method!r}; choose one of: {', '.join(SPLIT_METHODS)}")
        if self.pool not in POOLS:
            raise OptionError(f"pool={self.pool!r}; choose one of: {', '.join(POOLS)}")
        if not 0.0 < self.test_fraction < 1.0:
            raise OptionError(f"test_fraction={self.test_fraction}; use a value between 0 and 1")
        if self.folds < 2:
            raise OptionError(f"folds={self.folds}; use at least 2")
        if self.method == "kfold" and self.test_fold is not None and not 0 <= self.test_fold < self.folds:
            raise OptionError(
                f"test_fold={self.test_fold}; with --folds {self.folds} use 0..{self.folds - 1}"
            )
        if not 0.0 <= self.val_fraction < 1.0 - self.test_fraction:
            raise OptionError(
                f"val_fraction={self.val_fraction}; use 0 <= val_fraction < "
                f"1 - test_fraction ({1 - self.test_fraction:g})"
            )


# the split options each method reads (besides ``split``; the options' ``used_by``): a run logs only these
USED_OPTIONS = {
    method: tuple(o.name for o in options_of(SplitConfig) if method in (o.used_by or ()))
    for method in SPLIT_METHODS
}


@dataclass(frozen=True)
class Split:
    """Sorted record indices per side, and the classes the test side holds."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    config: SplitConfig
    test_classes: tuple[str, ...]
    excluded_subjects: tuple[str, ...] = ()  # official split: test subjects dropped from training

    def sides(self) -> dict[str, np.ndarray]:
        return {"train": self.train, "val": self.val, "test": self.test}

    @property
    def selection_on_test(self) -> bool:
        """No validation images: the per-epoch validation curves are computed on the test split
        (the paper's protocol), so any choice made from them is made on the test set. The one
        definition, read by the run tags, the search objective and pruning, promote and the report."""
        return not len(self.val)

    @property
    def test_one_class(self) -> bool:
        """The test side holds one class only: its AUC is undefined (logged as NaN)."""
        return len(self.test_classes) == 1

    @property
    def warning(self) -> str | None:
        """What a user should know about a split that works but measures less, or None."""
        notes = []
        if self.excluded_subjects:
            notes.append(
                f"subjects {', '.join(self.excluded_subjects)} of the preliminary test set also have "
                "training images: those were left out of training, so no test subject trains"
            )
        if self.test_one_class:
            fix = {
                "fold": "another --test-fold",
                "kfold": "fewer --folds",
                "official": "the complete preliminary test set",
            }.get(self.config.method, "a larger --test-fraction")
            notes.append(
                f"the test split has only {self.test_classes[0]} images ({len(self.test)}): test_auc is "
                f"NaN and the test metrics describe one class; use {fix} or another --seed for both classes"
            )
        return "; ".join(notes) or None


def _groups(records: Sequence[Record], idx: np.ndarray, by_subject: bool) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for i in idx:
        r = records[i]
        key = r.subject if by_subject and r.subject is not None else f"#{r.relpath}"
        groups.setdefault(key, []).append(int(i))
    return groups


def _class_groups(records: Sequence[Record], idx: np.ndarray, by_subject: bool) -> list[list[list[int]]]:
    """Per class index, the members of its groups (sorted by key); a group's class is its majority."""
    groups = _groups(records, idx, by_subject)
    per_class: list[list[list[int]]] = [[] for _ in CLASS_NAMES]
    for key in sorted(groups):
        members = groups[key]
        per_class[round(np.mean([records[i].label for i in members]))].append(members)
    return per_class


def _take(
    records: Sequence[Record], idx: np.ndarray, fraction: float, by_subject: bool, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``idx`` into (rest, taken) with ~``fraction`` of each class's images taken.

    Whole groups (subjects, or single images) move together; a group's class is its majority.
    """
    taken: list[int] = []
    for mine in _class_groups(records, idx, by_subject):
        target = fraction * sum(map(len, mine))
        count = 0
        for members in (mine[j] for j in rng.permutation(len(mine))):
            # take a group when it brings the count closer to the target
            if abs(count + len(members) - target) < abs(count - target):
                taken += members
                count += len(members)
    taken_arr = np.array(sorted(taken), dtype=np.int64)
    return np.setdiff1d(idx, taken_arr), taken_arr


def _needed(records: Sequence[Record], idx: np.ndarray, by_subject: bool) -> float:
    """The share of ``idx`` above which ``_take`` takes a group of every class: a class's first
    group is taken once the target exceeds half its smallest group, whatever the seed."""
    return max(
        min(map(len, mine)) / (2 * sum(map(len, mine)))
        for mine in _class_groups(records, idx, by_subject)
        if mine
    )


def _above(value: float) -> float:
    """The smallest two-decimal number above ``value``: a fraction a user can type."""
    return round(math.floor(value * 100 + 1e-9) / 100 + 0.01, 2)


def _pool(records: Sequence[Record], idx: np.ndarray, by_subject: bool) -> str:
    """``"6 subjects: 4 all, 2 hem"`` (or images), for errors about a side that came out empty."""
    hem, all_ = (len(mine) for mine in _class_groups(records, idx, by_subject))
    return f"{hem + all_} {'subjects' if by_subject else 'images'}: {all_} all, {hem} hem"


def _require_subjects(records: Sequence[Record], idx: np.ndarray, config: SplitConfig) -> None:
    """Grouping by subject needs every record's subject: grouping a record without one by its
    path would quietly make a per-image split of those images."""
    missing = [records[i].relpath for i in idx if records[i].subject is None]
    if not missing:
        return
    how = {"subject": "--split subject", "kfold": "--split kfold"}.get(
        config.method, f"--split {config.method} with --val-fraction"
    )
    fix = "--split image" if config.method in ("subject", "kfold") else "--val-fraction 0 or --split image"
    raise LeukmlError(
        f"{how} keeps each subject on one side, but {len(missing)} of {len(idx)} images have no "
        f"subject id (from file names UID_<subject>_...; {missing[0]} has none): use {fix}"
    )


def split_records(records: Sequence[Record], config: SplitConfig) -> Split:
    """Split records by ``config``.

    Raises:
        ValueError: a split that cannot work, naming the option to change: ``fold`` split on data
            without folds, or an unknown ``test_fold``; ``subject`` grouping on records without
            subject ids; an empty test or training side; a validation split asked for
            (``val_fraction > 0``) that comes out empty.
    """
    rng = np.random.default_rng(config.seed)
    all_idx = np.arange(len(records), dtype=np.int64)
    if config.pool == "training" and "pool" in USED_OPTIONS[config.method]:
        all_idx = np.array([i for i in all_idx if not records[i].listed], dtype=np.int64)
    excluded: tuple[str, ...] = ()
    if config.method == "fold":
        train, test = _official_fold(records, all_idx, config)
    elif config.method == "official":
        train, test, excluded = _official(records, all_idx)
    elif config.method == "kfold":
        train, test = _kfold(records, all_idx, config)
    else:
        by_subject = config.method == "subject"
        if by_subject:
            _require_subjects(records, all_idx, config)
        train, test = _take(records, all_idx, config.test_fraction, by_subject, rng)
        if not len(test):
            raise LeukmlError(
                f"--test-fraction {config.test_fraction:g} gave no test images with --split "
                f"{config.method} ({_pool(records, all_idx, by_subject)}): use a larger --test-fraction "
                f"(at least {_above(_needed(records, all_idx, by_subject)):g})"
                + (" or --split image" if by_subject else "")
            )
    if not len(train):
        option = {"fold": "--test-fold", "kfold": "--folds", "official": "the data"}.get(
            config.method, "--test-fraction"
        )
        raise LeukmlError(f"the {config.method} split left no training images: change {option}")
    val = np.array([], dtype=np.int64)
    if config.val_fraction > 0:
        train, val = _take_val(records, train, config, rng)
    classes = tuple(CLASS_NAMES[label] for label in sorted({records[i].label for i in test}))
    return Split(train, val, test, config, classes, excluded)


def _official_fold(
    records: Sequence[Record], all_idx: np.ndarray, config: SplitConfig
) -> tuple[np.ndarray, np.ndarray]:
    """(train, test): one official C-NMC fold held out, the other folds train."""
    folds = sorted({r.fold for r in records if r.fold is not None})
    if not folds:
        raise LeukmlError(
            "split='fold' needs the C-NMC layout .../fold_<k>/{all,hem}/; this "
            "data has no folds: use split=image or split=subject"
        )
    if len(folds) < 2:
        raise LeukmlError(
            f"split='fold' needs at least two folds; this data has only fold "
            f"{folds[0]}: use split=image or split=subject"
        )
    test_fold = folds[-1] if config.test_fold is None else config.test_fold
    if test_fold not in folds:
        raise OptionError(f"test_fold={test_fold} is not in the data; folds present: {folds}")
    test = np.array([i for i in all_idx if records[i].fold == test_fold], dtype=np.int64)
    train = np.array([i for i in all_idx if records[i].fold not in (None, test_fold)], dtype=np.int64)
    return train, test


def _official(
    records: Sequence[Record], all_idx: np.ndarray
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """(train, test, excluded subjects): the C-NMC challenge's protocol. Test: the labelled
    preliminary test set (the records a labels CSV lists, subjects from its ``Patient_ID``);
    train: every other labelled image, except any of a test subject (so none trains)."""
    test = np.array([i for i in all_idx if records[i].listed], dtype=np.int64)
    if not len(test):
        raise LeukmlError(
            f"--split official tests on {PRELIM_HELP}; this data has none: add it, or use "
            "--split subject (or --split fold on the training folds)"
        )
    unnamed = [records[i].relpath for i in test if records[i].subject is None]
    if unnamed:
        raise LeukmlError(
            f"--split official keeps every test subject out of training, but {len(unnamed)} labelled "
            f"preliminary images have no subject (Patient_ID like UID_57_29_1_all.bmp; {unnamed[0]} has "
            "none): correct the Patient_ID column of the labels CSV"
        )
    rest = [i for i in all_idx if not records[i].listed]
    anonymous = [records[i].relpath for i in rest if records[i].subject is None]
    if anonymous:
        raise LeukmlError(
            f"--split official keeps every test subject out of training, but {len(anonymous)} training "
            f"images have no subject id (from file names UID_<subject>_...; {anonymous[0]} has none): "
            "name them as C-NMC does, or use --split image"
        )
    test_subjects = {records[i].subject for i in test}
    excluded = tuple(sorted({records[i].subject for i in rest} & test_subjects, key=natural_order))
    train = np.array([i for i in rest if records[i].subject not in test_subjects], dtype=np.int64)
    return train, test, excluded


def _kfold(
    records: Sequence[Record], all_idx: np.ndarray, config: SplitConfig
) -> tuple[np.ndarray, np.ndarray]:
    """(train, test): fold ``test_fold`` (default the last) of ``folds`` folds grouped by subject
    and stratified by class (scikit-learn's ``StratifiedGroupKFold``, shuffled by the seed)."""
    from sklearn.model_selection import StratifiedGroupKFold

    _require_subjects(records, all_idx, config)
    subjects = sorted({records[i].subject for i in all_idx})
    if len(subjects) < config.folds:
        raise LeukmlError(
            f"--folds {config.folds} needs at least {config.folds} subjects; this data has "
            f"{len(subjects)}: use --folds {max(len(subjects), 2)} or fewer"
        )
    labels = np.array([records[i].label for i in all_idx])
    groups = np.array([subjects.index(records[i].subject) for i in all_idx])
    cv = StratifiedGroupKFold(n_splits=config.folds, shuffle=True, random_state=config.seed)
    fold = config.folds - 1 if config.test_fold is None else config.test_fold
    train, test = list(cv.split(all_idx, labels, groups))[fold]
    return np.sort(all_idx[train]), np.sort(all_idx[test])


def _take_val(
    records: Sequence[Record], train: np.ndarray, config: SplitConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(train, val): ``val_fraction`` of all images carved from the training side, or an error
    naming the fix when that gives no validation image (the run would validate on test)."""
    by_subject = config.method != "image"
    if by_subject:
        _require_subjects(records, train, config)
    relative = min(config.val_fraction * len(records) / len(train), 0.9)
    rest, val = _take(records, train, relative, by_subject, rng)
    if len(val):
        return rest, val
    at_least = _above(_needed(records, train, by_subject) * len(train) / len(records))
    fixes = (
        [f"a larger --val-fraction (at least {at_least:g})"] if at_least < 1 - config.test_fraction else []
    )
    fixes += ["--split image"] if by_subject else ["--val-fraction 0 (validation on test)"]
    raise LeukmlError(
        f"--val-fraction {config.val_fraction:g} gave no validation images with --split {config.method} "
        f"(the training side has {_pool(records, train, by_subject)}): use {' or '.join(fixes)}"
    )


def manifest(records: Sequence[Record], split: Split) -> dict:
    """The split as data: its options and the relative paths on each side."""
    return {
        "config": asdict(split.config),
        **{side: [records[i].relpath for i in idx] for side, idx in split.sides().items()},
    }


def test_set_id(fingerprint: str, records: Sequence[Record], split: Split) -> str:
    """The test set's identity: 12 hex characters of a hash of the dataset's fingerprint and the
    test side's paths. Two runs with the same id were tested on the same cells (the same bytes)."""
    paths = "\n".join(sorted(records[i].relpath for i in split.test))
    return hashlib.sha256(f"{fingerprint}\n{paths}".encode()).hexdigest()[:12]
