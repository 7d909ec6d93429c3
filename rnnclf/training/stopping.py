"""Stopping a training run cleanly: the flag a signal handler sets, and the exception that ends a run
after last.pt is written (shared by the classifier's and the language model's loops)."""

from __future__ import annotations

from pathlib import Path


class StopFlag:
    """Set by a signal handler; the loop checks it between steps and stops cleanly. `finishing` tells the
    handler that training is over and only the final scoring is left (it then lets that finish)."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self.finishing = False

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
