"""A linear model over exact word n-grams, to blend with the recurrent model (`linear.ngrams: N`):
naive-Bayes-scaled logistic regression (NBSVM: Wang & Manning 2012; Mesnil et al. 2014).

Each document is the set of its word n-grams, n = 1..N (binary: present or not); every n-gram seen in
enough training documents is a feature whose value is its naive-Bayes log-count ratio. The model is
fitted to convergence before the recurrent model trains (rnnclf.models.addons.linear_fit) and never trained
after. Blend mixes the two models' probabilities with a share chosen on validation data after training
(0: the recurrent model alone, 1: the linear model alone).

The n-grams are exact, not hashed: ngram_keys mixes n-gram ids into one int64 key that cannot collide
for n <= 3 while the vocabulary is below 1,000,003 words (for n >= 4 keys hash). The model keeps the
sorted keys of its features and finds a document's n-grams there by binary search.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

# Multiplier that mixes the ids of an n-gram into one int64 key (int64 arithmetic wraps, which only hashes).
MIX = 1_000_003
# Key that marks padding and repeated n-grams: never a feature (real keys are >= 0 for n <= 3).
NONE = -1


def ngram_keys(
    ids: torch.Tensor, lengths: torch.Tensor, order: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """ids: (B, T) right-padded, lengths: (B,) -> for n = 1..order: (keys, inside), both (B, T - n + 1):
    the int64 key of the n-gram starting at each position, and whether it lies inside the document.
    A unigram's key is its id; for n >= 2 the ids are mixed by MIX, exact (no two n-grams share a key)
    for n <= 3 while ids are below MIX, and a hash beyond (int64 arithmetic wraps)."""
    positions = torch.arange(ids.size(1), device=ids.device).unsqueeze(0)  # (1, T)
    ids = ids.long()
    found = []
    key = ids
    for n in range(1, order + 1):
        if n > 1:
            key = key[:, :-1] * MIX + ids[:, n - 1 :]  # (B, T - n + 1): key[b, t] is ids[b, t : t + n]
        inside = positions[:, : key.size(1)] + n <= lengths.unsqueeze(1)  # (B, T - n + 1)
        found.append((key, inside))
    return found


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

    @property
    def num_classes(self) -> int:
        return self.bias.numel()

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


class Blend(nn.Module):
    """The recurrent model (a Classifier or an Ensemble) beside a fitted NgramLogistic, probabilities
    mixed: (1 - share) * p_recurrent + share * p_linear. `share` is a buffer, chosen on validation data
    when training finishes and saved with the model; until then it is 0 (the recurrent model alone)."""

    def __init__(self, recurrent: nn.Module, linear: NgramLogistic) -> None:
        super().__init__()
        self.recurrent = recurrent
        self.linear = linear
        self.register_buffer("share", torch.zeros(()))

    @property
    def num_classes(self) -> int:
        return self.recurrent.num_classes

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """ids: (B, T), lengths: (B,) -> log blended probability (B, C) in fp32."""
        return blend(self.recurrent(ids, lengths), self.linear(ids, lengths), self.share)


def blend(recurrent: torch.Tensor, linear: torch.Tensor, share: torch.Tensor | float) -> torch.Tensor:
    """recurrent, linear: (B, C) logits -> (B, C) log((1 - share) * p_recurrent + share * p_linear),
    float32. Written as logsumexp over a stack (ONNX has no logaddexp); log(0) = -inf is exact here."""
    share = torch.as_tensor(share, dtype=torch.float32, device=recurrent.device)
    recurrent = torch.log_softmax(recurrent.float(), dim=-1) + torch.log1p(-share)
    linear = torch.log_softmax(linear.float(), dim=-1) + torch.log(share)
    return torch.logsumexp(torch.stack([recurrent, linear]), dim=0)
