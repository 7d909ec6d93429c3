"""Live progress on a terminal: a rich bar per training epoch (RichReporter), and a fetch's download and
unpacking (Transfer, rnnclf.fetch's Progress). Only the command line builds these."""

from __future__ import annotations

import sys
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

from rnnclf.reporter import Reporter


class RichReporter(Reporter):
    """A live progress bar per epoch on a terminal."""

    def __init__(self, quiet: bool = False) -> None:
        super().__init__(quiet)
        self.console = Console(highlight=False, soft_wrap=True)

    def write(self, text: str) -> None:
        self.console.print(text, markup=False)

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
