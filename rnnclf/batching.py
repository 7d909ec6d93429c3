"""Numericalized documents, length-bucketed batches and collation to padded tensors.

Documents live as one flat int32 tensor plus offsets (25,000 IMDB reviews as Python lists of ints
would cost ~0.5 GB of objects):

    ids      [ 5 9 2 | 7 | 4 4 8 1 ]      offsets [0, 3, 4, 8]

Training batches group documents of similar length so little time is spent on padding, while the
order stays random: shuffle everything, sort by length inside large chunks, cut the chunks into
batches, then shuffle the batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Documents per sorting chunk, in batches. Larger: less padding; smaller: more randomness.
CHUNK_BATCHES = 50


@dataclass
class Encoded:
    """A numericalized data set."""

    ids: torch.Tensor  # (total_tokens,) int32
    offsets: torch.Tensor  # (N + 1,) int64
    labels: torch.Tensor  # (N,) int64 class ids; multi-label data: (N, L) uint8, 1 where label l applies

    def __len__(self) -> int:
        return self.labels.shape[0]

    @property
    def multi_label(self) -> bool:
        return self.labels.dim() == 2

    @property
    def lengths(self) -> torch.Tensor:
        return self.offsets[1:] - self.offsets[:-1]  # (N,)

    def to_dict(self) -> dict[str, torch.Tensor]:
        return {"ids": self.ids, "offsets": self.offsets, "labels": self.labels}

    @classmethod
    def from_dict(cls, state: dict[str, torch.Tensor]) -> Encoded:
        return cls(state["ids"], state["offsets"], state["labels"])

    @classmethod
    def from_lengths(cls, ids: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor) -> Encoded:
        """ids (tokens,) int32 back to back, lengths (N,) int64, labels (N,) int64."""
        return cls(ids, offsets_of(lengths), labels)

    def slice(self, start: int, stop: int) -> Encoded:
        """Documents start..stop-1 as their own data set."""
        offsets = self.offsets[start : stop + 1]
        return Encoded(self.ids[offsets[0] : offsets[-1]], offsets - offsets[0], self.labels[start:stop])


def offsets_of(lengths: torch.Tensor) -> torch.Tensor:
    """Document lengths (N,) -> offsets (N + 1,) int64: where each document starts in the flat ids."""
    offsets = torch.zeros(lengths.numel() + 1, dtype=torch.int64)
    torch.cumsum(lengths, dim=0, out=offsets[1:])
    return offsets


def ranges(starts: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Positions start..start+length-1 of every range, back to back: starts (N,), lengths (N,) int64 ->
    (lengths.sum(),) int64. Gathers whole documents (or pieces of them) out of flat token ids.

        starts [5, 0], lengths [2, 3]  ->  [5 6 0 1 2]"""
    first = torch.cumsum(lengths, dim=0) - lengths  # (N,) where each range begins in the output
    return torch.arange(int(lengths.sum())) + torch.repeat_interleave(starts - first, lengths)


def training_batches(
    lengths: torch.Tensor, batch_size: int, generator: torch.Generator
) -> list[torch.Tensor]:
    """Shuffled, length-bucketed batches of document indices for one epoch (deterministic given the
    generator's state)."""
    order = torch.randperm(lengths.numel(), generator=generator)
    chunk = batch_size * CHUNK_BATCHES
    batches = []
    for start in range(0, order.numel(), chunk):
        members = order[start : start + chunk]
        # Stable sort keeps the shuffled order among equal lengths.
        members = members[torch.sort(lengths[members], stable=True).indices]
        batches.extend(members.split(batch_size))
    shuffle = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in shuffle]


def shard(indices: torch.Tensor, rank: int, processes: int) -> torch.Tensor:
    """This process's part of a global batch. Every process builds the same global batches from the
    seed; each takes a contiguous part, so length bucketing is kept and the parts together are the
    batch a single process would take:

        global batch (by length)   [ a b c d e f g ]
        3 processes                [ a b c | d e | f g ]   rank 1 takes [ d e ]

    Parts differ in size by at most one; a batch smaller than the number of processes leaves some
    parts empty."""
    return indices.tensor_split(processes)[rank]


def evaluation_batches(lengths: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """Batches of document indices sorted by length (least padding); callers restore the order."""
    order = torch.sort(lengths, stable=True).indices
    return list(order.split(batch_size))


def collate(data: Encoded, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Indices (B,) -> ids (B, T) int64 right-padded with 0, lengths (B,), labels (B,) (multi-label:
    (B, L) uint8)."""
    starts = data.offsets[indices]  # (B,)
    lengths = data.offsets[indices + 1] - starts  # (B,)
    steps = int(lengths.max())
    positions = torch.arange(steps).unsqueeze(0)  # (1, T)
    mask = positions < lengths.unsqueeze(1)  # (B, T)
    flat_index = (starts.unsqueeze(1) + positions).clamp(max=max(data.ids.numel() - 1, 0))
    ids = data.ids[flat_index].long().masked_fill(~mask, 0)  # (B, T); 0 is <pad>
    return ids, lengths, data.labels[indices]


def padding_fraction(lengths: torch.Tensor, batches: list[torch.Tensor]) -> float:
    """Share of padded positions among all positions fed to the recurrence."""
    real = sum(int(lengths[b].sum()) for b in batches)
    total = sum(int(lengths[b].max()) * b.numel() for b in batches)
    return 1.0 - real / total if total else 0.0
