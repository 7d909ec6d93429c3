"""The linear baseline every run reports (rnnclf.training.baseline, `train.baseline`): fitted on the
training split,
scored on validation, printed beside the recurrent model's score with advice when it wins, recorded in
metrics.json, never saved in the model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from rnnclf.cli.app import app
from rnnclf.config import load
from rnnclf.inference.scoring import logits_for
from rnnclf.models.addons.linear import NgramLogistic
from rnnclf.models.addons.linear_fit import fit
from rnnclf.prepare import prepare
from rnnclf.runs import checkpoint
from rnnclf.training import baseline as baseline_module


def test_baseline_is_reported_and_recorded_but_not_saved(tiny_config: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["train", str(tiny_config), "--run-dir", "run"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text(encoding="utf-8"))
    reported = metrics["baseline"]
    assert reported["model"] == "naive-Bayes logistic regression, word 1-2-grams"
    # It is the NB logistic regression on 1-2-grams fitted on the training split, scored on validation.
    prepared = prepare(load(tmp_path / "run" / "config.yaml"))
    model = NgramLogistic(2, len(prepared.labels))
    fit(model, prepared.train, c=1.0)
    logits = logits_for(model, prepared.valid, torch.device("cpu"))
    accuracy = (logits.argmax(dim=-1) == prepared.valid.labels).float().mean().item()
    assert reported["valid"]["accuracy"] == pytest.approx(accuracy)
    assert f"valid accuracy {accuracy:.4f}" in result.output and "linear baseline" in result.output
    # Reporting only: nothing of it is in the saved model.
    state = checkpoint.load(tmp_path / "run" / "best.pt")
    assert not any(name.startswith("linear.") for name in state["model"])


def test_advice_only_when_the_baseline_wins() -> None:
    ours = {"accuracy": 0.80}
    assert baseline_module.advice(ours, {"valid": {"accuracy": 0.79}}) is None
    assert baseline_module.advice(ours, {"valid": {"accuracy": 0.80}}) is None  # a tie is no win
    assert baseline_module.advice(ours, None) is None
    line = baseline_module.advice(ours, {"valid": {"accuracy": 0.85}})
    assert line is not None and "0.8500 vs 0.8000" in line and "linear.ngrams" in line


def test_the_advice_line_appears_when_the_baseline_beats_an_untrained_model(tiny_config: Path) -> None:
    # No learning at all (lr ~ 0): the recurrent model is at chance and the baseline wins.
    result = CliRunner().invoke(
        app,
        ["train", str(tiny_config), "--run-dir", "run", "--set", "train.lr=1e-9", "--set", "train.epochs=1"],
    )
    assert result.exit_code == 0, result.output
    assert "advice: the linear baseline beats the recurrent model on validation" in result.output


def test_baseline_off_and_skipped_above_the_limit(
    tiny_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    off = CliRunner().invoke(
        app, ["train", str(tiny_config), "--run-dir", "off", "--set", "train.baseline=false"]
    )
    assert off.exit_code == 0, off.output
    assert "baseline" not in json.loads((tmp_path / "off" / "metrics.json").read_text())
    assert "linear baseline" not in off.output
    monkeypatch.setattr(baseline_module, "MAX_TOKENS", 10)
    large = CliRunner().invoke(app, ["train", str(tiny_config), "--run-dir", "large"])
    assert large.exit_code == 0, large.output
    skipped = json.loads((tmp_path / "large" / "metrics.json").read_text())["baseline"]
    assert "valid" not in skipped and "training tokens > 10" in skipped["skipped"]
    assert "linear baseline skipped:" in large.output


def test_advice_for_a_multilabel_run_names_no_linear_blend() -> None:
    # The config refuses linear.ngrams with data.multi_label: the advice must not suggest it.
    ours = {"multi_label": True, "micro_f1": 0.40}
    line = baseline_module.advice(ours, {"valid": {"multi_label": True, "micro_f1": 0.50}})
    assert line is not None and "micro-F1 (0.5000 vs 0.4000)" in line
    assert "linear.ngrams" not in line and "model.pretrained_vectors" in line


def test_advice_names_no_blend_for_a_run_that_blends_already() -> None:
    line = baseline_module.advice({"accuracy": 0.80}, {"valid": {"accuracy": 0.85}}, blended=True)
    assert line is not None and "linear.ngrams" not in line
