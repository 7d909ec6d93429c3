"""train.sparse_embedding: sparse word-vector gradients, a row-wise Adam that trains them as dense Adam does,
clipping that counts them."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from rnnclf.cli.app import app
from rnnclf.training.optimization import make_schedule
from rnnclf.training.sparse import SplitAdam, bring_up_to_date, clip_grad_norm, use_sparse_rows


def tiny(sparse: bool) -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(10, 4, padding_idx=0), nn.Flatten(), nn.Linear(12, 2))
    if sparse:
        use_sparse_rows([model[0]])
    return model


BATCH = torch.tensor([[1, 2, 2], [3, 2, 0]])  # words 4..9 are not in it; word 2 three times
TARGETS = torch.tensor([0, 1])


def backward(model: nn.Module, scale: float = 100.0) -> None:
    loss = nn.functional.cross_entropy(model(BATCH) * scale, TARGETS)  # scaled: a norm worth clipping
    loss.backward()


def test_clipping_counts_sparse_word_vectors_as_torch_counts_dense_ones() -> None:
    dense, sparse = tiny(False), tiny(True)
    backward(dense)
    backward(sparse)
    assert sparse[0].weight.grad.is_sparse and not dense[0].weight.grad.is_sparse
    expected = nn.utils.clip_grad_norm_(dense.parameters(), 0.5)
    total = clip_grad_norm(sparse.parameters(), 0.5)
    assert total == pytest.approx(float(expected), rel=1e-5) and float(total) > 0.5  # it did clip
    for mine, theirs in zip(sparse.parameters(), dense.parameters(), strict=True):
        got = mine.grad.to_dense() if mine.grad.is_sparse else mine.grad
        assert torch.allclose(got, theirs.grad, atol=1e-6)


def zipf_model(seed: int = 1) -> nn.ModuleDict:
    torch.manual_seed(seed)
    return nn.ModuleDict({"embedding": nn.Embedding(300, 8, padding_idx=0), "out": nn.Linear(8, 3)})


def train_zipf(
    model: nn.ModuleDict, optimizers: list[torch.optim.Optimizer], steps: int, seed: int = 3
) -> None:
    """Batches of 6 x 10 words drawn by Zipf's law (frequent words in nearly every batch, rare ones
    returning after hundreds of steps), a decaying learning rate, clipping."""
    schedules = [
        torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 - step / (2 * steps))
        for optimizer in optimizers
    ]
    generator = torch.Generator().manual_seed(seed)
    chance = 1.0 / torch.arange(1, 301).float()
    for _ in range(steps):
        ids = torch.multinomial(chance, 60, replacement=True, generator=generator).view(6, 10)
        targets = torch.randint(0, 3, (6,), generator=generator)
        model.zero_grad()
        logits = model["out"](model["embedding"](ids).mean(dim=1))  # (6, 3)
        nn.functional.cross_entropy(logits, targets).backward()
        clip_grad_norm(model.parameters(), 1.0)
        for optimizer, schedule in zip(optimizers, schedules, strict=True):
            optimizer.step()
            schedule.step()


@pytest.mark.parametrize("kind, decay", [("adam", 0.0), ("adamw", 0.1)])
def test_row_wise_adam_trains_the_word_vectors_as_dense_adam_does(kind: str, decay: float) -> None:
    """300 steps; each word vector ends where dense Adam (AdamW) puts it, to within 1e-3 of how far the
    words moved. Lazy Adam (steps missed are skipped) ends a quarter or more of that away: the catch-up
    on the steps a word missed is what the test checks, and the forward pre-hook that applies it before
    a returning word is looked up (the output layer learns from what the word vectors were)."""
    dense, sparse, start = zipf_model(), zipf_model(), zipf_model()["embedding"].weight.detach()
    use_sparse_rows([sparse["embedding"]])
    reference = (torch.optim.AdamW if kind == "adamw" else torch.optim.Adam)(
        dense.parameters(), lr=0.01, weight_decay=decay
    )
    optimizer = SplitAdam(
        [{"params": list(sparse.parameters())}], [sparse["embedding"]], 0.01, decay, kind == "adamw", False
    )
    train_zipf(dense, [reference], 300)
    train_zipf(sparse, [optimizer], 300)
    behind = sparse["embedding"].weight.detach().clone()
    bring_up_to_date(optimizer)
    words = sparse["embedding"].weight.detach()
    assert not torch.equal(words, behind)  # rows away at the end caught up only now
    moved = (dense["embedding"].weight.detach() - start).abs().max()
    assert float((words - dense["embedding"].weight.detach()).abs().max()) < 1e-3 * float(moved)
    assert torch.allclose(sparse["out"].weight, dense["out"].weight, atol=1e-5)

    lazy = zipf_model()
    use_sparse_rows([lazy["embedding"]])
    skipping = torch.optim.SparseAdam([lazy["embedding"].weight], lr=0.01)
    rest = (torch.optim.AdamW if kind == "adamw" else torch.optim.Adam)(lazy["out"].parameters(), lr=0.01)
    train_zipf(lazy, [rest, skipping], 300)
    away = (lazy["embedding"].weight.detach() - dense["embedding"].weight.detach()).abs().max()
    assert float(away) > 0.25 * float(moved)


def test_only_the_batch_rows_are_stepped_and_both_parts_follow_the_schedule() -> None:
    model = tiny(True)
    before = model[0].weight.detach().clone()
    optimizer = SplitAdam(
        [{"params": list(model.parameters())}], [model[0]], 0.01, 0.1, decoupled=True, fused=False
    )
    assert len(optimizer.param_groups) == 2 and optimizer.sparse.param_groups[0]["weight_decay"] == 0.1
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 ** (step + 1))
    assert [group["lr"] for group in optimizer.sparse.param_groups + optimizer.dense.param_groups] == [
        0.005
    ] * 2
    backward(model)
    optimizer.step()
    schedule.step()
    after = model[0].weight.detach()
    touched = [1, 2, 3]  # padding (0) gets no gradient; 4..9 are not in the batch
    assert not torch.equal(after[touched], before[touched])
    assert torch.equal(after[[0, 4, 5, 6, 7, 8, 9]], before[[0, 4, 5, 6, 7, 8, 9]])
    assert [group["lr"] for group in optimizer.param_groups] == [0.0025] * 2  # both parts follow


def test_row_wise_adam_state_round_trips_through_a_checkpoint() -> None:
    first, second = tiny(True), tiny(True)

    def optimizer_of(model: nn.Module) -> SplitAdam:
        return SplitAdam([{"params": list(model.parameters())}], [model[0]], 0.01, 0.0, False, False)

    one, two = optimizer_of(first), optimizer_of(second)
    for model, optimizer in ((first, one), (second, two)):
        backward(model)
        optimizer.step()
        optimizer.zero_grad()
    two.load_state_dict(copy.deepcopy(one.state_dict()))  # as from a file: the same next step
    schedule = torch.optim.lr_scheduler.LambdaLR(two, lambda step: 1.0)
    assert schedule.get_last_lr() == [0.01, 0.01]
    for model, optimizer in ((first, one), (second, two)):
        backward(model)
        optimizer.step()
    for a, b in zip(first.parameters(), second.parameters(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="sparse_embedding"):
        two.load_state_dict(torch.optim.Adam(second.parameters()).state_dict())


def test_gradual_unfreezing_schedules_the_word_vectors_group_apart(tiny_config: Path) -> None:
    """With layer groups, the word vectors' group (the deepest) keeps its depth and so its own lr."""
    from rnnclf.config import load
    from rnnclf.models.addons import build_model
    from rnnclf.training.optimization import make_optimizer

    config = load(tiny_config, ["train.sparse_embedding=true", "train.gradual_unfreezing=true"])
    model = build_model(20, 3, config)
    use_sparse_rows([model.embedding])
    optimizer = make_optimizer(model, config, fused=False)
    schedule = make_schedule(optimizer, config, total_steps=10 * config.train.epochs)
    deepest = max(group["depth"] for group in optimizer.param_groups)
    assert optimizer.sparse.param_groups[0]["depth"] == deepest
    assert optimizer.sparse.param_groups[0]["lr"] == 0.0 and schedule.get_last_lr()[0] > 0.0


