"""Scoring on several threads (rnnclf.inference.workers) gives exactly the logits of one thread, in data
order."""

from __future__ import annotations

import pytest
import torch

from rnnclf.batching import Encoded
from rnnclf.config import ModelConfig
from rnnclf.inference import scoring
from rnnclf.inference.workers import run_parallel
from rnnclf.models.classifier import Classifier


def _data(documents: int, vocab: int, generator: torch.Generator) -> Encoded:
    lengths = torch.randint(1, 30, (documents,), generator=generator)  # (N,) mixed lengths
    ids = torch.randint(2, vocab, (int(lengths.sum()),), generator=generator, dtype=torch.int32)
    return Encoded.from_lengths(ids, lengths, torch.zeros(documents, dtype=torch.int64))


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_parallel_scoring_equals_serial(monkeypatch: pytest.MonkeyPatch, precision: str) -> None:
    generator = torch.Generator().manual_seed(0)
    model = Classifier(50, 3, ModelConfig(embedding_dim=8, hidden_dim=8, bidirectional=True))
    data = _data(300, 50, generator)
    cpu = torch.device("cpu")
    monkeypatch.setattr(scoring, "scoring_threads", lambda device: 1)
    serial = scoring.logits_for(model, data, cpu, precision, batch_size=16)
    monkeypatch.setattr(scoring, "scoring_threads", lambda device: 3)
    parallel = scoring.logits_for(model, data, cpu, precision, batch_size=16)
    assert torch.equal(parallel, serial)
    # Each row is its own document's score: the first document scored alone gives row 0.
    alone = scoring.logits_for(model, data.slice(0, 1), cpu, precision)
    assert torch.allclose(alone[0], serial[0], atol=1e-5)
    assert torch.is_inference_mode_enabled() is False  # the caller's modes are untouched


def test_thread_count_is_restored_and_errors_reach_the_caller() -> None:
    before = torch.get_num_threads()

    def fail() -> None:
        raise ValueError("boom")

    seen: list[int] = []
    with pytest.raises(ValueError, match="boom"):
        run_parallel([lambda: seen.append(torch.get_num_threads()), fail, lambda: None], threads=2)
    assert torch.get_num_threads() == before
    assert seen == [1]  # jobs ran with one intra-op thread each
