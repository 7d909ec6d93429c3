"""What a prediction is: one document's label(s) with probabilities. Shared by every backend (torch's
rnnclf.inference.predict, ONNX Runtime's rnnclf.inference.onnx_predictor), so `predict --json` and a
server print the same shape whichever scored it. Torch-free on purpose."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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
