"""Tests for the ensemble add-on (`ensemble.members`): it scores the mean of its members' probabilities,
training it is training each member alone on the same batches (same gradients, same clipping), and a run
reports every member's score beside the average's."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from rnnclf.cli.app import app
from rnnclf.config import Config, TrainConfig, load
from rnnclf.inference.predict import Predictor
from rnnclf.inference.scoring import evaluate
from rnnclf.models.addons import Ensemble, PerMember, build_model, members_of
from rnnclf.models.classifier import Classifier
from rnnclf.prepare import prepare
from rnnclf.runs import checkpoint
from rnnclf.training.optimization import train_step

VOCAB, CLASSES = 40, 3


def model_config(members: int = 3, **changes: object) -> Config:
    return Config.model_validate(
        {"model": {"embedding_dim": 8, "hidden_dim": 6, **changes}, "ensemble": {"members": members}}
    )


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
        per_member = PerMember(model)(ids, lengths)  # (6, 3 members, 3 classes)
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
        net, members = PerMember(model), members_of(model)
        return train_step(
            net, members, ids_lengths_labels, optimizer, schedule, scaler, settings, torch.device("cpu")
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


def test_ensemble_trains_saves_predicts_and_reports_each_member(tiny_config: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        ["train", str(tiny_config), "--run-dir", str(run_dir), "--set", "ensemble.members=2"],
    )
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    state = checkpoint.load(run_dir / "best.pt")
    assert any(name.startswith("members.1.") for name in state["model"])
    predictor = Predictor(state, source="best.pt")
    assert Config.model_validate(state["config"]).ensemble.members == 2
    [prediction] = predictor.predict(["the laptop software chip"])
    assert sum(prediction.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    # Every member's score is reported beside the average's, and is what that member alone scores.
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    assert set(metrics["components"]) == {"recurrent", "member 1", "member 2"}
    assert metrics["components"]["recurrent"]["test"]["accuracy"] == metrics["test"]["accuracy"]
    prepared = prepare(load(run_dir / "config.yaml"))
    cpu = torch.device("cpu")
    for number, member in enumerate(members_of(predictor.model), start=1):
        alone = evaluate(member, prepared.valid, prepared.labels, cpu, "fp32")
        reported = metrics["components"][f"member {number}"]["valid"]["accuracy"]
        assert reported == pytest.approx(alone["accuracy"])
        assert f"member {number}: valid accuracy {reported:.4f}" in result.output
    assert "recurrent model (lstm, ensemble average): valid accuracy" in result.output
