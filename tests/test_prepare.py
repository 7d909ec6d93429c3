"""Preparation (rnnclf.prepare): large data files are read and tokenized in parallel worker processes;
the result must be exactly what one process gives, on the compiled tokenizing path (rnnclf.text.fasttokens)
as on the pure-Python one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import write_tiny_project

from rnnclf import prepare as prepare_module
from rnnclf.config import load
from rnnclf.text import fasttokens


def test_parallel_preparation_equals_the_serial_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = load(write_tiny_project(tmp_path / "project"))
    serial = prepare_module.prepare(config, use_cache=False)
    monkeypatch.setattr(prepare_module, "PARALLEL_MIN_BYTES", 0)  # train and test: two worker processes
    parallel = prepare_module.prepare(config, use_cache=False)
    _assert_same(serial, parallel)


def _assert_same(expected: prepare_module.Prepared, actual: prepare_module.Prepared) -> None:
    assert actual.vocab.get_itos() == expected.vocab.get_itos() and actual.labels == expected.labels
    for name in ("train", "valid", "test"):
        one, other = getattr(expected, name), getattr(actual, name)
        for field in ("ids", "offsets", "labels"):
            assert torch.equal(getattr(one, field), getattr(other, field)), (name, field)


def test_compiled_tokenizing_in_forked_workers_equals_the_python_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("pyarrow", minversion="16")
    config = load(write_tiny_project(tmp_path / "project"))
    monkeypatch.setenv("RNNCLF_FAST_TOKENS", "0")
    reference = prepare_module.prepare(config, use_cache=False)
    monkeypatch.delenv("RNNCLF_FAST_TOKENS")
    monkeypatch.setattr(fasttokens, "MIN_TEXTS", 0)  # the tiny files take the compiled path
    serial = prepare_module.prepare(config, use_cache=False)  # pyarrow in use in this process...
    monkeypatch.setattr(prepare_module, "PARALLEL_MIN_BYTES", 0)
    parallel = prepare_module.prepare(config, use_cache=False)  # ...before the workers fork
    _assert_same(reference, serial)
    _assert_same(reference, parallel)
