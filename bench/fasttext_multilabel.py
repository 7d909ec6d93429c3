#!/usr/bin/env python3
"""fastText one-vs-all baseline for multi-label data (GoEmotions), as BENCHMARKS.md reports it.

Needs `pip install fasttext-wheel "numpy<2"` (not rnnclf dependencies; fasttext-wheel 0.9.2's predict
fails under NumPy 2; torch is not needed: run it in a small venv with PYTHONPATH at this checkout).
Texts get rnnclf's basic_english tokens (the input rnnclf sees) and every label as a `__label__`
prefix. fastText trains with `-loss ova` (a sigmoid per label), 2 threads. The protocol, all choices
on the validation split:

1. a small grid (lr x epoch x wordNgrams), seed 0: each model's probabilities on valid, the one global
   threshold (0.05..0.95, as rnnclf's train.thresholds: global) maximising micro-F1; the grid point with
   the best valid micro-F1 wins;
2. that grid point trained with --seeds seeds; for each seed and each of rnnclf's two threshold rules
   (train.thresholds), the thresholds chosen on valid and the test split scored once at them:
   `global`, one threshold for every label maximising micro-F1; `per_label`, each label's own threshold
   maximising its F1 (ties, as rnnclf: nearest 0.5, then the lower). Prints micro- and macro-F1 per rule
   (median, min-max) and the training time: like against like with bench/multilabel_thresholds.py.

    PYTHONPATH=. /tmp/ftvenv/bin/python bench/fasttext_multilabel.py \\
        --train ../shared/data/goemotions/train.jsonl.gz --valid ../shared/data/goemotions/valid.jsonl.gz \\
        --test ../shared/data/goemotions/test.jsonl.gz --label-column labels
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from pathlib import Path

import fasttext
import numpy as np

from rnnclf.data import read_examples
from rnnclf.text.tokenizers import get_tokenizer

GRID = [round(0.05 * step, 2) for step in range(1, 20)]  # rnnclf.reports.multilabel_metrics.GRID
LRS, EPOCHS, NGRAMS = (0.1, 0.5), (5, 25), (1, 2)


def tokens(texts: list[str]) -> list[str]:
    tokenize = get_tokenizer("basic_english")
    return [" ".join(tokenize(text)) for text in texts]


def write(path: Path, texts: list[str], label_sets: list[tuple[str, ...]]) -> None:
    with path.open("w", encoding="utf-8") as file:
        for text, labels in zip(texts, label_sets, strict=True):
            prefix = " ".join(f"__label__{label.replace(' ', '_')}" for label in labels)
            file.write(f"{prefix} {text}\n")


def probabilities(model: fasttext.FastText._FastText, texts: list[str], names: list[str]) -> np.ndarray:
    """(N, L) each label's one-vs-all probability."""
    column = {f"__label__{name}": i for i, name in enumerate(names)}
    found, scores = model.predict(texts, k=-1, threshold=0.0)
    out = np.zeros((len(texts), len(names)))
    for row, (labels, values) in enumerate(zip(found, scores, strict=True)):
        for label, value in zip(labels, values, strict=True):
            if label in column:
                out[row, column[label]] = value
    return out


def f1_scores(gold: np.ndarray, chosen: np.ndarray) -> tuple[float, float]:
    """(micro-F1, macro-F1 over labels present in gold or predictions), as
    rnnclf.reports.multilabel_metrics."""
    tp = (gold & chosen).sum(axis=0)
    fp = (~gold & chosen).sum(axis=0)
    fn = (gold & ~chosen).sum(axis=0)
    micro = 2 * tp.sum() / max(2 * tp.sum() + fp.sum() + fn.sum(), 1)
    seen = (tp + fp + fn) > 0
    per_label = np.where(seen, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)
    return float(micro), float(per_label[seen].mean()) if seen.any() else 0.0


def best_threshold(probs: np.ndarray, gold: np.ndarray) -> tuple[float, float]:
    """(threshold, valid micro-F1): the best of GRID; ties to the value nearest 0.5, then the lower."""
    scored = [(f1_scores(gold, probs >= t)[0], -abs(t - 0.5), -t, t) for t in GRID]
    micro, _, _, threshold = max(scored)
    return threshold, micro


