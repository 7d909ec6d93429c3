"""The recurrent classifier core: embedding -> stacked RNN/GRU/LSTM (uni- or bidirectional) -> pooling ->
linear. Add-ons that stand beside it (ensembles, a linear n-gram model) live in rnnclf.models.addons.

Variable lengths are exact without packed sequences. A left-to-right recurrence never looks ahead, so
on a right-padded batch its outputs at t < length are those of the document alone; padding only adds
outputs after the end, which pooling masks out. The right-to-left direction runs the same fast padded
kernel over each document reversed *within its own length*, then the outputs are put back in order:

    tokens      a b c _ _        (length 3, '_' is padding)
    reversed    c b a _ _        index[t] = length-1-t for t < length, else t
    RNN         h(c) h(cb) h(cba) . .
    restored    h(cba) h(cb) h(c) . .   (the same index again: it is its own inverse)

Packed sequences would give the same numbers, but on CPU their backward materialises a zero-filled
gradient of the whole packed input per time step (39x slower at T~1000, measured here); cuDNN's
padded kernel is fast too, so one code path serves CPU and CUDA.
"""

from __future__ import annotations

import torch
from torch import nn

from rnnclf.config import ModelConfig

CELLS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


def reverse_index(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """(B, T) gather index that reverses each row within its length and leaves padding in place."""
    positions = torch.arange(steps, device=lengths.device).unsqueeze(0)  # (1, T)
    last = (lengths - 1).unsqueeze(1)  # (B, 1)
    return torch.where(positions < lengths.unsqueeze(1), last - positions, positions)


def gather_time(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x: (B, T, C), index: (B, T) -> (B, T, C) with x[b, index[b, t]]."""
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.size(-1)))


class SequenceDropout(nn.Module):
    """Dropout on (B, T, C) sequences. variational: one mask per document and channel, shared by every
    time step (Gal & Ghahramani 2016; AWD-LSTM's "locked" dropout), so a dropped feature stays dropped
    for the whole document instead of flickering per word. Other shapes, and variational off: plain
    dropout. No weights, so checkpoints are the same either way."""

    def __init__(self, p: float, variational: bool = False) -> None:
        super().__init__()
        self.p = p
        self.variational = variational

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if not self.variational or x.dim() != 3:
            return nn.functional.dropout(x, self.p, training=True)
        keep = x.new_empty(x.size(0), 1, x.size(2)).bernoulli_(1 - self.p)  # (B, 1, C)
        return x * keep / (1 - self.p)


def run_cell(cell: nn.RNNBase, x: torch.Tensor, weight_drop: float = 0.0) -> torch.Tensor:
    """x (B, T, I) -> the single-layer cell's states (B, T, H).

    weight_drop > 0 (while training): DropConnect on the hidden-to-hidden weights (AWD-LSTM, Merity et
    al. 2018), one mask per batch shared by every time step. The dropped (G*H, H) matrix is passed in
    for this call only (torch.func.functional_call), so the fused kernel still runs and the gradient
    reaches the stored weight through the mask."""
    if weight_drop == 0 or not cell.training:
        return cell(x)[0]
    dropped = nn.functional.dropout(cell.weight_hh_l0, weight_drop, training=True)
    return torch.func.functional_call(cell, {"weight_hh_l0": dropped}, (x,))[0]


def recurrent_layers(config: ModelConfig) -> nn.ModuleList:
    """layers[l][d]: one single-layer RNN per (layer, direction). The reverse direction needs its own
    input order, and layer l+1 reads both directions of layer l (input D*H). The classifier and the
    language model (rnnclf.models.language_model) share this shape, so pretrained weights load by name."""
    directions = 2 if config.bidirectional else 1
    cell = CELLS[config.cell]
    layers = nn.ModuleList()
    for layer in range(config.num_layers):
        input_size = config.embedding_dim if layer == 0 else config.hidden_dim * directions
        layers.append(
            nn.ModuleList(cell(input_size, config.hidden_dim, batch_first=True) for _ in range(directions))
        )
    return layers


class Encoder(nn.Module):
    """The word vectors and recurrent layers, with their dropouts, that the classifier and the language
    model (rnnclf.models.language_model) both start with, under the same names, so weights load between
    them."""

    def __init__(self, vocab_size: int, config: ModelConfig, pad_index: int = 0) -> None:
        super().__init__()
        self.config = config
        self.directions = 2 if config.bidirectional else 1
        self.embedding = nn.Embedding(vocab_size, config.embedding_dim, padding_idx=pad_index)
        self.embedding_dropout = SequenceDropout(config.embedding_dropout, config.variational_dropout)
        self.layers = recurrent_layers(config)
        self.dropout = SequenceDropout(config.dropout, config.variational_dropout)


class Classifier(Encoder):
    """Many-to-one recurrent classifier over padded token ids."""

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        config: ModelConfig,
        pad_index: int = 0,
        unknown_index: int = 1,
    ) -> None:
        super().__init__(vocab_size, config, pad_index)
        self.unknown_index = unknown_index
        # Attention pooling: a learned scorer weighs each time step (softmax over the real steps).
        self.attention = (
            nn.Linear(config.hidden_dim * self.directions, 1) if config.pooling == "attention" else None
        )
        pooled = config.hidden_dim * self.directions * (3 if config.pooling == "concat" else 1)
        self.output = nn.Linear(pooled, num_classes)

    @property
    def num_classes(self) -> int:
        return self.output.out_features

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """ids: (B, T) right-padded token ids, lengths: (B,) >= 1 -> logits (B, num_classes)."""
        steps = ids.size(1)
        lengths = lengths.to(ids.device)
        if self.training and self.config.word_dropout > 0:
            # Replace random tokens by <unk>: the model learns what to do with words it never saw.
            # Padding (id 0) stays padding; it is masked out downstream anyway.
            drop = torch.rand(ids.shape, device=ids.device) < self.config.word_dropout  # (B, T)
            ids = ids.masked_fill(drop & (ids != self.embedding.padding_idx), self.unknown_index)
        x = self.embedding_dropout(self.embedding(ids))  # (B, T, E)
        backward_index = reverse_index(lengths, steps) if self.directions == 2 else None
        for number, directions in enumerate(self.layers):
            if number > 0:
                x = self.dropout(x)
            forward_states = run_cell(directions[0], x, self.config.weight_drop)  # (B, T, H)
            if backward_index is None:
                x = forward_states
            else:
                backward_states = run_cell(
                    directions[1], gather_time(x, backward_index), self.config.weight_drop
                )
                x = torch.cat([forward_states, gather_time(backward_states, backward_index)], dim=-1)
        pooled = self.pool(x, lengths)  # (B, D*H)
        return self.output(self.dropout(pooled))  # (B, C)

    def pool(self, states: torch.Tensor, lengths: torch.Tensor, pooling: str | None = None) -> torch.Tensor:
        """states: (B, T, D*H) -> (B, D*H) (concat: (B, 3*D*H)), looking only at the real steps."""
        pooling = pooling or self.config.pooling
        if pooling == "concat":
            return torch.cat([self.pool(states, lengths, way) for way in ("max", "mean", "last")], dim=-1)
        if pooling == "last":
            # Forward direction: state after the last real token; backward: after reading back to 0.
            last = (lengths - 1).view(-1, 1, 1).expand(-1, 1, states.size(-1))
            pooled = states.gather(1, last).squeeze(1)  # (B, D*H)
            if self.directions == 2:
                hidden = self.config.hidden_dim
                pooled = torch.cat([pooled[:, :hidden], states[:, 0, hidden:]], dim=-1)
            return pooled
        mask = torch.arange(states.size(1), device=states.device).unsqueeze(0) < lengths.unsqueeze(1)
        mask = mask.unsqueeze(-1)  # (B, T, 1)
        if pooling == "mean":
            total = states.masked_fill(~mask, 0.0).sum(dim=1)
            return total / lengths.unsqueeze(1).to(states.dtype)
        if pooling == "attention":
            scores = self.attention(states).masked_fill(~mask, float("-inf"))  # (B, T, 1)
            weights = torch.softmax(scores.float(), dim=1).to(states.dtype)  # (B, T, 1), 0 on padding
            return (weights * states).sum(dim=1)
        return states.masked_fill(~mask, float("-inf")).amax(dim=1)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
