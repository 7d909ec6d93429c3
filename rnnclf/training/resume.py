"""Training state: what last.pt holds so that a stopped run continues exactly where it stopped.

last.pt = best.pt's model fields + optimizer, scheduler, scaler, every process's random state, and the
progress: the epoch, the batch within it, the epochs' metrics rows, the best monitored value and the
partial sums of the running epoch. Each epoch's batch order comes from a generator seeded by (seed,
epoch), so a run resumed mid-epoch replays exactly the same batches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rnnclf.config import Config, validate
from rnnclf.errors import RnnclfError
from rnnclf.prepare import Prepared
from rnnclf.runs import checkpoint, rundir
from rnnclf.schema import lower_is_better
from rnnclf.training.averaging import Average
from rnnclf.training.distributed import Processes
from rnnclf.training.sparse import bring_up_to_date

# Settings that change the model's shape, its inputs or the replayed batch order and split: a
# checkpoint only resumes under the same ones.
SHAPE_KEYS = {
    "model": ("cell", "embedding_dim", "hidden_dim", "num_layers", "bidirectional", "pooling"),
    "ensemble": ("members",),
    "linear": ("ngrams",),
    "text": ("tokenizer", "min_freq", "max_tokens", "max_length", "truncate"),
    "data": ("valid_fraction",),
    "train": ("batch_size", "seed", "optimizer", "sparse_embedding"),  # the last two: the optimizer's state
}
RESUME_KEYS = ("optimizer", "scheduler", "scaler", "rng", "epoch", "step", "history", "best", "partial")


def _fresh_partial() -> dict[str, float]:
    return {"loss_sum": 0.0, "documents": 0, "words": 0, "seconds": 0.0}


@dataclass
class Progress:
    """How far training has got; all of it goes into last.pt."""

    epoch: int = 0  # epochs finished
    step: int = 0  # batches finished in the running epoch
    history: list[dict[str, Any]] = field(default_factory=list)  # metrics.jsonl rows
    best: float | None = None  # best value of train.monitor so far
    partial: dict[str, float] = field(default_factory=_fresh_partial)  # sums over the running epoch

    def add_step(self, loss: float, documents: int, words: int, seconds: float) -> None:
        self.step += 1
        self.partial["loss_sum"] += loss * documents
        self.partial["documents"] += documents
        self.partial["words"] += words
        self.partial["seconds"] += seconds

    @property
    def loss(self) -> float:
        return self.partial["loss_sum"] / max(1, self.partial["documents"])

    @property
    def words_per_s(self) -> float:
        return self.partial["words"] / max(self.partial["seconds"], 1e-9)

    def end_epoch(self, valid: dict[str, Any], lr: float, padding: float, monitor: str) -> dict[str, Any]:
        """Close the running epoch with its validation scores; returns its metrics.jsonl row, whose
        "best" says whether it improved the monitored metric."""
        row = {
            "epoch": self.epoch + 1,
            "train_loss": self.loss,
            "valid_loss": valid["loss"],
            "valid_accuracy": valid["accuracy"],
            "valid_macro_f1": valid["macro_f1"],
            # Multi-label: micro-F1 at the thresholds chosen on this validation pass (valid_accuracy is
            # subset accuracy there).
            **({"valid_micro_f1": valid["micro_f1"]} if valid.get("multi_label") else {}),
            "words_per_s": self.words_per_s,
            "seconds": self.partial["seconds"],
            "lr": lr,
            "padding": padding,
        }
        value = row[monitor]
        improved = self.best is None or (value < self.best if lower_is_better(monitor) else value > self.best)
        if improved:
            self.best = value
        row["best"] = improved
        self.history.append(row)
        self.epoch, self.step, self.partial = self.epoch + 1, 0, _fresh_partial()
        return row

    def patience_over(self, patience: int | None) -> bool:
        """True when the last `patience` epochs brought no improvement of the monitored metric."""
        if patience is None or not self.history:
            return False
        best_epoch = max(i for i, row in enumerate(self.history) if row["best"])
        return len(self.history) - 1 - best_epoch >= patience


@dataclass
class TrainingState:
    """Everything a training run changes as it goes, and its (de)serialisation to last.pt."""

    config: Config
    prepared: Prepared
    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    processes: Processes
    average: Average | None = None
    progress: Progress = field(default_factory=Progress)

    def snapshot(self) -> dict[str, Any]:
        """The whole state as plain types and tensors (every process: it gathers their random states)."""
        bring_up_to_date(self.optimizer)  # before the weights are read: sparse word vectors all current
        averaged = {}
        if self.average is not None:
            averaged = {"training_model": self.model.state_dict(), "average_updates": self.average.updates}
        weights = self.average.state_dict(self.model) if self.average is not None else self.model.state_dict()
        progress = self.progress
        return {
            "config": self.config.to_dict(),
            "vocab": self.prepared.vocab.to_dict(),
            "labels": self.prepared.labels,
            "model": weights,
            **averaged,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": self.processes.random_state(),
            "epoch": progress.epoch,
            "step": progress.step,
            "history": progress.history,
            "best": progress.best,
            "partial": progress.partial,
        }

    def restore(self, state: dict[str, Any]) -> None:
        # With averaging on, "model" holds the average and "training_model" the raw weights.
        self.model.load_state_dict(state.get("training_model", state["model"]))
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.processes.restore_random_state(state["rng"], self.config.train.seed)
        self.progress = Progress(
            state["epoch"], state["step"], state["history"], state["best"], state["partial"]
        )
        if self.average is not None:
            # A checkpoint saved without averaging starts the average from its weights.
            self.average.load(state["model"], state.get("average_updates", 0))


def load_last(run_dir: Path) -> tuple[Path, dict[str, Any]]:
    """last.pt of a run, and best.pt brought up to date with it.

    At an epoch's end last.pt is written before best.pt, so a kill between the two leaves a last.pt
    whose final epoch is the best one while best.pt still holds an earlier epoch (or is missing);
    last.pt then holds exactly that epoch's weights, and best.pt is rewritten from it."""
    last, best = run_dir / rundir.LAST, run_dir / rundir.BEST
    if not last.exists():
        if rundir.stage(run_dir) == "finished":
            raise RnnclfError(
                f"{run_dir}: the run has finished and kept best.pt only (output.keep_last: false), so "
                "there is nothing to resume; to train longer, start a new run with more train.epochs"
            )
        raise RnnclfError(
            f"{run_dir}: nothing to resume, it stopped before saving a first checkpoint; start it again "
            "without --resume"
        )
    state = checkpoint.load(last)
    history = state.get("history") or []
    if history and history[-1].get("best") and state.get("step") == 0:
        best_epoch = checkpoint.load(best).get("epoch") if best.exists() else None
        if best_epoch != state.get("epoch"):
            checkpoint.save(checkpoint.model_only(state), best)
    return last, state


def check_resumable(state: dict[str, Any], config: Config, prepared: Prepared, path: Path) -> None:
    """A checkpoint resumes only under the same model shape, text settings, labels and vocabulary."""
    missing = [key for key in RESUME_KEYS if key not in state]
    if missing:
        raise RnnclfError(f"{path}: cannot resume, the checkpoint lacks {', '.join(missing)}")
    # Validating fills in keys added since the checkpoint was written, with their defaults.
    saved, now = validate(state["config"], str(path)).to_dict(), config.to_dict()
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
