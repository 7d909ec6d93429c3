#!/usr/bin/env python3
"""Language-model pretraining speed beside the classifier's, same encoder, same data, same run.

Trains rnnclf's LanguageModel (rnnclf pretrain's model) and the Classifier with the same embedding and
recurrent layers on IMDB's training documents (length-bucketed batches, bf16 by default) for a number
of steps after a warm-up, and prints token-directions/s for the language model (a bidirectional one
reads every word twice) and words/s for the classifier, median of --repeats.

    python bench/lm_speed.py --data ../shared/data/imdb/train.csv.gz --hidden 256 --embedding 128 \
        --batch 64 128 256 --samples 1024 --window 70

--window N trains the language model on windows of N words (rnnclf pretrain's pretrain.window); 0 on
whole documents. The classifier always reads whole documents.
"""

from __future__ import annotations

import argparse
import statistics
import time

from rnnclf.runtime import prepare_cpu

prepare_cpu()  # before torch starts its threads

import torch  # noqa: E402

from rnnclf.batching import collate, training_batches  # noqa: E402
from rnnclf.config import validate  # noqa: E402
from rnnclf.models.classifier import Classifier  # noqa: E402
from rnnclf.models.language_model import LanguageModel  # noqa: E402
from rnnclf.prepare import prepare  # noqa: E402
from rnnclf.pretraining.loop import windows  # noqa: E402
from rnnclf.runtime import autocast  # noqa: E402


def timed_steps(step, batches, warmup: int, steps: int) -> float:
    """Units per second over `steps` steps after `warmup` steps; step(batch) returns its units."""
    for batch in batches[:warmup]:
        step(batch)
    units, started = 0, time.perf_counter()
    for batch in batches[warmup : warmup + steps]:
        units += step(batch)
    return units / (time.perf_counter() - started)


def lm_stepper(
    lm: LanguageModel, data, samples: int, precision: str, device: torch.device = torch.device("cpu")
):
    """One language-model training step on a batch of document indices; returns token-directions.
    (`lm` already on `device`; bench/gpu_pretrain.py times it on CUDA.)"""
    optimizer = torch.optim.Adam(lm.parameters(), lr=1e-3, fused=True)

    def step(indices: torch.Tensor) -> int:
        ids, lengths, _ = collate(data, indices)
        with autocast(precision, device):
            total, count = lm(ids.to(device), lengths, samples)
        optimizer.zero_grad(set_to_none=True)
        (total / count).backward()
        torch.nn.utils.clip_grad_norm_(lm.parameters(), 1.0)
        optimizer.step()
        return int(lengths.sum()) * lm.directions

    return step


def classifier_stepper(
    classifier: Classifier, data, precision: str, device: torch.device = torch.device("cpu")
):
    """One classifier training step on a batch of document indices; returns words."""
    optimizer = torch.optim.Adam(classifier.parameters(), lr=1e-3, fused=True)

    def step(indices: torch.Tensor) -> int:
        ids, lengths, labels = collate(data, indices)
        with autocast(precision, device):
            logits = classifier(ids.to(device), lengths)
        loss = torch.nn.functional.cross_entropy(logits.float(), labels.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(classifier.parameters(), 1.0)
        optimizer.step()
        return int(lengths.sum())

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--embedding", type=int, default=128)
    parser.add_argument("--bidirectional", type=int, default=1)
    parser.add_argument("--batch", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--samples", type=int, nargs="+", default=[1024])
    parser.add_argument("--window", type=int, default=70, help="language-model window (0: documents)")
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--max-length", type=int, default=400)
    parser.add_argument("--tokens", type=int, default=400_000, help="words timed per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    config = validate(
        {
            "data": {"train": args.data},
            "text": {"max_length": args.max_length, "truncate": "head_tail"},
            "model": {"embedding_dim": args.embedding, "hidden_dim": args.hidden,
                      "bidirectional": bool(args.bidirectional), "dropout": 0.1, "embedding_dropout": 0.1},
        }
    )  # fmt: skip
    data = prepare(config).train
    vocab = int(data.ids.max()) + 1
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, vocabulary {vocab}, "
          f"{len(data)} documents, E{args.embedding} H{args.hidden} "
          f"{'bi' if args.bidirectional else 'uni'}directional, {args.precision}, "
          f"language-model window {args.window or 'whole documents'}")  # fmt: skip
    pieces = windows(data, args.window)
    for batch_size in args.batch:
        batches = training_batches(data.lengths, batch_size, torch.Generator().manual_seed(0))
        mean_words = float(data.lengths.float().mean()) * batch_size
        steps = max(3, int(args.tokens / mean_words))
        lm_batches = training_batches(pieces.lengths, batch_size, torch.Generator().manual_seed(0))
        lm_steps = max(3, int(args.tokens / (float(pieces.lengths.float().mean()) * batch_size)))
        for samples in args.samples:
            torch.manual_seed(0)
            lm = LanguageModel(vocab, config.model)
            lm.set_unigram(torch.bincount(data.ids.long(), minlength=vocab))
            lm_step = lm_stepper(lm, pieces, samples, args.precision)
            rates = [
                timed_steps(lm_step, lm_batches[r * lm_steps :], 2, lm_steps) for r in range(args.repeats)
            ]
            print(f"language model  batch {batch_size:4d} samples {samples:5d}: "
                  f"{statistics.median(rates):9,.0f} token-directions/s  "
                  f"(runs: {', '.join(f'{r:,.0f}' for r in rates)})", flush=True)  # fmt: skip
        torch.manual_seed(0)
        classifier = Classifier(vocab, 2, config.model)
        classifier_step = classifier_stepper(classifier, data, args.precision)
        rates = [timed_steps(classifier_step, batches[r * steps :], 2, steps) for r in range(args.repeats)]
        print(f"classifier      batch {batch_size:4d}              : "
              f"{statistics.median(rates):9,.0f} words/s             "
              f"(runs: {', '.join(f'{r:,.0f}' for r in rates)})", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
