"""Document fingerprints: which texts a language model was trained on, in a few bytes each.

A fingerprint is a 64-bit hash of a document's normalized text (case-folded, whitespace runs collapsed
to one space), so the same review copied with other line breaks or capitals is still found. lm.pt keeps
the sorted fingerprints of every document its language model read, as one int64 tensor (8 bytes a
document: 180 kB for IMDB's 22,500 training reviews); a classifier started from it (model.init_from)
counts its validation and test documents found there.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import torch


def normalized(text: str) -> str:
    """The text as fingerprints compare it: case-folded, any run of whitespace one space, trimmed."""
    return " ".join(text.casefold().split())


def fingerprint(text: str) -> int:
    """A signed 64-bit hash of the normalized text (blake2b: stable across processes and versions,
    unlike hash())."""
    digest = hashlib.blake2b(normalized(text).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def fingerprints(texts: Iterable[str]) -> torch.Tensor:
    """(N,) int64: each document's fingerprint, in order (duplicates kept)."""
    return torch.tensor([fingerprint(text) for text in texts], dtype=torch.int64)


def compact(values: torch.Tensor) -> torch.Tensor:
    """Sorted, without duplicates: what lm.pt stores."""
    return torch.unique(values)  # sorted


def found(documents: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """(N,) bool: which of `documents` (fingerprints) are among `known`."""
    if documents.numel() == 0 or known.numel() == 0:
        return torch.zeros(documents.numel(), dtype=torch.bool)
    return torch.isin(documents, known)
