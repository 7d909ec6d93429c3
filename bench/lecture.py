"""The lecture's model and optimiser as an rnnclf config, shared by the speed benchmarks.

The lecture's LSTM alone: embedding 128, one unidirectional LSTM layer of 256, last state, no dropout,
batch 128, Adam 0.005, vocabulary 20k (+2 specials), no gradient clipping. No add-ons: the linear
n-gram model and the ensemble are set off here (not left to the defaults), so a later change of a
default cannot add weights to what the benchmarks name "the lecture's model". Imports only
rnnclf.config (no torch), so a benchmark's parent process can build it cheaply.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rnnclf.config import Config, validate


def lecture_config(data: str, **train: Any) -> Config:
    """The lecture's settings on `data`; `train` adds or replaces train.* keys (precision, device...)."""
    return validate(
        {
            "data": {"train": str(Path(data).resolve())},
            "text": {"max_tokens": 20002},
            "model": {
                "cell": "lstm",
                "embedding_dim": 128,
                "hidden_dim": 256,
                "num_layers": 1,
                "bidirectional": False,
                "pooling": "last",
                "dropout": 0.0,
                "embedding_dropout": 0.0,
                "word_dropout": 0.0,
                "pretrained_vectors": None,
            },
            "linear": {"ngrams": 0},  # off: the RNN alone
            "ensemble": {"members": 1},  # one model
            "train": {"batch_size": 128, "lr": 0.005, "clip_grad_norm": None, "ema": None, **train},
        }
    )


def weight_count(vocab_size: int, classes: int) -> int:
    """Weights of the lecture's model: Embedding(V, 128), LSTM(128, 256) with both bias vectors (as
    torch's nn.LSTM and bench/seed_reference.py have them), Linear(256, C)."""
    embedding, hidden = 128, 256
    lstm = 4 * hidden * (embedding + hidden) + 2 * 4 * hidden
    return vocab_size * embedding + lstm + hidden * classes + classes
