#!/usr/bin/env python3
"""fastText baseline on the same split (needs `pip install fasttext-wheel`; not an rnnclf dependency).

Texts get rnnclf's basic_english tokens (the same input rnnclf sees), then fastText's supervised mode
with word bigrams, 2 threads. Prints test accuracy and the wall time of training, median of --seeds.

    python bench/fasttext_baseline.py --train ../shared/data/imdb/train.csv.gz \
        --test ../shared/data/imdb/test.csv.gz
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import fasttext

from rnnclf.data import read_examples
from rnnclf.text.tokenizers import get_tokenizer


def write(path: Path, texts: list[str], labels: list[str]) -> None:
    tokenize = get_tokenizer("basic_english")
    with path.open("w", encoding="utf-8") as file:
        for text, label in zip(texts, labels, strict=True):
            file.write(f"__label__{label.replace(' ', '_')} {' '.join(tokenize(text))}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", required=True)
    parser.add_argument("--test", required=True)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    train, test = read_examples(args.train), read_examples(args.test)
    with tempfile.TemporaryDirectory() as folder:
        train_path, test_path = Path(folder) / "train.txt", Path(folder) / "test.txt"
        write(train_path, train.texts, train.labels)
        write(test_path, test.texts, test.labels)
        accuracies, times = [], []
        for seed in range(args.seeds):
            started = time.perf_counter()
            model = fasttext.train_supervised(
                str(train_path), wordNgrams=2, epoch=args.epochs, lr=args.lr, thread=2, seed=seed, verbose=0
            )
            times.append(time.perf_counter() - started)
            _, precision, _ = model.test(str(test_path))  # precision@1 = accuracy for one label each
            accuracies.append(precision)
    print(
        f"fastText bigrams, {args.epochs} epochs: test accuracy median {statistics.median(accuracies):.4f} "
        f"(min {min(accuracies):.4f}, max {max(accuracies):.4f}), "
        f"training median {statistics.median(times):.1f} s"
    )


if __name__ == "__main__":
    main()