def per_label_thresholds(probs: np.ndarray, gold: np.ndarray) -> np.ndarray:
    """(L,) each label's threshold from GRID maximising that label's F1 on (probs, gold), both (N, L);
    ties to the value nearest 0.5, then the lower (rnnclf.reports.multilabel_metrics.choose_thresholds)."""
    scores = []  # (G, L): each label's F1 at each grid value
    for t in GRID:
        chosen = probs >= t
        tp = (gold & chosen).sum(axis=0)
        fp = (~gold & chosen).sum(axis=0)
        fn = (gold & ~chosen).sum(axis=0)
        scores.append(np.where(2 * tp + fp + fn > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0))
    table = np.array(scores)

    def best(label: int) -> float:
        pairs = zip(table[:, label], GRID, strict=True)
        return max(pairs, key=lambda pair: (pair[0], -abs(pair[1] - 0.5), -pair[1]))[1]

    return np.array([best(label) for label in range(probs.shape[1])])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for split in ("train", "valid", "test"):
        parser.add_argument(f"--{split}", required=True)
    parser.add_argument("--label-column", default="label")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    read = {
        split: read_examples(getattr(args, split), label_column=args.label_column, multi_label=True)
        for split in ("train", "valid", "test")
    }
    names = sorted({label for labels in read["train"].labels for label in labels})
    gold = {
        split: np.array([[name in labels for name in names] for labels in examples.labels])
        for split, examples in read.items()
    }
    texts = {split: tokens(examples.texts) for split, examples in read.items()}
    with tempfile.TemporaryDirectory() as folder:
        train_path = Path(folder) / "train.txt"
        write(train_path, texts["train"], read["train"].labels)

        def train(lr: float, epoch: int, ngrams: int, seed: int) -> tuple[object, float]:
            started = time.perf_counter()
            model = fasttext.train_supervised(
                str(train_path), loss="ova", lr=lr, epoch=epoch, wordNgrams=ngrams, thread=2, seed=seed,
                verbose=0,
            )  # fmt: skip
            return model, time.perf_counter() - started

        results = []
        for lr, epoch, ngrams in itertools.product(LRS, EPOCHS, NGRAMS):
            model, _ = train(lr, epoch, ngrams, 0)
            threshold, micro = best_threshold(probabilities(model, texts["valid"], names), gold["valid"])
            results.append((micro, lr, epoch, ngrams, threshold))
            print(
                f"grid lr {lr} epoch {epoch} wordNgrams {ngrams}: valid micro-F1 {micro:.4f} at {threshold}"
            )
        _, lr, epoch, ngrams, _ = max(results)
        print(f"chosen on valid: lr {lr}, epoch {epoch}, wordNgrams {ngrams}")
        found = {rule: {"micro": [], "macro": []} for rule in ("global", "per_label")}
        times = []
        for seed in range(1, args.seeds + 1):
            model, seconds = train(lr, epoch, ngrams, seed)
            valid = probabilities(model, texts["valid"], names)
            test = probabilities(model, texts["test"], names)
            threshold, _ = best_threshold(valid, gold["valid"])
            per_label = per_label_thresholds(valid, gold["valid"])
            shown = []
            for rule, chosen in (("global", test >= threshold), ("per_label", test >= per_label)):
                micro, macro = f1_scores(gold["test"], chosen)
                found[rule]["micro"].append(micro)
                found[rule]["macro"].append(macro)
                shown.append(f"{rule}: test micro-F1 {micro:.4f} macro-F1 {macro:.4f}")
            print(
                f"seed {seed}: thresholds chosen on valid: global {threshold}, per label "
                f"{per_label.min():.2f}-{per_label.max():.2f}; " + "; ".join(shown)
            )
            times.append(seconds)
    for rule, scores in found.items():
        micros, macros = scores["micro"], scores["macro"]
        print(
            f"fastText ova (lr {lr}, epoch {epoch}, wordNgrams {ngrams}), thresholds {rule} "
            "(chosen on valid): "
            f"test micro-F1 median {statistics.median(micros):.4f} ({min(micros):.4f}-{max(micros):.4f}), "
            f"macro-F1 median {statistics.median(macros):.4f} ({min(macros):.4f}-{max(macros):.4f})"
        )
    print(f"training median {statistics.median(times):.1f} s")


if __name__ == "__main__":
    main()
