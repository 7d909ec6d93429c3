"""The classifier: embedding -> stacked RNN/GRU/LSTM (uni- or bidirectional) -> pooling -> linear.

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

import math

import torch
from torch import nn

from rnnclf.config import ModelConfig
from rnnclf.linear import NgramLogistic, blend
from rnnclf.ngrams import ngram_rows

CELLS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


def reverse_index(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """(B, T) gather index that reverses each row within its length and leaves padding in place."""
    positions = torch.arange(steps, device=lengths.device).unsqueeze(0)  # (1, T)
    last = (lengths - 1).unsqueeze(1)  # (B, 1)
    return torch.where(positions < lengths.unsqueeze(1), last - positions, positions)


def gather_time(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x: (B, T, C), index: (B, T) -> (B, T, C) with x[b, index[b, t]]."""
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.size(-1)))


class Classifier(nn.Module):
    """Many-to-one recurrent classifier over padded token ids."""

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        config: ModelConfig,
        pad_index: int = 0,
        unknown_index: int = 1,
    ) -> None:
        super().__init__()
        self.config = config
        self.unknown_index = unknown_index
        self.directions = 2 if config.bidirectional else 1
        self.embedding = nn.Embedding(vocab_size, config.embedding_dim, padding_idx=pad_index)
        self.embedding_dropout = nn.Dropout(config.embedding_dropout)
        cell = CELLS[config.cell]
        # One single-layer module per (layer, direction): the reverse direction needs its own input
        # order, and layer l+1 reads both directions of layer l.
        self.layers = nn.ModuleList()
        for layer in range(config.num_layers):
            input_size = config.embedding_dim if layer == 0 else config.hidden_dim * self.directions
            self.layers.append(
                nn.ModuleList(
                    cell(input_size, config.hidden_dim, batch_first=True) for _ in range(self.directions)
                )
            )
        self.dropout = nn.Dropout(config.dropout)
        # Attention pooling: a learned scorer weighs each time step (softmax over the real steps).
        self.attention = (
            nn.Linear(config.hidden_dim * self.directions, 1) if config.pooling == "attention" else None
        )
        # Optional bag of n-grams beside the RNN (fastText's features): a vector summing the document's
        # n-grams, n = 1..ngrams, joins the pooled state before the output layer. Unigrams use their
        # vocabulary row; longer n-grams hash into ngram_buckets rows after the vocabulary (rnnclf.ngrams).
        self.vocab_size = vocab_size
        self.ngrams = None
        self.register_buffer("ngram_weights", None)  # (rows,) with ngram_weighting nb, below
        features = config.hidden_dim * self.directions
        if config.ngrams > 0:
            rows = vocab_size + config.ngram_buckets
            self.ngrams = nn.Embedding(rows, config.ngram_dim)
            bound = 1.0 / config.ngram_dim  # fastText's initialisation
            nn.init.uniform_(self.ngrams.weight, -bound, bound)
            features += config.ngram_dim
            if config.ngram_weighting == "nb":
                # (rows,) naive-Bayes weight per row, set from the training split before training
                # (rnnclf.ngrams.naive_bayes_weights) and saved with the model; a buffer, not trained.
                self.register_buffer("ngram_weights", torch.ones(rows))
        self.output = nn.Linear(features, num_classes)

    @property
    def num_classes(self) -> int:
        return self.output.out_features

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor, per_member: bool = False) -> torch.Tensor:
        """ids: (B, T) right-padded token ids, lengths: (B,) >= 1 -> logits (B, num_classes), or
        (B, 1, num_classes) with per_member=True (the shape Ensemble gives, so training treats both alike)."""
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
            forward_states, _ = directions[0](x)  # (B, T, H)
            if backward_index is None:
                x = forward_states
            else:
                backward_states, _ = directions[1](gather_time(x, backward_index))
                x = torch.cat([forward_states, gather_time(backward_states, backward_index)], dim=-1)
        pooled = self.pool(x, lengths)  # (B, D*H)
        if self.ngrams is not None:
            bag = self.bag_of_ngrams(ids, lengths)  # (B, ngram_dim)
            pooled = torch.cat([pooled, bag.to(pooled.dtype)], dim=-1)  # (B, D*H + ngram_dim)
        logits = self.output(self.dropout(pooled))  # (B, C)
        return logits.unsqueeze(1) if per_member else logits

    def bag_of_ngrams(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """ids: (B, T), lengths: (B,) -> (B, ngram_dim): the n-grams inside each length, either their mean
        vector (ngram_weighting none, fastText) or their naive-Bayes-weighted sum over sqrt(count) (nb)."""
        total = torch.zeros(ids.size(0), self.config.ngram_dim, device=ids.device)
        count = torch.zeros(ids.size(0), 1, device=ids.device)
        found = ngram_rows(ids, lengths, self.config.ngrams, self.vocab_size, self.config.ngram_buckets)
        for rows, inside in found:
            weight = inside.unsqueeze(-1).to(total.dtype)  # (B, T - n + 1, 1)
            if self.ngram_weights is not None:
                weight = weight * self.ngram_weights[rows].unsqueeze(-1)
            total = total + (self.ngrams(rows) * weight).sum(dim=1)
            count = count + inside.sum(dim=1, keepdim=True)
        # Every document has at least one unigram. With weights, sqrt keeps long documents' bags larger
        # (more evidence) without letting them grow linearly.
        return total / (count.sqrt() if self.ngram_weights is not None else count)

    def pool(self, states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """states: (B, T, D*H) -> (B, D*H), looking only at each document's real steps."""
        pooling = self.config.pooling
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


class Ensemble(nn.Module):
    """`config.members` classifiers of the same shape, initialised apart and trained side by side on the
    same batches, each on its own loss (per_member=True gives their logits to the training step). Scoring
    averages their probabilities: the output is log(mean probability), so softmax gives that mean and
    argmax its best class. Averaging models that erred differently cancels part of each one's noise:
    on small data it is the most reliable gain there is, for members times the compute."""

    def __init__(self, members: list[Classifier]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    @property
    def num_classes(self) -> int:
        return self.members[0].num_classes

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor, per_member: bool = False) -> torch.Tensor:
        """ids: (B, T), lengths: (B,) -> log mean probability (B, C) in fp32, or with per_member=True
        each member's logits (B, K, C)."""
        logits = torch.stack([member(ids, lengths) for member in self.members], dim=1)  # (B, K, C)
        if per_member:
            return logits
        log_probabilities = torch.log_softmax(logits.float(), dim=-1)  # (B, K, C)
        return torch.logsumexp(log_probabilities, dim=1) - math.log(len(self.members))  # (B, C)


class Blend(nn.Module):
    """The RNN (a Classifier or an Ensemble) beside a linear n-gram model (rnnclf.linear), their
    probabilities averaged: (1 - share) * p_rnn + share * p_linear. The linear model is fitted before the
    RNN trains and stays fixed; training updates the RNN on its own loss (per_member=True gives its
    logits), while validation, eval and predict score the blend."""

    def __init__(self, rnn: Classifier | Ensemble, linear: NgramLogistic, share: float) -> None:
        super().__init__()
        self.rnn = rnn
        self.linear = linear
        self.share = share

    @property
    def num_classes(self) -> int:
        return self.rnn.num_classes

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor, per_member: bool = False) -> torch.Tensor:
        """ids: (B, T), lengths: (B,) -> log blended probability (B, C) in fp32, or with per_member=True
        the RNN's logits (B, K, C)."""
        if per_member:
            return self.rnn(ids, lengths, per_member=True)
        return blend(self.rnn(ids, lengths), self.linear(ids, lengths), self.share)


Model = Classifier | Ensemble | Blend


def build_model(
    vocab_size: int, num_classes: int, config: ModelConfig, pad_index: int = 0, unknown_index: int = 1
) -> Model:
    """A Classifier, or an Ensemble of config.members of them (a single one keeps the plain Classifier,
    whose checkpoints name its parameters without a member prefix); with config.linear_ngrams, either
    of them in a Blend with a linear n-gram model (to be fitted: rnnclf.linear.fit)."""
    members = [
        Classifier(vocab_size, num_classes, config, pad_index, unknown_index) for _ in range(config.members)
    ]
    rnn = members[0] if len(members) == 1 else Ensemble(members)
    if config.linear_ngrams == 0:
        return rnn
    return Blend(rnn, NgramLogistic(config.linear_ngrams, num_classes), config.linear_share)


def members_of(model: nn.Module) -> list[Classifier]:
    """The classifiers inside a model: its members, or the model itself."""
    if isinstance(model, Blend):
        model = model.rnn
    return list(model.members) if isinstance(model, Ensemble) else [model]


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
