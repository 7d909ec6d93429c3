"""model.init_from: a classifier that starts from a pretrained language model (rnnclf pretrain's lm.pt).

The language model's encoder (embedding and recurrent layers, named as in the classifier) is copied into
every ensemble member; the output layer and pooling start fresh. The classifier keeps the language
model's vocabulary (its word vectors are rows of that vocabulary), so the text settings that decide what
a word is must match those the language model was trained with.

lm.pt also holds the fingerprints of every document its language model read: a classifier whose
validation or test documents are among them (pretrained with another split or seed, or on unlabeled
text holding them) is refused unless model.init_from_overlap is allow.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rnnclf.config import Config
from rnnclf.errors import RnnclfError
from rnnclf.models.language_model import ENCODER_PREFIXES
from rnnclf.runs import checkpoint
from rnnclf.text.fingerprints import fingerprints, found
from rnnclf.text.vocab import Vocab

log = logging.getLogger("rnnclf")

# Settings that must be equal in the classifier and the language model it starts from.
SAME_TEXT = ("tokenizer",)
SAME_MODEL = ("cell", "embedding_dim", "hidden_dim", "num_layers", "bidirectional")


def _load(config: Config) -> tuple[Path, dict]:
    from rnnclf.pretraining.loop import lm_path

    path = lm_path(config.model.init_from)
    return path, checkpoint.load(path, kind=checkpoint.LANGUAGE_MODEL)


def _check(config: Config, saved: dict, path: Path) -> None:
    """One line naming every setting that keeps the language model's weights or words from fitting."""
    differing = []
    for section, keys in (("model", SAME_MODEL), ("text", SAME_TEXT)):
        for key in keys:
            theirs, ours = saved["config"][section][key], getattr(getattr(config, section), key)
            if theirs != ours:
                differing.append(f"{section}.{key} ({theirs!r} in {path.name}, {ours!r} here)")
    if differing:
        raise_mismatch(path, differing)


def raise_mismatch(path: Path, differing: list[str]) -> None:
    raise RnnclfError(
        f"model.init_from: {path}: the language model does not fit this classifier: {'; '.join(differing)}"
    )


def encoder_vocab(config: Config) -> Vocab:
    """The vocabulary of the language model named by model.init_from (checked to fit the config)."""
    path, saved = _load(config)
    _check(config, saved, path)
    return Vocab.from_dict(saved["vocab"])


def init_encoders(members: list[nn.Module], config: Config) -> None:
    """Copy the language model's embedding and recurrent weights into each classifier member."""
    path, saved = _load(config)
    _check(config, saved, path)
    encoder = {k: v for k, v in saved["model"].items() if k.startswith(ENCODER_PREFIXES)}
    for member in members:
        own = member.state_dict()
        wrong = [
            f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}"
            for k, v in encoder.items()
            if k in own and own[k].shape != v.shape
        ]
        missing = [k for k in own if k.startswith(ENCODER_PREFIXES) and k not in encoder]
        if wrong or missing:
            raise_mismatch(
                path, [f"shapes differ: {', '.join(wrong)}" if wrong else f"missing {', '.join(missing)}"]
            )
        with torch.no_grad():
            member.load_state_dict(encoder, strict=False)


def overlap(config: Config) -> dict[str, Any]:
    """How many of the classifier's validation and test documents the language model of
    model.init_from read in training (documents that are also in the classifier's own training split
    do not count: the classifier reads them anyway). RnnclfError, one line with both counts, unless
    model.init_from_overlap is allow. Returns what metrics.json records."""
    from rnnclf.prepare import split_texts

    path, saved = _load(config)
    setting = config.model.init_from_overlap
    known = saved.get("fingerprints")
    if not isinstance(known, torch.Tensor):  # lm.pt of rnnclf 0.2: no record of its texts
        log.warning(
            "%s: this language model does not record its training texts (written before rnnclf 0.3); "
            "whether it read validation or test documents cannot be checked",
            path,
        )
        return {"checked": False, "setting": setting}
    texts = split_texts(config)
    own = fingerprints(texts["train"])
    counts, sizes = {}, {}
    for split in ("valid", "test"):
        if split not in texts:
            continue
        documents = fingerprints(texts[split])
        counts[split] = int((found(documents, known) & ~found(documents, own)).sum())
        sizes[split] = len(texts[split])
    record = {"checked": True, "setting": setting, **counts}
    if any(counts.values()) and setting != "allow":
        shown = " and ".join(
            f"{counts[split]} of the {sizes[split]} {'validation' if split == 'valid' else 'test'} documents"
            for split in counts
        )
        raise RnnclfError(
            f"model.init_from: {path}: {shown} were in the language model's training text (pretrained "
            "with another validation split or seed, or on unlabeled text that holds them), which biases "
            "every choice made on validation; pretrain with this config's data and train.seed, or set "
            "model.init_from_overlap: allow"
        )
    return record
