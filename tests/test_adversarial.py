"""train.adversarial: each step also learns from its batch with every document's word vectors moved along
the gradient of the loss by eps times their own norm (rnnclf.training.adversarial). The perturbation must
have that norm per document, leave padding alone and raise the loss; the step's gradient must be the
clean batch's plus the perturbed batch's; off (0) the step is what it was."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from conftest import write_tiny_project
from typer.testing import CliRunner

from rnnclf.cli.app import app
from rnnclf.config import Config
from rnnclf.models.addons import PerMember
from rnnclf.models.classifier import Classifier
from rnnclf.runs import checkpoint
from rnnclf.training.adversarial import WordVectorPerturbation
from rnnclf.training.optimization import train_step

CPU = torch.device("cpu")


def tiny() -> tuple[Config, Classifier, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """A small classifier without dropout and a batch of 3 documents, the second and third padded."""
    config = Config()
    config.model.embedding_dim, config.model.hidden_dim = 6, 5
    config.model.dropout = config.model.embedding_dropout = 0.0
    config.train.clip_grad_norm = None
    torch.manual_seed(0)
    model = Classifier(20, 3, config.model)
    ids = torch.tensor([[4, 5, 6, 7], [8, 9, 0, 0], [10, 0, 0, 0]])  # (B, T), 0 = <pad>
    lengths = torch.tensor([4, 2, 1])
    return config, model, (ids, lengths, torch.tensor([0, 1, 2]))


def document_norms(model: Classifier, ids: torch.Tensor) -> torch.Tensor:
    """(B,): the L2 norm of each document's word vectors over its real words."""
    with torch.no_grad():
        vectors = model.embedding(ids).masked_fill((ids == 0).unsqueeze(-1), 0.0)  # (B, T, E)
    return vectors.flatten(1).norm(dim=1)


def test_the_perturbation_is_eps_of_each_documents_norm_spares_padding_and_raises_the_loss() -> None:
    _, model, (ids, lengths, labels) = tiny()
    eps = 0.05
    with WordVectorPerturbation([model]) as words:
        clean = torch.nn.functional.cross_entropy(model(ids, lengths), labels)
        clean.backward()
        gradient = words.outputs[0].grad.clone()  # (B, T, E)
        words.aim(eps)
        move = words.moves[0]  # type: ignore[index]
        perturbed = torch.nn.functional.cross_entropy(model(ids, lengths), labels)
    padding = ids == 0
    assert move[padding].abs().max() == 0.0
    sizes = document_norms(model, ids)
    assert sizes.unique().numel() == 3  # three documents of different norms: a scale per document
    torch.testing.assert_close(move.flatten(1).norm(dim=1), eps * sizes)
    # Along the gradient of the real words, so (first order) the loss goes up.
    for document in range(3):
        real = ~padding[document]
        cosine = torch.nn.functional.cosine_similarity(
            move[document][real].flatten(), gradient[document][real].flatten(), dim=0
        )
        assert cosine > 0.9999
    assert perturbed > clean
    # The hooks are gone: the model runs as before.
    torch.testing.assert_close(torch.nn.functional.cross_entropy(model(ids, lengths), labels), clean)


def test_frozen_word_vectors_are_perturbed_too() -> None:
    """model.freeze_embeddings: the table gets no gradient, but the words' vectors still do, so the
    perturbation is aimed as with trainable ones (and the table stays unchanged)."""
    _, model, (ids, lengths, labels) = tiny()
    model.embedding.weight.requires_grad_(False)
    with WordVectorPerturbation([model]) as words:
        torch.nn.functional.cross_entropy(model(ids, lengths), labels).backward()
        words.aim(0.05)
    move = words.moves[0]  # type: ignore[index]
    torch.testing.assert_close(move.flatten(1).norm(dim=1), 0.05 * document_norms(model, ids))
    assert model.embedding.weight.grad is None


def step_gradients(config: Config, model: Classifier, batch: tuple) -> list[torch.Tensor]:
    copy_ = copy.deepcopy(model)
    optimizer = torch.optim.SGD(copy_.parameters(), lr=0.0)  # a step that leaves the weights
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    train_step(PerMember(copy_), [copy_], batch, optimizer, schedule, scaler, config.train, CPU)
    return [p.grad.clone() for p in copy_.parameters()]


def test_an_adversarial_step_adds_the_perturbed_batch_gradient_to_the_clean_one() -> None:
    config, model, batch = tiny()
    ids, lengths, labels = batch
    plain = step_gradients(config, model, batch)
    config.train.adversarial = 0.5
    both = step_gradients(config, model, batch)

    # By hand: the clean gradient with respect to the word vectors gives r; the loss at vectors + r.
    by_hand = copy.deepcopy(model)
    vectors = by_hand.embedding(ids).detach().requires_grad_()
    hook = by_hand.embedding.register_forward_hook(lambda module, inputs, output: vectors)
    torch.nn.functional.cross_entropy(by_hand(ids, lengths), labels).backward()
    hook.remove()
    g = vectors.grad.masked_fill((ids == 0).unsqueeze(-1), 0.0)
    size = document_norms(by_hand, ids)  # (B,)
    r = 0.5 * (size / g.flatten(1).norm(dim=1)).view(-1, 1, 1) * g
    by_hand.zero_grad()
    hook = by_hand.embedding.register_forward_hook(lambda module, inputs, output: output + r)
    torch.nn.functional.cross_entropy(by_hand(ids, lengths), labels).backward()
    hook.remove()
    perturbed = [p.grad for p in by_hand.parameters()]
    for total, clean, extra in zip(both, plain, perturbed, strict=True):
        torch.testing.assert_close(total, clean + extra, rtol=1e-5, atol=1e-6)
    assert any(not torch.allclose(extra, torch.zeros_like(extra)) for extra in perturbed)


def test_off_the_step_is_the_plain_one() -> None:
    config, model, batch = tiny()
    assert config.train.adversarial == 0.0
    first, second = step_gradients(config, model, batch), step_gradients(config, model, batch)
    for one, other in zip(first, second, strict=True):
        assert torch.equal(one, other)


@pytest.mark.parametrize("members", [1, 2])
def test_training_with_adversarial_steps_through_the_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, members: int
) -> None:
    """One model and an ensemble (each member perturbs its own word vectors); sparse word-vector
    steps on, so the perturbed forward meets their catch-up hook too."""
    config = write_tiny_project(tmp_path / "project")
    monkeypatch.chdir(tmp_path)
    settings = ["--set", "train.adversarial=0.1", "--set", f"ensemble.members={members}"]
    settings += ["--set", "train.sparse_embedding=true"]
    result = CliRunner().invoke(app, ["train", str(config), *settings, "--run-dir", "adv", "--quiet"])
    assert result.exit_code == 0, result.output
    assert checkpoint.load("adv/best.pt")["config"]["train"]["adversarial"] == 0.1
    # The tiny corpus is learnable (3 classes): the model still learns it with the perturbed batches.
    final = json.loads(Path("adv/metrics.json").read_text())
    assert final["valid"]["accuracy"] > 0.6, final["valid"]


@pytest.mark.parametrize("size", ["-1", "3"])
def test_a_size_outside_0_to_1_is_one_line_naming_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: str
) -> None:
    """Negative, or above 1 (a share of the document's norm; 3 was an absolute size before 0.3.0)."""
    config = write_tiny_project(tmp_path / "project")
    monkeypatch.chdir(tmp_path)
    arguments = ["train", str(config), "--set", f"train.adversarial={size}", "--run-dir", "x"]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 2
    assert "train.adversarial" in result.output and "Traceback" not in result.output
    assert not Path("x").exists()
