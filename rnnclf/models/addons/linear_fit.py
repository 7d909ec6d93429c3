"""Fitting the linear n-gram model (rnnclf.models.addons.linear) on a training split: NB-scaled features, then
softmax regression (multi-label data: one-vs-rest, a sigmoid per label) with an L2 penalty solved to
convergence (L-BFGS, full batch):

    minimise  mean cross-entropy + 1 / (2 C N) * ||W||^2        W: (F, classes), N training documents

Feature g's value is its naive-Bayes log-count ratio |r_g|: for class c, over training documents (each
document counts an n-gram once), r_c = log P(g | c) - log P(g | not c), and |r_g| = max over c of |r_c|.
"great film" gets a large value, "of the" about zero; scaling by |r| makes the penalty cheap for n-grams
that tell the classes apart and dear for the rest. The same fit is the linear baseline every run reports
(rnnclf.training.baseline).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from rnnclf.batching import Encoded, collate, evaluation_batches
from rnnclf.models.addons.linear import NONE, NgramLogistic, document_ngrams

# An n-gram must occur in this many training documents to become a feature: the rest cannot be
# weighed from one example (on IMDB: 0.85M features instead of 4.3M, the same accuracy).
MIN_DOCUMENTS = 2
# Pseudo-documents that smooth the per-class probabilities (shared out by class size): an n-gram never
# seen weighs 0, one seen once weighs log 2 in a balanced two-class corpus.
SMOOTHING = 2.0


@dataclass
class Fit:
    """What a fit did: features kept, training accuracy, L-BFGS iterations, seconds."""

    features: int
    train_accuracy: float
    iterations: int
    seconds: float


def fit(
    model: NgramLogistic, data: Encoded, c: float = 1.0, iterations: int = 100, batch_size: int = 256
) -> Fit:
    """Fit `model` on a training split (see the module docstring); CPU, full batch."""
    started = time.perf_counter()
    num_classes = model.bias.numel()
    # Every (document, distinct n-gram) pair of the training split.
    documents, keys = [], []
    for indices in evaluation_batches(data.lengths, batch_size):
        ids, lengths, _ = collate(data, indices)
        found = document_ngrams(ids, lengths, model.order)  # (B, M)
        present = found != NONE
        documents.append(indices.unsqueeze(1).expand_as(found)[present])
        keys.append(found[present])
    document = torch.cat(documents)  # (P,)
    key = torch.cat(keys)  # (P,)
    table, feature, count = torch.unique(key, return_inverse=True, return_counts=True)
    kept = count >= MIN_DOCUMENTS  # (U,)
    renumber = torch.cumsum(kept, dim=0) - 1  # (U,) new feature index where kept
    use = kept[feature]  # (P,)
    document, feature = document[use], renumber[feature[use]]
    table = table[kept]  # (F,) sorted
    features = table.numel()
    labels = data.labels
    multi_label = data.multi_label  # labels (N, L) 0/1: one-vs-rest, a sigmoid per label
    seen = None
    if multi_label:
        # counts[f, l]: training documents with label l that contain feature f; seen[f]: with any label.
        counts = torch.zeros(features, num_classes).index_add_(0, feature, labels[document].float())
        seen = torch.bincount(feature, minlength=features).double()
    else:
        # counts[f, c]: training documents of class c that contain feature f.
        counts = torch.bincount(feature * num_classes + labels[document], minlength=features * num_classes)
    scale = log_count_ratio(counts.view(features, num_classes), labels, num_classes, seen)  # (F,)
    values = scale[feature]
    # (N, F): document n contains feature f, value |r_f|; and its transpose for the gradient.
    with warnings.catch_warnings():  # "sparse CSR support is in beta": nothing a user can act on
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support")
        x = torch.sparse_coo_tensor(
            torch.stack([document, feature]), values, (len(data), features), check_invariants=False
        ).to_sparse_csr()
        x_t = torch.sparse_coo_tensor(
            torch.stack([feature, document]), values, (features, len(data)), check_invariants=False
        ).to_sparse_csr()
    weight = torch.zeros(features, num_classes)
    bias = torch.zeros(num_classes)
    penalty = 1.0 / (c * len(data))
    target = labels.float() if multi_label else nn.functional.one_hot(labels, num_classes).float()  # (N, C)
    optimizer = torch.optim.LBFGS(
        [weight, bias], lr=1, max_iter=iterations, history_size=10, line_search_fn="strong_wolfe"
    )

    def objective() -> torch.Tensor:
        # The gradient by hand (softmax minus target, back through x_t): sparse autograd would
        # transpose x at every evaluation.
        logits = x @ weight + bias  # (N, C)
        if multi_label:  # binary cross-entropy summed over labels: each label its own regression
            data_loss = nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="sum")
            probabilities = torch.sigmoid(logits)
        else:
            log_p = torch.log_softmax(logits, dim=1)
            data_loss, probabilities = -(log_p * target).sum(), log_p.exp()
        loss = data_loss / len(data) + 0.5 * penalty * weight.square().sum()
        residual = (probabilities - target) / len(data)  # (N, C): d loss / d logits
        weight.grad = x_t @ residual + penalty * weight  # (F, C)
        bias.grad = residual.sum(dim=0)
        return loss

    with torch.no_grad():
        optimizer.step(objective)
        scores = x @ weight + bias  # (N, C)
        if multi_label:  # exact set at probability 0.5
            correct = ((scores > 0) == labels.bool()).all(dim=1).float().mean().item()
        else:
            correct = (scores.argmax(dim=1) == labels).float().mean().item()
        model.keys = table
        model.weight = weight * scale.unsqueeze(1)  # (F, C): value |r| times its weight
        model.bias = bias.clone()
    steps = next(iter(optimizer.state.values()), {}).get("n_iter", 0)
    return Fit(features, correct, int(steps), time.perf_counter() - started)


def log_count_ratio(
    counts: torch.Tensor, labels: torch.Tensor, num_classes: int, seen: torch.Tensor | None = None
) -> torch.Tensor:
    """counts: (R, C) training documents of each class containing each row's n-gram(s); labels: (N,)
    the training labels -> (R,) float32: each row's max over classes of |log-count ratio| (see above).
    Multi-label: labels (N, L) 0/1, and seen (R,) the documents containing each row's n-gram(s) (a
    document with several labels counts once there, in each of its labels' columns of counts)."""
    if labels.dim() == 2:
        documents = labels.sum(dim=0, dtype=torch.float64)  # (L,)
        total = torch.tensor(float(labels.size(0)), dtype=torch.float64)
    else:
        documents = torch.bincount(labels, minlength=num_classes).double()  # (C,)
        total = documents.sum()
    if seen is None:
        seen = counts.sum(dim=1, dtype=torch.float64)  # (R,): documents of any class
    weights = torch.zeros(counts.size(0), dtype=torch.float64)
    # One class at a time: (R,) temporaries, not (R, C) ones (500,000 buckets x 20 classes in float64
    # would be 80 MB each).
    for label in range(num_classes):
        if not 0 < documents[label] < total:
            continue  # a class with no training documents (or the only class) says nothing
        share = documents[label] / total
        own = counts[:, label].double()
        inside = (own + SMOOTHING * share) / documents[label]
        outside = (seen - own + SMOOTHING * (1 - share)) / (total - documents[label])
        weights = torch.maximum(weights, (inside.log() - outside.log()).abs())
    return weights.float()
