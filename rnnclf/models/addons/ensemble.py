"""An ensemble (`ensemble.members: K`): K recurrent classifiers of the same shape, initialised apart and
trained side by side on the same batches, each on its own loss. Scoring averages their probabilities.

Averaging models that erred differently cancels part of each one's noise: on small data it is the
surest gain there is, for K times the training time, the scoring time and the model's size.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from rnnclf.models.classifier import Classifier


class Ensemble(nn.Module):
    """(ids (B, T), lengths (B,)) -> log of the members' mean probability (B, C), fp32: softmax gives
    that mean and argmax its best class. multi_label: the logit of each label's mean sigmoid probability
    (B, L), so sigmoid gives that mean."""

    def __init__(self, members: list[Classifier], multi_label: bool = False) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.multi_label = multi_label

    @property
    def num_classes(self) -> int:
        return self.members[0].num_classes

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        stacked = torch.stack([member(ids, lengths) for member in self.members], dim=1)  # (B, K, C)
        return average(stacked, self.multi_label)


def average(logits: torch.Tensor, multi_label: bool = False) -> torch.Tensor:
    """Members' logits (B, K, C) -> log of their mean probability (B, C), fp32. multi_label: per label,
    the logit of the mean sigmoid probability p, log p - log(1 - p), both from log-sigmoids (stable)."""
    logits = logits.float()
    log_k = math.log(logits.size(1))
    if multi_label:
        log_p = torch.logsumexp(nn.functional.logsigmoid(logits), dim=1) - log_k  # (B, L)
        log_not_p = torch.logsumexp(nn.functional.logsigmoid(-logits), dim=1) - log_k  # (B, L)
        return log_p - log_not_p
    log_probabilities = torch.log_softmax(logits, dim=-1)  # (B, K, C)
    return torch.logsumexp(log_probabilities, dim=1) - log_k  # (B, C)
