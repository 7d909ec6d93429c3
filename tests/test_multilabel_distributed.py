"""Multi-label under data parallelism, in one process: the processes' parts of a global batch average
to the whole batch's gradient (binary cross-entropy with positive weights), and validation scored in
parts equals one process's report."""

from __future__ import annotations

import copy

import pytest
import torch

from rnnclf.batching import Encoded, collate
from rnnclf.config import Config
from rnnclf.inference.scoring import evaluate
from rnnclf.models.addons import PerMember
from rnnclf.models.classifier import Classifier
from rnnclf.training.distributed import Processes, my_part
from rnnclf.training.optimization import train_step


def data(documents: int, labels: int, seed: int) -> Encoded:
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 6, (documents,), generator=generator)
    ids = torch.randint(2, 20, (int(lengths.sum()),), generator=generator, dtype=torch.int32)
    targets = (torch.rand(documents, labels, generator=generator) < 0.4).to(torch.uint8)
    return Encoded.from_lengths(ids, lengths, targets)


def small_config() -> Config:
    config = Config()
    config.data.multi_label = True
    config.model.embedding_dim, config.model.hidden_dim = 8, 8
    config.model.dropout = config.model.embedding_dropout = 0.0
    config.train.clip_grad_norm = None
    return config


@pytest.mark.parametrize("weights", [None, [1.0, 4.0, 0.5]])
def test_parts_average_to_the_whole_batch_gradient(weights: list[float] | None) -> None:
    config, encoded = small_config(), data(7, 3, seed=1)
    torch.manual_seed(0)
    model = Classifier(20, 3, config.model)
    positive = torch.tensor(weights) if weights else None
    indices = torch.arange(len(encoded))

    def gradients(batch: tuple, loss_scale: float | None, processes: int) -> list[torch.Tensor]:
        copy_ = copy.deepcopy(model)
        optimizer = torch.optim.SGD(copy_.parameters(), lr=0.0)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
        scaler = torch.amp.GradScaler("cpu", enabled=False)
        train_step(
            PerMember(copy_), [copy_], batch, optimizer, schedule, scaler, config.train, torch.device("cpu"),
            positive, loss_scale, processes,
        )  # fmt: skip
        return [p.grad.clone() for p in copy_.parameters()]

    whole = gradients(collate(encoded, indices), None, 1)
    size = 3
    parts = [
        gradients(*my_part(encoded, indices, Processes(torch.device("cpu"), rank, size), positive), size)
        for rank in range(size)
    ]
    averaged = [torch.stack(grads).mean(dim=0) for grads in zip(*parts, strict=True)]
    for one, other in zip(whole, averaged, strict=True):
        torch.testing.assert_close(other, one, rtol=1e-5, atol=1e-6)


def test_validation_in_parts_equals_one_process() -> None:
    config, encoded = small_config(), data(9, 3, seed=2)
    torch.manual_seed(1)
    model = Classifier(20, 3, config.model)
    cpu, labels = torch.device("cpu"), ["a", "b", "c"]
    single = evaluate(model, encoded, labels, cpu, "fp32", None, None, "global")
    size = 2
    parts = [Processes(cpu, rank, size) for rank in range(size)]
    seen: list[torch.Tensor] = []
    for processes in parts:  # what each process contributes
        processes.sum = lambda values: seen.append(values) or values  # type: ignore[method-assign]
        evaluate(model, encoded, labels, cpu, "fp32", None, processes, "global")
    total = torch.stack(seen).sum(dim=0)
    for processes in parts:  # every process receives the total, as from all_reduce
        processes.sum = lambda values: total  # type: ignore[method-assign]
        shared = evaluate(model, encoded, labels, cpu, "fp32", None, processes, "global")
        assert shared["loss"] == pytest.approx(single["loss"], rel=1e-6)
        assert {k: v for k, v in shared.items() if k != "loss"} == {
            k: v for k, v in single.items() if k != "loss"
        }
