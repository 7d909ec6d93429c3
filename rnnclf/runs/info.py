"""What is known about trained runs: the table of runs under a folder (`rnnclf runs`) and the details
of one checkpoint (`rnnclf info`), as plain dicts the CLI prints as tables or JSON.

The runs table reads only the small text files of each run (config.yaml, metrics.jsonl, metrics.json),
never a checkpoint, so listing a hundred runs stays instant. A damaged or half-written run shows what
can be read and '-' for the rest: listing never fails because of one bad folder.
(Named runinfo, not inspect: a module called inspect would shadow the standard library's.)
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from rnnclf.errors import RnnclfError
from rnnclf.runs import rundir
from rnnclf.schema import monitor_of

TUNE_SUMMARY = "tune.json"  # what `rnnclf tune` leaves in its folder (rnnclf.tuning.outcome)


def model_summary(config: dict[str, Any]) -> str:
    """'lstm 2x256 bi, max' from a config dict: cell, layers x hidden size, direction, pooling; add-ons
    follow: ', ensemble of 3', ', + linear 1-2-grams'."""
    try:
        model = config["model"]
        direction = " bi" if model.get("bidirectional") else ""
        shape = f"{model['cell']} {model['num_layers']}x{model['hidden_dim']}{direction}, {model['pooling']}"
        members = (config.get("ensemble") or {}).get("members", 1)
        ngrams = (config.get("linear") or {}).get("ngrams", 0)
        return (
            shape
            + (f", ensemble of {members}" if members > 1 else "")
            + (f", + linear 1-{ngrams}-grams" if ngrams else "")
        )
    except (KeyError, TypeError, AttributeError):
        return "-"


def data_summary(path: str | None) -> str:
    """The training file as its folder and name (absolute paths in config.yaml are long)."""
    if not path:
        return "-"
    parts = Path(path).parts
    return "/".join(parts[-2:])


def _read_config(path: Path) -> dict[str, Any]:
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def _language_model_summary(config: dict[str, Any]) -> str:
    try:
        model = config["model"]
        direction = " bi" if model.get("bidirectional") else ""
        return f"language model, {model['cell']} {model['num_layers']}x{model['hidden_dim']}{direction}"
    except (KeyError, TypeError, AttributeError):
        return "language model"


def run_summary(folder: Path) -> dict[str, Any]:
    """One row of the runs table, from a run folder's text files. Numbers stay numbers (for --json).

    A classifier shows its monitored metric: the best epoch's on validation, and best.pt's on test. A
    language model (rnnclf pretrain, or a two-stage run that has not reached its classifier) shows
    its best validation perplexity, and its status names the stage."""
    config = _read_config(folder / rundir.CONFIG)
    section = lambda name: config.get(name) if isinstance(config.get(name), dict) else {}  # noqa: E731
    held = rundir.stage(folder)
    two_stage = (folder / rundir.PRETRAIN).is_dir()
    language_model = held.startswith("language model")
    source = folder / rundir.PRETRAIN if language_model and two_stage else folder
    history = rundir.read_history(source)
    metrics = rundir.read_metrics(source) or {}
    if not language_model and (metrics.get("kind") == "language_model" or any("valid_perplexity" in r for r in history)):
        language_model = True  # a pretrain folder read before rundir.stage could tell (no lm.pt yet)
    written = [
        path.stat().st_mtime
        for base in {folder, source}
        for path in base.iterdir()
        if path.name in (*rundir.RUN_FILES, rundir.METRICS, rundir.LANGUAGE_MODEL)
    ]
    if language_model:
        monitor = "valid_perplexity"
        test_score = None
        if two_stage:
            status = "stage 1/2 done" if held == "language model finished" else "stage 1/2 stopped"
        else:
            status = "done" if metrics else "stopped"
        model = _language_model_summary(config)
        planned = section("pretrain").get("epochs")
    else:
        monitor = monitor_of(section("train").get("monitor", "auto"), bool(section("data").get("multi_label")))
        test = metrics.get("test") if isinstance(metrics.get("test"), dict) else {}
        # The same metric on test as the one monitored on validation (micro-F1 for multi-label runs).
        test_score = test.get(monitor.removeprefix("valid_"))
        if metrics:
            status = "done"
        elif held in ("classifier stopped", "language model stopped"):
            status = "stopped"  # interrupted, or still training: --resume continues it
        else:
            status = "no epoch"
        model = model_summary(config)
        planned = section("train").get("epochs")
    best_rows = [row for row in history if row.get("best")]
    best = best_rows[-1] if best_rows else None
    test = metrics.get("test") if isinstance(metrics.get("test"), dict) else {}
    seconds = metrics.get("train_seconds")
    if seconds is None and history:
        seconds = sum(row.get("seconds", 0.0) for row in history)  # training steps only, no evaluation
    return {
        "name": folder.name,
        "path": str(folder),
        "date": time.strftime("%Y-%m-%d %H:%M", time.localtime(max(written))) if written else None,
        "status": status,
        "kind": "language model" if language_model else "classifier",
        "data": section("data").get("train"),
        "model": model,
        "epochs": len(history),
        "epochs_planned": planned,
        "monitor": monitor,
        "best_valid": best.get(monitor) if best else None,
        "best_epoch": best["epoch"] if best else None,
        "test_score": test_score,
        "test_accuracy": test.get("accuracy"),
        "train_seconds": seconds,
    }


def _is_tune(folder: Path) -> bool:
    return (folder / TUNE_SUMMARY).is_file()


def tune_summary(folder: Path) -> dict[str, Any]:
    """One row of the runs table for an `rnnclf tune` folder: its best trial's run, named as such."""
    try:
        summary = json.loads((folder / TUNE_SUMMARY).read_text(encoding="utf-8"))
        best = summary["best"]
        row = run_summary(Path(best["folder"]))
    except (OSError, ValueError, KeyError, TypeError):
        return {**run_summary(folder), "status": "tune: no best trial yet"}
    count = summary.get("trial_count", len(summary.get("trials", [])))
    return {
        **row,
        "name": folder.name,
        "path": str(folder),
        "status": f"tune: {count} trials",
        "model": f"best: trial {best['number']}, {row['model']}",
        "best_valid": best.get("valid", row["best_valid"]),
    }