def test_a_run_with_sparse_word_vectors_learns_them(tiny_config: Path, tmp_path: Path) -> None:
    """Trained end to end through the CLI: the word vectors moved from where a frozen run keeps them
    (the same seed starts both from the same weights), they and the test loss equal a dense run's, and
    best.pt holds an ordinary embedding."""
    from rnnclf.runs import checkpoint

    runs, vectors = {}, {}
    for name, sets in (
        ("dense", []),
        ("sparse", ["train.sparse_embedding=true"]),
        ("frozen", ["train.sparse_embedding=true", "model.freeze_embeddings=true"]),
    ):
        overrides = [part for item in sets for part in ("--set", item)]
        result = CliRunner().invoke(
            app, ["train", str(tiny_config), "--quiet", "--run-dir", name, *overrides]
        )
        assert result.exit_code == 0, result.output
        runs[name] = json.loads((tmp_path / name / "metrics.json").read_text(encoding="utf-8"))
        vectors[name] = checkpoint.load(tmp_path / name / "best.pt")["model"]["embedding.weight"]
    # The same training as dense Adam: the same word vectors and test loss, to float rounding.
    assert torch.allclose(vectors["sparse"], vectors["dense"], atol=1e-5)
    assert runs["sparse"]["test"]["loss"] == pytest.approx(runs["dense"]["test"]["loss"], abs=1e-4)
    assert runs["sparse"]["test"]["accuracy"] >= 0.9
    assert vectors["sparse"].shape == vectors["frozen"].shape
    moved = (vectors["sparse"] != vectors["frozen"]).any(dim=1)  # (V,): rows the training stepped
    assert moved.float().mean() >= 0.9, f"only {int(moved.sum())} of {len(moved)} word vectors were trained"


