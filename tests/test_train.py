"""Tests for weight averaging (rnnclf.training.averaging, `train.ema`): the arithmetic, and what a run
with it saves
and reports."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn
from typer.testing import CliRunner

from rnnclf.cli.app import app
from rnnclf.inference.predict import Predictor
from rnnclf.runs import checkpoint
from rnnclf.training.averaging import Average


def test_average_follows_the_ramped_exponential_rule() -> None:
    model = nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.fill_(0.0)
    average = Average(model, decay=0.5)
    expected = torch.zeros(1, 2)
    for n, value in enumerate([1.0, 2.0, 4.0, 8.0], start=1):
        with torch.no_grad():
            model.weight.fill_(value)
        average.update(model)
        keep = min(0.5, (1 + n) / (10 + n))  # 2/11, 3/12, 4/13, 0.5
        expected = keep * expected + (1 - keep) * value
        torch.testing.assert_close(average.weights["weight"], expected)
    # The saved state has the average in place of the weight, and the model keeps its own.
    assert torch.equal(average.state_dict(model)["weight"], expected)
    assert torch.equal(model.weight, torch.full((1, 2), 8.0))


def test_a_run_with_averaging_saves_and_scores_the_average(tiny_config: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "train",
            str(tiny_config),
            "--quiet",
            "--run-dir",
            "run",
            "--set",
            "train.ema=0.95",
            "--set",
            "output.keep_last=true",
        ],
    )
    assert result.exit_code == 0, result.output
    state = checkpoint.load(tmp_path / "run" / "last.pt")
    assert state["average_updates"] > 0
    differs = [not torch.equal(state["model"][k], state["training_model"][k]) for k in state["model"]]
    assert any(differs), "the saved model must be the average, not the raw weights"
    # best.pt is the model to use: the average alone, no raw weights or optimizer state.
    state = checkpoint.load(tmp_path / "run" / "best.pt")
    assert "training_model" not in state and "optimizer" not in state
    # eval/predict use the average, and its accuracy is the one the run reported.
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text(encoding="utf-8"))
    predictor = Predictor.from_checkpoint(tmp_path / "run" / "best.pt")
    model_weights = predictor.model.state_dict()
    assert all(
        torch.equal(model_weights[k], state["model"][k].to(model_weights[k].dtype)) for k in state["model"]
    )
    best_row = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert metrics["valid"]["accuracy"] == max(row["valid_accuracy"] for row in best_row)
