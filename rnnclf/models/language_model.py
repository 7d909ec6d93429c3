"""A word-level language model whose encoder has exactly the classifier's shape, for pretraining.

The encoder (embedding + one single-layer RNN per layer and direction) is rnnclf.models.classifier.Encoder,
as rnnclf.models.classifier.Classifier's is, so its weights load into a classifier by name. A
bidirectional encoder
is trained as two language models at once: direction 0 predicts each next word reading left to right,
direction 1 predicts each previous word reading right to left (the document reversed within its
length, as the classifier reads it):

    document       a b c d           (length 4)
    direction 0    reads a b c   ->  predicts b c d
    direction 1    reads d c b   ->  predicts c b a

The two directions never see each other: in a classifier, layer l+1 of each direction reads both
directions of layer l (input 2H); here it reads its own direction's states and zeros in place of the
other's, so no word can be predicted from a state that has already read it. (Those zero halves of
the layer-(l+1) input weights keep their initial values; fine-tuning trains them.)

The output layer is the word vectors themselves, (V, E), shared by both directions (top states wider
than E are projected to E first). A full softmax over 30,000+ words costs several times the recurrence
per token on CPU (E * V multiply-adds against the LSTM's 4 * H * (E + H)), so training uses a sampled
softmax (Jean et al. 2015): each step scores the true next word against `samples` words drawn once per
batch from the unigram distribution to the power 0.75, with the log-probability of being drawn
subtracted (the correction that keeps the estimate consistent) and accidental hits of the true word
masked. Evaluation (perplexity) uses the full softmax.
"""

from __future__ import annotations

import torch
from torch import nn

from rnnclf.config import ModelConfig
from rnnclf.models.classifier import Encoder, gather_time, reverse_index, run_cell

# Keys of a classifier's state_dict that the language model trains: the encoder.
ENCODER_PREFIXES = ("embedding.", "layers.")
# Rows of full-softmax logits computed at once. Each slice makes several (rows, V) temporaries (the bf16
# logits, their fp32 copy, the log-softmax), growing with the vocabulary: pretraining on 2,000 IMDB reviews
# peaked at 1,360 MiB with 2048 rows and 868 MiB with 256. At 50,000 words a 256-row fp32 slice is 51 MB.
FULL_SOFTMAX_ROWS = 256
# The sampled softmax's drawn words are padded to a multiple of this many (see _sampled_losses).
WIDTH_STEP = 64