def test_sparse_word_vectors_need_adam(tiny_config: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["train", str(tiny_config), "--set", "train.sparse_embedding=true", "--set", "train.optimizer=sgd"],
    )
    assert result.exit_code == 2
    assert "train.sparse_embedding needs train.optimizer adam or adamw" in result.output


def test_an_ensemble_steps_each_members_word_vectors_sparsely(tiny_config: Path, tmp_path: Path) -> None:
    from rnnclf.runs import checkpoint

    result = CliRunner().invoke(
        app,
        ["train", str(tiny_config), "--quiet", "--run-dir", "two", "--set", "train.sparse_embedding=true",
         "--set", "ensemble.members=2", "--set", "output.keep_last=true"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    state = checkpoint.load(tmp_path / "two" / "last.pt")
    assert set(state["optimizer"]) == {"dense", "sparse"}
    assert len(state["optimizer"]["sparse"]["param_groups"][0]["params"]) == 2  # one table per member
    metrics = json.loads((tmp_path / "two" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["test"]["accuracy"] >= 0.9


def test_sparse_word_vectors_refuse_a_weight_average(tiny_config: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["train", str(tiny_config), "--run-dir", "avg", "--set", "train.sparse_embedding=true",
         "--set", "train.ema=0.99"],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "train.sparse_embedding and train.ema" in result.output
    assert not (tmp_path / "avg").exists()


def test_auto_turns_sparse_steps_on_where_they_apply_and_pay() -> None:
    """auto: adamw or adam without L2, no ema, one process, a CPU, a table of >= SPARSE_FROM weights;
    true and false as set."""
    from types import SimpleNamespace

    from rnnclf.config import validate
    from rnnclf.training.sparse import SPARSE_FROM, sparse_wanted

    def wanted(table: int, size: int = 1, device: str = "cpu", **train: object) -> bool:
        config = validate({"train": train})
        processes = SimpleNamespace(size=size, device=torch.device(device))
        return sparse_wanted(config.train, table, processes)  # type: ignore[arg-type]

    assert validate({}).train.sparse_embedding == "auto"
    assert wanted(SPARSE_FROM) and wanted(SPARSE_FROM, optimizer="adamw")
    assert not wanted(SPARSE_FROM - 1)  # a small table: the dense step is cheaper
    assert not wanted(SPARSE_FROM, optimizer="sgd")
    assert not wanted(SPARSE_FROM, weight_decay=1e-5)  # adam's L2 would skip the word vectors
    assert wanted(SPARSE_FROM, optimizer="adamw", weight_decay=1e-5)
    assert not wanted(SPARSE_FROM, ema=0.99)
    assert not wanted(SPARSE_FROM, size=2)  # torchrun
    assert not wanted(SPARSE_FROM, device="cuda")  # not measured there
    assert wanted(10, sparse_embedding=True) and not wanted(10**9, sparse_embedding=False)


def test_sparse_embedding_takes_true_false_or_auto(tiny_config: Path) -> None:
    result = CliRunner().invoke(app, ["train", str(tiny_config), "--set", "train.sparse_embedding=maybe"])
    assert result.exit_code == 2
    assert "train.sparse_embedding = maybe: expected true, false or auto" in result.output
