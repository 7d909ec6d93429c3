"""`rnnclf train` around the library's train(): the run folder, Ctrl-C and SIGTERM, the resume hint,
plots and final TensorBoard scalars after training.

Part of the CLI (it prints through render and ends the command with typer.Exit); cli.py parses the
options and calls run(). Library modules are imported inside the functions: no torch at import time.
"""

from __future__ import annotations

import os
import shlex
import signal
from pathlib import Path
from typing import Any

import typer

from rnnclf.cli import render
from rnnclf.errors import MissingExtra, RnnclfError


def run(
    config: Path,
    overrides: list[str],
    run_dir: Path | None,
    resume: bool,
    quiet: bool,
    command: str = "train",
    verbose: bool = False,
) -> None:
    """Train (command "train"; or pretrain a language model, "pretrain") from CONFIG (+ --set overrides)
    into a new run folder, or continue one (resume)."""
    from rnnclf import config as config_module
    from rnnclf.cli.progress import Transfer, make_reporter
    from rnnclf.fetch import resolve_names
    from rnnclf.runs import rundir
    from rnnclf.training.loop import Interrupted, StopFlag
    from rnnclf.training.loop import train as run_training

    if command == "pretrain":
        from rnnclf.pretraining.loop import pretrain as run_training

    settings = config_module.load(config, overrides)
    primary = os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 writes and reports
    # Bare corpus or vectors names (data.train: imdb) are fetched now, before the config is shown.
    resolve_names(settings, Transfer() if primary and not quiet else None)
    if run_dir is not None:
        settings.output.run_dir = str(run_dir)
    if resume:
        folder = Path(settings.output.run_dir) if settings.output.run_dir else _run_to_resume()
    else:
        folder = rundir.new_run_dir(config, settings.output.run_dir)
    settings.output.run_dir = str(folder)
    reporter = make_reporter(quiet or not primary)
    if primary and not quiet:
        render.run_header(config, settings, folder, resume, config_module.differences(settings))
        if verbose:
            reporter.config(f"config ({config}):\n{config_module.dump(settings)}")
    two_stage = settings.pretrain.epochs > 0  # (pretrain may set it: 0 means its default there)
    if settings.output.tensorboard and primary:
        reporter = _with_tensorboard(reporter, folder)
    stop = StopFlag()
    previous_handlers = _install_stop_handlers(stop)
    try:
        metrics = run_training(settings, folder, reporter, resume=resume, stop=stop)
    except Interrupted as interrupted:
        if primary:
            again = _resume_command(config, overrides, folder, command)
            saved = Path(interrupted.run_dir) / rundir.LAST
            render.message(f"interrupted; {saved} saved. Resume with: {again}", to_stderr=True)
        raise typer.Exit(128 + interrupted.signal) from None
    finally:
        reporter.close()
        for number, handler in previous_handlers.items():  # in-process callers get theirs back
            signal.signal(number, handler)
    if stop.signal is not None:  # arrived while the final scores were written: they are; stop now
        if primary:
            render.message(
                f"stopped after training; {folder / rundir.METRICS} written, no plots", to_stderr=True
            )
        raise typer.Exit(128 + stop.signal)
    if primary and command == "train":
        _after_training(folder, metrics, settings, reporter, quiet)
    if primary and command == "pretrain":
        render.next_step(config, folder, two_stage)


def _install_stop_handlers(
    stop: Any, stopping: str = "stopping after this step and saving last.pt"
) -> dict[int, Any]:
    """First SIGINT/SIGTERM: finish the current step, save last.pt, exit (`stopping` says so, with how
    to quit at once). Second: exit at once (checkpoints are replaced atomically, so no file can be left
    torn). Returns the handlers replaced."""
    said = f"{stopping} (press Ctrl-C again to quit now)\n".encode()  # encoded now, not in the handler

    def handle(number: int, frame: Any) -> None:
        if stop:
            os._exit(128 + number)
        stop.set(number)
        # os.write, not print: the signal may arrive while the main thread is inside a print to stderr.
        if stop.finishing:  # every epoch is done and saved: let the final scores finish, then stop
            os.write(
                2,
                b"training is complete; writing the final metrics.json, then stopping without plots "
                b"(press Ctrl-C again to quit now; best.pt is saved)\n",
            )
        else:
            os.write(2, said)

    return {number: signal.signal(number, handle) for number in (signal.SIGINT, signal.SIGTERM)}


def _resume_command(config: Path, overrides: list[str], folder: Path, command: str = "train") -> str:
    """The command line that continues this run, --set overrides included (shell-quoted)."""
    sets = [part for item in overrides for part in ("--set", item)]
    words = [command, str(config), *sets, "--run-dir", str(folder), "--resume"]
    processes = os.environ.get("WORLD_SIZE", "1")
    if processes != "1":  # started by torchrun: continue the same way
        if os.environ.get("LOCAL_WORLD_SIZE") == processes:  # one machine
            return shlex.join(["torchrun", "--nproc-per-node", processes, "-m", "rnnclf", *words])
        return "torchrun <the same torchrun options> -m rnnclf " + shlex.join(words)
    return shlex.join(["rnnclf", *words])


def _run_to_resume() -> Path:
    from rnnclf.runs import rundir

    try:
        return rundir.latest_run()
    except RnnclfError:
        raise RnnclfError(
            "--resume: no run to continue here (./runs/LATEST is missing); name it with --run-dir RUN_DIR"
        ) from None


def _with_tensorboard(reporter: Any, folder: Path) -> Any:
    from rnnclf.reports.tensorboard import TensorBoardReporter

    try:
        return TensorBoardReporter(reporter, folder)
    except MissingExtra as missing:
        render.note(f"{missing}; training goes on without it")
        return reporter


def _after_training(folder: Path, metrics: dict[str, Any], settings: Any, reporter: Any, quiet: bool) -> None:
    """Pictures and final TensorBoard scalars, from what training wrote (metrics.jsonl, metrics.json).
    The run is complete already: a missing optional package or a failed picture costs a note, not it."""
    if settings.output.plots:
        from rnnclf.reports.plots import write_run_plots

        try:
            written = write_run_plots(folder)
        except RnnclfError as err:
            render.note(f"no plots: {err}")
        else:
            if not quiet:
                render.message(f"plots: {', '.join(str(path) for path in written)}")
    from rnnclf.reports.tensorboard import TensorBoardReporter, write_final

    if isinstance(reporter, TensorBoardReporter):
        write_final(folder, metrics)