def list_runs(folder: str | Path = "runs") -> list[dict[str, Any]]:
    """Every run folder directly under `folder` (or `folder` itself when it is a run), oldest first."""
    folder = Path(folder)
    if not folder.exists():
        raise RnnclfError(f"{folder}: no such folder (runs are made by 'rnnclf train CONFIG')")
    if not folder.is_dir():
        raise RnnclfError(f"{folder}: is a file; expected a folder of runs, e.g. runs/")
    if rundir.is_run(folder):
        candidates = [folder]
    else:
        try:
            candidates = sorted(entry for entry in folder.iterdir() if rundir.is_run(entry) or _is_tune(entry))
        except PermissionError:
            raise RnnclfError(f"{folder}: cannot read the folder (permission denied)") from None
    rows = [tune_summary(run) if _is_tune(run) else run_summary(run) for run in candidates]
    latest = rundir.latest_in(folder.parent if candidates == [folder] else folder)
    for row, run in zip(rows, candidates, strict=True):
        row["latest"] = latest is not None and run.resolve() == latest
    return sorted(rows, key=lambda row: (row["date"] or "", row["name"]))


def duration(seconds: float | None) -> str:
    """'-', '42s', '3m 05s', '2h 07m'."""
    if seconds is None:
        return "-"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


# --- one checkpoint ---------------------------------------------------------------------------------------


def coverage(path: str, config: Any, vocabulary: Any) -> dict[str, Any]:
    """Share of a data file's tokens (as the model sees them: tokenized, truncated) that are in the
    vocabulary; the rest become <unk>. Also the share of distinct words."""
    from rnnclf.data import read_configured
    from rnnclf.text.encoding import tokens_of

    examples = read_configured(path, config.data)
    counts: Counter[str] = Counter()
    for text in examples.texts:
        counts.update(tokens_of(text, config.text))
    total = sum(counts.values())
    known = sum(count for token, count in counts.items() if token in vocabulary)
    distinct_known = sum(1 for token in counts if token in vocabulary)
    return {
        "data": examples.source,
        "documents": len(examples),
        "tokens": total,
        "token_coverage": known / total if total else 0.0,
        "distinct_words": len(counts),
        "word_coverage": distinct_known / len(counts) if counts else 0.0,
    }


def _coverage_source(config: Any, data: str | None) -> str | None:
    """--data, else the run's test file, else its training file, whichever still exists."""
    if data is not None:
        return data
    for candidate in (config.data.test, config.data.valid, config.data.train):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def checkpoint_info(path: str | Path, data: str | None = None) -> dict[str, Any]:
    """Everything `rnnclf info` shows about one checkpoint: where it comes from, its config, vocabulary
    (size and coverage of a data set), labels, parameter count, format version and metrics."""
    from rnnclf.runs import checkpoint
    from rnnclf.models.addons import members_of, parameter_count
    from rnnclf.inference.predict import Predictor

    path = Path(path)
    state = checkpoint.load(path)
    predictor = Predictor(state, source=str(path))  # checks that the parts fit together
    config = predictor.config
    model = predictor.model
    embedding = sum(member.embedding.weight.numel() for member in members_of(model))
    info: dict[str, Any] = {
        "checkpoint": str(path),
        "format_version": state["format_version"],
        "rnnclf_version": state.get("rnnclf_version"),
        "epoch": state.get("epoch"),
        "model": model_summary(config.to_dict()),
        "config": config.to_dict(),
        "parameters": parameter_count(model),
        "embedding_parameters": embedding,
        "vocab_size": len(predictor.vocab),
        "labels": predictor.labels,
    }
    source = _coverage_source(config, data)
    try:
        info["coverage"] = coverage(source, config, predictor.vocab) if source else None
    except RnnclfError:
        if data is not None:
            raise  # the user named the file: its problem is the answer
        info["coverage"] = None  # the run's own data moved away since training; not worth failing over
    metrics = rundir.read_metrics(path.parent)
    if metrics is not None and path.name == rundir.BEST:
        info["metrics"] = {split: _scores(metrics[split]) for split in ("valid", "test") if split in metrics}
        info["metrics"]["best_epoch"] = metrics.get("best_epoch")
        info["metrics"]["train_seconds"] = metrics.get("train_seconds")
        # Each add-on part beside the whole, the blend's chosen share, and the linear baseline.
        for key in ("components", "blend", "baseline", "thresholds"):
            if key in metrics:
                info["metrics"][key] = metrics[key]
    else:  # last.pt, a copied checkpoint, or an unfinished run: the epoch rows inside the checkpoint
        history = state.get("history") or []
        last = history[-1] if history else None
        info["metrics"] = {"valid": _scores(last, prefix="valid_")} if last else {}
    return info


def _scores(report: dict[str, Any], prefix: str = "") -> dict[str, float]:
    names = ("accuracy", "macro_f1", "micro_f1", "loss")
    return {name: report[prefix + name] for name in names if prefix + name in report}
