#!/usr/bin/env python3
"""Training speed: rnnclf's own training step against the lecture's loop, same data, same run.

Model: the lecture's LSTM alone (bench/lecture.py: embedding 128, one unidirectional LSTM layer of 256,
last state, batch 128, Adam 0.005, vocabulary 20k; no add-ons), IMDB train with rnnclf's default
text.max_length and basic_english tokens. Words/s counts real tokens through the recurrent layer,
padding excluded, for both. The script stops if the model it built has other weights than the
lecture's (so it cannot measure a larger model under the lecture's name).

    python bench/train_speed.py --data ../shared/data/imdb/train.csv.gz --batches 40 --reference-batches 2

Prints one line per measurement and the ratio to the reference.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from rnnclf.runtime import prepare_cpu

prepare_cpu()  # first thing: before torch starts its worker threads

import torch  # noqa: E402
from lecture import lecture_config, weight_count  # noqa: E402  (bench/lecture.py, beside this script)

from rnnclf.batching import collate, padding_fraction, training_batches  # noqa: E402
from rnnclf.config import Config  # noqa: E402
from rnnclf.models.addons import PerMember  # noqa: E402
from rnnclf.models.classifier import Classifier, parameter_count  # noqa: E402
from rnnclf.prepare import prepare  # noqa: E402
from rnnclf.training.optimization import make_optimizer, make_schedule, train_step  # noqa: E402

HERE = Path(__file__).resolve().parent


def measure(config: Config, batches: int, warmup: int = 3) -> dict[str, float]:
    """Run `warmup + batches` real training steps; rates over the last `batches`."""
    prepared = prepare(config)
    torch.manual_seed(0)
    model = Classifier(len(prepared.vocab), len(prepared.labels), config.model)
    weights, expected = parameter_count(model), weight_count(len(prepared.vocab), len(prepared.labels))
    if weights != expected:
        sys.exit(f"not the lecture's model: {weights:,} weights, the lecture's LSTM has {expected:,}")
    net = PerMember(model)  # what training steps run, as in rnnclf.training.loop: logits (B, 1, C)
    optimizer = make_optimizer(model, config)  # fused, as in single-process training
    schedule = make_schedule(optimizer, config, 10_000)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    lengths = prepared.train.lengths
    order = training_batches(lengths, config.train.batch_size, torch.Generator().manual_seed(1))
    order = order[: warmup + batches]
    rates, words, seconds = [], 0, 0.0
    for number, indices in enumerate(order):
        batch = collate(prepared.train, indices)
        start = time.perf_counter()
        train_step(net, [model], batch, optimizer, schedule, scaler, config.train, torch.device("cpu"))
        elapsed = time.perf_counter() - start
        if number >= warmup:
            count = int(batch[1].sum())
            rates.append(count / elapsed)
            words, seconds = words + count, seconds + elapsed
    return {
        "weights": weights,
        "words_per_s": words / seconds,
        "median_batch_words_per_s": statistics.median(rates),
        "padding": padding_fraction(lengths, order[warmup:]),
    }


def reference(data: str, batches: int, max_length: int) -> float:
    script = HERE / "seed_reference.py"
    command = [sys.executable, str(script), data, "--batches", str(batches), "--max-len", str(max_length)]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return float(re.search(r"words_per_s=(\d+)", output).group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(HERE.parent.parent / "shared/data/imdb/train.csv.gz"))
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--reference-batches", type=int, default=2, help="0: skip the reference")
    parser.add_argument("--precision", nargs="+", default=["fp32", "bf16"])
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    results = {}
    for precision in args.precision:
        config = lecture_config(args.data, precision=precision)
        result = measure(config, args.batches)
        results[precision] = result["words_per_s"]
        print(
            f"rnnclf {precision}: {result['words_per_s']:,.0f} words/s over {args.batches} batches "
            f"(median batch {result['median_batch_words_per_s']:,.0f}), padding {result['padding']:.1%}, "
            f"model {result['weights']:,} weights"
        )
    if args.reference_batches:
        max_length = lecture_config(args.data).text.max_length
        rate = reference(args.data, args.reference_batches, max_length)
        print(f"seed reference (lecture loop, packed, max-len {max_length}): {rate:,.0f} words/s")
        for precision, value in results.items():
            print(f"ratio rnnclf {precision} / reference: {value / rate:.1f}x")


if __name__ == "__main__":
    main()
