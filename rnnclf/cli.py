"""The `rnnclf` command: parse arguments, call one library function, print the result.

Known problems (RnnclfError) become one line on stderr and exit code 2. Library modules are imported
inside the commands so `rnnclf --help` and `init-config` start without loading torch.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

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


def _install_stop_handlers(stop: Any) -> None:
    """First SIGINT/SIGTERM: finish the current step, save last.pt, exit. Second: exit at once
    (checkpoints are replaced atomically, so no file can be left torn)."""

    def handle(number: int, frame: Any) -> None:
        if stop:
            os._exit(128 + number)
        stop.set(number)
        stderr.print("stopping after this step and saving last.pt (press Ctrl-C again to quit now)")

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)


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
            folder = Path(settings.output.run_dir) if settings.output.run_dir else runs.latest_run()
        else:
            folder = runs.new_run_dir(config, settings.output.run_dir)
            runs.check_fresh(folder)
        settings.output.run_dir = str(folder)
        reporter = make_reporter(quiet)
        reporter.config(f"config ({config}):\n{config_module.dump(settings)}")
        stop = StopFlag()
        _install_stop_handlers(stop)
        runs.remember(folder) if not resume else None
        try:
            run_training(settings, folder, reporter, resume=resume, stop=stop)
        except Interrupted as interrupted:
            stderr.print(
                f"interrupted; last.pt saved. Resume with: rnnclf train {config} --run-dir {folder} --resume",
                markup=False,
            )
            raise typer.Exit(128 + interrupted.signal) from None
        finally:
            reporter.close()


def _report_tables(report: dict[str, Any]) -> None:
    stdout.print(
        f"documents {report['n']}   accuracy {report['accuracy']:.4f}   macro-F1 {report['macro_f1']:.4f}"
    )
    per_class = Table(title="per class")
    for column in ("label", "precision", "recall", "f1", "support"):
        per_class.add_column(column, justify="left" if column == "label" else "right")
    for label, scores in report["per_class"].items():
        per_class.add_row(
            label,
            f"{scores['precision']:.3f}",
            f"{scores['recall']:.3f}",
            f"{scores['f1']:.3f}",
            str(scores["support"]),
        )
    stdout.print(per_class)
    confusion = Table(title="confusion matrix (rows: true, columns: predicted)")
    confusion.add_column("")
    for label in report["labels"]:
        confusion.add_column(label, justify="right")
    for label, row in zip(report["labels"], report["confusion_matrix"], strict=True):
        confusion.add_row(label, *map(str, row))
    stdout.print(confusion)


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
            stdout.print(json.dumps(report), markup=False)
        else:
            _report_tables(report)


def _read_lines(file: str) -> Iterator[str]:
    if file == "-":
        for line in sys.stdin:
            yield line.rstrip("\n")
        return
    try:
        with open(file, encoding="utf-8") as handle:
            for line in handle:
                yield line.rstrip("\n")
    except FileNotFoundError:
        raise RnnclfError(f"{file}: no such file") from None
    except UnicodeDecodeError as err:
        raise RnnclfError(f"{file}: not UTF-8 text (byte {err.start})") from None
    except OSError as err:
        raise RnnclfError(f"{file}: cannot read ({err.strerror})") from None


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
        for result in predictor.predict_stream(documents, top_k=top_k):
            if json_:
                out.write(json.dumps(result.to_dict(), ensure_ascii=False) + "\n")
            else:
                shown = list(result.probabilities.items())[: top_k or 1]
                out.write("\t".join(f"{label}\t{p:.4f}" for label, p in shown) + "\n")
        out.flush()


@app.command("init-config")
def init_config() -> None:
    """Print a complete, commented default config.

    Example: rnnclf init-config > my.yaml
    """
    from rnnclf.config import default_yaml

    sys.stdout.write(default_yaml())


def main() -> None:
    app()
