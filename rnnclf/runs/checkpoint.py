"""Checkpoints: one self-contained file, written atomically, read with weights_only=True.

A checkpoint is a dict of plain types and tensors only. Two kinds of file share one format:
    best.pt  the model to use: kind="rnnclf-checkpoint", format_version, rnnclf_version, config (dict),
             vocab (itos), labels, model (state dict), epoch; multi-label models also thresholds (one
             float per label, chosen on validation data after training)
    last.pt  the same plus what resuming needs (rnnclf.training.resume): optimizer, scheduler, scaler, rng, step,
             history, best, partial (and the raw weights when weights are averaged)
`torch.load(..., weights_only=True)` refuses anything else, so a crafted file cannot run code. eval,
predict, export, info and explain read either file.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import torch

from rnnclf import __version__
from rnnclf.errors import RnnclfError
from rnnclf.files import atomic_write

# 2 (rnnclf 0.2): add-ons in their own config sections, the hashed n-gram bag retired, best.pt holds the
# model only. Files of format 1 are refused with a clear line: their models cannot be rebuilt.
FORMAT_VERSION = 2
KIND = "rnnclf-checkpoint"
LANGUAGE_MODEL = "rnnclf-language-model"  # what rnnclf pretrain writes (lm.pt): no labels, no classifier
REQUIRED = ("format_version", "config", "vocab", "labels", "model")
MODEL_KEYS = ("config", "vocab", "labels", "model", "epoch", "thresholds")
STAMP = ("kind", "format_version", "rnnclf_version")  # what save() adds to every file
ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive


def save(state: dict[str, Any], path: str | Path, kind: str = KIND) -> None:
    """Write `state` (best.pt: MODEL_KEYS only; last.pt: everything) to `path` atomically: a crash at
    any moment, even SIGKILL, leaves the old file or the new one, never a torn one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"kind": kind, "format_version": FORMAT_VERSION, "rnnclf_version": __version__, **state}
    atomic_write(path, lambda file: torch.save(payload, file))


def model_only(state: dict[str, Any]) -> dict[str, Any]:
    """The part of a training state that using the model needs (what best.pt holds)."""
    return {key: state[key] for key in MODEL_KEYS if key in state}


def load(path: str | Path, map_location: str | torch.device = "cpu", kind: str = KIND) -> dict[str, Any]:
    """Read and check a checkpoint of `kind` (a classifier, or LANGUAGE_MODEL). Anything that is not a
    readable rnnclf checkpoint of that kind and a known format version is a one-line RnnclfError;
    nothing in the file is ever executed."""
    path = Path(path)
    if not path.exists():
        raise RnnclfError(f"{path}: no such checkpoint")
    if path.is_dir():
        raise RnnclfError(f"{path}: is a folder; expected a checkpoint file (best.pt or last.pt)")
    head = _read_head(path)
    if not head:
        raise RnnclfError(f"{path}: empty file, not a checkpoint")
    if head != ZIP_MAGIC:  # every file save() writes is a zip archive; refuse the rest unread
        raise RnnclfError(f"{path}: not an rnnclf checkpoint (not a PyTorch zip archive)")
    try:
        with warnings.catch_warnings():  # torch warns on odd pickles; the error below says enough
            warnings.simplefilter("ignore")
            # mmap: tensors are read when used, so eval/predict from last.pt skip its optimizer state.
            state = torch.load(path, map_location=map_location, weights_only=True, mmap=True)
    except Exception as err:  # torch raises many types for foreign, truncated or hostile files
        raise RnnclfError(f"{path}: not a readable rnnclf checkpoint ({_load_failure(err)})") from None
    if isinstance(state, dict) and state.get("kind") == LANGUAGE_MODEL and kind != LANGUAGE_MODEL:
        raise RnnclfError(
            f"{path}: a language model (rnnclf pretrain), not a classifier: predict, eval, info and export "
            f"need one; train it with rnnclf train CONFIG --set model.init_from={path} ('rnnclf runs' "
            "shows the language model's perplexity)"
        )
    if isinstance(state, dict) and state.get("kind") == KIND and kind == LANGUAGE_MODEL:
        raise RnnclfError(f"{path}: a classifier checkpoint, not a language model (rnnclf pretrain's lm.pt)")
    if not isinstance(state, dict) or state.get("kind") != kind:
        raise RnnclfError(f"{path}: not an rnnclf checkpoint (no '{kind}' marker)")
    version = state.get("format_version")
    if not isinstance(version, int):
        raise RnnclfError(f"{path}: checkpoint has no valid format_version")
    if version > FORMAT_VERSION:
        raise RnnclfError(
            f"{path}: checkpoint format {version} is newer than this rnnclf reads ({FORMAT_VERSION}); "
            f"upgrade rnnclf (file written by rnnclf {state.get('rnnclf_version', '?')})"
        )
    if version < FORMAT_VERSION:
        raise RnnclfError(
            f"{path}: checkpoint format {version} was written by rnnclf "
            f"{state.get('rnnclf_version', '0.1')}, whose models this version no longer builds (the "
            "n-gram bag and add-on settings changed in 0.2); retrain it with this version"
        )
    missing = [key for key in REQUIRED if key not in state]
    if missing:
        raise RnnclfError(f"{path}: checkpoint lacks {', '.join(missing)}")
    wrong = [key for key in ("config", "vocab", "model") if not isinstance(state[key], dict)]
    if wrong or not isinstance(state["labels"], (list, tuple)):
        raise RnnclfError(f"{path}: damaged checkpoint ({', '.join(wrong) or 'labels'} has the wrong type)")
    return state


def _read_head(path: Path) -> bytes:
    try:
        with path.open("rb") as file:
            return file.read(len(ZIP_MAGIC))
    except OSError as err:
        raise RnnclfError(f"{path}: cannot read the checkpoint ({err.strerror or err})") from None


def _load_failure(err: Exception) -> str:
    """Why torch.load refused a file, in a few words."""
    found = re.search(r"GLOBAL ([\w.]+)", str(err))
    if found or "Unsupported global" in str(err):
        named = f" ({found.group(1)})" if found else ""
        return (
            f"it refers to Python code{named}; refused without running anything: checkpoints are "
            "loaded with weights_only=True, tensors and plain values only"
        )
    return f"truncated or damaged: {type(err).__name__}"
