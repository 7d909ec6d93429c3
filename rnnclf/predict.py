"""Prediction: Predictor.from_checkpoint(path).predict(texts) -> labels with probabilities.

A checkpoint alone is enough: it carries the config (tokenizer, lengths, model shape), the vocabulary
and the label names. Inputs are batched by length so long and short documents do not pad each other.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import torch

from rnnclf import checkpoint
from rnnclf.addons import build_model
from rnnclf.batching import Encoded
from rnnclf.config import Config, validate
from rnnclf.encoding import encode_texts
from rnnclf.errors import RnnclfError
from rnnclf.runtime import prepare_cpu
from rnnclf.scoring import logits_for
from rnnclf.vocab import Vocab


@dataclass
class Prediction:
    text: str
    label: str
    probabilities: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "label": self.label, "probabilities": self.probabilities}


class Predictor:
    """A trained model ready to label text."""

    def __init__(self, state: dict[str, Any], source: str = "checkpoint", device: str = "cpu") -> None:
        try:
            self.config: Config = validate(state["config"], f"{source}: config")
            self.vocab = Vocab.from_dict(state["vocab"])
            self.labels: list[str] = [str(label) for label in state["labels"]]
            self.model = build_model(len(self.vocab), len(self.labels), self.config)
            self.model.load_state_dict(state["model"])
        except RnnclfError:
            raise
        except Exception as err:  # mismatched shapes or damaged entries in a foreign file
            raise RnnclfError(
                f"{source}: checkpoint contents do not fit together ({str(err)[:160]})"
            ) from None
        self.device = torch.device(device)
        # Score in the precision the model was trained and validated in (bf16: ~2x faster on CPUs
        # with AMX); fp16 exists on CUDA only.
        precision = self.config.train.precision
        self.precision = "fp32" if precision == "fp16" and self.device.type != "cuda" else precision
        self.model.to(self.device).eval()
        self.state = state

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu") -> Predictor:
        prepare_cpu()
        return cls(checkpoint.load(path), source=str(path), device=device)

    def encode(self, texts: list[str]) -> Encoded:
        return encode_texts(texts, [0] * len(texts), self.config.text, self.vocab)

    def probabilities(self, texts: list[str]) -> torch.Tensor:
        """(N, num_classes) class probabilities, in input order."""
        if not texts:
            return torch.empty(0, len(self.labels))
        logits = logits_for(self.model, self.encode(texts), self.device, self.precision)
        return torch.softmax(logits, dim=-1)

    def predict(self, texts: list[str], top_k: int | None = None) -> list[Prediction]:
        """Label each text; probabilities of the top_k classes (all when None), most likely first."""
        keep = len(self.labels) if top_k is None else max(1, min(top_k, len(self.labels)))
        values, order = torch.sort(self.probabilities(texts), dim=-1, descending=True, stable=True)
        # Whole-block work, then plain lists: per-row tensor indexing cost ~30 us a document, and
        # .tolist() of a flat tensor is ~5x faster than of a 2-D one.
        names = [self.labels[i] for i in order[:, :keep].flatten().tolist()]
        scores = values[:, :keep].flatten().tolist()
        starts = range(0, len(names), keep)  # each document's `keep` entries
        return [
            Prediction(text, names[i], dict(zip(names[i : i + keep], scores[i : i + keep], strict=True)))
            for text, i in zip(texts, starts, strict=True)
        ]

    def predict_stream(
        self, texts: Iterable[str], top_k: int | None = None, chunk: int = 2048
    ) -> Iterator[Prediction]:
        """Predict an unbounded stream in chunks: memory stays bounded, output order is input order."""
        iterator = iter(texts)
        while block := list(islice(iterator, chunk)):
            yield from self.predict(block, top_k)
