"""Checkpoints: one self-contained file, written atomically, read with weights_only=True.

A checkpoint is a dict of plain types and tensors only:
    format_version, rnnclf_version, kind="rnnclf-checkpoint", config (dict), vocab (itos), labels,
    model (state dict), and for resuming: optimizer, scheduler, scaler, rng, epoch, step, best, history.
`torch.load(..., weights_only=True)` refuses anything else, so a crafted file cannot run code.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from rnnclf import __version__
from rnnclf.errors import RnnclfError

FORMAT_VERSION = 1
KIND = "rnnclf-checkpoint"
REQUIRED = ("format_version", "config", "vocab", "labels", "model")


def save(state: dict[str, Any], path: str | Path) -> None:
    """Write `state` to `path` atomically: a temporary file in the same folder, fsync, os.replace.

    A crash (even SIGKILL) at any moment leaves either the old file or the new one, never a torn one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"kind": KIND, "format_version": FORMAT_VERSION, "rnnclf_version": __version__, **state}
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(payload, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX); harmless where folders cannot be opened."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and check a checkpoint. Anything that is not a readable rnnclf checkpoint of a known
    format version is a one-line RnnclfError; nothing in the file is ever executed."""
    path = Path(path)
    if not path.exists():
        raise RnnclfError(f"{path}: no such checkpoint")
    if path.is_dir():
        raise RnnclfError(f"{path}: is a folder; expected a checkpoint file (best.pt or last.pt)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many types for foreign, truncated or hostile files
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if "weights_only" in str(err) or "Unsupported global" in str(err):
            reason = "it contains Python objects that could run code, refused (loaded with weights_only)"
        raise RnnclfError(f"{path}: not a readable rnnclf checkpoint ({reason[:160]})") from None
    if not isinstance(state, dict) or state.get("kind") != KIND:
        raise RnnclfError(f"{path}: not an rnnclf checkpoint (no '{KIND}' marker)")
    version = state.get("format_version")
    if not isinstance(version, int):
        raise RnnclfError(f"{path}: checkpoint has no valid format_version")
    if version > FORMAT_VERSION:
        raise RnnclfError(
            f"{path}: checkpoint format {version} is newer than this rnnclf reads ({FORMAT_VERSION}); "
            f"upgrade rnnclf (file written by rnnclf {state.get('rnnclf_version', '?')})"
        )
    missing = [key for key in REQUIRED if key not in state]
    if missing:
        raise RnnclfError(f"{path}: checkpoint lacks {', '.join(missing)}")
    return state
