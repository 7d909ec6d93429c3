"""The run folder: every file name in it, runs/LATEST, making and rolling back a new run, and reading
back what training wrote.

    runs/LATEST                      the latest run trained from this working directory (eval, predict)
    runs/<config>-<date>-<time>/
        config.yaml                  the resolved config
        metrics.jsonl                one line per finished epoch (rewritten whole: resumes never repeat)
        metrics.json                 final scores of best.pt (and of each add-on part)
        best.pt                      the model to use
        last.pt                      everything needed to resume (removed once the run has finished,
                                     unless output.keep_last)
        learning_curves.png confusion_matrix.png tensorboard/   optional pictures and logs
        (multi-label runs: per_label_f1.png instead of confusion_matrix.png)
        pretrain/                    a two-stage run's language-model stage (pretrain.epochs > 0):
                                     config.yaml metrics.jsonl metrics.json lm.pt (last.pt)
    runs/<name>-<date>-<time>/       `rnnclf pretrain`'s run: the same files as pretrain/ above
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rnnclf.errors import RnnclfError
from rnnclf.files import atomic_write

RUNS = Path("runs")
LATEST = RUNS / "LATEST"
CONFIG = "config.yaml"
HISTORY = "metrics.jsonl"
METRICS = "metrics.json"
BEST = "best.pt"
LAST = "last.pt"
PRETRAIN = "pretrain"  # the language-model stage's own run folder inside a run (pretrain.epochs > 0)
LANGUAGE_MODEL = "lm.pt"  # a language model's best epoch (rnnclf pretrain, or RUN/pretrain/)
LEARNING_CURVES = "learning_curves.png"
CONFUSION_MATRIX = "confusion_matrix.png"
PER_LABEL = "per_label_f1.png"  # multi-label runs: per-label F1 bars instead of a confusion matrix
TENSORBOARD = "tensorboard"
# What makes a folder a run folder (for `rnnclf runs`).
RUN_FILES = (CONFIG, HISTORY, BEST, LAST, PRETRAIN)


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


def chosen(config: Any, run_dir: str | Path | None, resume: bool, name: str) -> Path:
    """Where a run goes: run_dir, else output.run_dir, else (resume) the latest run, else
    runs/<name>-<date>-<time>. Recorded in config.output.run_dir."""
    if run_dir is None:
        configured = config.output.run_dir
        run_dir = Path(configured) if configured else latest_run() if resume else None
    folder = Path(run_dir) if run_dir is not None else new_run_dir(Path(name), None)
    config.output.run_dir = str(folder)
    return folder


def stage(run_dir: Path) -> str:
    """What a run folder holds, as a few words: "finished", "classifier stopped", "language model
    finished", "language model stopped" or "nothing saved". A `rnnclf pretrain` folder and a two-stage
    run's pretrain/ both count as a language model. Reads only which files exist."""
    if (run_dir / METRICS).exists() and (run_dir / BEST).exists():
        return "finished"
    if not _pretrain_folder(run_dir) and ((run_dir / LAST).exists() or (run_dir / BEST).exists()):
        return "classifier stopped"
    for folder in (run_dir, run_dir / PRETRAIN):
        if (folder / LANGUAGE_MODEL).exists() and (folder / METRICS).exists():
            return "language model finished"
        if (folder / LAST).exists() or (folder / LANGUAGE_MODEL).exists():
            return "language model stopped"
    return "nothing saved"


def _pretrain_folder(run_dir: Path) -> bool:
    """A `rnnclf pretrain` run folder: lm.pt, or (stopped in its first epoch, last.pt alone) a saved
    config with pretrain.epochs > 0 and no pretrain/ inside (a two-stage run has one)."""
    if (run_dir / LANGUAGE_MODEL).exists():
        return True
    if (run_dir / PRETRAIN).exists() or not (run_dir / CONFIG).is_file():
        return False
    import yaml

    try:
        config = yaml.safe_load((run_dir / CONFIG).read_text(encoding="utf-8"))
        return int(config["pretrain"]["epochs"]) > 0
    except (OSError, ValueError, TypeError, KeyError, yaml.YAMLError):
        return False


def has_checkpoint(run_dir: Path) -> bool:
    return stage(run_dir) != "nothing saved"


def resume_hint(run_dir: Path, command: str = "train") -> str:
    """The command that continues a run, from its own config.yaml (paths in it are absolute)."""
    return f"rnnclf {command} {run_dir / CONFIG} --run-dir {run_dir} --resume"


def check_fresh(run_dir: Path) -> None:
    """A new (not resumed) run must not overwrite an earlier run's checkpoints: one line saying what the
    folder holds and what to run."""
    held = stage(run_dir)
    if held == "nothing saved":
        return
    if held == "finished":
        raise RnnclfError(f"{run_dir}: already holds a finished run; choose another --run-dir")
    if held == "classifier stopped":
        what = "a run stopped before it finished (last.pt)"
    elif (run_dir / PRETRAIN).is_dir():
        what = f"a two-stage run whose {held} (no classifier yet)"
    else:
        what = f"a {held} (rnnclf pretrain)"
    raise RnnclfError(
        f"{run_dir}: holds {what}; continue it with --resume (the same command with --resume added), "
        "or choose another --run-dir"
    )


@contextlib.contextmanager
def opened(run_dir: Path, resume: bool, primary: bool = True) -> Iterator[Path]:
    """The run folder of one training: checked, recorded in runs/LATEST, and rolled back if training
    fails before saving anything (no half-made run folder, and LATEST points where it did before).
    Only the primary process of a data-parallel job touches files."""
    if resume or not primary:
        yield run_dir
        return
    check_fresh(run_dir)
    created = _missing_folders(run_dir)  # before remember() makes runs/
    previous = _remember(run_dir)
    try:
        yield run_dir
    except BaseException:
        if not has_checkpoint(run_dir):
            _forget(run_dir, previous)
            _discard(run_dir, created)
        raise


