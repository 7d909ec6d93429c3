"""Pretrained word vectors (GloVe / word2vec text format, optionally gzip) into the embedding table.

Format: one word per line followed by its numbers, separated by spaces; word2vec files start with a
header line "<count> <dimension>", GloVe files do not. Only vocabulary words are kept, so a large file
costs one pass of reading, not its size in memory.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import torch
from torch import nn

from rnnclf.errors import RnnclfError
from rnnclf.text.vocab import Vocab


def _open(path: Path):
    with path.open("rb") as probe:
        compressed = probe.read(2) == b"\x1f\x8b"
    if compressed:
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return path.open("r", encoding="utf-8", errors="replace")


def read_vectors(path: str | Path, words: set[str], dimension: int) -> dict[str, list[float]]:
    """Vectors of the given words found in the file; a dimension other than `dimension` is an error."""
    path = Path(path)
    if not path.is_file():
        raise RnnclfError(f"model.pretrained_vectors: {path}: no such file")
    found: dict[str, list[float]] = {}
    try:
        with _open(path) as file:
            for number, line in enumerate(file, start=1):
                parts = line.rstrip().split(" ")
                if number == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                    continue  # word2vec header: "<count> <dimension>"
                if len(parts) < 2:
                    continue
                if len(parts) - 1 != dimension:
                    raise RnnclfError(
                        f"{path}: line {number}: vectors have {len(parts) - 1} dimensions but "
                        f"model.embedding_dim is {dimension}; set model.embedding_dim: {len(parts) - 1}"
                    )
                if parts[0] in words and parts[0] not in found:
                    try:
                        found[parts[0]] = [float(x) for x in parts[1:]]
                    except ValueError:
                        raise RnnclfError(f"{path}: line {number}: not a number in the vector") from None
    except (OSError, EOFError) as err:
        raise RnnclfError(f"{path}: cannot read vectors ({err})") from None
    return found


def load_pretrained(embeddings: list[nn.Embedding], vocab: Vocab, path: str | Path) -> int:
    """Copy the file's vectors into the rows of matching vocabulary words of every embedding (one per
    ensemble member; the file is read once); returns how many words matched."""
    itos = vocab.get_itos()
    found = read_vectors(path, set(itos), embeddings[0].embedding_dim)
    with torch.no_grad():
        for index, word in enumerate(itos):
            if word in found:
                vector = torch.tensor(found[word])
                for embedding in embeddings:
                    embedding.weight[index] = vector
    return len(found)
