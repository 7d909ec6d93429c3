"""Splitting a data set into training and validation examples, class by class (stratified)."""

from __future__ import annotations

import math
import random

from rnnclf.data.source import MAX_COLUMNS_LISTED, log, plural, quote
from rnnclf.errors import RnnclfError


def stratified_split(labels: list[str], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train_indices, valid_indices), both sorted, with about `fraction` of every class in valid.

    A class gets round(fraction * size) validation examples, but at least one when it has two or more and
    fraction > 0, and never all of them (so every class can still be learned). Deterministic for a seed.
    """
    if not (isinstance(fraction, (int, float)) and not math.isnan(fraction) and 0 <= fraction < 1):
        raise RnnclfError(f"validation fraction must be at least 0 and below 1, got {fraction!r}")
    by_class: dict[str, list[int]] = {}
    for index, label in enumerate(labels):
        by_class.setdefault(label, []).append(index)
    generator = random.Random(seed)
    train: list[int] = []
    valid: list[int] = []
    # Sorted classes: the shuffles must not depend on which class happens to come first in the file.
    for label in sorted(by_class):
        indices = by_class[label]
        generator.shuffle(indices)
        count = validation_count(len(indices), fraction)
        valid.extend(indices[:count])
        train.extend(indices[count:])
    singletons = [label for label, indices in by_class.items() if len(indices) == 1]
    if fraction > 0 and singletons:
        log.warning(
            "%s a single example and no validation example: %s",
            plural(len(singletons), "class has", "classes have"),
            ", ".join(map(quote, sorted(singletons)[:MAX_COLUMNS_LISTED])),
        )
    return sorted(train), sorted(valid)


def validation_count(size: int, fraction: float) -> int:
    count = round(fraction * size)
    if fraction > 0 and size >= 2:
        count = max(count, 1)
    return min(count, max(size - 1, 0))
