"""Preprocessing: read -> split -> tokenize -> vocabulary (train split only) -> numericalize, cached.

The cache is keyed by the content of every data file and by every setting that changes the result
(data format and columns, split fraction and seed, text settings), so a rerun with unchanged data
loads the numericalized tensors instead of tokenizing again. Entries are written atomically and read
with weights_only=True, like checkpoints.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from rnnclf import checkpoint
from rnnclf.batching import Encoded, encode
from rnnclf.config import Config, TextConfig
from rnnclf.data import Examples, file_digest, read_examples, stratified_split
from rnnclf.errors import RnnclfError
from rnnclf.text import get_tokenizer
from rnnclf.vocab import Vocab, build_vocab_from_iterator

log = logging.getLogger("rnnclf")

PAD, UNK = "<pad>", "<unk>"
SPECIALS = [PAD, UNK]  # <pad> = 0 (what collate pads with), <unk> = 1
CACHE_VERSION = 1


@dataclass
class Prepared:
    vocab: Vocab
    labels: list[str]
    train: Encoded
    valid: Encoded
    test: Encoded | None
    cached: bool = False


def cache_folder() -> Path:
    """$RNNCLF_CACHE, else $XDG_CACHE_HOME/rnnclf, else ~/.cache/rnnclf."""
    if os.environ.get("RNNCLF_CACHE"):
        return Path(os.environ["RNNCLF_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "rnnclf"


def truncator(text_config: TextConfig) -> Callable[[list[str]], list[str]]:
    limit = text_config.max_length
    if text_config.truncate == "tail":
        return lambda tokens: tokens[-limit:]
    return lambda tokens: tokens[:limit]


def tokenize_all(texts: list[str], text_config: TextConfig) -> list[list[str]]:
    """Tokenize and truncate to text.max_length tokens per document."""
    tokenize = get_tokenizer(text_config.tokenizer)
    cut = truncator(text_config)
    return [cut(tokenize(text)) for text in texts]


def encode_tokens(token_lists: list[list[str]], label_ids: list[int], vocab: Vocab) -> Encoded:
    lookup = vocab.lookup_indices
    return encode((lookup(tokens) for tokens in token_lists), label_ids, vocab[UNK])


def _read(config: Config, path: str) -> Examples:
    data = config.data
    return read_examples(path, data.format, data.text_column, data.label_column)


def known_labels(examples: Examples, labels: list[str], role: str) -> tuple[list[str], list[int]]:
    """Keep documents whose label the model knows; warn with counts about the rest."""
    index = {label: i for i, label in enumerate(labels)}
    keep = [i for i, label in enumerate(examples.labels) if label in index]
    dropped = len(examples.labels) - len(keep)
    if dropped:
        unseen = sorted({label for label in examples.labels if label not in index})
        shown = ", ".join(unseen[:5]) + (", ..." if len(unseen) > 5 else "")
        log.warning(
            "%s: %d %s documents have labels unseen in training (%s); they are left out of the metrics",
            examples.source,
            dropped,
            role,
            shown,
        )
    if not keep:
        raise RnnclfError(f"{examples.source}: none of the {role} labels occur in the training data")
    return [examples.texts[i] for i in keep], [index[examples.labels[i]] for i in keep]


def _cache_key(config: Config) -> str:
    data = config.data
    files = [data.train, data.valid, data.test]
    description = {
        "version": CACHE_VERSION,
        "files": [file_digest(Path(f)) if f else None for f in files],
        "data": data.model_dump(exclude={"train", "valid", "test"}),
        "split_seed": config.train.seed if data.valid is None else None,
        "text": config.text.model_dump(),
    }
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:32]


def _load_cached(path: Path) -> Prepared | None:
    try:
        state = torch.load(path, weights_only=True)
        return Prepared(
            vocab=Vocab.from_dict(state["vocab"]),
            labels=list(state["labels"]),
            train=Encoded.from_dict(state["train"]),
            valid=Encoded.from_dict(state["valid"]),
            test=Encoded.from_dict(state["test"]) if state["test"] is not None else None,
            cached=True,
        )
    except Exception:  # a stale or damaged cache entry is rebuilt, never trusted
        log.debug("ignoring unreadable cache entry %s", path)
        return None


def _store(path: Path, prepared: Prepared) -> None:
    state = {
        "vocab": prepared.vocab.to_dict(),
        "labels": prepared.labels,
        "train": prepared.train.to_dict(),
        "valid": prepared.valid.to_dict(),
        "test": prepared.test.to_dict() if prepared.test is not None else None,
    }
    try:
        checkpoint.save(state, path)
    except OSError as err:  # a read-only or full cache folder costs speed, not the run
        log.warning("could not write the preprocessing cache %s (%s)", path, err.strerror)


def prepare(config: Config, use_cache: bool = True) -> Prepared:
    """Everything the training loop needs from the data files, from the cache when possible."""
    cache_path = cache_folder() / f"{_cache_key(config)}.pt" if use_cache else None
    if cache_path is not None and cache_path.exists():
        cached = _load_cached(cache_path)
        if cached is not None:
            return cached
    prepared = _prepare(config)
    if cache_path is not None:
        _store(cache_path, prepared)
    return prepared


def _prepare(config: Config) -> Prepared:
    data = config.data
    train = _read(config, data.train)
    labels = sorted(set(train.labels))
    if len(labels) < 2:
        raise RnnclfError(
            f"{train.source}: column '{data.label_column}' has only one class ({labels[0]!r}); "
            "a classifier needs at least two"
        )
    index = {label: i for i, label in enumerate(labels)}
    train_texts, train_labels = train.texts, [index[label] for label in train.labels]
    if data.valid is None:
        if len(train_texts) < 2:
            raise RnnclfError(
                f"{train.source}: {len(train_texts)} example; need at least 2 to split off "
                "a validation set (or give data.valid)"
            )
        keep, held_out = stratified_split(train.labels, data.valid_fraction, config.train.seed)
        valid_texts = [train_texts[i] for i in held_out]
        valid_labels = [train_labels[i] for i in held_out]
        train_texts = [train_texts[i] for i in keep]
        train_labels = [train_labels[i] for i in keep]
    else:
        valid_texts, valid_labels = known_labels(_read(config, data.valid), labels, "validation")

    train_tokens = tokenize_all(train_texts, config.text)
    # torchtext's recipe: specials first, then tokens by (-count, token); <unk> for the rest.
    vocab = build_vocab_from_iterator(
        train_tokens, min_freq=config.text.min_freq, specials=SPECIALS, max_tokens=config.text.max_tokens
    )
    vocab.set_default_index(vocab[UNK])
    test = None
    if data.test is not None:
        test_texts, test_labels = known_labels(_read(config, data.test), labels, "test")
        test = encode_tokens(tokenize_all(test_texts, config.text), test_labels, vocab)
    return Prepared(
        vocab=vocab,
        labels=labels,
        train=encode_tokens(train_tokens, train_labels, vocab),
        valid=encode_tokens(tokenize_all(valid_texts, config.text), valid_labels, vocab),
        test=test,
    )


def label_counts(encoded: Encoded, num_classes: int) -> list[int]:
    return torch.bincount(encoded.labels, minlength=num_classes).tolist()


def coverage(vocab: Vocab, token_lists: list[list[str]]) -> float:
    """Share of tokens found in the vocabulary."""
    counts = Counter(token for tokens in token_lists for token in tokens)
    total = sum(counts.values())
    known = sum(count for token, count in counts.items() if token in vocab)
    return known / total if total else 0.0
