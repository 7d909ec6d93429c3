"""Preprocessing: read -> split -> tokenize -> vocabulary (train split only) -> numericalize, cached.

The cache is keyed by the content of every data file and by every setting that changes the result
(data format and columns, split fraction and seed, text settings), so a rerun with unchanged data
loads the numericalized tensors instead of tokenizing again. Entries are written atomically and read
with weights_only=True, like checkpoints.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import multiprocessing
import os
from array import array
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from itertools import count
from pathlib import Path

import torch

from rnnclf import checkpoint
from rnnclf.batching import Encoded, offsets_of
from rnnclf.config import Config, TextConfig
from rnnclf.data import file_digest, read_examples, stratified_split
from rnnclf.errors import RnnclfError
from rnnclf.text import get_tokenizer
from rnnclf.vocab import Vocab, vocab_from_counts

log = logging.getLogger("rnnclf")

PAD, UNK = "<pad>", "<unk>"
SPECIALS = [PAD, UNK]  # <pad> = 0 (what collate pads with), <unk> = 1
CACHE_VERSION = 1
# Below this many bytes of data files, starting worker processes costs more than it saves.
PARALLEL_MIN_BYTES = 2_000_000


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
    """Cut a token list to text.max_length: keep the head, the tail, or both (a quarter of the budget
    for the opening, the rest for the ending, where reviews and articles tend to conclude)."""
    limit = text_config.max_length
    if text_config.truncate == "tail":
        return lambda tokens: tokens[-limit:]
    if text_config.truncate == "head_tail":
        head = limit // 4
        tail = limit - head
        return lambda tokens: tokens if len(tokens) <= limit else tokens[:head] + tokens[len(tokens) - tail :]
    return lambda tokens: tokens[:limit]


@dataclass
class _Part:
    """Documents tokenized to ids of their own little vocabulary (`itos`): per-token work stays in C
    loops, and parts made in different processes merge by translating ids through one small table."""

    itos: list[str]
    ids: torch.Tensor  # (tokens,) int32, local ids
    lengths: torch.Tensor  # (documents,) int64

    @property
    def offsets(self) -> torch.Tensor:
        return offsets_of(self.lengths)  # (documents + 1,)

    def select(self, documents: list[int]) -> _Part:
        """The given documents, in the given order."""
        index = torch.tensor(documents, dtype=torch.int64)
        starts, lengths = self.offsets[index], self.lengths[index]  # (D,), (D,)
        # Token positions of every chosen document, back to back: start of its document + rank in it.
        first = torch.cumsum(lengths, dim=0) - lengths  # (D,) where each document begins in the output
        shift = torch.repeat_interleave(starts - first, lengths)  # (tokens,)
        positions = torch.arange(int(lengths.sum())) + shift
        return _Part(self.itos, self.ids[positions], lengths)


def _tokenize(texts: list[str], text_config: TextConfig) -> _Part:
    """Tokenize, truncate and give each distinct token a local id in order of first sight."""
    return _to_part(*_tokenize_plain(texts, text_config))


def _tokenize_plain(texts: list[str], text_config: TextConfig) -> tuple[list[str], array, array]:
    """(local itos, ids, lengths) with no torch calls: this may run in a forked worker, where torch's
    thread pool (inherited mid-flight from the parent) would deadlock."""
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


def _to_part(itos: list[str], ids: array, lengths: array) -> _Part:
    return _Part(itos, _tensor(ids), _tensor(lengths).long())


def _tensor(values: array) -> torch.Tensor:
    if not values:
        return torch.empty(0, dtype=torch.int32)
    return torch.frombuffer(bytearray(values), dtype=torch.int32)


def _count(part: _Part) -> Counter[str]:
    per_id = torch.bincount(part.ids.long(), minlength=len(part.itos)).tolist()
    return Counter({token: count for token, count in zip(part.itos, per_id, strict=True) if count})


def _encode(part: _Part, labels: list[int], vocab: Vocab) -> Encoded:
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
    return Encoded.from_lengths(ids, lengths, torch.tensor(labels, dtype=torch.int64))


def encode_texts(texts: list[str], labels: list[int], text_config: TextConfig, vocab: Vocab) -> Encoded:
    """Tokenize, truncate and numericalize documents with a fixed vocabulary (prediction)."""
    return _encode(_tokenize(texts, text_config), labels, vocab)


def _load(path: str, config: Config) -> tuple[list[str], tuple[list[str], array, array]]:
    """Read one data file and tokenize it: (labels, plain part). May run in a forked worker."""
    data = config.data
    examples = read_examples(path, data.format, data.text_column, data.label_column)
    return examples.labels, _tokenize_plain(examples.texts, config.text)


def _load_all(paths: list[str], config: Config) -> list[tuple[list[str], _Part]]:
    """Read and tokenize every file, one forked process per file when the files are large (train and
    test of IMDB: two cores, half the time). The workers make no torch calls (see _tokenize_plain)."""
    size = sum(_size(Path(path)) for path in paths)
    if len(paths) < 2 or size < PARALLEL_MIN_BYTES or "fork" not in multiprocessing.get_all_start_methods():
        results = [_load(path, config) for path in paths]
    else:
        with multiprocessing.get_context("fork").Pool(min(len(paths), os.cpu_count() or 1)) as pool:
            results = pool.starmap(_load, [(path, config) for path in paths])
    return [(labels, _to_part(*plain)) for labels, plain in results]


def _size(path: Path) -> int:
    try:
        return path.stat().st_size if path.is_file() else 0
    except OSError:
        return 0


def known_labels(labels: list[str], names: list[str], source: str, role: str) -> tuple[list[int], list[int]]:
    """(documents to keep, their label ids): documents whose label the model knows. Warns with counts
    about the rest (they cannot be scored)."""
    index = {label: i for i, label in enumerate(names)}
    keep = [i for i, label in enumerate(labels) if label in index]
    dropped = len(labels) - len(keep)
    if dropped:
        unseen = sorted({label for label in labels if label not in index})
        shown = ", ".join(unseen[:5]) + (", ..." if len(unseen) > 5 else "")
        log.warning(
            "%s: %d %s documents have labels unseen in training (%s); they are left out of the metrics",
            source,
            dropped,
            role,
            shown,
        )
    if not keep:
        raise RnnclfError(f"{source}: none of the {role} labels occur in the training data")
    return keep, [index[labels[i]] for i in keep]


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
    paths = [path for path in (data.train, data.valid, data.test) if path is not None]
    loaded = dict(zip(paths, _load_all(paths, config), strict=True))
    train_labels, train_part = loaded[data.train]
    names = sorted(set(train_labels))
    if len(names) < 2:
        raise RnnclfError(
            f"{data.train}: column '{data.label_column}' has only one class ({names[0]!r}); "
            "a classifier needs at least two"
        )
    index = {label: i for i, label in enumerate(names)}
    if data.valid is None:
        if len(train_labels) < 2:
            raise RnnclfError(
                f"{data.train}: {len(train_labels)} example; need at least 2 to split off "
                "a validation set (or give data.valid)"
            )
        keep, held_out = stratified_split(train_labels, data.valid_fraction, config.train.seed)
        valid_part = train_part.select(held_out)
        valid_ids = [index[train_labels[i]] for i in held_out]
        train_part = train_part.select(keep)
        train_ids = [index[train_labels[i]] for i in keep]
    else:
        train_ids = [index[label] for label in train_labels]
        valid_labels, valid_part = loaded[data.valid]
        keep, valid_ids = known_labels(valid_labels, names, data.valid, "validation")
        valid_part = valid_part.select(keep)
    # torchtext's recipe, counted over the training documents only: specials first, then tokens by
    # (-count, token); <unk> for the rest.
    vocab = vocab_from_counts(
        _count(train_part), config.text.min_freq, SPECIALS, max_tokens=config.text.max_tokens
    )
    vocab.set_default_index(vocab[UNK])
    test = None
    if data.test is not None:
        test_labels, test_part = loaded[data.test]
        keep, test_ids = known_labels(test_labels, names, data.test, "test")
        test = _encode(test_part.select(keep), test_ids, vocab)
    return Prepared(
        vocab=vocab,
        labels=names,
        train=_encode(train_part, train_ids, vocab),
        valid=_encode(valid_part, valid_ids, vocab),
        test=test,
    )
