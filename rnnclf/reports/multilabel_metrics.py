"""Multi-label scores and decision thresholds (`data.multi_label: true`).

A document's predicted set is every label whose probability reaches its threshold. Scores, with
counts per label l over N documents: tp, fp, fn, tn (the per-label 2x2 table):

    micro-F1        2 * sum(tp) / (2 * sum(tp) + sum(fp) + sum(fn))      (all label decisions pooled)
    macro-F1        mean over labels present in gold or predictions of 2 tp / (2 tp + fp + fn)
    samples-F1      mean over documents of 2 |gold & predicted| / (|gold| + |predicted|); a document with
                    no gold and no predicted label scores 1 (nothing to find, nothing wrongly claimed)
    subset accuracy share of documents whose predicted set equals the gold set exactly
    Hamming loss    share of wrong (document, label) decisions: (sum(fp) + sum(fn)) / (N * L)
    cardinality     mean number of labels per document (gold, and predicted)

An undefined ratio (0 / 0) is 0, as scikit-learn does with zero_division=0. Thresholds are chosen on
validation data only, from GRID: one global threshold maximising micro-F1, or per label each label's own
F1; ties go to the threshold closest to 0.5, then the lower one.
"""

from __future__ import annotations

from typing import Any

import torch

GRID = tuple(round(0.05 * step, 2) for step in range(1, 20))  # 0.05 .. 0.95


def _ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    return torch.where(denominator > 0, numerator / denominator.clamp(min=1e-12), torch.zeros(()))


def _fraction(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0


def counts(gold: torch.Tensor, chosen: torch.Tensor) -> dict[str, torch.Tensor]:
    """gold, chosen: (N, L) 0/1 -> tp, fp, fn, tn per label, each (L,) float64."""
    gold, chosen = gold.bool(), chosen.bool()
    return {
        "tp": (gold & chosen).sum(dim=0).double(),
        "fp": (~gold & chosen).sum(dim=0).double(),
        "fn": (gold & ~chosen).sum(dim=0).double(),
        "tn": (~gold & ~chosen).sum(dim=0).double(),
    }


def micro_f1(gold: torch.Tensor, chosen: torch.Tensor) -> float:
    table = counts(gold, chosen)
    tp, fp, fn = table["tp"].sum(), table["fp"].sum(), table["fn"].sum()
    return float(_ratio(2 * tp, 2 * tp + fp + fn))


def decide(probabilities: torch.Tensor, thresholds: list[float] | torch.Tensor) -> torch.Tensor:
    """probabilities (N, L), thresholds (L,) -> (N, L) bool: the labels chosen for each document."""
    return probabilities >= torch.as_tensor(thresholds, dtype=probabilities.dtype)


def multilabel_report(
    gold: torch.Tensor, chosen: torch.Tensor, labels: list[str], thresholds: list[float] | None = None
) -> dict[str, Any]:
    """gold, chosen: (N, L) 0/1 -> every multi-label score as plain JSON types. "accuracy" is the subset
    accuracy (so code that reads a run's accuracy reads the strictest multi-label one)."""
    gold, chosen = gold.bool(), chosen.bool()
    n, size = gold.shape
    table = counts(gold, chosen)
    tp, fp, fn = table["tp"], table["fp"], table["fn"]  # each (L,)
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)  # (L,)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)  # (L,)
    seen = (tp + fp + fn) > 0  # labels present in gold or predictions
    both = (gold & chosen).sum(dim=1).double()  # (N,)
    sizes = (gold.sum(dim=1) + chosen.sum(dim=1)).double()  # (N,)
    per_document = torch.where(sizes > 0, 2 * both / sizes.clamp(min=1), torch.ones(()))  # (N,)
    pooled = {name: float(value.sum()) for name, value in table.items()}
    subset = float((gold == chosen).all(dim=1).double().mean()) if n else 0.0
    per_class = {
        label: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(tp[i] + fn[i]),
            **{name: int(table[name][i]) for name in ("tp", "fp", "fn", "tn")},
        }
        for i, label in enumerate(labels)
    }
    tp_all, fp_all, fn_all = pooled["tp"], pooled["fp"], pooled["fn"]
    report: dict[str, Any] = {
        "n": n,
        "multi_label": True,
        "accuracy": subset,
        "subset_accuracy": subset,
        "micro_precision": _fraction(tp_all, tp_all + fp_all),
        "micro_recall": _fraction(tp_all, tp_all + fn_all),
        "micro_f1": _fraction(2 * tp_all, 2 * tp_all + fp_all + fn_all),
        "macro_f1": float(f1[seen].mean()) if bool(seen.any()) else 0.0,
        "samples_f1": float(per_document.mean()) if n else 0.0,
        "hamming_loss": _fraction(fp_all + fn_all, n * size),
        "label_cardinality": float(gold.sum(dim=1).double().mean()) if n else 0.0,
        "predicted_cardinality": float(chosen.sum(dim=1).double().mean()) if n else 0.0,
        "per_class": per_class,
        "labels": list(labels),
    }
    if thresholds is not None:
        report["thresholds"] = [float(t) for t in thresholds]
    return report


def _best(scores: list[float]) -> float:
    """The grid value with the highest score; ties: closest to 0.5, then the lower one."""
    return max(zip(scores, GRID, strict=True), key=lambda pair: (pair[0], -abs(pair[1] - 0.5), -pair[1]))[1]


def choose_thresholds(probabilities: torch.Tensor, gold: torch.Tensor, mode: str | float) -> list[float]:
    """Thresholds (one per label) from validation probabilities (N, L) and gold (N, L).
    mode "global": one value for every label, maximising micro-F1; "per_label": each label's value
    maximises its own F1 (and so macro-F1); a number: that fixed value."""
    size = probabilities.size(1)
    if not isinstance(mode, str):
        return [float(mode)] * size
    gold = gold.bool()
    if mode == "global":
        best = _best([micro_f1(gold, probabilities >= t) for t in GRID])
        return [best] * size
    per_threshold = []  # (G, L): each label's F1 at each grid value
    for t in GRID:
        table = counts(gold, probabilities >= t)
        per_threshold.append(_ratio(2 * table["tp"], 2 * table["tp"] + table["fp"] + table["fn"]))
    scores = torch.stack(per_threshold).tolist()  # (G, L)
    return [_best([row[label] for row in scores]) for label in range(size)]
