#!/usr/bin/env python3
"""Optimizer step time: torch's default (foreach) implementation against the fused one rnnclf uses.

Why it matters: single-process training builds its optimizer with `fused=True` (one kernel per step),
data-parallel training under torchrun with `fused=False` (foreach); this measures what that choice
costs. Model: the recurrent model of --config (rnnclf.models.classifier.Classifier from its `model:`
section; add-ons
not included), by default the default config's (`rnnclf init-config`: bi-LSTM 128, embedding 128),
with a vocabulary of the config's text.max_tokens (50,000 by default; IMDB and most corpora fill it)
and --classes outputs. The optimizer is the config's, built by rnnclf.training.optimization.make_optimizer;
random gradients, gradient clipping as in training (train.clip_grad_norm). Each variant runs
alternately, several rounds, and the median step is reported.

    python bench/optimizer_step.py --rounds 5 --steps 20
    python bench/optimizer_step.py --config configs/imdb.yaml
"""

from __future__ import annotations

import argparse
import statistics
import time

from rnnclf.runtime import prepare_cpu

prepare_cpu()  # first thing: before torch starts its worker threads

import torch  # noqa: E402
from torch import nn  # noqa: E402

from rnnclf.config import Config, load, validate  # noqa: E402
from rnnclf.models.classifier import Classifier, parameter_count  # noqa: E402
from rnnclf.training.optimization import make_optimizer  # noqa: E402


def step_ms(model: nn.Module, optimizer: torch.optim.Optimizer, clip: float | None, steps: int) -> float:
    """Median milliseconds of clip + step over `steps` steps (after two warm-up steps)."""
    times = []
    for number in range(steps + 2):
        started = time.perf_counter()
        if clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        if number >= 2:
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="config file (default: the default config)")
    parser.add_argument("--vocab", type=int, help="vocabulary size (default: the config's text.max_tokens)")
    parser.add_argument("--classes", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    config: Config = load(args.config) if args.config else validate({})
    vocab = args.vocab or config.text.max_tokens or 50_000
    model = Classifier(vocab, args.classes, config.model)
    for parameter in model.parameters():
        parameter.grad = torch.randn_like(parameter) * 1e-3
    shape = config.model
    print(
        f"model: {shape.cell} {shape.hidden_dim} x {shape.num_layers} layer(s), "
        f"{'bi' if shape.bidirectional else 'uni'}directional, embedding {vocab:,} x {shape.embedding_dim}: "
        f"{parameter_count(model):,} weights; {config.train.optimizer}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    variants = {
        "foreach": make_optimizer(model, config, fused=False),
        "fused": make_optimizer(model, config, fused=True),
    }
    results: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, optimizer in variants.items():
            results[name].append(step_ms(model, optimizer, config.train.clip_grad_norm, args.steps))
    for name, values in results.items():
        rounds = ", ".join(f"{value:.1f}" for value in values)
        print(f"{name}: median {statistics.median(values):.1f} ms/step (rounds {rounds})")
    ratio = statistics.median(results["foreach"]) / statistics.median(results["fused"])
    print(f"fused is {ratio:.1f}x faster")


if __name__ == "__main__":
    main()
