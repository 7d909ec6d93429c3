"""Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix."""

from __future__ import annotations

from typing import Any


def confusion_matrix(gold: list[int], predicted: list[int], num_classes: int) -> list[list[int]]:
    """matrix[i][j] = documents of true class i predicted as class j."""
    matrix = [[0] * num_classes for _ in range(num_classes)]
    for true, guess in zip(gold, predicted, strict=True):
        matrix[true][guess] += 1
    return matrix


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0


def classification_report(gold: list[int], predicted: list[int], labels: list[str]) -> dict[str, Any]:
    """All metrics as plain JSON types. A class never predicted (or absent) scores 0 where undefined,
    as scikit-learn does with zero_division=0."""
    matrix = confusion_matrix(gold, predicted, len(labels))
    n = len(gold)
    correct = sum(matrix[i][i] for i in range(len(labels)))
    per_class = {}
    for i, label in enumerate(labels):
        true_positive = matrix[i][i]
        support = sum(matrix[i])
        predicted_count = sum(row[i] for row in matrix)
        precision = _ratio(true_positive, predicted_count)
        recall = _ratio(true_positive, support)
        f1 = _ratio(2 * precision * recall, precision + recall)
        per_class[label] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
    # Macro-F1 averages over the classes present in gold or predictions (a class absent from both
    # says nothing about the model on this data).
    seen = [label for i, label in enumerate(labels) if sum(matrix[i]) or sum(row[i] for row in matrix)]
    macro_f1 = _ratio(sum(per_class[label]["f1"] for label in seen), len(seen))
    return {
        "n": n,
        "accuracy": _ratio(correct, n),
        "macro_f1": macro_f1,
        "per_class": per_class,
        "confusion_matrix": matrix,
        "labels": list(labels),
    }


def headline(scores: dict[str, Any]) -> tuple[str, float]:
    """The one score a summary line shows: ("micro-F1", value) for multi-label scores, else accuracy."""
    if scores.get("multi_label"):
        return "micro-F1", scores["micro_f1"]
    return "accuracy", scores["accuracy"]
