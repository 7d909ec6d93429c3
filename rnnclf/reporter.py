"""The one way the library talks to the user while it works: a Reporter.

Reporter writes plain log lines (for files, CI and pipes); quiet=True keeps one line per epoch and the
final summary (warnings are logged, and shown whatever the reporter); Silent says nothing (processes
other than rank 0). The command line's live progress bars
(rnnclf.cli.progress) are a Reporter too; the library never imports them.
"""

from __future__ import annotations

import time
from typing import Any


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """'1 epoch', '3 epochs' (`plural` for nouns that do not take an s)."""
    return f"{count:,} {noun if count == 1 else plural or noun + 's'}"


class Reporter:
    """Plain log lines on stdout; the base for the rich variant."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        # What step speeds count: the language model's stage reads each word once per direction.
        self.speed_unit = "words/s"

    def write(self, text: str) -> None:
        """Lines on stdout. The rich variant (rnnclf.cli.progress) prints through its console instead, so
        that lines and the live bar do not tear each other."""
        print(text, flush=True)

    def message(self, text: str) -> None:
        if not self.quiet:
            self.write(text)

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
        """One line per epoch, quiet or not."""
        if "valid_perplexity" in row:  # a language model's epoch (rnnclf pretrain)
            self.write(
                f"epoch {row['epoch']}/{self._epochs} train_loss {row['train_loss']:.4f} "
                f"valid_perplexity {row['valid_perplexity']:.1f} "
                f"{row['token_directions_per_s']:,.0f} token-directions/s "
                f"{row['seconds']:.1f}s{'  *best' if row.get('best') else ''}"
            )
            return
        self.write(
            f"epoch {row['epoch']}/{self._epochs} train_loss {row['train_loss']:.4f} "
            f"valid_loss {row['valid_loss']:.4f} valid_accuracy {row['valid_accuracy']:.4f} "
            f"valid_macro_f1 {row['valid_macro_f1']:.4f} "
            + (f"valid_micro_f1 {row['valid_micro_f1']:.4f} " if "valid_micro_f1" in row else "")
            + f"{row['words_per_s']:,.0f} words/s "
            f"{row['seconds']:.1f}s{'  *best' if row.get('best') else ''}"
        )

    def summary(self, text: str) -> None:
        """Always printed, even when quiet."""
        self.write(text)

    def close(self) -> None:
        """Stop anything live (the rich bar) before an error or interruption is printed."""


class Silent(Reporter):
    """The reporter of processes other than rank 0: rank 0 speaks for the whole job."""

    def __init__(self) -> None:
        super().__init__(quiet=True)

    def epoch_end(self, row: dict[str, Any]) -> None:
        pass

    def summary(self, text: str) -> None:
        pass
