"""model.init_from: a classifier that starts from a pretrained language model (rnnclf pretrain's lm.pt).

The language model's encoder (embedding and recurrent layers, named as in the classifier) is copied into
every ensemble member; the output layer and pooling start fresh. The classifier keeps the language
model's vocabulary (its word vectors are rows of that vocabulary), so the text settings that decide what
a word is must match those the language model was trained with.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from rnnclf.config import Config
from rnnclf.models.language_model import ENCODER_PREFIXES
from rnnclf.runs import checkpoint
from rnnclf.text.vocab import Vocab

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
    from rnnclf.errors import RnnclfError

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
