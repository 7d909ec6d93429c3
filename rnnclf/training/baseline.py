"""The linear baseline every run reports (`train.baseline`): a naive-Bayes-scaled logistic regression on
the training split's word 1-2-grams (NBSVM's recipe), scored on the validation split.

It answers the first question about any text classifier: does the network beat a strong linear model
on these data? It takes seconds, is printed beside the recurrent model's validation score (with a line
of advice when it wins) and recorded in metrics.json; it is never part of the saved model.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from rnnclf.inference.scoring import headline, logits_for, report
from rnnclf.models.addons.linear import NgramLogistic
from rnnclf.models.addons.linear_fit import fit
from rnnclf.prepare import Prepared

ORDER = 2
C = 1.0
DESCRIPTION = "naive-Bayes logistic regression, word 1-2-grams"
# Above this many training tokens the fit's memory (~250 bytes a token) stops being small next to the
# training run's; the baseline is then skipped with a note.
MAX_TOKENS = 8_000_000


def linear_baseline(prepared: Prepared, precision: str = "fp32") -> dict[str, Any]:
    """{"model", "valid": report, "seconds"}; or {"model", "skipped": why} for a large training split."""
    tokens = int(prepared.train.ids.numel())
    if tokens > MAX_TOKENS:
        return {"model": DESCRIPTION, "skipped": f"{tokens:,} training tokens > {MAX_TOKENS:,}"}
    started = time.perf_counter()
    model = NgramLogistic(ORDER, len(prepared.labels))
    fitted = fit(model, prepared.train, c=C)
    logits = logits_for(model, prepared.valid, torch.device("cpu"))  # (N, C)
    # Multi-label: one-vs-rest (a sigmoid per label), one threshold chosen on valid for micro-F1.
    thresholds = "global" if prepared.valid.multi_label else None
    return {
        "model": DESCRIPTION + (", one-vs-rest" if prepared.valid.multi_label else ""),
        "valid": report(logits, prepared.valid.labels, prepared.labels, thresholds=thresholds),
        "features": fitted.features,
        "seconds": time.perf_counter() - started,
    }


def advice(
    recurrent_valid: dict[str, Any], baseline: dict[str, Any] | None, blended: bool = False
) -> str | None:
    """One line when the baseline beat the recurrent model on validation accuracy (multi-label:
    micro-F1), else None. It names only what the run's kind accepts: the linear blend (linear.ngrams) is
    for single-label runs that do not blend already (the config refuses it with data.multi_label)."""
    if not baseline or "valid" not in baseline:
        return None
    (name, ours), theirs = headline(recurrent_valid), headline(baseline["valid"])[1]
    if theirs <= ours:
        return None
    remedies = "Train longer or larger, or add pretrained vectors (model.pretrained_vectors)"
    if not recurrent_valid.get("multi_label") and not blended:
        remedies = (
            "Train longer or larger, add pretrained vectors (model.pretrained_vectors), or blend in the "
            "linear model (linear.ngrams: 2; its share is chosen on validation)"
        )
    return (
        f"advice: the linear baseline beats the recurrent model on validation {name} ({theirs:.4f} vs "
        f"{ours:.4f}): word choice decides here more than word order. {remedies}"
    )
