"""Text to ids, the one way: tokenize, truncate, look up the vocabulary, specials in fixed places.

Preparation (training data), prediction, explanation and export all turn text into ids here, so a
model always reads text exactly as it was trained on it.

    "A fine film."  --basic_english-->  a fine film .  --truncate(max_length)-->  --vocab-->  [7, 412, 19, 3]

Ids: <pad> = 0 (what collate pads with), <unk> = 1 (unknown words; an empty document is one <unk>).
"""

from __future__ import annotations

import gc
from array import array
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from itertools import count

import torch

from rnnclf.batching import Encoded, offsets_of, ranges
from rnnclf.config import TextConfig
from rnnclf.text.fasttokens import tokenize_many
from rnnclf.text.rules import PAD, SPECIALS, UNK, cutter  # noqa: F401  (PAD, SPECIALS: used from here)
from rnnclf.text.tokenizers import get_tokenizer
from rnnclf.text.vocab import Vocab


def truncator(text_config: TextConfig) -> Callable[[list[str]], list[str]]:
    """Cut a token list to text.max_length (rnnclf.text.rules.cutter: head, tail, or both)."""
    return cutter(text_config.max_length, text_config.truncate)


def tokens_of(text: str, text_config: TextConfig) -> list[str]:
    """One document's tokens as the model reads them: tokenized, then truncated to text.max_length."""
    return truncator(text_config)(get_tokenizer(text_config.tokenizer)(text))


def ids_of(tokens: list[str], vocab: Vocab) -> list[int]:
    """Token ids, <unk> for words the vocabulary lacks (an empty list stays empty: see encode_part)."""
    stoi, unknown = vocab.get_stoi(), vocab.get_stoi()[UNK]
    return [stoi.get(token, unknown) for token in tokens]


@dataclass
class Part:
    """Documents tokenized to ids of their own little vocabulary (`itos`): per-token work stays in C
    loops, and parts made in different processes merge by translating ids through one small table."""

    itos: list[str]
    ids: torch.Tensor  # (tokens,) int32, local ids
    lengths: torch.Tensor  # (documents,) int64

    @property
    def offsets(self) -> torch.Tensor:
        return offsets_of(self.lengths)  # (documents + 1,)

    def select(self, documents: list[int]) -> Part:
        """The given documents, in the given order."""
        index = torch.tensor(documents, dtype=torch.int64)
        lengths = self.lengths[index]  # (D,)
        return Part(self.itos, self.ids[ranges(self.offsets[index], lengths)], lengths)


def tokenize_part(texts: list[str], text_config: TextConfig) -> Part:
    """Tokenize, truncate and give each distinct token a local id in order of first sight."""
    return to_part(*tokenize_plain(texts, text_config))


def tokenize_plain(texts: list[str], text_config: TextConfig) -> tuple[list[str], array, array]:
    """(local itos, ids, lengths) with no torch calls: this may run in a forked worker, where torch's
    thread pool (inherited mid-flight from the parent) would deadlock. Many documents take the compiled
    path where pyarrow is installed (rnnclf.text.fasttokens: the same result, 1.6-1.9x faster); the loop
    below is the reference and the fallback."""
    fast = tokenize_many(texts, text_config.tokenizer, text_config.max_length, text_config.truncate)
    if fast is not None:
        return fast
    tokenize, cut = get_tokenizer(text_config.tokenizer), truncator(text_config)
    # defaultdict(count().__next__) numbers a new token on first sight: one C-level lookup per token.
    local: defaultdict[str, int] = defaultdict(count().__next__)
    ids, lengths = array("i"), array("i")
    extend, append, number = ids.extend, lengths.append, local.__getitem__
    collect = gc.isenabled()
    gc.disable()  # millions of new strings: collection passes would find nothing to free
    try:
        for text in texts:
            tokens = cut(tokenize(text))
            extend(map(number, tokens))
            append(len(tokens))
    finally:
        if collect:
            gc.enable()
    return list(local), ids, lengths


def to_part(itos: list[str], ids: array, lengths: array) -> Part:
    return Part(itos, _tensor(ids), _tensor(lengths).long())


def _tensor(values: array) -> torch.Tensor:
    if not values:
        return torch.empty(0, dtype=torch.int32)
    return torch.frombuffer(bytearray(values), dtype=torch.int32)


def count_tokens(part: Part) -> Counter[str]:
    per_id = torch.bincount(part.ids.long(), minlength=len(part.itos)).tolist()
    return Counter({token: count for token, count in zip(part.itos, per_id, strict=True) if count})


def encode_part(part: Part, labels: list[int] | torch.Tensor, vocab: Vocab) -> Encoded:
    """Local ids -> vocabulary ids (one table lookup); an empty document becomes one <unk>
    (a recurrence needs at least one step, and 'nothing known' is what an empty text says)."""
    unknown = vocab[UNK]
    get = vocab.get_stoi().get
    table = torch.tensor([get(token, unknown) for token in part.itos], dtype=torch.int32)
    ids, lengths = table[part.ids.long()], part.lengths
    empty = lengths == 0
    if bool(empty.any()):
        documents = list(ids.split(lengths.tolist()))
        filler = torch.tensor([unknown], dtype=torch.int32)
        for index in empty.nonzero().flatten().tolist():
            documents[index] = filler
        ids, lengths = torch.cat(documents), lengths.clamp(min=1)
    if not isinstance(labels, torch.Tensor):  # a multi-label (N, L) target tensor is passed as it is
        labels = torch.tensor(labels, dtype=torch.int64)
    return Encoded.from_lengths(ids, lengths, labels)


def encode_texts(texts: list[str], labels: list[int], text_config: TextConfig, vocab: Vocab) -> Encoded:
    """Tokenize, truncate and numericalize documents with a fixed vocabulary (prediction)."""
    return encode_part(tokenize_part(texts, text_config), labels, vocab)
