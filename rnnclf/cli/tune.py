"""`rnnclf tune` around the library's tune(): the tune folder, Ctrl-C and SIGTERM, the resume hint, and
the live table of trials (rich: only the command line prints with it). The final summary is drawn by
render.tune_summary. Library modules are imported inside the functions: no torch at import time.
"""

from __future__ import annotations

import shlex
import signal
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from rnnclf.cli import render
from rnnclf.cli.train import _install_stop_handlers
from rnnclf.errors import RnnclfError

STATE_STYLE = {"complete": "green", "pruned": "yellow", "failed": "red", "incomplete": "magenta"}


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


class LiveTable:
    """The trials as a live table (number, values, score per epoch and best, epochs, seconds, state);
    quiet: one line per finished trial. An Observer of rnnclf.tuning.trial."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.console = Console(highlight=False, soft_wrap=True)
        self.rows: dict[int, dict[str, Any]] = {}
        self.live: Live | None = None
        if not quiet and self.console.is_terminal:
            self.live = Live(self._table(), console=self.console, refresh_per_second=2, transient=False)
            self.live.start()

    def message(self, text: str) -> None:
        if not self.quiet:
            self.console.print(text, markup=False)

    def trial_started(self, number: int, values: dict[str, Any]) -> None:
        self.rows[number] = {"values": values, "scores": [], "state": "running", "started": time.time()}
        self._refresh()

    def epoch(self, number: int, epoch: int, score: float) -> None:
        self.rows.setdefault(number, {"values": {}, "scores": [], "state": "running", "started": time.time()})
        self.rows[number]["scores"].append(score)
        self._refresh()

    def trial_ended(self, record: Any) -> None:
        row = self.rows.setdefault(record.number, {"values": record.values, "scores": [], "started": 0})
        row.update(state=record.state, seconds=record.seconds, reason=record.reason, value=record.value)
        row["scores"] = list(record.scores)
        values = " ".join(f"{key.split('.')[-1]}={_short(value)}" for key, value in record.values.items())
        score = f"{record.value:.4f}" if record.value is not None else "-"
        from rnnclf.tuning.trial import repeats  # the CLI loads the tune's modules when a tune runs

        line = (
            f"trial {record.number} {record.state}{repeats(record)}: best {score}, "
            f"{len(record.scores)} epochs, {record.seconds:.0f}s"
            + (f" ({record.reason})" if record.reason else "")
            + f"  {values}"
        )
        if self.quiet or self.live is None:
            self.console.print(line, markup=False)
        self._refresh()

    def _table(self) -> Table:
        table = Table(title="trials", show_lines=False)
        for column in ("#", "values", "score by epoch", "best", "epochs", "seconds", "state"):
            table.add_column(column, overflow="fold")
        for number, row in sorted(self.rows.items())[-30:]:  # the latest 30: the table stays on screen
            scores = row["scores"]
            value = row.get("value")  # a finished trial's best in the metric's direction
            best = f"{value:.4f}" if value is not None else (f"{max(scores):.4f}" if scores else "-")
            seconds = row.get("seconds", time.time() - row["started"])
            state = row["state"] + (f": {row['reason']}" if row.get("reason") else "")
            table.add_row(
                str(number),
                " ".join(f"{k.split('.')[-1]}={_short(v)}" for k, v in row["values"].items()),
                " ".join(f"{s:.3f}" for s in scores[-8:]),
                best,
                str(len(scores)),
                f"{seconds:.0f}",
                f"[{STATE_STYLE.get(row['state'], 'cyan')}]{state}[/]",
            )
        return table

    def _refresh(self) -> None:
        if self.live is not None:
            self.live.update(self._table())

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None


def _tune_dir(config: Path, run_dir: Path | None, resume: bool) -> Path:
    if run_dir is not None:
        return run_dir
    if resume:
        found = sorted(Path("runs").glob(f"tune-{config.stem}-*"), key=lambda p: p.stat().st_mtime)
        if not found:
            raise RnnclfError(f"--resume: no runs/tune-{config.stem}-* folder here; name it with --run-dir")
        return found[-1]
    return Path("runs") / f"tune-{config.stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def _resume_command(config: Path, overrides: list[str], folder: Path, options: dict[str, Any]) -> str:
    words = ["rnnclf", "tune", str(config)]
    words += [part for item in overrides for part in ("--set", item)]
    for flag, value in options.items():
        if value is not None:
            words += [flag, str(value)]
    return shlex.join([*words, "--run-dir", str(folder), "--resume"])


def run(
    config: Path,
    overrides: list[str],
    run_dir: Path | None,
    resume: bool,
    quiet: bool,
    budget: str | None,
    trials: int | None,
    jobs: int,
    storage: str | None,
    study: str | None,
) -> None:
    from rnnclf import config as config_module
    from rnnclf.training.stopping import Interrupted, StopFlag
    from rnnclf.tuning.study import tune

    settings = config_module.load(config, overrides)
    folder = _tune_dir(config, run_dir, resume)
    observer = LiveTable(quiet)
    stop = StopFlag()
    # A trial keeps no last.pt (it is never resumed mid-way): the study is what is saved.
    previous = _install_stop_handlers(stop, "stopping the running trial after this step and saving the study")
    try:
        summary = tune(settings, folder, budget, trials, jobs, storage, study, resume, observer, stop)
    except Interrupted as interrupted:
        observer.close()
        options = {"--budget": budget, "--trials": trials, "--jobs": jobs if jobs != 1 else None,
                   "--storage": storage, "--study": study}  # fmt: skip
        again = _resume_command(config, overrides, folder, options)
        render.message(f"interrupted; the study is saved. Resume with: {again}", to_stderr=True)
        raise typer.Exit(128 + max(interrupted.signal, 1)) from None
    finally:
        observer.close()
        for number, handler in previous.items():
            signal.signal(number, handler)
    render.tune_summary(summary)
