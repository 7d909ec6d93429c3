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

RUN_FILES = ("config.yaml", "metrics.jsonl", "best.pt", "last.pt")


def model_summary(model: dict[str, Any]) -> str:
    """'lstm 2x256 bi, max' from a config's model section: cell, layers x hidden size, direction, pooling
    (and ' + 2-grams' with a bag of n-grams, ', 3 members' for an ensemble, ', linear 1-3-grams 0.8' with
    a blended linear n-gram model and its share)."""
    try:
        direction = " bi" if model.get("bidirectional") else ""
        ngrams = f" + {model['ngrams']}-grams" if model.get("ngrams") else ""
        shape = f"{model['cell']} {model['num_layers']}x{model['hidden_dim']}{direction}"
        members = f", {model['members']} members" if model.get("members", 1) > 1 else ""
        linear = model.get("linear_ngrams", 0)
        blend = f", linear 1-{linear}-grams {model['linear_share']:g}" if linear else ""
        return f"{shape}, {model['pooling']}{ngrams}{members}{blend}"
    except (KeyError, TypeError):
        return "-"


def data_summary(path: str | None) -> str:
    """The training file as its folder and name (absolute paths in config.yaml are long)."""
    if not path:
        return "-"
    parts = Path(path).parts
    return "/".join(parts[-2:])


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _read_history(path: Path) -> list[dict[str, Any]]:
    rows = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return rows
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a torn last line of a run killed mid-write (older rnnclf); the rest still counts
        if isinstance(row, dict) and "epoch" in row:
            rows.append(row)
    return rows


def _read_config(path: Path) -> dict[str, Any]:
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def is_run(folder: Path) -> bool:
    return folder.is_dir() and any((folder / name).exists() for name in RUN_FILES)


def run_summary(folder: Path) -> dict[str, Any]:
    """One row of the runs table, from a run folder's text files. Numbers stay numbers (for --json)."""
    config = _read_config(folder / "config.yaml")
    section = lambda name: config.get(name) if isinstance(config.get(name), dict) else {}  # noqa: E731
    history = _read_history(folder / "metrics.jsonl")
    metrics = _read_json(folder / "metrics.json")
    metrics = metrics if isinstance(metrics, dict) else {}
    monitor = section("train").get("monitor", "valid_accuracy")
    best_rows = [row for row in history if row.get("best")]
    best = best_rows[-1] if best_rows else None
    test = metrics.get("test") if isinstance(metrics.get("test"), dict) else {}
    written = [path.stat().st_mtime for path in folder.iterdir() if path.name in (*RUN_FILES, "metrics.json")]
    if metrics:
        status = "done"
    elif (folder / "last.pt").exists():
        status = "stopped"  # interrupted, or still training: last.pt is what --resume continues
    else:
        status = "no epoch"
    seconds = metrics.get("train_seconds")
    if seconds is None and history:
        seconds = sum(row.get("seconds", 0.0) for row in history)  # training steps only, no evaluation
    return {
        "name": folder.name,
        "path": str(folder),
        "date": time.strftime("%Y-%m-%d %H:%M", time.localtime(max(written))) if written else None,
        "status": status,
        "data": section("data").get("train"),
        "model": model_summary(section("model")),
        "epochs": len(history),
        "epochs_planned": section("train").get("epochs"),
        "monitor": monitor,
        "best_valid": best.get(monitor) if best else None,
        "best_epoch": best["epoch"] if best else None,
        "test_accuracy": test.get("accuracy"),
        "train_seconds": seconds,
    }


def list_runs(folder: str | Path = "runs") -> list[dict[str, Any]]:
    """Every run folder directly under `folder` (or `folder` itself when it is a run), oldest first."""
    folder = Path(folder)
    if not folder.exists():
        raise RnnclfError(f"{folder}: no such folder (runs are made by 'rnnclf train CONFIG')")
    if not folder.is_dir():
        raise RnnclfError(f"{folder}: is a file; expected a folder of runs, e.g. runs/")
    if is_run(folder):
        candidates = [folder]
    else:
        try:
            candidates = sorted(entry for entry in folder.iterdir() if is_run(entry))
        except PermissionError:
            raise RnnclfError(f"{folder}: cannot read the folder (permission denied)") from None
    rows = [run_summary(run) for run in candidates]
    latest = _latest(folder.parent if candidates == [folder] else folder)
    for row, run in zip(rows, candidates, strict=True):
        row["latest"] = latest is not None and run.resolve() == latest
    return sorted(rows, key=lambda row: (row["date"] or "", row["name"]))


def _latest(folder: Path) -> Path | None:
    """The run that FOLDER/LATEST names (`rnnclf train` records it in ./runs/LATEST), if any."""
    try:
        recorded = (folder / "LATEST").read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return Path(recorded).resolve() if recorded else None


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
    from rnnclf.data import read_examples
    from rnnclf.prepare import truncator
    from rnnclf.text import get_tokenizer

    examples = read_examples(path, config.data.format, config.data.text_column, config.data.label_column)
    tokenize, cut = get_tokenizer(config.text.tokenizer), truncator(config.text)
    counts: Counter[str] = Counter()
    for text in examples.texts:
        counts.update(cut(tokenize(text)))
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
    from rnnclf import checkpoint
    from rnnclf.model import members_of, parameter_count
    from rnnclf.predict import Predictor

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
        "model": model_summary(config.to_dict()["model"]),
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
    metrics = _read_json(path.parent / "metrics.json")
    if isinstance(metrics, dict) and path.name == "best.pt":
        info["metrics"] = {split: _scores(metrics[split]) for split in ("valid", "test") if split in metrics}
        info["metrics"]["best_epoch"] = metrics.get("best_epoch")
        info["metrics"]["train_seconds"] = metrics.get("train_seconds")
    else:  # last.pt, a copied checkpoint, or an unfinished run: the epoch rows inside the checkpoint
        history = state.get("history") or []
        last = history[-1] if history else None
        info["metrics"] = {"valid": _scores(last, prefix="valid_")} if last else {}
    return info


def _scores(report: dict[str, Any], prefix: str = "") -> dict[str, float]:
    names = ("accuracy", "macro_f1", "loss")
    return {name: report[prefix + name] for name in names if prefix + name in report}
