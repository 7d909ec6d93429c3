"""Weight averaging (`train.ema`): an exponential moving average of the weights, evaluated and saved in
place of the raw ones, which keep training."""

from __future__ import annotations

import torch
from torch import nn


class Average:
    """Exponential moving average of the model's weights (Polyak averaging). The raw weights train; the
    average is what each epoch evaluates and what checkpoints give to eval and predict. Averaging the
    noisy last steps of SGD lands nearer the middle of the basin. The decay ramps up as
    min(decay, (1 + n) / (10 + n)) over the first updates so the average forgets the random start."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        # Parameters only: fitted buffers (the linear model) never train, and on resume they are still
        # empty here until the checkpoint fills them.
        self.weights = {name: value.detach().clone() for name, value in model.named_parameters()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        keep = min(self.decay, (1 + self.updates) / (10 + self.updates))
        current = model.state_dict()
        for name, average in self.weights.items():
            average.lerp_(current[name], 1.0 - keep)

    def state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The model's state dict with the averaged weights in place of its own."""
        return {**model.state_dict(), **{name: value.clone() for name, value in self.weights.items()}}

    def load(self, averaged: dict[str, torch.Tensor], updates: int) -> None:
        for name, average in self.weights.items():
            average.copy_(averaged[name])
        self.updates = updates

    def swapped_in(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """Load the average into `model`; returns the raw weights, for load_state_dict afterwards."""
        raw = {name: value.clone() for name, value in model.state_dict().items()}
        model.load_state_dict(self.state_dict(model))
        return raw
