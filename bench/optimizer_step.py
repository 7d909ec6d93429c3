#!/usr/bin/env python3
"""Optimizer step time: torch's default (foreach) implementation against the fused one rnnclf uses.

Model: configs/imdb.yaml's shape (vocabulary 50,002, bi-LSTM 128, 1-3-grams in 500,000 buckets of 16:
15M weights, 8.8M of them the n-gram table), random gradients, gradient clipping as in training.
Each variant runs alternately, several rounds, and the median step is reported.

    python bench/optimizer_step.py --rounds 5 --steps 20
"""

from __future__ import annotations

import argparse
import statistics
import time

from rnnclf.runtime import prepare_cpu

prepare_cpu()  # first thing: before torch starts its worker threads

import torch  # noqa: E402
from torch import nn  # noqa: E402

from rnnclf.config import ModelConfig  # noqa: E402
from rnnclf.model import Classifier, parameter_count  # noqa: E402


def step_ms(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int) -> float:
    """Median milliseconds of clip + step over `steps` steps (after two warm-up steps)."""
    times = []
    for number in range(steps + 2):
        started = time.perf_counter()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if number >= 2:
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    config = ModelConfig(embedding_dim=128, hidden_dim=128, ngrams=3)
    model = Classifier(50_002, 2, config)
    for parameter in model.parameters():
        parameter.grad = torch.randn_like(parameter) * 1e-3
    threads = torch.get_num_threads()
    print(f"model: {parameter_count(model):,} weights, torch {torch.__version__}, {threads} threads")
    variants = {
        "foreach": torch.optim.Adam(model.parameters(), lr=1e-3),
        "fused": torch.optim.Adam(model.parameters(), lr=1e-3, fused=True),
    }
    results: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, optimizer in variants.items():
            results[name].append(step_ms(model, optimizer, args.steps))
    for name, values in results.items():
        rounds = ", ".join(f"{value:.1f}" for value in values)
        print(f"Adam {name}: median {statistics.median(values):.1f} ms/step (rounds {rounds})")
    ratio = statistics.median(results["foreach"]) / statistics.median(results["fused"])
    print(f"fused is {ratio:.1f}x faster")


if __name__ == "__main__":
    main()
