#!/usr/bin/env python3
"""Tokenizing speed: the pure-Python loop against the compiled paths, on IMDB reviews.

Each figure is the median of --repeats runs over the same --texts reviews, in one process (warm:
imports and first-use costs are outside the clock), for what encoding.tokenize_plain returns (local
itos, ids, lengths: tokenized, truncated to max_length and numbered):
  python      the pure-Python loop (rnnclf.text.tokenizers, RNNCLF_FAST_TOKENS=0)
  arrow       rnnclf.text.fasttokens (pyarrow compute kernels), what tokenize_plain uses when installed
  tokenizers  Hugging Face tokenizers (if installed): a basic_english pipeline (normalizers Lowercase +
              Replace, pre-tokenizers WhitespaceSplit + Split, a WordLevel vocabulary of every
              token; token for token equal on IMDB, though Rust's lowercase differs from str.lower
              on a few characters), encode_batch_fast, ids only: the least work it can do

    python bench/tokenize_speed.py --texts 5000 --repeats 5
"""

from __future__ import annotations

import argparse
import csv
import gzip
import os
import statistics
import time
from collections.abc import Callable
from itertools import islice
from pathlib import Path

from rnnclf.config import TextConfig
from rnnclf.text import fasttokens
from rnnclf.text.encoding import tokenize_plain
from rnnclf.text.tokenizers import basic_english_tokenize

IMDB = Path(__file__).resolve().parents[2] / "shared" / "data" / "imdb" / "train.csv.gz"


def read_reviews(path: Path, count: int) -> list[str]:
    csv.field_size_limit(1 << 30)
    with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
        return [row[0] for row in islice(csv.reader(f), 1, count + 1)]


def median_seconds(work: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def hf_tokenizers(texts: list[str]) -> Callable[[], object] | None:
    try:
        from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers
        from tokenizers.models import WordLevel
    except ImportError:
        return None
    vocabulary: dict[str, int] = {"[UNK]": 0}
    for text in texts:
        for token in basic_english_tokenize(text):
            vocabulary.setdefault(token, len(vocabulary))
    tokenizer = Tokenizer(WordLevel(vocabulary, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Sequence(
        [
            normalizers.Lowercase(),
            normalizers.Replace('"', ""),
            normalizers.Replace("<br />", " "),
            normalizers.Replace(Regex("[\x1c-\x1f;:]"), " "),  # \x1c-\x1f: str.isspace, not Rust's
        ]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex(r"['.,()!?]"), behavior="isolated")]
    )
    encode = getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)
    return lambda: [encoding.ids for encoding in encode(texts)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=IMDB, help="a CSV(.gz) whose first column is the text")
    parser.add_argument("--texts", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-length", type=int, default=500)
    parser.add_argument("--truncate", default="head_tail")
    args = parser.parse_args()
    texts = read_reviews(args.data, args.texts)
    settings = TextConfig(tokenizer="basic_english", max_length=args.max_length, truncate=args.truncate)
    tokens = sum(len(basic_english_tokenize(text)) for text in texts)
    print(f"{len(texts)} texts, {tokens:,} tokens before truncation; medians of {args.repeats} runs")

    def python_loop() -> object:
        os.environ["RNNCLF_FAST_TOKENS"] = "0"
        try:
            return tokenize_plain(texts, settings)
        finally:
            del os.environ["RNNCLF_FAST_TOKENS"]

    contenders: dict[str, Callable[[], object] | None] = {
        "python": python_loop,
        "arrow": (lambda: tokenize_plain(texts, settings)) if fasttokens.available() else None,
        "tokenizers": hf_tokenizers(texts),
    }
    if contenders["arrow"] is not None:
        assert contenders["arrow"]() == python_loop(), "the compiled path differs from the reference"
    baseline = None
    for name, work in contenders.items():
        if work is None:
            print(f"{name:>10}: not installed")
            continue
        work()  # first use: imports, allocations
        seconds = median_seconds(work, args.repeats)
        baseline = baseline or seconds
        rate = tokens / seconds / 1e6
        print(f"{name:>10}: {seconds:.3f} s  {rate:5.2f} M tokens/s  x{baseline / seconds:.2f}")


if __name__ == "__main__":
    main()
