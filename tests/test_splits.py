from __future__ import annotations

import numpy as np
import pytest

from leukml.discovery import Record, discover
from leukml.splits import SplitConfig, manifest, split_records


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
