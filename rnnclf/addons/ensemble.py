"""An ensemble (`ensemble.members: K`): K recurrent classifiers of the same shape, initialised apart and
trained side by side on the same batches, each on its own loss. Scoring averages their probabilities.

Averaging models that erred differently cancels part of each one's noise: on small data it is the
surest gain there is, for K times the training time, the scoring time and the model's size.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from rnnclf.model import Classifier


class Ensemble(nn.Module):
    """(ids (B, T), lengths (B,)) -> log of the members' mean probability (B, C), fp32: softmax gives
    that mean and argmax its best class."""

    def __init__(self, members: list[Classifier]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    @property
    def num_classes(self) -> int:
        return self.members[0].num_classes

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return average(torch.stack([member(ids, lengths) for member in self.members], dim=1))


def average(logits: torch.Tensor) -> torch.Tensor:
    """Members' logits (B, K, C) -> log of their mean probability (B, C), fp32."""
    log_probabilities = torch.log_softmax(logits.float(), dim=-1)  # (B, K, C)
    return torch.logsumexp(log_probabilities, dim=1) - math.log(logits.size(1))  # (B, C)
