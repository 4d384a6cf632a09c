"""The milestone metrics and the per-subject table against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from leukml.training.evaluation import (
    SubjectScore,
    classification_metrics,
    per_subject_csv,
    per_subject_scores,
)

# 10 test cells, shuffled: ALL subjects "2" (3 cells, all right) and "10" (3 cells, 1 missed),
# hem subject "H1" (2 cells, both right) and 2 hem cells without a subject id (1 called ALL).
# So tp 5, fn 1, tn 3, fp 1.
CELLS = [  # (subject, label, p_all)
    ("10", 1, 0.6),
    (None, 0, 0.2),
    ("2", 1, 0.9),
    ("H1", 0, 0.1),
    ("10", 1, 0.3),
    ("2", 1, 0.8),
    (None, 0, 0.8),
    ("10", 1, 0.6),
    ("H1", 0, 0.3),
    ("2", 1, 0.7),
]
SUBJECTS = [c[0] for c in CELLS]
Y_TRUE = np.array([c[1] for c in CELLS])
P_ALL = np.array([c[2] for c in CELLS])


def test_challenge_metrics_by_hand():
    m, confusion = classification_metrics(Y_TRUE, P_ALL)
    assert confusion.tolist() == [[3, 1], [1, 5]]
    assert m["test_sensitivity"] == pytest.approx(5 / 6)  # ALL recall
    assert m["test_specificity"] == pytest.approx(3 / 4)  # hem recall
    assert m["test_balanced_accuracy"] == pytest.approx((5 / 6 + 3 / 4) / 2)
    # F1(ALL) = 2*5 / (2*5 + 1 + 1) = 5/6, F1(hem) = 2*3 / (2*3 + 1 + 1) = 3/4; weights 6 and 4 cells
    assert m["test_f1_weighted"] == pytest.approx((6 * 5 / 6 + 4 * 3 / 4) / 10)


@pytest.mark.parametrize("only", [0, 1])
def test_one_class_split_gives_nan_for_what_it_cannot_measure(only):
    """All-ALL: no specificity (and so no balanced accuracy); all-hem: no sensitivity. The weighted
    F1 is the present class's F1, as sklearn computes it (the absent class weighs 0)."""
    y_true = np.full(4, only)
    p_all = np.array([0.9, 0.2, 0.8, 0.7]) if only else np.array([0.1, 0.2, 0.8, 0.3])
    m, _ = classification_metrics(y_true, p_all)
    present, missing = ("sensitivity", "specificity") if only else ("specificity", "sensitivity")
    assert m[f"test_{present}"] == pytest.approx(3 / 4)
    assert math.isnan(m[f"test_{missing}"])
    assert math.isnan(m["test_balanced_accuracy"]) and math.isnan(m["test_auc"])
    # present class: 3 right of 4, 1 called the other class: F1 = 2*3 / (2*3 + 0 + 1) = 6/7
    assert m["test_f1_weighted"] == pytest.approx(6 / 7)


def test_per_subject_table_by_hand():
    rows = per_subject_scores(Y_TRUE, P_ALL, SUBJECTS)
    expected = [
        SubjectScore("2", 1, 3, 1.0, 0.8),
        SubjectScore("10", 1, 3, 2 / 3, 0.5),  # ALL first, subject ids in natural order
        SubjectScore("H1", 0, 2, 1.0, 0.2),
        SubjectScore("?", 0, 2, 0.5, 0.5),  # cells without a subject id, kept, last of their class
    ]
    assert [r[:3] for r in rows] == [e[:3] for e in expected]
    np.testing.assert_allclose([r[3:] for r in rows], [e[3:] for e in expected])
    assert per_subject_csv(rows).splitlines() == [
        "subject,class,cells,accuracy,mean_p_all",
        "2,all,3,1,0.8",
        "10,all,3,0.666667,0.5",
        "H1,hem,2,1,0.2",
        "?,hem,2,0.5,0.5",
    ]
