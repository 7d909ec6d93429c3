"""What a prediction is: one document's label(s) with probabilities. Shared by every backend (torch's
rnnclf.inference.predict, ONNX Runtime's rnnclf.inference.onnx_predictor), so `predict --json` and a
server print the same shape whichever scored it. Torch-free on purpose."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any

from rnnclf.errors import RnnclfError


@dataclass
class Prediction:
    text: str
    label: str  # the most likely label (multi-label: the most likely chosen one, "" when none is)
    probabilities: dict[str, float]  # most likely first
    labels: list[str] | None = None  # multi-label: the chosen labels, most likely first (maybe none)

    def to_dict(self) -> dict[str, Any]:
        if self.labels is not None:
            return {"text": self.text, "labels": self.labels, "probabilities": self.probabilities}
        return {"text": self.text, "label": self.label, "probabilities": self.probabilities}


def in_chunks(
    predict: Callable[[list[str], int | None], list[Prediction]],
    texts: Iterable[str],
    top_k: int | None = None,
    chunk: int = 2048,
) -> Iterator[Prediction]:
    """An unbounded stream predicted `chunk` documents at a time (each backend's predict_stream): memory
    stays bounded, output order is input order."""
    iterator = iter(texts)
    while block := list(islice(iterator, chunk)):
        yield from predict(block, top_k)


def threshold_override(override: float, multi_label: bool, labels: int) -> list[float]:
    """`--threshold T`: T for every label of a multi-label model (each backend's thresholds)."""
    if not multi_label:
        raise RnnclfError("--threshold: this model is single-label (it picks the most likely label)")
    if not 0.0 < override < 1.0:
        raise RnnclfError(f"--threshold {override}: must lie strictly between 0 and 1")
    return [float(override)] * labels
