"""Shared fixtures: an isolated preprocessing cache and working directory, and a tiny learnable data set.

Every test runs in its own empty working directory (the CLI writes runs/LATEST there) with the
preprocessing cache in a temporary folder, so no test reads or writes the user's ~/.cache or the
repository's runs/. Global state the CLI changes when it runs in-process (the "rnnclf" logger, the
SIGINT/SIGTERM handlers, torch's thread count) is put back after each test.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import random
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

import rnnclf  # noqa: F401  (before torch: it silences torch's warning about NumPy)

# isort: split
import torch

# Three classes, each signalled by its own keywords among shared filler words.
KEYWORDS = {
    "food": ["pizza", "pasta", "bread", "cheese", "soup"],
    "sports": ["goal", "match", "team", "score", "coach"],
    "tech": ["computer", "software", "chip", "code", "laptop"],
}
FILLER = ["the", "a", "of", "and", "to", "in", "is", "it", "that", "was", "on", "for", "with", "as", "this"]

TINY_CONFIG = """\
# Tiny end-to-end config for the tests. Run: rnnclf train tiny.yaml
data:
  train: train.csv
  test: test.csv
text:
  min_freq: 1
model:
  cell: lstm
  embedding_dim: 16
  hidden_dim: 16
  bidirectional: true
  pooling: max
train:
  epochs: 3
  batch_size: 8
  lr: 0.03
  seed: 7
  device: cpu
  precision: fp32
"""


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """$RNNCLF_CACHE -> a temporary folder for the whole session (shared: the tiny data repeats)."""
    folder = tmp_path_factory.mktemp("rnnclf-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RNNCLF_CACHE", str(folder))
        yield folder


@pytest.fixture(scope="session", autouse=True)
def _one_thread() -> Iterator[None]:
    """The models here are tiny: extra intra-op threads only add overhead (much of it on a busy
    2-core machine). Results do not depend on it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@contextlib.contextmanager
def cli_globals_restored() -> Iterator[None]:
    """Put back what the CLI changes when it runs in-process: the "rnnclf" logger (it stops propagating,
    which would hide warnings from caplog in later tests), the SIGINT/SIGTERM handlers, and the CPU's
    flush-denormals-to-zero mode (runtime.prepare_cpu sets it; hypothesis refuses to draw floats then)."""
    logger = logging.getLogger("rnnclf")
    handlers, propagate, level = list(logger.handlers), logger.propagate, logger.level
    signals = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        logger.handlers[:] = handlers
        logger.propagate, logger.level = propagate, level
        for number, handler in signals.items():
            signal.signal(number, handler)
        torch.set_flush_denormal(False)


@pytest.fixture(autouse=True)
def _isolated_test(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run in tmp_path (an empty working directory), with the CLI's global changes undone afterwards."""
    monkeypatch.chdir(tmp_path)
    with cli_globals_restored():
        yield


def make_documents(count: int, seed: int) -> list[tuple[str, str]]:
    """`count` short documents (cycling through the classes), each with two keywords of its class."""
    generator = random.Random(seed)
    labels = sorted(KEYWORDS)
    rows = []
    for i in range(count):
        label = labels[i % len(labels)]
        words = generator.sample(KEYWORDS[label], 2) + generator.sample(FILLER, generator.randint(2, 8))
        generator.shuffle(words)
        rows.append((" ".join(words), label))
    return rows


def write_csv(path: Path, rows: list[tuple[str, str]], header: tuple[str, str] = ("text", "label")) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_tiny_project(folder: Path) -> Path:
    """train.csv (90 documents), test.csv (30) and tiny.yaml in `folder`; returns the config's path."""
    write_csv(folder / "train.csv", make_documents(90, seed=1))
    write_csv(folder / "test.csv", make_documents(30, seed=2))
    config = folder / "tiny.yaml"
    config.write_text(TINY_CONFIG, encoding="utf-8")
    return config


@pytest.fixture
def tiny_config(tmp_path: Path) -> Path:
    """A tiny learnable data set and its config in tmp_path/project (the working directory is tmp_path,
    so the relative data paths only work if they resolve against the config's folder)."""
    return write_tiny_project(tmp_path / "project")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny model trained through the CLI once per session, for tests that only read it: the run
    folder (its parent's parent is the working directory it was trained in, holding runs/LATEST)."""
    from typer.testing import CliRunner

    from rnnclf.cli.app import app

    root = tmp_path_factory.mktemp("tiny-run")
    config = write_tiny_project(root / "project")
    with pytest.MonkeyPatch.context() as patch, cli_globals_restored():
        patch.chdir(root)
        # keep_last: tests read last.pt too (a finished run keeps only best.pt by default).
        result = CliRunner().invoke(app, ["train", str(config), "--quiet", "--set", "output.keep_last=true"])
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    return Path((root / "runs" / "LATEST").read_text(encoding="utf-8").strip())
