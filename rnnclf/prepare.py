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
import multiprocessing
import os
from array import array
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

from rnnclf.batching import Encoded
from rnnclf.config import Config
from rnnclf.data import file_digest, read_configured, stratified_split
from rnnclf.data.labelsets import known_labels, label_cells
from rnnclf.errors import RnnclfError
from rnnclf.files import atomic_write
from rnnclf.text.encoding import SPECIALS, UNK, Part, count_tokens, encode_part, to_part, tokenize_plain
from rnnclf.text.vocab import Vocab, vocab_from_counts

log = logging.getLogger("rnnclf")

CACHE_VERSION = 2  # 2: multi-label targets (data.multi_label, data.label_separator in the key)
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


def _load(path: str, config: Config) -> tuple[list[str], tuple[list[str], array, array]]:
    """Read one data file and tokenize it: (labels, plain part). May run in a forked worker."""
    data = config.data
    examples = read_configured(path, data)
    return examples.labels, tokenize_plain(examples.texts, config.text)


def _load_all(paths: list[str], config: Config) -> list[tuple[list[str], Part]]:
    """Read and tokenize every file, one forked process per file when the files are large (train and
    test of IMDB: two cores, half the time). The workers make no torch calls (see encoding.tokenize_plain)."""
    size = sum(_size(Path(path)) for path in paths)
    if len(paths) < 2 or size < PARALLEL_MIN_BYTES or "fork" not in multiprocessing.get_all_start_methods():
        results = [_load(path, config) for path in paths]
    else:
        with multiprocessing.get_context("fork").Pool(min(len(paths), os.cpu_count() or 1)) as pool:
            results = pool.starmap(_load, [(path, config) for path in paths])
    return [(labels, to_part(*plain)) for labels, plain in results]


def _size(path: Path) -> int:
    try:
        return path.stat().st_size if path.is_file() else 0
    except OSError:
        return 0


def label_matrix(
    label_sets: list[tuple[str, ...]], names: list[str], source: str | None = None, role: str = ""
) -> torch.Tensor:
    """Multi-label targets: (N, L) uint8, [i, l] = 1 when document i carries names[l]. Labels the model
    does not know are left out (one warning with the count, when `source` is given); the document stays."""
    rows, columns = label_cells(label_sets, names, source, role)
    targets = torch.zeros(len(label_sets), len(names), dtype=torch.uint8)
    targets[torch.tensor(rows, dtype=torch.long), torch.tensor(columns, dtype=torch.long)] = 1
    return targets


def _prepare_multi_label(
    config: Config,
    loaded: dict[str, tuple[list, Part]],
    extra_counts: Counter[str] | None,
    given: Vocab | None,
) -> Prepared:
    """_prepare for data.multi_label: targets are (N, L) uint8 matrices over the labels seen in train."""
    data = config.data
    train_sets, train_part = loaded[data.train]
    names = sorted({label for labels in train_sets for label in labels})
    if len(names) < 2:
        found = f"only {names[0]!r}" if names else "none"
        raise RnnclfError(
            f"data.multi_label: {data.train} has {len(names)} distinct label ({found}); "
            "a multi-label classifier needs at least two"
        )
    train_targets = label_matrix(train_sets, names)
    if data.valid is None:
        # Stratified by each document's first label ('' for none): rare labels still reach valid.
        keep, held_out = stratified_split(
            [labels[0] if labels else "" for labels in train_sets], data.valid_fraction, config.train.seed
        )
        valid_part, valid_targets = train_part.select(held_out), train_targets[held_out]
        train_part, train_targets = train_part.select(keep), train_targets[keep]
    else:
        valid_sets, valid_part = loaded[data.valid]
        valid_targets = label_matrix(valid_sets, names, data.valid, "validation")
    vocab = _vocabulary(train_part, config, extra_counts, given)
    test = None
    if data.test is not None:
        test_sets, test_part = loaded[data.test]
        test = encode_part(test_part, label_matrix(test_sets, names, data.test, "test"), vocab)
    return Prepared(
        vocab=vocab,
        labels=names,
        train=encode_part(train_part, train_targets, vocab),
        valid=encode_part(valid_part, valid_targets, vocab),
        test=test,
    )


