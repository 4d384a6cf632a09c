from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from leukml.data.discovery import Record, discover
from leukml.data.splits import SplitConfig, manifest, split_records


def _subjects(records, idx):
    return {records[i].subject for i in idx}


def test_image_split_is_stratified_and_covers_everything(tiny_data):
    records = discover(tiny_data).records
    split = split_records(records, SplitConfig())
    assert len(split.test) == round(0.2 * 32) + round(0.2 * 16)
    assert sorted(np.concatenate([split.train, split.val, split.test])) == list(range(48))


def test_subject_split_keeps_each_person_on_one_side(real_sample):
    records = discover(real_sample).records
    split = split_records(records, SplitConfig(method="subject", val_fraction=0.1))
    sides = [_subjects(records, idx) for idx in (split.train, split.val, split.test)]
    assert all(not (a & b) for i, a in enumerate(sides) for b in sides[i + 1 :])
    assert 0.1 < len(split.test) / len(records) < 0.35
    labels = np.array([r.label for r in records])
    assert set(labels[split.test]) == {0, 1}


def test_fold_split_holds_out_one_fold(tiny_data):
    records = discover(tiny_data).records
    split = split_records(records, SplitConfig(method="fold", test_fold=1, val_fraction=0.15))
    assert {records[i].fold for i in split.test} == {1}
    assert {records[i].fold for i in np.concatenate([split.train, split.val])} == {0, 2}
    assert not _subjects(records, split.train) & _subjects(records, split.val)
    default = split_records(records, SplitConfig(method="fold"))
    assert {records[i].fold for i in default.test} == {2}


def test_fold_split_needs_folds(tmp_path):
    records = [Record(f"{c}/{i}.bmp", c == "all", None, None, 10) for c in ("all", "hem") for i in range(5)]
    with pytest.raises(ValueError, match="no folds: use split=image or split=subject"):
        split_records(records, SplitConfig(method="fold"))


def test_split_is_deterministic_and_seeded(tiny_data):
    records = discover(tiny_data).records
    for method in ("image", "subject"):
        a = manifest(records, split_records(records, SplitConfig(method=method, seed=3)))
        b = manifest(records, split_records(list(records), SplitConfig(method=method, seed=3)))
        c = manifest(records, split_records(records, SplitConfig(method=method, seed=4)))
        assert a == b
        assert a["test"] != c["test"]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"method": "patient"}, "choose one of: image, subject, fold"),
        ({"test_fraction": 1.5}, "test_fraction"),
        ({"val_fraction": 0.9}, "val_fraction"),
    ],
)
def test_bad_split_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SplitConfig(**kwargs)


def _people(per_class: int, images: int = 10, subjects: bool = True) -> list[Record]:
    """``per_class`` subjects of each class, ``images`` images each; no subject ids if not ``subjects``."""
    records = []
    for cls, prefix in (("all", ""), ("hem", "H")):
        for s in range(1, per_class + 1):
            subject = f"{prefix}{s}"
            for i in range(images):
                name = f"UID_{subject}_{i}.bmp" if subjects else f"cell_{subject}_{i}.bmp"
                records.append(
                    Record(f"{cls}/{name}", int(cls == "all"), subject if subjects else None, None, 9)
                )
    return records


def _at_least(error: pytest.ExceptionInfo) -> float:
    return float(re.search(r"at least ([0-9.]+)", str(error.value)).group(1))


def test_selection_on_test_is_a_fact_of_the_split(tiny_data):
    records = discover(tiny_data).records
    paper = split_records(records, SplitConfig())
    with_val = split_records(records, SplitConfig(val_fraction=0.1))
    assert paper.selection_on_test
    assert len(with_val.val) and not with_val.selection_on_test
    # split_records makes the two agree (an empty requested validation side is refused), so the
    # sides are swapped here: the flag must follow the validation images, not val_fraction
    no_val_made = dataclasses.replace(with_val, val=paper.val)
    val_made = dataclasses.replace(paper, val=with_val.val)
    assert no_val_made.config.val_fraction == 0.1 and no_val_made.selection_on_test
    assert val_made.config.val_fraction == 0.0 and not val_made.selection_on_test


@pytest.mark.parametrize("method, val_fraction", [("subject", 0.02), ("subject", 0.05), ("image", 0.005)])
def test_a_requested_validation_split_that_comes_out_empty_is_refused(method, val_fraction):
    """Else the run validates on test while tagged selection_on_test=false, and a search selects
    on that number; the error's suggested fraction must work."""
    records = _people(10)
    config = SplitConfig(method=method, val_fraction=val_fraction)
    fix = "--split image" if method == "subject" else "--val-fraction 0"
    with pytest.raises(
        ValueError, match=rf"--val-fraction {val_fraction:g} gave no validation .*{fix}"
    ) as error:
        split_records(records, config)
    split = split_records(records, dataclasses.replace(config, val_fraction=_at_least(error)))
    assert {records[i].label for i in split.val} == {0, 1}


def test_an_empty_test_split_is_refused(tiny_data):
    records = discover(tiny_data).records
    config = SplitConfig(test_fraction=0.01)
    with pytest.raises(
        ValueError, match=r"--test-fraction 0.01 gave no test images .*48 images: 32 all, 16 hem"
    ) as error:
        split_records(records, config)
    split = split_records(records, dataclasses.replace(config, test_fraction=_at_least(error)))
    assert split.test_classes == ("hem", "all") and not split.test_one_class


def test_a_one_class_test_split_is_allowed_and_flagged(tiny_data):
    records = discover(tiny_data).records
    split = split_records(records, SplitConfig(test_fraction=0.03))
    assert split.test_one_class and split.test_classes == ("all",)
    assert "only all images" in split.warning and "test_auc is NaN" in split.warning
    assert split_records(records, SplitConfig()).warning is None


@pytest.mark.parametrize("with_subject", [0, 7])
def test_subject_grouping_refuses_records_without_subjects(with_subject):
    """A record without a subject id used to become its own group: a per-image split, quietly."""
    records = _people(10, images=1, subjects=False)
    records[:with_subject] = _people(10, images=1)[:with_subject]
    missing = 20 - with_subject
    with pytest.raises(ValueError, match=rf"{missing} of 20 images have no subject id.*use --split image"):
        split_records(records, SplitConfig(method="subject"))
    assert len(split_records(records, SplitConfig(method="image")).test) == 4
    folds = [dataclasses.replace(r, fold=i % 2) for i, r in enumerate(records)]
    with pytest.raises(ValueError, match="have no subject id.*use --val-fraction 0 or --split image"):
        split_records(folds, SplitConfig(method="fold", val_fraction=0.2))
    assert len(split_records(folds, SplitConfig(method="fold")).test) == 10
