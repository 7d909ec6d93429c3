"""`tune.folds: K`: each trial scored as the mean over K folds of the training split, for small
validation sets where one split's score is noisy.

The folds are written once per tune as plain JSON-lines files (TUNE_DIR/folds/train-K.jsonl and
valid-K.jsonl: stratified, drawn with train.seed), and a fold's config points data.train and data.valid
at them. Training needs no other change, and the preprocessing cache (keyed by the files' content)
prepares each fold once for every trial that shares its text settings.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from rnnclf.config import Config, validate
from rnnclf.data import read_configured
from rnnclf.errors import RnnclfError
from rnnclf.files import atomic_write

FOLDS = "folds"


def _stratified_folds(keys: list[str], count: int, seed: int) -> list[list[int]]:
    """Indices dealt into `count` folds class by class (each class spread evenly), shuffled by seed."""
    by_class: dict[str, list[int]] = {}
    for index, key in enumerate(keys):
        by_class.setdefault(key, []).append(index)
    generator = random.Random(seed)
    folds: list[list[int]] = [[] for _ in range(count)]
    turn = 0
    for key in sorted(by_class):
        members = by_class[key]
        generator.shuffle(members)
        for index in members:
            folds[turn % count].append(index)
            turn += 1
    return [sorted(fold) for fold in folds]


def write_folds(config: Config, tune_dir: Path) -> list[tuple[str, str]]:
    """K (train, valid) JSON-lines file pairs from the training file; the same on every call (seeded)."""
    count, data = config.tune.folds, config.data
    if data.format not in ("auto", "jsonl"):
        raise RnnclfError(
            f"tune.folds = {count}: needs data.format auto or jsonl (the folds are JSON-lines files read "
            f"beside the test file), got {data.format}"
        )
    examples = read_configured(data.train, data)
    if len(examples) < 2 * count:
        raise RnnclfError(f"tune.folds = {count}: {data.train} has only {len(examples)} documents")
    keys = [",".join(label) if isinstance(label, tuple | list) else str(label) for label in examples.labels]
    folds = _stratified_folds(keys, count, config.train.seed)
    folder = tune_dir / FOLDS
    folder.mkdir(parents=True, exist_ok=True)

    def lines(indices: list[int]) -> str:
        rows = (
            {
                data.text_column: examples.texts[i],
                data.label_column: list(label) if isinstance(label, tuple) else label,
            }
            for i in indices
            for label in (examples.labels[i],)
        )
        return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)

    pairs = []
    for number, held_out in enumerate(folds):
        kept = sorted(set(range(len(examples))) - set(held_out))
        train, valid = folder / f"train-{number}.jsonl", folder / f"valid-{number}.jsonl"
        if not train.exists():  # a resumed tune keeps its folds (the same by construction)
            atomic_write(train, lines(kept))
            atomic_write(valid, lines(held_out))
        pairs.append((str(train.resolve()), str(valid.resolve())))
    return pairs


def fold_config(config: Config, files: tuple[str, str]) -> Config:
    """`config` trained on one fold: its train and valid files (JSON lines, the user's column names)."""
    raw: dict[str, Any] = config.to_dict()
    # The user's own columns, and the format picked by extension (.jsonl): the test file is read as before.
    raw["data"].update(train=files[0], valid=files[1])
    return validate(raw, "tune.folds")