class LanguageModel(Encoder):
    """Next-word (and, bidirectional, previous-word) prediction over right-padded documents."""

    def __init__(self, vocab_size: int, config: ModelConfig, pad_index: int = 0) -> None:
        super().__init__(vocab_size, config, pad_index)
        # The output layer shares the word vectors (Press & Wolf 2017): decoder.weight is embedding.weight,
        # (V, E). A state wider than a word vector is first projected to E (no bias), so each word the
        # softmax scores costs E multiply-adds instead of H: at E128/H256 half the softmax's work.
        wider = config.hidden_dim != config.embedding_dim
        self.projection = nn.Linear(config.hidden_dim, config.embedding_dim, bias=False) if wider else None
        self.decoder = nn.Linear(config.embedding_dim, vocab_size)
        self.decoder.weight = self.embedding.weight
        # Drawing distribution for sampled softmax, (V,); set from word counts by set_unigram.
        self.register_buffer("sampling", torch.ones(vocab_size) / vocab_size, persistent=False)
        self.frequent = 0  # the most often drawn word: a harmless stand-in target where none is wanted

    def set_unigram(self, counts: torch.Tensor, power: float = 0.75) -> None:
        """counts (V,): how often each word occurs in the training texts."""
        weights = counts.float().clamp(min=0).pow(power)
        weights[: self.embedding.padding_idx + 1] = 0.0  # never draw <pad>
        self.sampling = weights / weights.sum()
        self.frequent = int(self.sampling.argmax())

    def encoder_state(self) -> dict[str, torch.Tensor]:
        """The weights a classifier takes over (names as in rnnclf.models.classifier.Classifier)."""
        return {k: v for k, v in self.state_dict().items() if k.startswith(ENCODER_PREFIXES)}

    def states(self, ids: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
        """ids (B, T), lengths (B,) -> per direction the states each word is predicted from, (B, T, E): the
        top layer's (projected to E when H differs), each in its own reading order (direction 1:
        reversed within each document's length)."""
        x = self.embedding_dropout(self.embedding(ids))  # (B, T, E)
        inputs = [x]
        if self.directions == 2:
            inputs.append(gather_time(x, reverse_index(lengths.to(ids.device), ids.size(1))))
        tops = []
        for direction, x in enumerate(inputs):
            for number, cells in enumerate(self.layers):
                if number > 0:
                    x = self.dropout(x)
                    if (
                        self.directions == 2
                    ):  # this direction's half of a (B, T, 2H) input; zeros for the other
                        zeros = torch.zeros_like(x)
                        x = torch.cat([x, zeros] if direction == 0 else [zeros, x], dim=-1)
                x = run_cell(cells[direction], x, self.config.weight_drop)  # (B, T, H)
            x = self.dropout(x)
            tops.append(x if self.projection is None else self.projection(x))  # (B, T, E)
        return tops

    def forward(
        self, ids: torch.Tensor, lengths: torch.Tensor, samples: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(summed negative log-likelihood over all predicted words and directions, their count).
        samples > 0: sampled softmax with that many drawn words (training); 0: the full softmax."""
        lengths = lengths.to(ids.device)
        steps = ids.size(1)
        # Position t predicts the word at t + 1 in the direction's reading order; the last real
        # position predicts nothing.
        valid = torch.arange(steps - 1, device=ids.device).unsqueeze(0) < (lengths - 1).unsqueeze(1)
        orders = [ids]
        if self.directions == 2:
            orders.append(ids.gather(1, reverse_index(lengths, steps)))
        total = torch.zeros((), device=ids.device)
        count = int(valid.sum()) * self.directions
        drawn = torch.multinomial(self.sampling, samples, replacement=True) if samples else None
        for states, order in zip(self.states(ids, lengths), orders, strict=True):
            if drawn is None:  # the full softmax, in slices: (N, V) logits for all N at once can take GBs
                hidden = states[:, :-1][valid]  # (N, H): the states that predict something
                targets = order[:, 1:][valid]  # (N,)
                slices = zip(hidden.split(FULL_SOFTMAX_ROWS), targets.split(FULL_SOFTMAX_ROWS), strict=True)
                for part, wanted in slices:
                    logits = self.decoder(part).float()  # (n, V)
                    total = total + nn.functional.cross_entropy(logits, wanted, reduction="sum")
            else:
                # Every position, as a view (B*T, H): selecting the N real ones would copy the states
                # and scatter their gradient back; padding is a few percent of a length-bucketed batch.
                # Positions that predict nothing get a stand-in target and weight 0.
                wanted = nn.functional.pad(valid, (0, 1))  # (B, T)
                targets = nn.functional.pad(order[:, 1:], (0, 1)).masked_fill(~wanted, self.frequent)
                losses = self._sampled_losses(states.reshape(-1, states.size(-1)), targets.flatten(), drawn)
                total = total + (losses * wanted.flatten()).sum()
        return total, torch.tensor(count, device=ids.device)

    def _sampled_losses(
        self, hidden: torch.Tensor, targets: torch.Tensor, drawn: torch.Tensor
    ) -> torch.Tensor:
        """hidden (N, H), targets (N,), drawn (S,) draws with replacement -> each row's sampled-softmax loss.

        Each distinct drawn word is scored once, corrected by the log of its expected count in S draws,
        log(1 - (1 - q)^S) (as TensorFlow's sampled_softmax_loss with unique sampling); the true word
        gets the same correction. A drawn word equal to a row's true word is masked out of that row by
        one lookup per row (not an (N, S) comparison)."""
        draws = drawn.numel()
        words = torch.unique(drawn)  # (S',) distinct
        distinct = words.numel()
        # The count of distinct words changes every step. Padded up to a multiple of WIDTH_STEP (with
        # columns masked below), the (N, S') product takes a handful of widths: oneDNN caches a bf16
        # kernel per shape, and one new width a step grew pretraining's memory by ~0.6 GB an epoch.
        width = -(-distinct // WIDTH_STEP) * WIDTH_STEP
        words = nn.functional.pad(words, (0, width - distinct), value=int(words[0]))  # (W,)
        log_expected = torch.log(-torch.expm1(draws * torch.log1p(-self.sampling)))  # (V,)
        weight, bias = self.decoder.weight, self.decoder.bias
        true = (hidden * weight[targets].to(hidden.dtype)).sum(-1).float()  # (N,)
        true = true + (bias[targets] - log_expected[targets])
        sampled = hidden @ weight[words].to(hidden.dtype).t()  # (N, W)
        sampled = sampled.float() + (bias[words] - log_expected[words])  # a new tensor: safe to edit below
        sampled[:, distinct:] = float("-inf")  # the padding
        column = torch.full_like(self.sampling, -1, dtype=torch.long)
        column[words[:distinct]] = torch.arange(distinct, device=words.device)
        hit = column[targets]  # (N,): where each row's true word sits among the drawn, or -1
        rows = (hit >= 0).nonzero().squeeze(1)
        sampled[rows, hit[rows]] = float("-inf")
        normaliser = torch.logaddexp(true, torch.logsumexp(sampled, dim=1))  # (N,)
        return normaliser - true
