"""Preparation (rnnclf.prepare): large data files are read and tokenized in parallel worker processes;
the result must be exactly what one process gives."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import write_tiny_project

from rnnclf import prepare as prepare_module
from rnnclf.config import load


def test_parallel_preparation_equals_the_serial_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = load(write_tiny_project(tmp_path / "project"))
    serial = prepare_module.prepare(config, use_cache=False)
    monkeypatch.setattr(prepare_module, "PARALLEL_MIN_BYTES", 0)  # train and test: two worker processes
    parallel = prepare_module.prepare(config, use_cache=False)
    assert parallel.vocab.get_itos() == serial.vocab.get_itos() and parallel.labels == serial.labels
    for name in ("train", "valid", "test"):
        one, other = getattr(serial, name), getattr(parallel, name)
        for field in ("ids", "offsets", "labels"):
            assert torch.equal(getattr(one, field), getattr(other, field)), (name, field)
