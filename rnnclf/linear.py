"""A linear model over exact word n-grams, blended with the RNN: naive-Bayes-scaled logistic regression.

NBSVM (Wang & Manning 2012; Mesnil et al. 2014) in logistic form. Each document is the set of its word
n-grams, n = 1..order (binary: present or not), every n-gram seen in at least `MIN_DOCUMENTS` training
documents is a feature, and feature g's value is its naive-Bayes log-count ratio |r_g|
(rnnclf.ngrams.log_count_ratio). Softmax regression with an L2 penalty is then fitted to convergence
(L-BFGS, full batch) before the RNN trains:

    minimise  mean cross-entropy + 1 / (2 C N) * ||W||^2        W: (F, classes), N training documents

Scaling by |r| makes the penalty cheap for n-grams that tell the classes apart and dear for the rest.
A convex problem solved to its optimum regularises rare n-grams far better than the bag beside the
RNN, whose rows Adam moves as fast for an n-gram seen once as for "great film": on an IMDB split that
holds out whole movies this model alone scored 1.6 points above the previous configs/imdb.yaml (RNN +
bag).

The n-grams are exact, not hashed: rnnclf.ngrams.ngram_keys mixes n-gram ids into one int64 key that
cannot collide for n <= 3 while the vocabulary is below 1,000,003 words (for n >= 4 keys hash). The
model keeps the sorted keys of its features and finds a document's n-grams there by binary search.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from rnnclf.batching import Encoded, collate, evaluation_batches
from rnnclf.ngrams import log_count_ratio, ngram_keys

# An n-gram must occur in this many training documents to become a feature: the rest cannot be
# weighed from one example (on IMDB: 0.85M features instead of 4.3M, the same accuracy).
MIN_DOCUMENTS = 2
# Key that marks padding and repeated n-grams: never a feature (real keys are >= 0 for n <= 3).
NONE = -1


def document_ngrams(ids: torch.Tensor, lengths: torch.Tensor, order: int) -> torch.Tensor:
    """ids: (B, T) right-padded, lengths: (B,) -> (B, M) int64 keys of each document's distinct
    n-grams, n = 1..order, sorted, with NONE in place of padding and repeats (M ~ order * T)."""
    parts = [key.masked_fill(~inside, NONE) for key, inside in ngram_keys(ids, lengths, order)]
    keys = torch.cat(parts, dim=1).sort(dim=1).values  # (B, M)
    repeat = torch.zeros_like(keys, dtype=torch.bool)
    repeat[:, 1:] = keys[:, 1:] == keys[:, :-1]
    return keys.masked_fill(repeat, NONE)


def sorted_position(table: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    """torch.searchsorted(table, queries) (left side) from gathers and comparisons only, which ONNX has:
    a binary search run for a fixed ceil(log2(F + 1)) steps on every query at once. table: (F,) sorted,
    queries: any shape of int64 -> positions of the same shape, in 0..F."""
    size = int(table.numel())  # a constant of the exported model (the fitted features)
    low = torch.zeros_like(queries)
    high = torch.full_like(queries, size)
    for _ in range(size.bit_length()):  # each step halves high - low, which starts at F
        middle = torch.div(low + high, 2, rounding_mode="floor").clamp(max=size - 1)
        below = table[middle] < queries
        searching = low < high
        low = torch.where(searching & below, middle + 1, low)
        high = torch.where(searching & ~below, middle, high)
    return low


class NgramLogistic(nn.Module):
    """Logistic regression over binary n-gram features; all state is buffers (fitted, never trained)."""

    def __init__(self, order: int, num_classes: int) -> None:
        super().__init__()
        self.order = order
        self.register_buffer("keys", torch.zeros(0, dtype=torch.int64))  # (F,) sorted feature keys
        self.register_buffer("weight", torch.zeros(0, num_classes))  # (F, C), the |r| scale folded in
        self.register_buffer("bias", torch.zeros(num_classes))  # (C,)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """ids: (B, T), lengths: (B,) -> logits (B, C) in float32."""
        if self.keys.numel() == 0:  # not fitted, or no n-gram in enough training documents
            return self.bias.expand(ids.size(0), -1)
        keys = document_ngrams(ids, lengths.to(ids.device), self.order)  # (B, M)
        # (B, M) positions in 0..F; ONNX has no searchsorted.
        search = sorted_position if torch.onnx.is_in_onnx_export() else torch.searchsorted
        index = search(self.keys, keys).clamp(max=int(self.keys.numel()) - 1)  # (B, M)
        found = (self.keys[index] == keys).unsqueeze(-1)  # (B, M, 1); NONE is never a key
        return (self.weight[index] * found).sum(dim=1) + self.bias

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # The number of features depends on the training data: take the saved sizes before loading.
        for name in ("keys", "weight"):
            saved = state_dict.get(prefix + name)
            if saved is not None:
                setattr(self, name, torch.empty_like(saved, device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, *args)


@dataclass
class Fit:
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
    # counts[f, c]: training documents of class c that contain feature f.
    counts = torch.bincount(feature * num_classes + labels[document], minlength=features * num_classes)
    scale = log_count_ratio(counts.view(features, num_classes), labels, num_classes)  # (F,)
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
    target = nn.functional.one_hot(labels, num_classes).float()  # (N, C)
    optimizer = torch.optim.LBFGS(
        [weight, bias], lr=1, max_iter=iterations, history_size=10, line_search_fn="strong_wolfe"
    )

    def objective() -> torch.Tensor:
        # The gradient by hand (softmax minus target, back through x_t): sparse autograd would
        # transpose x at every evaluation.
        log_p = torch.log_softmax(x @ weight + bias, dim=1)  # (N, C)
        loss = -(log_p * target).sum() / len(data) + 0.5 * penalty * weight.square().sum()
        residual = (log_p.exp() - target) / len(data)  # (N, C): d loss / d logits
        weight.grad = x_t @ residual + penalty * weight  # (F, C)
        bias.grad = residual.sum(dim=0)
        return loss

    with torch.no_grad():
        optimizer.step(objective)
        correct = ((x @ weight + bias).argmax(dim=1) == labels).float().mean().item()
        model.keys = table
        model.weight = weight * scale.unsqueeze(1)  # (F, C): value |r| times its weight
        model.bias = bias.clone()
    steps = next(iter(optimizer.state.values()), {}).get("n_iter", 0)
    return Fit(features, correct, int(steps), time.perf_counter() - started)


def blend(rnn: torch.Tensor, linear: torch.Tensor, share: float) -> torch.Tensor:
    """rnn, linear: (B, C) logits -> (B, C) log((1 - share) * p_rnn + share * p_linear), float32."""
    rnn = torch.log_softmax(rnn.float(), dim=-1) + (math.log1p(-share) if share < 1 else -math.inf)
    linear = torch.log_softmax(linear.float(), dim=-1) + math.log(share)
    return torch.logsumexp(torch.stack([rnn, linear]), dim=0)  # logaddexp, which ONNX lacks
