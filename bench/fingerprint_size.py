#!/usr/bin/env python3
"""What lm.pt's document fingerprints cost: the size of a language model's lm.pt with and without them,
for a config's language model (its vocabulary and shape, untrained weights: the size does not depend
on training), and the time to fingerprint the training split. Prints one line per number.

    python bench/fingerprint_size.py configs/imdb-pretrained.yaml
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import rnnclf  # noqa: F401  (before torch)

# isort: split
import torch

from rnnclf.config import load
from rnnclf.models.language_model import LanguageModel
from rnnclf.prepare import split_texts
from rnnclf.pretraining.loop import build_corpus
from rnnclf.runs import checkpoint
from rnnclf.training.distributed import Processes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(2)
    config = load(args.config)
    started = time.perf_counter()
    corpus = build_corpus(config, Processes(torch.device("cpu")))
    print(f"corpus built (tokenized, vocabulary, fingerprints) in {time.perf_counter() - started:.1f}s")
    started = time.perf_counter()
    texts = split_texts(config)["train"]
    print(f"training split read again: {len(texts):,} documents in {time.perf_counter() - started:.1f}s")
    model = LanguageModel(len(corpus.vocab), config.model)
    state = {"config": config.to_dict(), "vocab": corpus.vocab.to_dict(), "labels": [],
             "model": model.state_dict(), "epoch": 1, "valid_perplexity": 1.0}  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        plain, marked = Path(folder) / "plain.pt", Path(folder) / "marked.pt"
        checkpoint.save(state, plain, kind=checkpoint.LANGUAGE_MODEL)
        checkpoint.save(
            {**state, "fingerprints": corpus.fingerprints}, marked, kind=checkpoint.LANGUAGE_MODEL
        )
        before, after = plain.stat().st_size, marked.stat().st_size
    print(
        f"documents fingerprinted: {corpus.fingerprints.numel():,} distinct, vocabulary {len(corpus.vocab):,}"
    )
    print(f"lm.pt without fingerprints: {before:,} bytes; with: {after:,} bytes")
    print(f"growth: {after - before:,} bytes = {100 * (after - before) / before:.2f}%")


if __name__ == "__main__":
    main()
