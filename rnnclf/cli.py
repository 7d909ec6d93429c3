"""The `rnnclf` command: parse arguments, call one library function, print the result.

Known problems (RnnclfError) become one line on stderr and exit code 2. Library modules are imported
inside the commands so `rnnclf --help` and `init-config` start without loading torch.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from rnnclf.errors import RnnclfError

app = typer.Typer(
    add_completion=True,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Train, evaluate and use recurrent (RNN/GRU/LSTM) text classifiers from one YAML file.",
)
stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)

ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model", "-m", help="Run folder or checkpoint file. Default: the latest run trained here."
    ),
]


class _WarningHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        stderr.print(f"warning: {record.getMessage()}", markup=False)


def _setup_logging() -> None:
    logger = logging.getLogger("rnnclf")
    if not any(isinstance(h, _WarningHandler) for h in logger.handlers):
        logger.addHandler(_WarningHandler(level=logging.WARNING))
    logger.propagate = False


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """RnnclfError -> 'error: ...' on stderr, exit code 2; no traceback."""
    _setup_logging()
    try:
        yield
    except RnnclfError as err:
        message = " ".join(str(err).split())  # always one line
        stderr.print(f"error: {message}", markup=False)
        raise typer.Exit(2) from None


def _install_stop_handlers(stop: Any) -> dict[int, Any]:
    """First SIGINT/SIGTERM: finish the current step, save last.pt, exit. Second: exit at once
    (checkpoints are replaced atomically, so no file can be left torn). Returns the handlers replaced."""

    def handle(number: int, frame: Any) -> None:
        if stop:
            os._exit(128 + number)
        stop.set(number)
        # os.write, not print: the signal may arrive while the main thread is inside a print to stderr.
        os.write(2, b"stopping after this step and saving last.pt (press Ctrl-C again to quit now)\n")

    return {number: signal.signal(number, handle) for number in (signal.SIGINT, signal.SIGTERM)}


def _resume_command(config: Path, overrides: list[str], folder: Path) -> str:
    """The command line that continues this run, --set overrides included (shell-quoted)."""
    sets = [part for item in overrides for part in ("--set", item)]
    return shlex.join(["rnnclf", "train", str(config), *sets, "--run-dir", str(folder), "--resume"])


def _run_to_resume() -> Path:
    from rnnclf import runs

    try:
        return runs.latest_run()
    except RnnclfError:
        raise RnnclfError(
            "--resume: no run to continue here (./runs/LATEST is missing); name it with --run-dir RUN_DIR"
        ) from None


@app.command()
def train(
    config: Annotated[Path, typer.Argument(help="YAML config file.")],
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a key: --set train.epochs=3 (repeatable).")
    ] = None,
    run_dir: Annotated[Path | None, typer.Option(help="Where outputs go (overrides output.run_dir).")] = None,
    resume: Annotated[
        bool, typer.Option(help="Continue the run in --run-dir (or the latest) from last.pt.")
    ] = False,
    quiet: Annotated[bool, typer.Option(help="Print only the final summary.")] = False,
) -> None:
    """Train a classifier.

    Example: rnnclf train configs/trec.yaml --set train.epochs=3
    """
    with _user_errors():
        from rnnclf import config as config_module
        from rnnclf import runs
        from rnnclf.report import make_reporter
        from rnnclf.runtime import prepare_cpu

        prepare_cpu()  # before any tensor work starts torch's threads
        from rnnclf.train import Interrupted, StopFlag
        from rnnclf.train import train as run_training

        settings = config_module.load(config, set_ or [])
        if run_dir is not None:
            settings.output.run_dir = str(run_dir)
        if resume:
            folder = Path(settings.output.run_dir) if settings.output.run_dir else _run_to_resume()
        else:
            folder = runs.new_run_dir(config, settings.output.run_dir)
            runs.check_fresh(folder)
        settings.output.run_dir = str(folder)
        reporter = make_reporter(quiet)
        reporter.config(f"config ({config}):\n{config_module.dump(settings)}")
        stop = StopFlag()
        previous_handlers = _install_stop_handlers(stop)
        created = runs.missing_folders(folder)  # before remember() makes runs/
        previous_latest = runs.remember(folder) if not resume else None
        try:
            run_training(settings, folder, reporter, resume=resume, stop=stop)
        except Interrupted as interrupted:
            command = _resume_command(config, set_ or [], folder)
            stderr.print(f"interrupted; last.pt saved. Resume with: {command}", markup=False)
            raise typer.Exit(128 + interrupted.signal) from None
        except BaseException:
            if not resume and not (folder / "last.pt").exists():
                runs.forget(folder, previous_latest)  # a run that saved nothing is not "the latest run"
                runs.discard(folder, created)  # nor leaves a half-made run folder behind
            raise
        finally:
            reporter.close()
            for number, handler in previous_handlers.items():  # in-process callers get theirs back
                signal.signal(number, handler)


def _print_wide(table: Table) -> None:
    """Print a table without cutting any cell to '…'. To a file or pipe: at its natural width, even
    past 80 columns. On a terminal: long labels wrap inside their cells; wider only if it cannot fit."""
    measured = Measurement.get(stdout, stdout.options.update(max_width=10_000), table)
    needed = measured.minimum if stdout.is_terminal else measured.maximum
    # Console.print(width=) cannot exceed the console's width, so a wider table gets its own console.
    console = stdout if needed <= stdout.width else Console(highlight=False, width=needed, file=sys.stdout)
    console.print(table)


def _report_tables(report: dict[str, Any]) -> None:
    stdout.print(
        f"documents {report['n']}   accuracy {report['accuracy']:.4f}   macro-F1 {report['macro_f1']:.4f}"
    )
    per_class = Table(title="per class")
    per_class.add_column("label", overflow="fold")
    for column in ("precision", "recall", "f1", "support"):
        per_class.add_column(column, justify="right")
    for label, scores in report["per_class"].items():
        per_class.add_row(
            Text(label),  # Text: a label is data, never rich markup ('[/b]' would raise, ':x:' an emoji)
            f"{scores['precision']:.3f}",
            f"{scores['recall']:.3f}",
            f"{scores['f1']:.3f}",
            str(scores["support"]),
        )
    _print_wide(per_class)
    # Columns are numbered (label names would not fit side by side); the rows give each number's label.
    confusion = Table(title="confusion matrix (rows: true label, columns: predicted, by number)")
    confusion.add_column("true label", overflow="fold")
    for number in range(1, len(report["labels"]) + 1):
        confusion.add_column(str(number), justify="right")
    for number, (label, row) in enumerate(zip(report["labels"], report["confusion_matrix"], strict=True), 1):
        confusion.add_row(Text(f"{number} {label}"), *map(str, row))
    _print_wide(confusion)


@app.command("eval")
def evaluate(
    model: ModelOption = None,
    data: Annotated[
        str | None, typer.Option(help="Labelled data file/folder. Default: the run's data.test.")
    ] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Score a trained model: accuracy, macro-F1, per-class table, confusion matrix.

    Example: rnnclf eval --model runs/trec-20261126-101500 --data data/test.csv.gz
    """
    with _user_errors():
        from rnnclf.predict import Predictor, score_file
        from rnnclf.runs import resolve_checkpoint

        predictor = Predictor.from_checkpoint(resolve_checkpoint(model))
        report = score_file(predictor, data)
        if json_:
            # Plain write, not rich: rich would turn ':name:' in a label into an emoji.
            sys.stdout.write(json.dumps(report, ensure_ascii=False) + "\n")
        else:
            _report_tables(report)


