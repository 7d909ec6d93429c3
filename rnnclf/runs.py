"""Run folders: naming new ones, remembering the latest, and finding the checkpoint a command means.

`rnnclf train` records its run folder in ./runs/LATEST, so `rnnclf predict "text"` run from the same
directory uses it without --model.
"""

from __future__ import annotations

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


def remember(run_dir: Path) -> None:
    """Record run_dir as the latest run of this working directory."""
    LATEST.parent.mkdir(parents=True, exist_ok=True)
    temporary = LATEST.with_name(".LATEST.tmp")
    temporary.write_text(str(run_dir.resolve()) + "\n", encoding="utf-8")
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
