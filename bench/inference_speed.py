#!/usr/bin/env python3
"""Inference speed: `rnnclf eval` over a labelled file (documents/s) and `rnnclf predict "text"` from a
cold shell (seconds), each the median of --repeats runs of the real command in a fresh process.

Baseline for eval, measured in the same run: the same model scoring one document at a time (what a
naive loop over `model(text)` does), over the first --baseline-documents documents. Also prints the
size of the checkpoint that --model resolves to (a run folder's best.pt), which the cold predict reads.

Floors, same run: `import torch` alone in a fresh process (what any cold predict pays), and the
model's scoring alone (scoring.logits_for over the already-encoded file, in this process: what eval
could reach if reading, tokenizing and start-up cost nothing). With --lines FILE (one short document a
line) and --lines-model RUN, it also times `rnnclf predict --file -` streaming FILE through stdin.

    python bench/inference_speed.py --model runs/imdb --data ../shared/data/imdb/test.csv.gz --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

from rnnclf.runs.rundir import resolve_checkpoint


def run(command: list[str], stdin: str | None = None) -> tuple[float, str]:
    """(seconds, stdout) of a command in a fresh process."""
    started = time.perf_counter()
    with open(stdin or "/dev/null", "rb") as source:
        result = subprocess.run(command, stdin=source, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(result.stderr)
    return time.perf_counter() - started, result.stdout


def timed(command: list[str], stdin: str | None = None) -> float:
    return run(command, stdin)[0]


def scoring_alone(model: str, data: str) -> tuple[int, float]:
    """(documents, documents/s) of scoring.logits_for alone over the encoded file (in this process)."""
    from rnnclf.data import read_examples
    from rnnclf.inference.predict import Predictor
    from rnnclf.inference.scoring import logits_for

    predictor = Predictor.from_checkpoint(resolve_checkpoint(model))
    config = predictor.config.data
    encoded = predictor.encode(
        read_examples(data, config.format, config.text_column, config.label_column).texts
    )
    started = time.perf_counter()
    logits_for(predictor.model, encoded, predictor.device, predictor.precision)
    return len(encoded), len(encoded) / (time.perf_counter() - started)


def summary(times: list[float], digits: int = 2) -> str:
    return f"median {statistics.median(times):.{digits}f} s ({', '.join(f'{t:.{digits}f}' for t in times)})"


def one_at_a_time(model: str, data: str, documents: int) -> float:
    """Documents/s when each document is scored alone (batch of one)."""
    from rnnclf.data import read_examples
    from rnnclf.inference.predict import Predictor

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
    parser.add_argument("--lines", help="one short document a line, for the streaming predict")
    parser.add_argument("--lines-model", help="run folder or checkpoint for --lines (default: --model)")
    args = parser.parse_args()
    rnnclf = [sys.executable, "-m", "rnnclf"]
    path = resolve_checkpoint(args.model)
    print(f"checkpoint {path}: {path.stat().st_size / 1e6:,.1f} MB")

    evals = [
        run([*rnnclf, "eval", "--model", args.model, "--data", args.data, "--json"])
        for _ in range(args.repeats)
    ]
    times = [seconds for seconds, _ in evals]
    report = json.loads(evals[-1][1])
    count = report["n"]
    rate = count / statistics.median(times)
    print(
        f"rnnclf eval: {count:,} documents, median {statistics.median(times):.1f} s "
        f"({', '.join(f'{t:.1f}' for t in times)}) = {rate:,.0f} documents/s "
        f"(whole command: start-up, reading, tokenizing, scoring), accuracy {report['accuracy']:.4f}"
    )
    baseline = one_at_a_time(args.model, args.data, args.baseline_documents)
    print(f"baseline, one document at a time: {baseline:,.0f} documents/s; ratio {rate / baseline:.1f}x")

    count, alone = scoring_alone(args.model, args.data)
    print(f"floor: the model's scoring alone, {count:,} encoded documents: {alone:,.0f} documents/s")

    text = "An honest, funny and moving film; the best I have seen this year."
    cold = [timed([*rnnclf, "predict", "--model", args.model, text]) for _ in range(max(args.repeats, 5))]
    print(f"rnnclf predict from a cold shell: {summary(cold)}")
    torch_alone = [timed([sys.executable, "-c", "import torch"]) for _ in range(max(args.repeats, 5))]
    print(f"floor: python -c 'import torch' from a cold shell: {summary(torch_alone)}")

    if args.lines:
        with open(args.lines, "rb") as file:
            lines = sum(1 for _ in file)
        command = [*rnnclf, "predict", "--model", args.lines_model or args.model, "--file", "-"]
        stream = [timed(command, stdin=args.lines) for _ in range(args.repeats)]
        rate = lines / statistics.median(stream)
        print(f"rnnclf predict --file - < {args.lines}: {lines:,} lines, {summary(stream)}: {rate:,.0f}/s")


if __name__ == "__main__":
    main()
