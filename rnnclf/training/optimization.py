"""What one optimisation step is made of: the optimizer, the learning-rate schedule, the loss's class
weights, and the step itself (forward in the configured precision, loss in fp32, backward, clipping)."""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from rnnclf.config import Config, TrainConfig
from rnnclf.errors import RnnclfError
from rnnclf.inference.scoring import loss_of
from rnnclf.prepare import Prepared
from rnnclf.runtime import autocast
from rnnclf.training.adversarial import WordVectorPerturbation
from rnnclf.training.sparse import SplitAdam, clip_grad_norm


def make_optimizer(model: nn.Module, config: Config, fused: bool = True) -> torch.optim.Optimizer:
    """The configured optimizer over the trainable weights; fused: one kernel per step instead of a
    chain of foreach ops (several times faster on CPU for large embedding tables:
    bench/optimizer_step.py)."""
    train = config.train
    parameters: Any = [p for p in model.parameters() if p.requires_grad]
    grouped = train.layer_lr_decay != 1.0 or train.gradual_unfreezing
    if grouped:
        parameters = layer_groups(model, config)
    sparse = [m for m in model.modules() if isinstance(m, nn.Embedding) and m.sparse]
    if sparse:  # the loop made them sparse (train.sparse_embedding, rnnclf.training.sparse)
        groups = parameters if grouped else [{"params": parameters}]
        decoupled = train.optimizer == "adamw"
        return SplitAdam(groups, sparse, train.lr, train.weight_decay, decoupled, fused)
    if train.optimizer == "sgd":
        return torch.optim.SGD(
            parameters, lr=train.lr, momentum=0.9, weight_decay=train.weight_decay, fused=fused
        )
    if train.optimizer == "adamw":
        return torch.optim.AdamW(parameters, lr=train.lr, weight_decay=train.weight_decay, fused=fused)
    return torch.optim.Adam(parameters, lr=train.lr, weight_decay=train.weight_decay, fused=fused)


def depth_of(name: str, layers: int) -> int:
    """How far below the output a classifier weight sits: 0 output/pooling, 1 the top recurrent layer,
    ..., `layers` the bottom one, layers + 1 the word vectors (names may carry an ensemble's prefix)."""
    found = re.search(r"(?:^|\.)layers\.(\d+)\.", name)
    if found:
        return layers - int(found.group(1))
    if re.search(r"(?:^|\.)embedding\.", name):
        return layers + 1
    return 0


