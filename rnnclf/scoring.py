"""Scoring, the one way training, eval and predict all do it: logits for a data set, the loss and
classification report from them, and the scores of a labelled file.

With several data-parallel processes each scores its own contiguous part of a data set; their
confusion matrices and loss sums add up to the figures of one process scoring everything.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import nn

from rnnclf.batching import Encoded, collate, evaluation_batches, shard
from rnnclf.config import Config
from rnnclf.data import read_configured
from rnnclf.distributed import Processes
from rnnclf.errors import RnnclfError
from rnnclf.metrics import classification_report
from rnnclf.prepare import known_labels
from rnnclf.runtime import autocast

# Measured on IMDB test (bi-LSTM 128, bf16, 2 cores): 128 scored ~1.4x faster than 256 or 512.
EVAL_BATCH = 128


def logits_for(
    model: nn.Module,
    data: Encoded,
    device: torch.device,
    precision: str = "fp32",
    batch_size: int = EVAL_BATCH,
) -> torch.Tensor:
    """Scores for every document, in the data's order: (N, num_classes) float32 on CPU."""
    model.eval()
    out = torch.empty(len(data), model.num_classes)
    with torch.inference_mode():
        for indices in evaluation_batches(data.lengths, batch_size):
            ids, lengths, _ = collate(data, indices)
            with autocast(precision, device):
                logits = model(ids.to(device, non_blocking=True), lengths.to(device))
            out[indices] = logits.float().cpu()
    return out


def report(
    logits: torch.Tensor, gold: torch.Tensor, labels: list[str], weights: torch.Tensor | None = None
) -> dict[str, Any]:
    """logits (N, C), gold (N,) -> {"loss", "accuracy", "macro_f1", per class, confusion matrix}."""
    loss = nn.functional.cross_entropy(logits, gold, weight=weights).item() if len(gold) else 0.0
    return {"loss": loss, **classification_report(gold.tolist(), logits.argmax(dim=-1).tolist(), labels)}


def evaluate(
    model: nn.Module,
    data: Encoded,
    labels: list[str],
    device: torch.device,
    precision: str,
    weights: torch.Tensor | None = None,
    processes: Processes | None = None,
) -> dict[str, Any]:
    """Loss and the classification report of `model` on one encoded data set."""
    if processes is None or processes.size == 1:
        return report(logits_for(model, data, device, precision), data.labels, labels, weights)
    classes = len(labels)
    part = shard(torch.arange(len(data)), processes.rank, processes.size)
    mine = data.slice(int(part[0]), int(part[-1]) + 1) if len(part) else data.slice(0, 0)
    logits = logits_for(model, mine, device, precision) if len(mine) else torch.empty(0, classes)  # (n, C)
    gold, guess = mine.labels, logits.argmax(dim=-1)  # (n,), (n,)
    confusion = torch.bincount(gold * classes + guess, minlength=classes * classes)  # (C*C,) row: true
    losses = nn.functional.cross_entropy(logits, gold, weight=weights, reduction="none")  # (n,)
    weight = weights[gold].sum() if weights is not None else torch.tensor(float(len(gold)))
    sums = torch.cat([confusion.double(), torch.stack([losses.sum(), weight]).double()])
    totals = processes.sum(sums)  # the same on every process
    matrix = totals[:-2].long().view(classes, classes).tolist()
    return {"loss": float(totals[-2] / totals[-1]), **classification_report(*_pairs(matrix), labels)}


def _pairs(matrix: list[list[int]]) -> tuple[list[int], list[int]]:
    """(gold, predicted) label lists with the counts of a confusion matrix."""
    gold, predicted = [], []
    for true, row in enumerate(matrix):
        for guess, count in enumerate(row):
            gold += [true] * count
            predicted += [guess] * count
    return gold, predicted


class Scorer(Protocol):
    """What score_file needs of a predictor (rnnclf.predict.Predictor)."""

    config: Config
    labels: list[str]

    def probabilities(self, texts: list[str]) -> torch.Tensor: ...


def score_file(predictor: Scorer, path: str | None = None) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class scores and confusion matrix on a labelled file (default: the
    test set named in the run's config), read with the run's data settings."""
    data = predictor.config.data
    path = path or data.test
    if not path:
        raise RnnclfError("no --data given and the run's config names no data.test")
    examples = read_configured(path, data)
    keep, gold = known_labels(examples.labels, predictor.labels, examples.source, "evaluation")
    predicted = predictor.probabilities([examples.texts[i] for i in keep]).argmax(dim=-1).tolist()
    return classification_report(gold, predicted, predictor.labels)
