"""train(config, run_dir) -> metrics: one readable loop.

config -> device -> data (cached preprocessing) -> model -> optimizer/schedule -> epochs of
(bucketed batches -> step) -> evaluate -> metrics.jsonl + last.pt (+ best.pt) -> final metrics.json.

Everything a resumed run needs is in last.pt: weights, optimizer, schedule, scaler, RNG state, the
epoch and the batch within it, and the partial sums of the epoch. Each epoch's batch order comes from
a generator seeded by (seed, epoch), so a run resumed mid-epoch replays exactly the same batches.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rnnclf import checkpoint
from rnnclf.batching import collate, padding_fraction, training_batches
from rnnclf.config import Config, TrainConfig, dump
from rnnclf.errors import RnnclfError
from rnnclf.metrics import classification_report
from rnnclf.model import Classifier, parameter_count
from rnnclf.predict import logits_for
from rnnclf.prepare import Prepared, prepare
from rnnclf.report import Reporter
from rnnclf.runtime import (
    autocast,
    check_precision,
    choose_device,
    prepare_cpu,
    rng_state,
    seed_everything,
    set_rng_state,
)
from rnnclf.vectors import load_pretrained

# Settings that change the model's shape, its inputs or the replayed batch order and split: a
# checkpoint only resumes under the same ones.
SHAPE_KEYS = {
    "model": ("cell", "embedding_dim", "hidden_dim", "num_layers", "bidirectional", "pooling"),
    "text": ("tokenizer", "min_freq", "max_tokens", "max_length", "truncate"),
    "data": ("valid_fraction",),
    "train": ("batch_size", "seed"),
}
RESUME_KEYS = ("optimizer", "scheduler", "scaler", "rng", "epoch", "step", "history", "best", "partial")


class StopFlag:
    """Set by a signal handler; the loop checks it between steps and stops cleanly."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def set(self, number: int) -> None:
        self.signal = number

    def __bool__(self) -> bool:
        return self.signal is not None


class Interrupted(Exception):
    """Training stopped on a signal after writing last.pt."""

    def __init__(self, signal: int, run_dir: Path) -> None:
        super().__init__(f"interrupted by signal {signal}")
        self.signal = signal
        self.run_dir = run_dir


def make_optimizer(model: nn.Module, config: Config) -> torch.optim.Optimizer:
    train = config.train
    parameters = [p for p in model.parameters() if p.requires_grad]
    if train.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=train.lr, momentum=0.9, weight_decay=train.weight_decay)
    if train.optimizer == "adamw":
        return torch.optim.AdamW(parameters, lr=train.lr, weight_decay=train.weight_decay)
    return torch.optim.Adam(parameters, lr=train.lr, weight_decay=train.weight_decay)