def _vocabulary(
    train_part: Part, config: Config, extra_counts: Counter[str] | None = None, given: Vocab | None = None
) -> Vocab:
    """torchtext's recipe, counted over the training documents only (plus unlabeled texts' counts for
    language-model pretraining): specials first, then tokens by (-count, token); <unk> for the rest.
    `given` (a language model's vocabulary, model.init_from) is used as it is. (Single- and multi-label
    preparation share it.)"""
    if given is not None:
        vocab = given
    else:
        counts = count_tokens(train_part)
        counts.update(extra_counts or {})
        vocab = vocab_from_counts(counts, config.text.min_freq, SPECIALS, max_tokens=config.text.max_tokens)
    vocab.set_default_index(vocab[UNK])
    return vocab


def _cache_key(config: Config, extra_counts: Counter[str] | None = None, vocab: Vocab | None = None) -> str:
    data = config.data
    files = [data.train, data.valid, data.test]
    description = {
        "version": CACHE_VERSION,
        "files": [file_digest(Path(f)) if f else None for f in files],
        "data": data.model_dump(exclude={"train", "valid", "test", "unlabeled"}),
        "split_seed": config.train.seed if data.valid is None else None,
        "text": config.text.model_dump(),
    }
    if extra_counts:
        description["extra_counts"] = _digest(sorted(extra_counts.items()))
    if vocab is not None:
        description["vocab"] = _digest(vocab.get_itos())
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:32]


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value).encode()).hexdigest()


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
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda file: torch.save(state, file))
    except (OSError, RnnclfError) as err:  # a read-only or full cache folder costs speed, not the run
        log.warning("could not write the preprocessing cache %s (%s)", path, getattr(err, "strerror", err))


def prepare(
    config: Config,
    use_cache: bool = True,
    extra_counts: Counter[str] | None = None,
    vocab: Vocab | None = None,
) -> Prepared:
    """Everything the training loop needs from the data files, from the cache when possible.

    extra_counts: token counts of unlabeled texts, added to the training split's when the vocabulary is
    built (language-model pretraining). vocab: use this vocabulary instead of building one (a classifier
    started from a language model keeps the language model's words)."""
    cache_path = cache_folder() / f"{_cache_key(config, extra_counts, vocab)}.pt" if use_cache else None
    if cache_path is not None and cache_path.exists():
        cached = _load_cached(cache_path)
        if cached is not None:
            return cached
    prepared = _prepare(config, extra_counts, vocab)
    if cache_path is not None:
        _store(cache_path, prepared)
    return prepared


def _prepare(config: Config, extra_counts: Counter[str] | None, given: Vocab | None) -> Prepared:
    data = config.data
    paths = [path for path in (data.train, data.valid, data.test) if path is not None]
    loaded = dict(zip(paths, _load_all(paths, config), strict=True))
    if data.multi_label:
        return _prepare_multi_label(config, loaded, extra_counts, given)
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
    vocab = _vocabulary(train_part, config, extra_counts, given)
    test = None
    if data.test is not None:
        test_labels, test_part = loaded[data.test]
        keep, test_ids = known_labels(test_labels, names, data.test, "test")
        test = encode_part(test_part.select(keep), test_ids, vocab)
    return Prepared(
        vocab=vocab,
        labels=names,
        train=encode_part(train_part, train_ids, vocab),
        valid=encode_part(valid_part, valid_ids, vocab),
        test=test,
    )


def split_texts(config: Config) -> dict[str, list[str]]:
    """The raw texts of each split as prepare() splits them ("train", "valid", and "test" when there is
    one): the same files and, with data.valid null, the same seeded stratified split. For checks on
    which texts a language model read (rnnclf.text.fingerprints), not for training: it reads the files
    again (a second or two on IMDB) and keeps documents whose labels training would drop. Warnings
    about the data were given when it was prepared: they are not repeated."""
    previous = log.level
    log.setLevel(logging.ERROR)
    try:
        return _split_texts(config)
    finally:
        log.setLevel(previous)


def _split_texts(config: Config) -> dict[str, list[str]]:
    data = config.data
    train = read_configured(data.train, data)
    texts = {"train": train.texts}
    if data.valid is None:
        # The key stratified_split sorts by: the label, or a multi-label document's first label.
        keys = [labels[0] if labels else "" for labels in train.labels] if data.multi_label else train.labels
        keep, held_out = stratified_split(keys, data.valid_fraction, config.train.seed)
        texts = {"train": [train.texts[i] for i in keep], "valid": [train.texts[i] for i in held_out]}
    else:
        texts["valid"] = read_configured(data.valid, data).texts
    if data.test is not None:
        texts["test"] = read_configured(data.test, data).texts
    return texts
