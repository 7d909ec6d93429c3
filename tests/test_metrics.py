"""Tests for rnnclf.reports.metrics on a hand-computed example (scikit-learn's conventions,
zero_division=0)."""

from __future__ import annotations

import json

import pytest

from rnnclf.reports.metrics import classification_report, confusion_matrix

LABELS = ["a", "b", "c", "d", "e"]
A, B, C, D = 0, 1, 2, 3
# d occurs once but is never predicted; e occurs nowhere.
GOLD = [A, A, A, B, B, C, C, C, D]
PREDICTED = [A, A, B, B, A, C, C, A, C]


def test_confusion_matrix_rows_true_columns_predicted() -> None:
    assert confusion_matrix(GOLD, PREDICTED, 5) == [
        [2, 1, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [1, 0, 2, 0, 0],
        [0, 0, 1, 0, 0],
        [0, 0, 0, 0, 0],
    ]


def test_report_by_hand() -> None:
    report = classification_report(GOLD, PREDICTED, LABELS)
    assert report["n"] == 9
    assert report["labels"] == LABELS
    assert report["accuracy"] == pytest.approx(5 / 9)
    per_class = report["per_class"]
    # a: 2 right of 4 predicted, of 3 true.
    assert per_class["a"] == pytest.approx({"precision": 2 / 4, "recall": 2 / 3, "f1": 4 / 7, "support": 3})
    assert per_class["b"] == pytest.approx({"precision": 1 / 2, "recall": 1 / 2, "f1": 1 / 2, "support": 2})
    assert per_class["c"] == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3})
    # Never predicted: precision 0/0 -> 0, recall 0/1, F1 0.
    assert per_class["d"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert per_class["e"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    # Macro-F1 over the classes seen in gold or predictions (a, b, c, d), as scikit-learn's f1_score.
    assert report["macro_f1"] == pytest.approx((4 / 7 + 1 / 2 + 2 / 3 + 0) / 4)
    assert report["confusion_matrix"] == confusion_matrix(GOLD, PREDICTED, 5)


def test_report_is_plain_json() -> None:
    report = classification_report(GOLD, PREDICTED, LABELS)
    assert json.loads(json.dumps(report)) == report


def test_perfect_and_empty() -> None:
    perfect = classification_report([0, 1, 1], [0, 1, 1], ["x", "y"])
    assert perfect["accuracy"] == perfect["macro_f1"] == 1.0
    assert all(scores["f1"] == 1.0 for scores in perfect["per_class"].values())
    empty = classification_report([], [], ["x", "y"])
    assert empty["n"] == 0 and empty["accuracy"] == 0.0 and empty["macro_f1"] == 0.0
    assert empty["confusion_matrix"] == [[0, 0], [0, 0]]


def test_only_a_wrong_class_predicted() -> None:
    report = classification_report([0, 0], [1, 1], ["x", "y"])
    assert report["accuracy"] == 0.0
    assert report["per_class"]["x"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    assert report["per_class"]["y"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert report["macro_f1"] == 0.0
