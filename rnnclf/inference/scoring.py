"""Scoring, the one way training, eval and predict all do it: logits for a data set, the loss and
classification report from them, and the scores of a labelled file.

Multi-label data (gold labels (N, L) 0/1, see rnnclf.reports.multilabel_metrics) score each label by its
sigmoid
against a threshold: given ones, or chosen on the data scored (only ever validation data: the callers
pass a mode to choose only when scoring the validation split).

With several data-parallel processes each scores its own contiguous part of a data set; their
confusion matrices and loss sums add up to the figures of one process scoring everything.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import nn

from rnnclf.batching import Encoded, collate, evaluation_batches, shard
from rnnclf.config import Config
from rnnclf.errors import RnnclfError
from rnnclf.inference.workers import run_parallel, scoring_threads
from rnnclf.reports.metrics import classification_report, headline  # noqa: F401  (headline: used from here)
from rnnclf.reports.multilabel_metrics import choose_thresholds, decide, multilabel_report
from rnnclf.runtime import autocast

if TYPE_CHECKING:  # the data readers and process groups: not needed by predict, which imports this
    from rnnclf.training.distributed import Processes

# Measured on IMDB test (bi-LSTM 128, 2 cores): one batch at a time, 128 scored ~1.4x faster than 256
# or 512 (bf16); with a scoring thread per core (rnnclf.inference.workers), 64 ~1.2x faster than 128 (fp32).
EVAL_BATCH = 64


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

    def score(indices: torch.Tensor) -> None:
        # Grad and autocast modes are per thread: each batch sets its own (see rnnclf.inference.workers).
        with torch.inference_mode(), autocast(precision, device):
            ids, lengths, _ = collate(data, indices)
            logits = model(ids.to(device, non_blocking=True), lengths.to(device))
            out[indices] = logits.float().cpu()

    batches = evaluation_batches(data.lengths, batch_size)
    run_parallel([partial(score, indices) for indices in batches], scoring_threads(device))
    return out


def loss_of(
    logits: torch.Tensor, gold: torch.Tensor, weights: torch.Tensor | None = None, reduction: str = "mean"
) -> torch.Tensor:
    """The training loss. Single-label: cross-entropy, gold (N,) class ids, weights per class.
    Multi-label: gold (N, L) 0/1; a document's loss is the mean over labels of binary cross-entropy
    with logits, weights the per-label positive weights; reduction over documents (mean, sum, none)."""
    if gold.dim() == 1:
        return nn.functional.cross_entropy(logits, gold, weight=weights, reduction=reduction)
    per_label = nn.functional.binary_cross_entropy_with_logits(
        logits, gold.to(logits.dtype), pos_weight=weights, reduction="none"
    )  # (N, L)
    per_document = per_label.mean(dim=1)  # (N,)
    if reduction == "none":
        return per_document
    return per_document.sum() if reduction == "sum" else per_document.mean()


Thresholds = list[float] | str | float | None


def report(
    logits: torch.Tensor,
    gold: torch.Tensor,
    labels: list[str],
    weights: torch.Tensor | None = None,
    thresholds: Thresholds = None,
) -> dict[str, Any]:
    """logits (N, C), gold (N,) -> {"loss", "accuracy", "macro_f1", per class, confusion matrix}.
    Multi-label gold (N, L): the scores of rnnclf.reports.multilabel_metrics at `thresholds`: one per label,
    None (0.5 each), or a train.thresholds mode (global, per_label, a number) to choose them on this data."""
    loss = loss_of(logits, gold, weights).item() if len(gold) else 0.0
    if gold.dim() == 1:
        return {"loss": loss, **classification_report(gold.tolist(), logits.argmax(dim=-1).tolist(), labels)}
    probabilities = torch.sigmoid(logits.float())  # (N, L)
    if thresholds is None:
        thresholds = [0.5] * len(labels)
    elif not isinstance(thresholds, list):
        thresholds = choose_thresholds(probabilities, gold, thresholds)
    return {"loss": loss, **multilabel_report(gold, decide(probabilities, thresholds), labels, thresholds)}


def evaluate(
    model: nn.Module,
    data: Encoded,
    labels: list[str],
    device: torch.device,
    precision: str,
    weights: torch.Tensor | None = None,
    processes: Processes | None = None,
    thresholds: Thresholds = None,
) -> dict[str, Any]:
    """Loss and the classification report of `model` on one encoded data set (multi-label: at
    `thresholds`, see report)."""
    if processes is None or processes.size == 1:
        logits = logits_for(model, data, device, precision)
        return report(logits, data.labels, labels, weights, thresholds)
    classes = len(labels)
    part = shard(torch.arange(len(data)), processes.rank, processes.size)
    mine = data.slice(int(part[0]), int(part[-1]) + 1) if len(part) else data.slice(0, 0)
    logits = logits_for(model, mine, device, precision) if len(mine) else torch.empty(0, classes)  # (n, C)
    if data.multi_label:
        # Every process gets all the logits (N x L floats: small) and computes the same report.
        everything = torch.zeros(len(data), classes, dtype=torch.float64)
        if len(part):
            everything[int(part[0]) : int(part[-1]) + 1] = logits.double()
        return report(processes.sum(everything).float(), data.labels, labels, weights, thresholds)
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
    """What score_file needs of a predictor (rnnclf.inference.predict.Predictor)."""

    config: Config
    labels: list[str]
    thresholds: list[float]  # multi-label: one per label

    def probabilities(self, texts: list[str]) -> torch.Tensor: ...


def score_file(
    predictor: Scorer,
    path: str | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class scores and confusion matrix on a labelled file (default: the
    test set named in the run's config), read with the run's data settings; text_column/label_column
    override the run's data.text_column/data.label_column (see rnnclf.data.documents)."""
    from rnnclf.data.documents import labelled_to_score
    from rnnclf.data.labelsets import known_labels
    from rnnclf.prepare import label_matrix

    data = predictor.config.data
    if not (path or data.test):
        raise RnnclfError("no --data given and the run's config names no data.test")
    examples = labelled_to_score(path or data.test, data, text_column, label_column, by_name=bool(path))
    if data.multi_label:
        gold_matrix = label_matrix(examples.labels, predictor.labels, examples.source, "evaluation")  # (N, L)
        chosen = decide(predictor.probabilities(examples.texts), predictor.thresholds)  # (N, L)
        return multilabel_report(gold_matrix, chosen, predictor.labels, predictor.thresholds)
    keep, gold = known_labels(examples.labels, predictor.labels, examples.source, "evaluation")
    predicted = predictor.probabilities([examples.texts[i] for i in keep]).argmax(dim=-1).tolist()
    return classification_report(gold, predicted, predictor.labels)