def make_schedule(
    optimizer: torch.optim.Optimizer, config: Config, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup over train.warmup of all steps, then constant, cosine or linear decay to 0."""
    warmup = int(config.train.warmup * total_steps)
    shape = config.train.schedule

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if shape == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        if shape == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0 - progress

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def class_weights(config: Config, prepared: Prepared) -> torch.Tensor | None:
    setting = config.train.class_weights
    classes = len(prepared.labels)
    if setting == "none":
        return None
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


def evaluate(
    model: Classifier,
    data: Any,
    labels: list[str],
    device: torch.device,
    precision: str,
    weights: torch.Tensor | None = None,
) -> dict[str, Any]:
    """Loss and the classification report on one encoded data set."""
    logits = logits_for(model, data, device, precision)  # (N, C)
    loss = nn.functional.cross_entropy(logits, data.labels, weight=weights).item()
    report = classification_report(data.labels.tolist(), logits.argmax(dim=-1).tolist(), labels)
    return {"loss": loss, **report}


def train_step(
    model: Classifier,
    batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    settings: TrainConfig,
    device: torch.device,
    loss_weights: torch.Tensor | None = None,
) -> float:
    """One optimisation step on a collated batch (ids (B, T), lengths (B,), labels (B,)); returns the loss."""
    ids, lengths, targets = batch
    ids, targets = ids.to(device, non_blocking=True), targets.to(device, non_blocking=True)
    with autocast(settings.precision, device):
        logits = model(ids, lengths)  # (B, C)
    # The loss in fp32: log-softmax of bf16/fp16 logits loses precision for confident predictions.
    loss = nn.functional.cross_entropy(logits.float(), targets, weight=loss_weights)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if settings.clip_grad_norm is not None:
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), settings.clip_grad_norm)
    scaler.step(optimizer)
    scaler.update()
    schedule.step()
    return loss.item()


def _improved(monitor: str, value: float, best: float | None) -> bool:
    if best is None:
        return True
    return value < best if monitor == "valid_loss" else value > best


def _check_resumable(state: dict[str, Any], config: Config, prepared: Prepared, path: Path) -> None:
    """A checkpoint resumes only under the same model shape, text settings, labels and vocabulary."""
    missing = [key for key in RESUME_KEYS if key not in state]
    if missing:
        raise RnnclfError(f"{path}: cannot resume, the checkpoint lacks {', '.join(missing)}")
    saved, now = state["config"], config.to_dict()
    differing = [
        f"{section}.{key} ({saved[section][key]!r} in the checkpoint, {now[section][key]!r} now)"
        for section, keys in SHAPE_KEYS.items()
        for key in keys
        if saved[section][key] != now[section][key]
    ]
    if differing:
        raise RnnclfError(f"{path}: cannot resume, the config differs in {'; '.join(differing)}")
    if list(state["labels"]) != prepared.labels or state["vocab"]["itos"] != prepared.vocab.get_itos():
        raise RnnclfError(f"{path}: cannot resume, the training data changed (labels or vocabulary differ)")


def train(
    config: Config,
    run_dir: str | Path,
    reporter: Reporter | None = None,
    resume: bool = False,
    stop: StopFlag | None = None,
) -> dict[str, Any]:
    """Train per `config`, writing checkpoints and metrics to run_dir; returns the final metrics."""
    prepare_cpu()
    reporter = reporter or Reporter(quiet=True)
    stop = stop if stop is not None else StopFlag()
    run_dir = Path(run_dir)
    settings = config.train
    device = choose_device(settings.device)
    check_precision(settings.precision, device)
    seed_everything(settings.seed)

    started = time.perf_counter()
    prepared = prepare(config)
    reporter.message(
        f"data: {len(prepared.train)} train / {len(prepared.valid)} valid"
        + (f" / {len(prepared.test)} test" if prepared.test is not None else "")
        + f" documents, {len(prepared.labels)} labels, vocabulary {len(prepared.vocab)}"
        + f" ({'cached' if prepared.cached else 'built'} in {time.perf_counter() - started:.1f}s)"
    )
    model = Classifier(len(prepared.vocab), len(prepared.labels), config.model)
    if config.model.pretrained_vectors:
        found = load_pretrained(model.embedding, prepared.vocab, config.model.pretrained_vectors)
        reporter.message(f"pretrained vectors: {found} of {len(prepared.vocab)} vocabulary words found")
    model.embedding.weight.requires_grad_(not config.model.freeze_embeddings)
    model.to(device)
    reporter.message(
        f"model: {config.model.cell} x{config.model.num_layers}, {parameter_count(model):,} "
        f"parameters, device {device}, precision {settings.precision}"
    )

    optimizer = make_optimizer(model, config)
    lengths = prepared.train.lengths
    steps_per_epoch = len(training_batches(lengths, settings.batch_size, torch.Generator().manual_seed(0)))
    schedule = make_schedule(optimizer, config, steps_per_epoch * settings.epochs)
    scaler = torch.amp.GradScaler(device.type, enabled=settings.precision == "fp16")
    weights = class_weights(config, prepared)
    loss_weights = weights.to(device) if weights is not None else None

    # Progress through training; all of it goes into last.pt.
    epoch, step, history, best = 0, 0, [], None
    partial = {"loss_sum": 0.0, "documents": 0, "words": 0, "seconds": 0.0}
    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"
    if resume:
        # A kill between writing best.pt and last.pt at an epoch's end leaves only best.pt, which
        # then holds the same state.
        source = last_path if last_path.exists() or not best_path.exists() else best_path
        state = checkpoint.load(source)
        _check_resumable(state, config, prepared, source)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        epoch, step, history, best = state["epoch"], state["step"], state["history"], state["best"]
        partial = state["partial"]
        reporter.message(f"resuming {source} at epoch {epoch + 1}, batch {step}")
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_text(run_dir / "config.yaml", dump(config))

    def snapshot() -> dict[str, Any]:
        return {
            "config": config.to_dict(),
            "vocab": prepared.vocab.to_dict(),
            "labels": prepared.labels,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": schedule.state_dict(),
            "scaler": scaler.state_dict(),
            "rng": rng_state(),
            "epoch": epoch,
            "step": step,
            "history": history,
            "best": best,
            "partial": partial,
        }

    monitor = settings.monitor
    while epoch < settings.epochs and not _patience_over(history, monitor, settings.patience):
        generator = torch.Generator().manual_seed(settings.seed * 1_000_003 + epoch)
        batches = training_batches(lengths, settings.batch_size, generator)
        reporter.epoch_start(epoch + 1, settings.epochs, len(batches), step)
        model.train()
        tick = time.perf_counter()
        for indices in batches[step:]:
            batch = collate(prepared.train, indices)
            loss = train_step(model, batch, optimizer, schedule, scaler, settings, device, loss_weights)
            step += 1
            partial["loss_sum"] += loss * len(indices)
            partial["documents"] += len(indices)
            partial["words"] += int(batch[1].sum())
            now = time.perf_counter()
            partial["seconds"] += now - tick
            tick = now
            reporter.step(
                step, partial["loss_sum"] / partial["documents"], partial["words"] / partial["seconds"]
            )
            if stop:
                if step < len(batches):
                    checkpoint.save(snapshot(), last_path)
                    reporter.close()
                    raise Interrupted(stop.signal or 0, run_dir)
                break  # the epoch is complete: finish it normally, then stop below
        valid = evaluate(model, prepared.valid, prepared.labels, device, settings.precision, weights)
        row = {
            "epoch": epoch + 1,
            "train_loss": partial["loss_sum"] / max(1, partial["documents"]),
            "valid_loss": valid["loss"],
            "valid_accuracy": valid["accuracy"],
            "valid_macro_f1": valid["macro_f1"],
            "words_per_s": partial["words"] / max(partial["seconds"], 1e-9),
            "seconds": partial["seconds"],
            "lr": schedule.get_last_lr()[0],
            "padding": padding_fraction(lengths, batches),
        }
        improved = _improved(monitor, row[monitor], best)
        if improved:
            best = row[monitor]
        row["best"] = improved
        history.append(row)
        epoch, step = epoch + 1, 0
        partial = {"loss_sum": 0.0, "documents": 0, "words": 0, "seconds": 0.0}
        # metrics.jsonl is rewritten from history so a resumed run never duplicates a line.
        _write_text(run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in history))
        state = snapshot()
        if improved:
            checkpoint.save(state, best_path)
        checkpoint.save(state, last_path)
        reporter.epoch_end(row)
        if stop:
            reporter.close()
            raise Interrupted(stop.signal or 0, run_dir)

    return _finish(
        config, run_dir, prepared, model, device, weights, history, time.perf_counter() - started, reporter
    )


def _patience_over(history: list[dict[str, Any]], monitor: str, patience: int | None) -> bool:
    """True when the last `patience` epochs brought no improvement of the monitored metric."""
    if patience is None or not history:
        return False
    best_epoch = max(i for i, row in enumerate(history) if row["best"])
    return len(history) - 1 - best_epoch >= patience


def _finish(
    config: Config,
    run_dir: Path,
    prepared: Prepared,
    model: Classifier,
    device: torch.device,
    weights: torch.Tensor | None,
    history: list[dict[str, Any]],
    seconds: float,
    reporter: Reporter,
) -> dict[str, Any]:
    """Score best.pt on valid (and test) and write metrics.json."""
    best = checkpoint.load(run_dir / "best.pt", map_location=device)
    model.load_state_dict(best["model"])
    precision = config.train.precision
    metrics: dict[str, Any] = {
        "best_epoch": best["epoch"],
        "epochs_run": len(history),
        "train_seconds": seconds,
        "labels": prepared.labels,
        "valid": evaluate(model, prepared.valid, prepared.labels, device, precision, weights),
    }
    if prepared.test is not None:
        metrics["test"] = evaluate(model, prepared.test, prepared.labels, device, precision, weights)
    _write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    line = f"best epoch {best['epoch']}: valid accuracy {metrics['valid']['accuracy']:.4f}"
    if "test" in metrics:
        line += (
            f", test accuracy {metrics['test']['accuracy']:.4f} macro-F1 {metrics['test']['macro_f1']:.4f}"
        )
    reporter.summary(f"{line} ({seconds:.0f}s); model: {run_dir / 'best.pt'}")
    return metrics


def _write_text(path: Path, text: str) -> None:
    """Write a small text file atomically (no half-written metrics after a crash)."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)
