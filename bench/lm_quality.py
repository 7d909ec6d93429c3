#!/usr/bin/env python3
"""How well the language model learns with a sampled softmax of S words against the full softmax.

Trains rnnclf's LanguageModel (unidirectional, E64/H64, no dropout, fp32, batch 32, Adam 0.003, one
thread) on the first 1,600 documents of a data file for two epochs, once per --samples value (0: the
full softmax), and prints the held-out perplexity (full softmax, the next 100 documents) after each
epoch. Small and slow-ish on purpose: it checks learning, not speed (bench/lm_speed.py measures speed).

    python bench/lm_quality.py --data /tmp/imdb2000.csv --samples 0 256 1024 4096
"""

from __future__ import annotations

import argparse
import math

from rnnclf.runtime import prepare_cpu

prepare_cpu()

import torch  # noqa: E402

from rnnclf.batching import collate, training_batches  # noqa: E402
from rnnclf.config import validate  # noqa: E402
from rnnclf.models.language_model import LanguageModel  # noqa: E402
from rnnclf.prepare import prepare  # noqa: E402
from rnnclf.pretraining.loop import subset  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a labeled data file (its texts are used)")
    parser.add_argument("--samples", type=int, nargs="+", default=[0, 256, 1024, 4096])
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = validate(
        {
            "data": {"train": args.data},
            "text": {"max_length": 200},
            "model": {"embedding_dim": 64, "hidden_dim": 64, "bidirectional": False,
                      "dropout": 0.0, "embedding_dropout": 0.0},
        }
    )  # fmt: skip
    data = prepare(config).train
    vocab = int(data.ids.max()) + 1
    train, held = subset(data, torch.arange(0, 1600)), subset(data, torch.arange(1600, 1700))
    print(f"vocabulary {vocab}, {int(train.lengths.sum()):,} training words")
    for samples in args.samples:
        torch.manual_seed(0)
        model = LanguageModel(vocab, config.model)
        model.set_unigram(torch.bincount(train.ids.long(), minlength=vocab))
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
        for epoch in range(2):
            for batch in training_batches(train.lengths, 32, torch.Generator().manual_seed(epoch)):
                ids, lengths, _ = collate(train, batch)
                total, count = model(ids, lengths, samples)
                optimizer.zero_grad()
                (total / count).backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
            model.eval()
            with torch.no_grad():
                ids, lengths, _ = collate(held, torch.arange(len(held)))
                total, count = model(ids, lengths)
            model.train()
            name = f"sampled {samples}" if samples else "full softmax"
            print(
                f"{name:>14}: epoch {epoch + 1} held-out perplexity {math.exp(float(total / count)):.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
