"""The one way the library talks to the user while it works: a Reporter.

RichReporter draws a progress bar per epoch (loss, words/s, ETA) on a terminal; PlainReporter writes
log lines (for files, CI and pipes); quiet=True keeps only the final summary. Transfer draws a fetch's
download and unpacking (rnnclf.fetch's Progress).
"""

from __future__ import annotations

import sys
import time
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)


class Reporter:
    """Plain log lines on stdout; the base for the rich variant."""

    def __init__(self, quiet: bool = False, console: Console | None = None) -> None:
        self.quiet = quiet
        # What step speeds count: the language model's stage reads each word once per direction.
        self.speed_unit = "words/s"
        self.console = console or Console(highlight=False, soft_wrap=True)

    def message(self, text: str) -> None:
        if not self.quiet:
            self.console.print(text, markup=False)

    def config(self, text: str) -> None:
        self.message(text.rstrip())

    def epoch_start(self, epoch: int, epochs: int, batches: int, done: int = 0) -> None:
        self._epoch, self._epochs, self._batches = epoch, epochs, batches
        self._last_line = time.perf_counter()

    def step(self, done: int, loss: float, words_per_s: float) -> None:
        # A line every ~30 s keeps long epochs visibly alive in logs without flooding them.
        now = time.perf_counter()
        if not self.quiet and now - self._last_line >= 30:
            self._last_line = now
            self.message(
                f"epoch {self._epoch}/{self._epochs} batch {done}/{self._batches} "
                f"loss {loss:.4f} {words_per_s:,.0f} {self.speed_unit}"
            )

    def epoch_end(self, row: dict[str, Any]) -> None:
        if "valid_perplexity" in row:  # a language model's epoch (rnnclf pretrain)
            self.message(
                f"epoch {row['epoch']}/{self._epochs} train_loss {row['train_loss']:.4f} "
                f"valid_perplexity {row['valid_perplexity']:.1f} "
                f"{row['token_directions_per_s']:,.0f} token-directions/s "
                f"{row['seconds']:.1f}s{'  *best' if row.get('best') else ''}"
            )
            return
        self.message(
            f"epoch {row['epoch']}/{self._epochs} train_loss {row['train_loss']:.4f} "
            f"valid_loss {row['valid_loss']:.4f} valid_accuracy {row['valid_accuracy']:.4f} "
            f"valid_macro_f1 {row['valid_macro_f1']:.4f} "
            + (f"valid_micro_f1 {row['valid_micro_f1']:.4f} " if "valid_micro_f1" in row else "")
            + f"{row['words_per_s']:,.0f} words/s "
            f"{row['seconds']:.1f}s{'  *best' if row.get('best') else ''}"
        )

    def summary(self, text: str) -> None:
        """Always printed, even when quiet."""
        self.console.print(text, markup=False)

    def close(self) -> None:
        """Stop anything live (the rich bar) before an error or interruption is printed."""


class Silent(Reporter):
    """The reporter of processes other than rank 0: rank 0 speaks for the whole job."""

    def __init__(self) -> None:
        super().__init__(quiet=True)

    def summary(self, text: str) -> None:
        pass


class RichReporter(Reporter):
    """A live progress bar per epoch on a terminal."""

    def epoch_start(self, epoch: int, epochs: int, batches: int, done: int = 0) -> None:
        super().epoch_start(epoch, epochs, batches, done)
        self._progress = Progress(
            TextColumn(f"epoch {epoch}/{epochs}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}  {task.fields[speed]:,.0f} " + self.speed_unit),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self._task = self._progress.add_task("train", total=batches, completed=done, loss=0.0, speed=0.0)
        self._progress.start()

    def step(self, done: int, loss: float, words_per_s: float) -> None:
        self._progress.update(self._task, completed=done, loss=loss, speed=words_per_s)

    def epoch_end(self, row: dict[str, Any]) -> None:
        self._progress.stop()
        super().epoch_end(row)

    def close(self) -> None:
        progress = getattr(self, "_progress", None)
        if progress is not None:
            progress.stop()


def make_reporter(quiet: bool) -> Reporter:
    """Rich progress bars on a terminal, plain lines otherwise."""
    if not quiet and sys.stdout.isatty():
        return RichReporter(quiet=False)
    return Reporter(quiet=quiet)


class Transfer:
    """A download or unpacking as a rich bar on stderr (bytes, speed, time left); the fetch's Progress.
    Only on a terminal: in a log, a bar would be a stray line among the messages."""

    def __init__(self) -> None:
        self._progress: Any = None

    def begin(self, label: str, total: int | None, done: int = 0) -> None:
        stderr = Console(stderr=True, highlight=False)
        if not stderr.is_terminal:
            return
        # Unpacking a corpus counts documents (no total known); a download or an extraction counts bytes.
        if total is None:
            columns: tuple[Any, ...] = (TextColumn("{task.completed:,.0f} documents"),)
        else:
            columns = (DownloadColumn(), TransferSpeedColumn())
        self._progress = Progress(
            TextColumn(label), BarColumn(), *columns, TimeRemainingColumn(), console=stderr, transient=True
        )
        self._progress.start()
        self._task = self._progress.add_task(label, total=total, completed=done)

    def advance(self, amount: int) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, amount)

    def end(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