def layer_groups(model: nn.Module, config: Config) -> list[dict[str, Any]]:
    """One optimizer parameter group per depth, lr / layer_lr_decay ** depth (ULMFiT's discriminative
    rates); each group remembers its depth for gradual unfreezing."""
    layers, train = config.model.num_layers, config.train
    groups: dict[int, list[nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            groups.setdefault(depth_of(name, layers), []).append(parameter)
    return [
        {"params": params, "lr": train.lr / train.layer_lr_decay**depth, "depth": depth}
        for depth, params in sorted(groups.items())
    ]


def make_schedule(
    optimizer: torch.optim.Optimizer, config: Config, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup over train.warmup of all steps, then constant, cosine or linear decay to 0. With
    gradual unfreezing, a group at depth d is held at lr 0 (frozen) for its first d epochs."""
    shape = lr_factor(config.train.warmup, config.train.schedule, total_steps)
    if not config.train.gradual_unfreezing:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, shape)
    per_epoch = max(1, total_steps // config.train.epochs)

    def held(depth: int) -> Callable[[int], float]:
        return lambda step: shape(step) if step // per_epoch >= depth else 0.0

    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, [held(group.get("depth", 0)) for group in optimizer.param_groups]
    )


def schedule_of(
    optimizer: torch.optim.Optimizer, warmup_share: float, shape: str, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup over warmup_share of all steps, then constant, cosine or linear decay to 0."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(warmup_share, shape, total_steps))


def lr_factor(warmup_share: float, shape: str, total_steps: int) -> Callable[[int], float]:
    """The learning rate's multiplier at each step: linear warmup, then constant, cosine or linear decay."""
    warmup = int(warmup_share * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if shape == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        if shape == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0 - progress

    return factor


# Multi-label class_weights auto: a label's positive weight is negatives / positives, capped here so a
# label with a handful of positives cannot dominate the loss (GoEmotions' rarest label: 77 of 43,410,
# a ratio of 563). On GoEmotions validation data (bi-LSTM, per-label thresholds) a cap of 10 gave
# micro-F1 0.559 / macro-F1 0.481 against 0.552 / 0.496 with 30 and 0.562 / 0.455 with 4.
MAX_POSITIVE_WEIGHT = 10.0


def class_weights(config: Config, prepared: Prepared) -> torch.Tensor | None:
    """The loss's weights: per class (cross-entropy), or per label the positive weight of its binary
    cross-entropy (multi-label). None: unweighted."""
    setting = config.train.class_weights
    classes = len(prepared.labels)
    if setting == "none":
        return None
    if setting == "auto" and prepared.train.multi_label:
        positives = prepared.train.labels.sum(dim=0, dtype=torch.float32)  # (L,)
        negatives = len(prepared.train) - positives
        ratio = (negatives / positives.clamp(min=1)).clamp(min=1.0, max=MAX_POSITIVE_WEIGHT)
        return torch.where(positives > 0, ratio, torch.ones(()))
    if setting == "auto":
        counts = torch.bincount(prepared.train.labels, minlength=classes).float()
        # n / (k * count): a balanced data set gets all ones; a class missing from train gets 0.
        return torch.where(counts > 0, counts.sum() / (classes * counts.clamp(min=1)), torch.zeros(()))
    if len(setting) != classes:
        raise RnnclfError(
            f"train.class_weights: {len(setting)} weights given for {classes} labels "
            f"({', '.join(prepared.labels)}; sorted by name)"
        )
    return torch.tensor(setting, dtype=torch.float32)


def train_step(
    net: nn.Module,
    members: list[nn.Module],
    batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    settings: TrainConfig,
    device: torch.device,
    loss_weights: torch.Tensor | None = None,
    loss_scale: float | None = None,
    processes: int = 1,
) -> float:
    """One optimisation step on a collated batch (ids (B, T), lengths (B,), labels (B,)); returns the loss.
    `net` gives each member's logits (B, K, C) (rnnclf.models.addons.PerMember, maybe wrapped in DDP); each of
    the K `members` is clipped as it would be alone.

    One process (loss_scale None): the loss is the batch mean. One of `processes` data-parallel ones:
    the loss is this process's share of the global batch's mean, its documents' summed loss times
    loss_scale (1 / the global batch's total weight); DDP averages gradients over the processes, so
    the gradient is taken of the share times `processes`."""
    ids, lengths, targets = batch
    ids, targets = ids.to(device, non_blocking=True), targets.to(device, non_blocking=True)

    def objective() -> tuple[torch.Tensor, torch.Tensor]:
        """The loss reported (the members' mean) and the one differentiated (see below)."""
        with autocast(settings.precision, device):
            logits = net(ids, lengths)  # (B, K, C): K = 1, or an ensemble's members
        # Each member on its own loss: (B * K, C) rows against each document's label K times (multi-label:
        # binary cross-entropy per label, rnnclf.inference.scoring.loss_of). The loss reported is the
        # members' mean; the objective is their sum, so each member gets the gradient it would get alone.
        # The loss in fp32: log-softmax of bf16/fp16 logits loses precision for confident predictions.
        count = logits.size(1)
        logits = logits.float().flatten(0, 1)
        gold = targets.repeat_interleave(count, dim=0)  # (B * K,), multi-label (B * K, L)
        if loss_scale is None:
            loss = loss_of(logits, gold, loss_weights)
            return loss, loss * count
        total = loss_of(logits, gold, loss_weights, reduction="sum")
        loss = total * loss_scale / count
        return loss, loss * processes * count

    optimizer.zero_grad(set_to_none=True)
    if settings.adversarial > 0:
        # Twice the batch: as it is, then with its word vectors moved against the model
        # (rnnclf.training.adversarial); the gradients add up, and data-parallel processes average them
        # once, after the second backward (DDP's no_sync covers the first pass, forward included).
        with WordVectorPerturbation(members) as words:
            with net.no_sync() if hasattr(net, "no_sync") else contextlib.nullcontext():
                loss, clean = objective()
                scaler.scale(clean).backward()
            words.aim(settings.adversarial)
            _, perturbed = objective()
            scaler.scale(perturbed).backward()
    else:
        loss, clean = objective()
        scaler.scale(clean).backward()
    if settings.clip_grad_norm is not None:
        scaler.unscale_(optimizer)
        # Per member, so an ensemble's members are clipped as each would be alone.
        for member in members:
            clip_grad_norm(member.parameters(), settings.clip_grad_norm)  # sparse word vectors counted
    scaler.step(optimizer)
    scaler.update()
    schedule.step()
    return loss.item()
