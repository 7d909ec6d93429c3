"""Which engine scores: torch (the checkpoint itself) or ONNX Runtime (the model exported beside it).

    load_predictor(model, backend="auto") -> Predictor (torch) | OnnxPredictor (onnxruntime, no torch)

Where an export lives: `rnnclf export --format onnx` with no --out writes RUN/model.onnx and
RUN/model.onnx.json next to best.pt; the JSON records the checkpoint it came from (size, mtime and
SHA-256). `backend`:
- "auto": that export when it is current (it was made from this very checkpoint: same size and mtime,
  or else the same SHA-256) and onnxruntime is installed, for the same probabilities (within 1e-5) and
  labels without importing torch; otherwise torch. An export older than the checkpoint is never used
  silently: a warning names it and how to refresh it, and torch scores.
- "onnx": that export, or an error saying how to make it (missing or out of date); --model may also
  name an .onnx file directly (e.g. RUN/model.int8.onnx, which "auto" never picks: its probabilities
  differ from the checkpoint's).
- "torch": the checkpoint, as before.

This module imports neither torch nor anything that does; the torch branch imports it when chosen.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from rnnclf.errors import RnnclfError
from rnnclf.inference.onnx_predictor import ONNX_FILE, OnnxPredictor, metadata_path
from rnnclf.runs.rundir import latest_run, resolve_checkpoint

log = logging.getLogger("rnnclf")

BACKENDS = ("auto", "torch", "onnx")


def load_predictor(
    model: str | Path | None = None, backend: str = "auto", threshold: float | None = None
) -> Any:
    """A run folder, checkpoint or .onnx file (None: the latest run) -> a predictor: Predictor (torch) or
    OnnxPredictor, both with predict(texts, top_k), predict_stream, probabilities, labels, multi_label,
    thresholds, config.data, path and backend ("torch" or "onnx")."""
    if backend not in BACKENDS:
        raise RnnclfError(f"--backend {backend}: unknown; choose {', '.join(BACKENDS)}")
    path = latest_run() if model is None else Path(model)
    if path.suffix == ".onnx" and path.is_file():
        if backend == "torch":
            raise RnnclfError(f"--backend torch: {path} is an ONNX model; give its run folder or checkpoint")
        _warn_if_stale(path)
        return OnnxPredictor(path, threshold)
    checkpoint = resolve_checkpoint(str(path))
    export = checkpoint.parent / ONNX_FILE
    if backend == "onnx":
        if not export.is_file():
            raise RnnclfError(
                f"--backend onnx: {checkpoint.parent} holds no {ONNX_FILE}; make it with "
                f"'rnnclf export --format onnx --model {checkpoint.parent}'"
            )
        if not current(export, checkpoint):
            raise RnnclfError(
                f"--backend onnx: {export} was exported from another {checkpoint.name} (the run changed "
                f"since, or an older rnnclf exported it); export it again: "
                f"'rnnclf export --format onnx --model {checkpoint.parent}'"
            )
        return OnnxPredictor(export, threshold)
    if backend == "auto" and export.is_file():
        if not current(export, checkpoint):
            log.warning(
                "%s does not match %s (exported before the model changed, or by an older rnnclf); scoring "
                "with torch. Refresh it: "
                "rnnclf export --format onnx --model %s",
                export,
                checkpoint.name,
                checkpoint.parent,
            )
        elif _has_onnxruntime():
            return OnnxPredictor(export, threshold)
    from rnnclf.inference.predict import Predictor

    return Predictor.from_checkpoint(checkpoint, threshold=threshold)


def _has_onnxruntime() -> bool:
    """Whether the onnx extra is installed (the ONNX path imports onnxruntime next anyway)."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def score_file(
    predictor: Any, path: str | None = None, text_column: str | None = None, label_column: str | None = None
) -> dict[str, Any]:
    """The scores of a labelled file (default: the run's test data) with either backend; text_column and
    label_column override the run's data.text_column / data.label_column."""
    if getattr(predictor, "backend", "torch") == "onnx":
        from rnnclf.inference.onnx_predictor import score_file as onnx_score_file

        return onnx_score_file(predictor, path, text_column, label_column)
    from rnnclf.inference.scoring import score_file as torch_score_file

    return torch_score_file(predictor, path, text_column, label_column)


def fingerprint(checkpoint: Path) -> dict[str, Any]:
    """What an export records of its checkpoint, to tell later whether it is still current."""
    status = checkpoint.stat()
    return {
        "checkpoint_size": status.st_size,
        "checkpoint_mtime_ns": status.st_mtime_ns,
        "checkpoint_sha256": sha256(checkpoint),
    }


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def current(export: Path, checkpoint: Path) -> bool:
    """Whether `export` was made from `checkpoint` as it is now: same size and mtime (cheap), else the
    same SHA-256 (a copied run folder has new mtimes but the same bytes). An export without a record
    (older rnnclf) or with an unreadable JSON is not current."""
    try:
        meta = json.loads(metadata_path(export).read_text(encoding="utf-8"))
        status = checkpoint.stat()
    except (OSError, ValueError):
        return False
    if not isinstance(meta, dict) or "checkpoint_sha256" not in meta:
        return False
    if meta.get("checkpoint_size") != status.st_size:
        return False
    if meta.get("checkpoint_mtime_ns") == status.st_mtime_ns:
        return True
    return meta["checkpoint_sha256"] == sha256(checkpoint)


def _warn_if_stale(export: Path) -> None:
    """A named .onnx file is used as given; if the checkpoint it came from is beside it and has changed
    since, say so."""
    try:
        meta = json.loads(metadata_path(export).read_text(encoding="utf-8"))
        checkpoint = Path(meta["checkpoint"])
    except (OSError, ValueError, KeyError, TypeError):
        return
    if checkpoint.is_file() and not current(export, checkpoint):
        log.warning(
            "%s was exported from an earlier %s; export it again for the current model", export, checkpoint
        )
