"""TensorBoard scalars for a run (`output.tensorboard: true`), written live, one point per epoch.

metrics.jsonl stays the source of truth; TensorBoard is a view of it. The scalars are written by a
Reporter that wraps the usual one: the training loop already hands every finished epoch's metrics
row to `reporter.epoch_end`, so live logging needs no change to the loop. Event files go to
run_dir/tensorboard/ (view with `tensorboard --logdir runs/`). The writer starts at the first
finished epoch, so a run that fails before any checkpoint leaves no tensorboard/ folder behind.

tensorboard is an optional extra (`pip install 'rnnclf[tensorboard]'`); without it MissingExtra.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rnnclf.errors import MissingExtra
from rnnclf.reporter import Reporter
from rnnclf.runs import rundir

# metrics.jsonl key -> TensorBoard tag (grouped: loss/ and valid/ share a chart section each).
TAGS = {
    "train_loss": "loss/train",
    "valid_loss": "loss/valid",
    "valid_accuracy": "valid/accuracy",
    "valid_macro_f1": "valid/macro_f1",
    "valid_micro_f1": "valid/micro_f1",
    "lr": "train/lr",
    "words_per_s": "train/words_per_s",
    "padding": "train/padding",
}


def require_tensorboard() -> None:
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise MissingExtra("output.tensorboard", "tensorboard", "tensorboard") from None


class TensorBoardReporter(Reporter):
    """Forwards everything to `inner`; also writes each epoch's metrics as TensorBoard scalars."""

    def __init__(self, inner: Reporter, run_dir: str | Path) -> None:
        require_tensorboard()
        super().__init__(quiet=inner.quiet)
        self.inner = inner
        self.log_dir = Path(run_dir) / rundir.TENSORBOARD
        self._writer: Any = None

    def _write(self, row: dict[str, Any]) -> None:
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step: after a resume, points the earlier process logged for this epoch or later
            # (none with the loop's order: checkpoint, then epoch_end) are hidden, never doubled.
            self._writer = SummaryWriter(str(self.log_dir), purge_step=row["epoch"])
        for key, tag in TAGS.items():
            if isinstance(row.get(key), (int, float)):
                self._writer.add_scalar(tag, row[key], global_step=row["epoch"])
        self._writer.flush()  # live: TensorBoard shows the epoch now, not at the end

    def message(self, text: str) -> None:
        self.inner.message(text)

    def config(self, text: str) -> None:
        self.inner.config(text)

    def epoch_start(self, epoch: int, epochs: int, batches: int, done: int = 0) -> None:
        self.inner.epoch_start(epoch, epochs, batches, done)

    def step(self, done: int, loss: float, words_per_s: float) -> None:
        self.inner.step(done, loss, words_per_s)

    def epoch_end(self, row: dict[str, Any]) -> None:
        self._write(row)
        self.inner.epoch_end(row)

    def summary(self, text: str) -> None:
        self.inner.summary(text)

    def close(self) -> None:
        self.inner.close()
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def write_final(run_dir: str | Path, metrics: dict[str, Any]) -> None:
    """The final scores of best.pt (metrics.json) as best/valid_accuracy, best/test_accuracy, ... at the
    last epoch. A resumed run that trains further adds a point at its new last epoch."""
    from torch.utils.tensorboard import SummaryWriter

    step = metrics.get("epochs_run", 0)
    with SummaryWriter(str(Path(run_dir) / rundir.TENSORBOARD)) as writer:
        for split in ("valid", "test"):
            for name in ("accuracy", "macro_f1", "micro_f1", "loss"):
                value = (metrics.get(split) or {}).get(name)
                if isinstance(value, (int, float)):
                    writer.add_scalar(f"best/{split}_{name}", value, global_step=step)
