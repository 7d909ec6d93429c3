#!/usr/bin/env python3
"""Inference speed: `rnnclf eval` over a labelled file (documents/s) and `rnnclf predict "text"` from a
cold shell (seconds), each the median of --repeats runs of the real command in a fresh process.

Baseline for eval, measured in the same run: the same model scoring one document at a time (what a
naive loop over `model(text)` does), over the first --baseline-documents documents. Also prints the
size of the checkpoint that --model resolves to (a run folder's best.pt), which the cold predict reads.

    python bench/inference_speed.py --model runs/imdb --data ../shared/data/imdb/test.csv.gz --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

from rnnclf.rundir import resolve_checkpoint


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(result.stderr)
    return time.perf_counter() - started


def one_at_a_time(model: str, data: str, documents: int) -> float:
    """Documents/s when each document is scored alone (batch of one)."""
    from rnnclf.data import read_examples
    from rnnclf.predict import Predictor

    predictor = Predictor.from_checkpoint(resolve_checkpoint(model))
    config = predictor.config.data
    texts = read_examples(data, config.format, config.text_column, config.label_column).texts[:documents]
    started = time.perf_counter()
    for text in texts:
        predictor.probabilities([text])
    return len(texts) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="run folder or checkpoint")
    parser.add_argument("--data", required=True, help="labelled data file")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline-documents", type=int, default=1000)
    args = parser.parse_args()
    rnnclf = [sys.executable, "-m", "rnnclf"]
    path = resolve_checkpoint(args.model)
    print(f"checkpoint {path}: {path.stat().st_size / 1e6:,.1f} MB")

    report = json.loads(
        subprocess.run(
            [*rnnclf, "eval", "--model", args.model, "--data", args.data, "--json"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    count = report["n"]
    times = [
        timed([*rnnclf, "eval", "--model", args.model, "--data", args.data, "--json"])
        for _ in range(args.repeats)
    ]
    rate = count / statistics.median(times)
    print(
        f"rnnclf eval: {count:,} documents, median {statistics.median(times):.1f} s "
        f"({', '.join(f'{t:.1f}' for t in times)}) = {rate:,.0f} documents/s "
        f"(whole command: start-up, reading, tokenizing, scoring), accuracy {report['accuracy']:.4f}"
    )
    baseline = one_at_a_time(args.model, args.data, args.baseline_documents)
    print(f"baseline, one document at a time: {baseline:,.0f} documents/s; ratio {rate / baseline:.1f}x")

    text = "An honest, funny and moving film; the best I have seen this year."
    cold = [timed([*rnnclf, "predict", "--model", args.model, text]) for _ in range(max(args.repeats, 5))]
    print(
        f"rnnclf predict from a cold shell: median {statistics.median(cold):.2f} s "
        f"({', '.join(f'{t:.2f}' for t in cold)})"
    )


if __name__ == "__main__":
    main()