def _remember(run_dir: Path) -> str | None:
    """Record run_dir as the latest run of this working directory; returns the record it replaced."""
    previous = LATEST.read_text(encoding="utf-8") if LATEST.is_file() else None
    _write_latest(str(run_dir.resolve()) + "\n")
    return previous


def _forget(run_dir: Path, previous: str | None) -> None:
    """Undo _remember(run_dir): put `previous` back."""
    if not LATEST.is_file() or LATEST.read_text(encoding="utf-8").strip() != str(run_dir.resolve()):
        return
    if previous is None:
        LATEST.unlink(missing_ok=True)
    else:
        _write_latest(previous)


def _missing_folders(run_dir: Path) -> list[Path]:
    """The folders a new run in run_dir would create (run_dir, missing parents, runs/), deepest first."""
    missing = {path for path in (run_dir, *run_dir.parents, RUNS) if not path.exists()}
    return sorted(missing, key=lambda path: len(path.absolute().parts), reverse=True)


def _discard(run_dir: Path, created: list[Path]) -> None:
    """Remove what a new run wrote before failing without a checkpoint: its config and metrics in a
    folder it created, then the folders it created, where empty. Nothing else is ever deleted."""
    if run_dir in created:
        for name in (CONFIG, HISTORY, METRICS):
            (run_dir / name).unlink(missing_ok=True)
    for folder in created:  # deepest first; rmdir refuses a folder that holds anything
        with contextlib.suppress(OSError):
            folder.rmdir()


def _write_latest(text: str) -> None:
    LATEST.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(LATEST, text)


def latest_run() -> Path:
    if not LATEST.is_file():
        raise RnnclfError(
            "no trained run found here (./runs/LATEST is missing); train one with 'rnnclf train CONFIG' "
            "or pass --model RUN_DIR_OR_CHECKPOINT"
        )
    return Path(LATEST.read_text(encoding="utf-8").strip())


def latest_in(folder: Path) -> Path | None:
    """The run that FOLDER/LATEST names, if any (for marking it in `rnnclf runs`)."""
    try:
        recorded = (folder / LATEST.name).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return Path(recorded).resolve() if recorded else None


def resolve_checkpoint(model: str | None) -> Path:
    """--model value (a run folder or a checkpoint file; None: the latest run) -> checkpoint path.

    A run folder means its best.pt, or last.pt when no epoch has finished yet. A folder holding a
    language model only (rnnclf pretrain, or a two-stage run stopped before its classifier) is one line
    saying what works on it."""
    path = latest_run() if model is None else Path(model)
    if path.is_dir():
        held = stage(path)
        if held.startswith("language model"):
            raise RnnclfError(language_model_only(path, held))
        for name in (BEST, LAST):
            if (path / name).is_file():
                return path / name
        raise RnnclfError(f"{path}: no {BEST} or {LAST} in this run folder")
    if not path.exists():
        raise RnnclfError(f"{path}: no such run folder or checkpoint")
    return path


def language_model_only(path: Path, held: str) -> str:
    """The line for predict, eval, info and export on a folder that holds no classifier yet."""
    if (path / PRETRAIN).is_dir():  # a two-stage run stopped in or after its first stage
        return (
            f"{path}: a two-stage run whose {held}, no classifier yet: predict, eval, info and export "
            f"need one; finish the run with: {resume_hint(path)} ('rnnclf runs' shows its perplexity)"
        )
    return (
        f"{path}: a {held} (rnnclf pretrain), not a classifier: predict, eval, info and export need one; "
        f"'rnnclf runs' shows its perplexity, and rnnclf train CONFIG --set model.init_from={path} "
        "trains a classifier from it"
        + ("" if held.endswith("finished") else f" (finish it first: {resume_hint(path, 'pretrain')})")
    )


def is_run(folder: Path) -> bool:
    return folder.is_dir() and any((folder / name).exists() for name in RUN_FILES)


# --- what training writes, and reading it back ------------------------------------------------------------


def write_config(run_dir: Path, text: str) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(run_dir / CONFIG, text)


def write_history(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    """metrics.jsonl, rewritten whole from the rows so a resumed run never duplicates a line."""
    atomic_write(run_dir / HISTORY, "".join(json.dumps(row) + "\n" for row in rows))


def write_metrics(run_dir: Path, metrics: dict[str, Any]) -> None:
    atomic_write(run_dir / METRICS, json.dumps(metrics, indent=2) + "\n")


def read_history(run_dir: Path, strict: bool = False) -> list[dict[str, Any]]:
    """metrics.jsonl rows, one per finished epoch. strict: a missing file or a bad line is an error
    (for pictures); otherwise what can be read (for listings: a torn line of an old run is skipped)."""
    path = run_dir / HISTORY
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        if strict:
            raise RnnclfError(f"{run_dir}: no {HISTORY} (no epoch has finished)") from None
        return []
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            if strict:
                raise RnnclfError(f"{path}: line {number}: not JSON") from None
            continue
        if isinstance(row, dict) and "epoch" in row:
            rows.append(row)
    return rows


def read_metrics(run_dir: Path) -> dict[str, Any] | None:
    """metrics.json, or None when training has not finished (or the file is unreadable)."""
    try:
        metrics = json.loads((run_dir / METRICS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return metrics if isinstance(metrics, dict) else None
