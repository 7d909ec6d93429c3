#!/usr/bin/env python3
"""Preprocessing speed: read, tokenize, build the vocabulary and numericalize IMDB train + test.

Three measurements, each the median of --repeats runs in fresh processes (so every cold run pays for
its own worker start-up and nothing is warm in memory); the clock covers the work only, not Python and
torch start-up:
  baseline  the straightforward single-process pipeline (csv.DictReader, torchtext's regex
            basic_english, Counter, per-token dict lookups into Python lists), as in the lecture;
  cold      rnnclf's prepare() with the cache disabled;
  cached    rnnclf's prepare() with the cache filled by an earlier run (same data, same settings).

    python bench/preprocess_speed.py --config configs/imdb.yaml --repeats 3
    rnnclf init-config > /tmp/default.yaml; D=$PWD/../shared/data/imdb   # the default config:
    python bench/preprocess_speed.py --config /tmp/default.yaml --repeats 3 \
        --set data.train=$D/train.csv.gz --set data.test=$D/test.csv.gz
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile

CHILD = r"""
import json, sys, time
import csv, gzip, re
from collections import Counter
from rnnclf.config import load
from rnnclf.prepare import prepare  # imports torch: outside the timed part, for every mode
mode, config_path, overrides = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
config = load(config_path, overrides)
started = time.perf_counter()
if mode == "baseline":
    csv.field_size_limit(sys.maxsize)
    patterns = [(re.compile(p), r) for p, r in [
        (r"\'", " '  "), (r"\"", ""), (r"\.", " . "), (r"<br \/>", " "), (r",", " , "), (r"\(", " ( "),
        (r"\)", " ) "), (r"\!", " ! "), (r"\?", " ? "), (r"\;", " "), (r"\:", " "), (r"\s+", " ")]]
    def tokenize(line):
        line = line.lower()
        for pattern, replacement in patterns:
            line = pattern.sub(replacement, line)
        return line.split()
    def read(path):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    train = [tokenize(r["text"])[: config.text.max_length] for r in read(config.data.train)]
    test = [tokenize(r["text"])[: config.text.max_length] for r in read(config.data.test)]
    counts = Counter(t for d in train for t in d)
    itos = ["<pad>", "<unk>"] + [t for t, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
                                 if c >= config.text.min_freq][: config.text.max_tokens - 2]
    stoi = {t: i for i, t in enumerate(itos)}
    ids = [[stoi.get(t, 1) for t in d] for d in train + test]
    documents = len(ids)
else:
    prepared = prepare(config, use_cache=(mode == "cached"))
    documents = len(prepared.train) + len(prepared.valid) + len(prepared.test)
print(json.dumps({"seconds": time.perf_counter() - started, "documents": documents}))
"""


def run(mode: str, config: str, cache: str, overrides: list[str]) -> dict:
    env = {**__import__("os").environ, "RNNCLF_CACHE": cache}
    command = [sys.executable, "-c", CHILD, mode, config, json.dumps(overrides)]
    out = subprocess.run(command, capture_output=True, text=True, env=env)
    if out.returncode:
        raise SystemExit(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/imdb.yaml")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config KEY=VALUE")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        modes = ["cold", "cached"] + ([] if args.skip_baseline else ["baseline"])
        results = {}
        for mode in modes:
            if mode == "cached":
                run("cached", args.config, cache, args.overrides)  # fill the cache once
            times = [run(mode, args.config, cache, args.overrides) for _ in range(args.repeats)]
            results[mode] = statistics.median(t["seconds"] for t in times)
            spread = ", ".join(f"{t['seconds']:.2f}" for t in times)
            print(
                f"{mode:8s} median {results[mode]:.2f} s  ({spread}) for {times[0]['documents']:,} documents"
            )
        if "baseline" in results:
            print(f"ratio baseline / cold: {results['baseline'] / results['cold']:.1f}x")


if __name__ == "__main__":
    main()