def _read_lines(file: str) -> Iterator[str]:
    """The lines of a UTF-8 file ('-': stdin), without line ends, read as they are needed."""
    source = "stdin" if file == "-" else file
    try:
        handle = contextlib.nullcontext(sys.stdin.buffer) if file == "-" else open(file, "rb")  # noqa: SIM115
    except FileNotFoundError:
        raise RnnclfError(f"{file}: no such file") from None
    except OSError as err:
        raise RnnclfError(f"{file}: cannot read ({err.strerror})") from None
    with handle as lines:
        # Bytes lines decoded one by one: a bad byte is reported with its line number.
        for number, raw in enumerate(lines, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise RnnclfError(f"{source}: line {number}: not UTF-8 text (byte {err.start})") from None
            yield line.removeprefix("\ufeff").rstrip("\r\n") if number == 1 else line.rstrip("\r\n")


@app.command()
def predict(
    text: Annotated[list[str] | None, typer.Argument(help="Documents to label.")] = None,
    model: ModelOption = None,
    file: Annotated[
        str | None, typer.Option("--file", "-f", help="One document per line; '-' reads stdin.")
    ] = None,
    top_k: Annotated[int | None, typer.Option(min=1, help="Show the K most likely labels.")] = None,
    json_: Annotated[bool, typer.Option("--json", help="One JSON object per document.")] = False,
) -> None:
    """Label new text, with probabilities.

    Example: rnnclf predict "What is the capital of Peru ?" --top-k 3
    """
    with _user_errors():
        from rnnclf.predict import Predictor
        from rnnclf.runs import resolve_checkpoint

        if not text and file is None:
            raise RnnclfError("nothing to predict: give TEXT arguments or --file PATH (--file - for stdin)")
        predictor = Predictor.from_checkpoint(resolve_checkpoint(model))
        documents = _read_lines(file) if file is not None else iter(text or [])
        if file is not None and text:
            documents = (d for source in (text, _read_lines(file)) for d in source)
        out = sys.stdout
        try:
            for result in predictor.predict_stream(documents, top_k=top_k):
                if json_:
                    out.write(json.dumps(result.to_dict(), ensure_ascii=False) + "\n")
                else:
                    shown = list(result.probabilities.items())[: top_k or 1]
                    out.write("\t".join(f"{label}\t{p:.4f}" for label, p in shown) + "\n")
            out.flush()
        except BrokenPipeError:
            # The reader stopped early (`rnnclf predict -f big.txt | head`): end quietly, as Unix tools
            # do; stdout goes to /dev/null so the interpreter's final flush cannot fail again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(128 + signal.SIGPIPE) from None


@app.command("init-config")
def init_config() -> None:
    """Print a complete, commented default config.

    Example: rnnclf init-config > my.yaml
    """
    from rnnclf.config import default_yaml

    sys.stdout.write(default_yaml())


def main() -> None:
    app()
