"""The lecture's model and optimiser as an rnnclf config, shared by the speed benchmarks.

Embedding 128, one unidirectional LSTM layer of 256, last state, no dropout, batch 128, Adam 0.005,
vocabulary 20k (+2 specials), no gradient clipping. Imports only rnnclf.config (no torch), so a
benchmark's parent process can build it cheaply.
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
            },
            "train": {"batch_size": 128, "lr": 0.005, "clip_grad_norm": None, **train},
        }
    )
