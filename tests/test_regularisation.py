"""AWD-LSTM-style regularisation: variational (locked) dropout and weight drop on the recurrent weights.
Each must act while training (and only then), keep the fused kernel's results otherwise, and leave the
checkpoint's keys unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import write_tiny_project
from torch import nn
from typer.testing import CliRunner

from rnnclf.cli.app import app
from rnnclf.config import ModelConfig
from rnnclf.models.classifier import Classifier, SequenceDropout, run_cell
from rnnclf.models.language_model import LanguageModel
from rnnclf.runs import checkpoint


def test_variational_dropout_keeps_one_mask_along_time() -> None:
    torch.manual_seed(0)
    ones = torch.ones(4, 50, 8)  # (B, T, C)
    locked = SequenceDropout(0.5, variational=True).train()(ones)
    # Every time step of a document sees the same mask: rows equal along T, and both kept (2.0) and
    # dropped (0.0) channels occur.
    assert torch.equal(locked, locked[:, :1].expand_as(locked))
    assert set(locked.unique().tolist()) == {0.0, 2.0}
    # Plain dropout draws a new mask per step.
    plain = SequenceDropout(0.5, variational=False).train()(ones)
    assert not torch.equal(plain, plain[:, :1].expand_as(plain))
    # Evaluation: identity either way.
    assert torch.equal(SequenceDropout(0.5, variational=True).eval()(ones), ones)


def test_weight_drop_masks_the_recurrent_weights_for_the_whole_batch() -> None:
    torch.manual_seed(0)
    cell = nn.LSTM(5, 4, batch_first=True).train()
    x = torch.randn(3, 7, 5)
    torch.manual_seed(1)
    dropped_states = run_cell(cell, x, weight_drop=0.5)
    # The same draw by hand: the mask the call used, applied to a copy of the cell.
    torch.manual_seed(1)
    mask = nn.functional.dropout(torch.ones_like(cell.weight_hh_l0), 0.5, training=True)
    copy = nn.LSTM(5, 4, batch_first=True)
    copy.load_state_dict(cell.state_dict())
    with torch.no_grad():
        copy.weight_hh_l0.mul_(mask)
    assert torch.allclose(dropped_states, copy(x)[0], atol=1e-6)
    assert not torch.allclose(dropped_states, cell(x)[0], atol=1e-3)
    # The gradient reaches the stored weights through the mask: zero exactly where a weight was dropped.
    dropped_states.sum().backward()
    grad = cell.weight_hh_l0.grad
    assert torch.all(grad[mask == 0] == 0) and grad[mask != 0].abs().sum() > 0
    # Evaluation mode: the plain cell.
    cell.eval()
    assert torch.equal(run_cell(cell, x, weight_drop=0.5), cell(x)[0])


@pytest.mark.parametrize("model_class", [Classifier, LanguageModel])
def test_switches_leave_checkpoint_keys_and_evaluation_unchanged(model_class: type) -> None:
    plain = ModelConfig(embedding_dim=8, hidden_dim=6, num_layers=2, bidirectional=True)
    awd = plain.model_copy(update={"weight_drop": 0.5, "variational_dropout": True})
    args = (30, 3) if model_class is Classifier else (30,)
    torch.manual_seed(0)
    first = model_class(*args, plain)
    torch.manual_seed(0)
    second = model_class(*args, awd)
    assert first.state_dict().keys() == second.state_dict().keys()
    ids = torch.randint(2, 30, (4, 9))
    lengths = torch.tensor([9, 5, 3, 1])
    first.eval(), second.eval()
    assert torch.equal(first(ids, lengths)[0], second(ids, lengths)[0])
    # While training, the switched-on model gives other numbers than the plain one under the same seed.
    first.train(), second.train()
    torch.manual_seed(3)
    plain_out = first(ids, lengths)[0]
    torch.manual_seed(3)
    assert not torch.equal(plain_out, second(ids, lengths)[0])


def test_training_with_both_switches_through_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_tiny_project(tmp_path / "project")
    monkeypatch.chdir(tmp_path)
    settings = ["--set", "model.weight_drop=0.3", "--set", "model.variational_dropout=true"]
    result = CliRunner().invoke(app, ["train", str(config), *settings, "--run-dir", "awd", "--quiet"])
    assert result.exit_code == 0, result.output
    saved = checkpoint.load("awd/best.pt")
    assert saved["config"]["model"]["weight_drop"] == 0.3
    assert saved["config"]["model"]["variational_dropout"] is True
    # The tiny corpus is learnable (3 classes): the regularised model still learns it.
    final = json.loads(Path("awd/metrics.json").read_text())
    assert final["valid"]["accuracy"] > 0.6, final["valid"]
