"""Tests for `model.members`: an ensemble scores the mean of its members' probabilities, and training it
is training each member alone on the same batches (same gradients, same clipping)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from rnnclf import checkpoint
from rnnclf.cli import app
from rnnclf.config import Config, ModelConfig, TrainConfig
from rnnclf.model import Classifier, Ensemble, build_model, members_of
from rnnclf.predict import Predictor
from rnnclf.train import train_step

VOCAB, CLASSES = 40, 3


def model_config(**changes: object) -> ModelConfig:
    # linear_ngrams 0: these tests look at the ensemble itself, not at its blend with the linear model.
    settings = {
        "embedding_dim": 8,
        "hidden_dim": 6,
        "ngram_buckets": 53,
        "members": 3,
        "linear_ngrams": 0,
        **changes,
    }
    return ModelConfig.model_validate(settings)


def batch(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ids (6, 9) right-padded, lengths (6,), labels (6,)."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([9, 1, 4, 7, 2, 5])
    ids = torch.randint(2, VOCAB, (6, 9), generator=generator)
    ids[torch.arange(9).unsqueeze(0) >= lengths.unsqueeze(1)] = 0
    return ids, lengths, torch.randint(0, CLASSES, (6,), generator=generator)


def test_single_member_is_a_plain_classifier() -> None:
    # Checkpoints of one model keep their parameter names (no "members.0." prefix).
    model = build_model(VOCAB, CLASSES, model_config(members=1))
    assert type(model) is Classifier and members_of(model) == [model]
    assert "embedding.weight" in model.state_dict()


def test_scores_are_the_mean_of_the_members_probabilities() -> None:
    torch.manual_seed(0)
    model = build_model(VOCAB, CLASSES, model_config()).eval()
    assert isinstance(model, Ensemble) and len(members_of(model)) == 3
    ids, lengths, _ = batch(1)
    with torch.no_grad():
        scores = model(ids, lengths)  # (6, 3)
        each = torch.stack([torch.softmax(member(ids, lengths), dim=-1) for member in members_of(model)])
        per_member = model(ids, lengths, per_member=True)  # (6, 3 members, 3 classes)
    assert scores.shape == (6, CLASSES) and per_member.shape == (6, 3, CLASSES)
    torch.testing.assert_close(torch.softmax(scores, dim=-1), each.mean(dim=0), atol=1e-6, rtol=0)
    torch.testing.assert_close(scores.exp().sum(dim=-1), torch.ones(6), atol=1e-6, rtol=0)  # normalised
    # The members start apart (else the ensemble would be one model three times), and disagree.
    first, second = (member.embedding.weight for member in members_of(model)[:2])
    assert not torch.equal(first, second)
    assert not torch.allclose(each[0], each[1], atol=1e-3)


@pytest.mark.parametrize("clip", [None, 0.05])
def test_training_step_trains_each_member_as_if_alone(clip: float | None) -> None:
    """One SGD step (lr 1, no momentum) on the ensemble moves every member exactly as one step on that
    member alone; with clipping, each member's gradient is clipped on its own norm."""
    torch.manual_seed(0)
    config = model_config(dropout=0.0, embedding_dropout=0.0)
    ensemble = build_model(VOCAB, CLASSES, config)
    settings = TrainConfig(clip_grad_norm=clip, precision="fp32")
    ids_lengths_labels = batch(2)

    def step(model: torch.nn.Module) -> float:
        optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
        scaler = torch.amp.GradScaler("cpu", enabled=False)
        return train_step(
            model, ids_lengths_labels, optimizer, schedule, scaler, settings, torch.device("cpu")
        )

    alone = [copy.deepcopy(member) for member in members_of(ensemble)]
    before = [copy.deepcopy(member) for member in alone]
    ensemble_loss = step(ensemble)
    alone_losses = [step(member) for member in alone]
    assert ensemble_loss == pytest.approx(sum(alone_losses) / len(alone_losses), rel=1e-6)
    for trained, single, start in zip(members_of(ensemble), alone, before, strict=True):
        moved = False
        for (name, value), expected, original in zip(
            trained.named_parameters(), single.parameters(), start.parameters(), strict=True
        ):
            torch.testing.assert_close(value, expected, atol=1e-6, rtol=0, msg=name)
            moved = moved or not torch.equal(value, original)
        assert moved  # the step did something


def test_ensemble_trains_saves_and_predicts(tiny_config: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        ["train", str(tiny_config), "--quiet", "--run-dir", str(run_dir), "--set", "model.members=2"],
    )
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    state = checkpoint.load(run_dir / "best.pt")
    # The default config blends the ensemble ("rnn.") with the linear n-gram model ("linear.").
    assert any(name.startswith("rnn.members.1.") for name in state["model"])
    # Both members got the naive-Bayes weights of the training split (the same for both, not all 1).
    weights = state["model"]["rnn.members.0.ngram_weights"], state["model"]["rnn.members.1.ngram_weights"]
    first, second = weights
    assert torch.equal(first, second) and not torch.all(first == 1.0)
    predictor = Predictor(state, source="best.pt")
    assert Config.model_validate(state["config"]).model.members == 2
    [prediction] = predictor.predict(["the laptop software chip"])
    assert sum(prediction.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
