"""Run folders: naming new ones, remembering the latest, and finding the checkpoint a command means.

`rnnclf train` records its run folder in ./runs/LATEST, so `rnnclf predict "text"` run from the same
directory uses it without --model.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from rnnclf.errors import RnnclfError

RUNS = Path("runs")
LATEST = RUNS / "LATEST"


def new_run_dir(config_path: Path, configured: str | None) -> Path:
    """The configured run_dir, or runs/<config name>-<date>-<time> (never an existing folder)."""
    if configured:
        return Path(configured)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    candidate = RUNS / f"{config_path.stem}-{stamp}"
    number = 1
    while candidate.exists():
        number += 1
        candidate = RUNS / f"{config_path.stem}-{stamp}-{number}"
    return candidate


def check_fresh(run_dir: Path) -> None:
    """A new (not resumed) run must not overwrite an earlier run's checkpoints."""
    if (run_dir / "last.pt").exists() or (run_dir / "best.pt").exists():
        raise RnnclfError(
            f"{run_dir}: already holds a trained run; continue it with --resume or choose another --run-dir"
        )


def remember(run_dir: Path) -> str | None:
    """Record run_dir as the latest run of this working directory; returns the record it replaced."""
    previous = LATEST.read_text(encoding="utf-8") if LATEST.is_file() else None
    _write_latest(str(run_dir.resolve()) + "\n")
    return previous


def forget(run_dir: Path, previous: str | None) -> None:
    """Undo remember(run_dir) (for a run that failed before saving anything): put `previous` back."""
    if not LATEST.is_file() or LATEST.read_text(encoding="utf-8").strip() != str(run_dir.resolve()):
        return
    if previous is None:
        LATEST.unlink(missing_ok=True)
    else:
        _write_latest(previous)


def missing_folders(run_dir: Path) -> list[Path]:
    """The folders a new run in run_dir would create (run_dir, missing parents, runs/), deepest first."""
    missing = {path for path in (run_dir, *run_dir.parents, RUNS) if not path.exists()}
    return sorted(missing, key=lambda path: len(path.absolute().parts), reverse=True)


def discard(run_dir: Path, created: list[Path]) -> None:
    """Remove what a new run wrote before failing without a checkpoint: its config.yaml and metrics in a
    folder it created, then the folders it created, where empty. Nothing else is ever deleted."""
    if run_dir in created:
        for name in ("config.yaml", "metrics.jsonl", ".metrics.jsonl.tmp"):
            (run_dir / name).unlink(missing_ok=True)
    for folder in created:  # deepest first; rmdir refuses a folder that holds anything
        with contextlib.suppress(OSError):
            folder.rmdir()


def _write_latest(text: str) -> None:
    LATEST.parent.mkdir(parents=True, exist_ok=True)
    temporary = LATEST.with_name(".LATEST.tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(LATEST)


def latest_run() -> Path:
    if not LATEST.is_file():
        raise RnnclfError(
            "no trained run found here (./runs/LATEST is missing); train one with 'rnnclf train CONFIG' "
            "or pass --model RUN_DIR_OR_CHECKPOINT"
        )
    return Path(LATEST.read_text(encoding="utf-8").strip())


def resolve_checkpoint(model: str | None) -> Path:
    """--model value (a run folder or a checkpoint file; None: the latest run) -> checkpoint path.

    A run folder means its best.pt, or last.pt when no epoch has finished yet."""
    path = latest_run() if model is None else Path(model)
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (path / name).is_file():
                return path / name
        raise RnnclfError(f"{path}: no best.pt or last.pt in this run folder")
    if not path.exists():
        raise RnnclfError(f"{path}: no such run folder or checkpoint")
    return path
