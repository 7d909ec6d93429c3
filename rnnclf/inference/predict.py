"""Prediction: Predictor.from_checkpoint(path).predict(texts) -> labels with probabilities.

A checkpoint alone is enough: it carries the config (tokenizer, lengths, model shape), the vocabulary
and the label names. Inputs are batched by length so long and short documents do not pad each other.
A multi-label model (config data.multi_label) gives each label its sigmoid probability and chooses every
label at or above its threshold (saved in the checkpoint, chosen on validation data; `threshold`
overrides them all).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch

from rnnclf.batching import Encoded
from rnnclf.config import Config, validate
from rnnclf.errors import RnnclfError
from rnnclf.inference.prediction import Prediction, in_chunks, threshold_override
from rnnclf.inference.scoring import logits_for
from rnnclf.models.addons import build_model
from rnnclf.runs import checkpoint
from rnnclf.runtime import prepare_cpu
from rnnclf.text.encoding import encode_texts
from rnnclf.text.vocab import Vocab


class Predictor:
    """A trained model ready to label text (rnnclf.inference.backends.load_predictor chooses between
    this and ONNX Runtime's OnnxPredictor, which has the same public methods)."""

    backend = "torch"

    def __init__(
        self,
        state: dict[str, Any],
        source: str = "checkpoint",
        device: str = "cpu",
        threshold: float | None = None,
    ) -> None:
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
        # with AMX); where this device cannot, autocast scores in fp32 (runtime.resolved_precision).
        self.precision = self.config.train.precision
        self.model.to(self.device).eval()
        self.state = state
        self.path: Path | None = None  # the checkpoint file, when loaded from one
        self.multi_label = self.config.data.multi_label
        self.thresholds = self._thresholds(state, threshold, source)

    def _thresholds(self, state: dict[str, Any], override: float | None, source: str) -> list[float]:
        """Multi-label decision thresholds, one per label: the override, else the checkpoint's."""
        if override is not None:
            return threshold_override(override, self.multi_label, len(self.labels))
        saved = state.get("thresholds")
        if saved is None:  # a run stopped before its thresholds were chosen: the neutral default
            return [0.5] * len(self.labels)
        if len(saved) != len(self.labels):
            raise RnnclfError(
                f"{source}: damaged checkpoint ({len(saved)} thresholds for {len(self.labels)} labels)"
            )
        return [float(t) for t in saved]

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, device: str = "cpu", threshold: float | None = None
    ) -> Predictor:
        prepare_cpu()
        predictor = cls(checkpoint.load(path), source=str(path), device=device, threshold=threshold)
        predictor.path = Path(path)
        return predictor

    def to_probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits (N, C) -> probabilities: softmax over classes, or each label's sigmoid (multi-label)."""
        return torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, dim=-1)

    def encode(self, texts: list[str]) -> Encoded:
        return encode_texts(texts, [0] * len(texts), self.config.text, self.vocab)

    def probabilities(self, texts: list[str]) -> torch.Tensor:
        """(N, num_classes) class probabilities, in input order."""
        if not texts:
            return torch.empty(0, len(self.labels))
        logits = logits_for(self.model, self.encode(texts), self.device, self.precision)
        return self.to_probabilities(logits)

    def predict(self, texts: list[str], top_k: int | None = None) -> list[Prediction]:
        """Label each text; probabilities of the top_k classes (all when None), most likely first.
        Multi-label: every label's probability, and the chosen labels (at most top_k of them)."""
        if self.multi_label:
            return self._predict_sets(texts, top_k)
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
        return in_chunks(self.predict, texts, top_k, chunk)

    def _predict_sets(self, texts: list[str], top_k: int | None) -> list[Prediction]:
        """Multi-label predictions: the labels at or above their thresholds, most likely first, at most
        top_k of them (as fastText's `predict FILE k threshold`); all probabilities."""
        probabilities = self.probabilities(texts)  # (N, L)
        values, order = torch.sort(probabilities, dim=-1, descending=True, stable=True)  # (N, L) each
        passed = values >= torch.tensor(self.thresholds)[order]  # (N, L): each sorted label's decision
        results = []
        for text, row, names, chosen in zip(
            texts, values.tolist(), order.tolist(), passed.tolist(), strict=True
        ):
            named = [self.labels[i] for i in names]
            picked = [name for name, keep in zip(named, chosen, strict=True) if keep][:top_k]
            all_probabilities = dict(zip(named, row, strict=True))
            results.append(Prediction(text, picked[0] if picked else "", all_probabilities, picked))
        return results
