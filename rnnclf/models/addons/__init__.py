"""The model a config describes: the recurrent classifier core (rnnclf.models.classifier), and the opt-in
add-ons
that stand beside it, each in its own module:

    ensemble.members: K   -> Ensemble of K Classifiers                    (rnnclf.models.addons.ensemble)
    linear.ngrams: N      -> Blend(recurrent, NgramLogistic), share chosen on validation  (.linear)

    build_model(...)      Classifier | Ensemble | Blend
    members_of(model)     the Classifiers inside, which training steps (each on its own loss)
    recurrent_part(model) the recurrent model alone (Classifier or Ensemble): what each epoch validates
"""

from __future__ import annotations

import torch
from torch import nn

from rnnclf.config import Config
from rnnclf.models.addons.ensemble import Ensemble
from rnnclf.models.addons.linear import Blend, NgramLogistic
from rnnclf.models.classifier import Classifier, parameter_count

Model = Classifier | Ensemble | Blend
__all__ = ["Blend", "Ensemble", "Model", "PerMember", "build_model", "members_of", "parameter_count"]


def build_model(
    vocab_size: int, num_classes: int, config: Config, pad_index: int = 0, unknown_index: int = 1
) -> Model:
    """A Classifier; with ensemble.members > 1 an Ensemble of them; with linear.ngrams > 0 either one
    in a Blend with a linear n-gram model (to be fitted: rnnclf.models.addons.linear_fit.fit)."""
    members = [
        Classifier(vocab_size, num_classes, config.model, pad_index, unknown_index)
        for _ in range(config.ensemble.members)
    ]
    # A single member stays a plain Classifier, whose weights are named without a member prefix.
    recurrent = members[0] if len(members) == 1 else Ensemble(members, config.data.multi_label)
    if config.linear.ngrams == 0:
        return recurrent

    return Blend(recurrent, NgramLogistic(config.linear.ngrams, num_classes))


def recurrent_part(model: nn.Module) -> Classifier | Ensemble:
    """The recurrent model alone: the model itself, or what a Blend mixes with its linear model."""
    return model.recurrent if isinstance(model, Blend) else model


def members_of(model: nn.Module) -> list[Classifier]:
    """The Classifiers inside a model: an ensemble's members, or the one recurrent classifier."""
    recurrent = recurrent_part(model)
    return list(recurrent.members) if isinstance(recurrent, Ensemble) else [recurrent]


class PerMember(nn.Module):
    """What a training step runs: each member's logits, (ids (B, T), lengths (B,)) -> (B, K, C), so every
    member trains on its own loss. It holds the same modules as the model (no copies), so stepping it
    trains the model; DistributedDataParallel wraps this module when several processes train."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.members = nn.ModuleList(members_of(model))

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return torch.stack([member(ids, lengths) for member in self.members], dim=1)  # (B, K, C)
