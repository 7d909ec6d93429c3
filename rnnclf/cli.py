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
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from rnnclf.errors import MissingExtra, RnnclfError

app = typer.Typer(
    add_completion=True,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Train, evaluate and use recurrent (RNN/GRU/LSTM) text classifiers from one YAML file.\n\n"
    'Example: rnnclf train configs/trec.yaml && rnnclf predict "What is the capital of Peru ?"',
    epilog="Tab completion of commands and options: run 'rnnclf --install-completion' once "
    "(bash, zsh, fish or PowerShell), then open a new shell.",
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


def _note(text: str) -> None:
    """One line on stderr about something optional that did not happen (the command still succeeds)."""
    stderr.print(f"note: {' '.join(text.split())}", markup=False)


def _install_stop_handlers(stop: Any) -> dict[int, Any]:
    """First SIGINT/SIGTERM: finish the current step, save last.pt, exit. Second: exit at once
    (checkpoints are replaced atomically, so no file can be left torn). Returns the handlers replaced."""

    def handle(number: int, frame: Any) -> None:
        if stop:
            os._exit(128 + number)
        stop.set(number)
        # os.write, not print: the signal may arrive while the main thread is inside a print to stderr.
        if stop.finishing:  # every epoch is done and saved: let the final scores finish, then stop
            os.write(
                2,
                b"training is complete; writing the final metrics.json, then stopping without plots "
                b"(press Ctrl-C again to quit now; best.pt and last.pt are saved)\n",
            )
        else:
            os.write(2, b"stopping after this step and saving last.pt (press Ctrl-C again to quit now)\n")

    return {number: signal.signal(number, handle) for number in (signal.SIGINT, signal.SIGTERM)}


def _resume_command(config: Path, overrides: list[str], folder: Path) -> str:
    """The command line that continues this run, --set overrides included (shell-quoted)."""
    sets = [part for item in overrides for part in ("--set", item)]
    words = ["train", str(config), *sets, "--run-dir", str(folder), "--resume"]
    processes = os.environ.get("WORLD_SIZE", "1")
    if processes != "1":  # started by torchrun: continue the same way
        if os.environ.get("LOCAL_WORLD_SIZE") == processes:  # one machine
            return shlex.join(["torchrun", "--nproc-per-node", processes, "-m", "rnnclf", *words])
        return "torchrun <the same torchrun options> -m rnnclf " + shlex.join(words)
    return shlex.join(["rnnclf", *words])


def _run_to_resume() -> Path:
    from rnnclf import rundir

    try:
        return rundir.latest_run()
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
        from rnnclf import rundir
        from rnnclf.report import make_reporter
        from rnnclf.runtime import prepare_cpu

        prepare_cpu()  # before any tensor work starts torch's threads
        from rnnclf.train import Interrupted, StopFlag
        from rnnclf.train import train as run_training

        settings = config_module.load(config, set_ or [])
        primary = os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 writes and reports
        if run_dir is not None:
            settings.output.run_dir = str(run_dir)
        if resume:
            folder = Path(settings.output.run_dir) if settings.output.run_dir else _run_to_resume()
        else:
            folder = rundir.new_run_dir(config, settings.output.run_dir)
        settings.output.run_dir = str(folder)
        reporter = make_reporter(quiet or not primary)
        reporter.config(f"config ({config}):\n{config_module.dump(settings)}")
        if settings.output.tensorboard and primary:
            reporter = _with_tensorboard(reporter, folder)
        stop = StopFlag()
        previous_handlers = _install_stop_handlers(stop)
        try:
            metrics = run_training(settings, folder, reporter, resume=resume, stop=stop)
        except Interrupted as interrupted:
            if primary:
                command = _resume_command(config, set_ or [], folder)
                stderr.print(f"interrupted; last.pt saved. Resume with: {command}", markup=False)
            raise typer.Exit(128 + interrupted.signal) from None
        finally:
            reporter.close()
            for number, handler in previous_handlers.items():  # in-process callers get theirs back
                signal.signal(number, handler)
        if stop.signal is not None:  # arrived while the final scores were written: they are; stop now
            if primary:
                stderr.print(
                    f"stopped after training; {folder / 'metrics.json'} written, no plots", markup=False
                )
            raise typer.Exit(128 + stop.signal)
        if primary:
            _after_training(folder, metrics, settings, reporter, quiet)


def _with_tensorboard(reporter: Any, folder: Path) -> Any:
    from rnnclf.tensorboard_log import TensorBoardReporter

    try:
        return TensorBoardReporter(reporter, folder)
    except MissingExtra as missing:
        _note(f"{missing}; training goes on without it")
        return reporter


def _after_training(folder: Path, metrics: dict[str, Any], settings: Any, reporter: Any, quiet: bool) -> None:
    """Pictures and final TensorBoard scalars, from what training wrote (metrics.jsonl, metrics.json).
    The run is complete already: a missing optional package or a failed picture costs a note, not it."""
    if settings.output.plots:
        from rnnclf.plots import write_run_plots

        try:
            written = write_run_plots(folder)
        except RnnclfError as err:
            _note(f"no plots: {err}")
        else:
            if not quiet:
                stdout.print(f"plots: {', '.join(str(path) for path in written)}", markup=False)
    from rnnclf.tensorboard_log import TensorBoardReporter, write_final

    if isinstance(reporter, TensorBoardReporter):
        write_final(folder, metrics)


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
    plot: Annotated[
        Path | None, typer.Option(help="Also draw the normalized confusion matrix to this PNG file.")
    ] = None,
) -> None:
    """Score a trained model: accuracy, macro-F1, per-class table, confusion matrix.

    Example: rnnclf eval --model runs/trec-20261126-101500 --data data/test.csv.gz --plot confusion.png
    """
    with _user_errors():
        from rnnclf import plots
        from rnnclf.predict import Predictor
        from rnnclf.rundir import resolve_checkpoint
        from rnnclf.scoring import score_file

        if plot is not None:
            plots.require_matplotlib()  # before the slow part: say so now, not after scoring
        checkpoint_path = resolve_checkpoint(model)
        predictor = Predictor.from_checkpoint(checkpoint_path)
        report = score_file(predictor, data)
        if json_:
            # Plain write, not rich: rich would turn ':name:' in a label into an emoji.
            sys.stdout.write(json.dumps(report, ensure_ascii=False) + "\n")
        else:
            _report_tables(report)
        if plot is not None:
            source = Path(data or predictor.config.data.test or "?").name
            scores = f"accuracy {report['accuracy']:.4f}, macro-F1 {report['macro_f1']:.4f}"
            title = f"{checkpoint_path.parent.name}/{checkpoint_path.name} on {source}\n{scores}"
            title += f", {report['n']} documents"
            plots.confusion_matrix(report["confusion_matrix"], report["labels"], plot, title)
            # With --json, stdout is the JSON alone.
            (stderr if json_ else stdout).print(f"confusion matrix: {plot}", markup=False)


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
    explain: Annotated[
        bool,
        typer.Option(
            "--explain",
            help="Show the tokens that pushed each prediction most, by occlusion: score = p(label) - "
            "p(label without the token); the first 200 tokens of a document are scored.",
        ),
    ] = False,
) -> None:
    """Label new text, with probabilities.

    Example: rnnclf predict "What is the capital of Peru ?" --top-k 3 --explain
    """
    with _user_errors():
        from rnnclf.explain import explain_one, highlighted, summary
        from rnnclf.predict import Predictor
        from rnnclf.rundir import resolve_checkpoint

        if not text and file is None:
            raise RnnclfError("nothing to predict: give TEXT arguments or --file PATH (--file - for stdin)")
        predictor = Predictor.from_checkpoint(resolve_checkpoint(model))
        documents = _read_lines(file) if file is not None else iter(text or [])
        if file is not None and text:
            documents = (d for source in (text, _read_lines(file)) for d in source)
        out = sys.stdout
        try:
            for result in predictor.predict_stream(documents, top_k=top_k):
                explanation = explain_one(predictor, result.text) if explain else None
                if json_:
                    record = result.to_dict()
                    if explanation is not None:
                        record["explanation"] = explanation.to_dict()
                    out.write(json.dumps(record, ensure_ascii=False) + "\n")
                else:
                    shown = list(result.probabilities.items())[: top_k or 1]
                    out.write("\t".join(f"{label}\t{p:.4f}" for label, p in shown) + "\n")
                    if explanation is not None:
                        out.write(f"  why {explanation.label}: {summary(explanation)}\n")
                        out.flush()  # rich writes the next line through the same stream
                        stdout.print(Text("  ") + highlighted(explanation))
            out.flush()
        except BrokenPipeError:
            # The reader stopped early (`rnnclf predict -f big.txt | head`): end quietly, as Unix tools
            # do; stdout goes to /dev/null so the interpreter's final flush cannot fail again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(128 + signal.SIGPIPE) from None


MONITOR_NAMES = {"valid_accuracy": "accuracy", "valid_macro_f1": "macro-F1", "valid_loss": "loss"}


def _number(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "-"


@app.command("runs")
def list_runs(
    folder: Annotated[Path, typer.Argument(help="Folder holding run folders.")] = Path("runs"),
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON list.")] = False,
) -> None:
    """List the runs under ./runs (or FOLDER), with their scores.

    Each run's date, data, model, epochs, best valid score, test accuracy and training time.

    Example: rnnclf runs --json
    """
    with _user_errors():
        from rnnclf.runinfo import data_summary, duration
        from rnnclf.runinfo import list_runs as find_runs

        rows = find_runs(folder)
        if json_:
            sys.stdout.write(json.dumps(rows, ensure_ascii=False) + "\n")
            return
        if not rows:
            _note(f"no runs under {folder}/ (train one with 'rnnclf train CONFIG')")
            return
        table = Table(title=f"runs under {folder}/", caption="* the latest run: the default --model")
        for column in ("run", "date", "status", "data", "model"):
            table.add_column(column, overflow="fold")
        for column in ("epochs", "best valid", "test acc.", "time"):
            table.add_column(column, justify="right")
        for row in rows:
            planned = row["epochs_planned"]
            best = row["best_valid"]
            best_text = "-"
            if best is not None:
                monitor = MONITOR_NAMES.get(row["monitor"], row["monitor"])
                best_text = f"{monitor} {best:.4f} (ep. {row['best_epoch']})"
            table.add_row(
                Text(row["name"] + (" *" if row["latest"] else ""), style="bold" if row["latest"] else ""),
                row["date"] or "-",
                row["status"],
                Text(data_summary(row["data"])),
                row["model"],
                f"{row['epochs']}/{planned}" if planned else str(row["epochs"]),
                best_text,
                _number(row["test_accuracy"]),
                duration(row["train_seconds"]),
            )
        _print_wide(table)


@app.command()
def info(
    model: ModelOption = None,
    data: Annotated[
        str | None,
        typer.Option(help="Measure vocabulary coverage on this data file. Default: the run's test data."),
    ] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Describe a trained model: config, vocabulary size and coverage, labels, parameters, format, metrics.

    Example: rnnclf info --model runs/trec-20261126-101500
    """
    with _user_errors():
        from rnnclf.rundir import resolve_checkpoint
        from rnnclf.runinfo import checkpoint_info, duration

        details = checkpoint_info(resolve_checkpoint(model), data)
        if json_:
            sys.stdout.write(json.dumps(details, ensure_ascii=False) + "\n")
            return
        config = details["config"]
        text, train_settings = config["text"], config["train"]
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold")
        grid.add_column(overflow="fold")
        version = f"format {details['format_version']}, written by rnnclf {details['rnnclf_version'] or '?'}"
        grid.add_row("checkpoint", Text(f"{details['checkpoint']} ({version}, epoch {details['epoch']})"))
        grid.add_row("data", Text(f"train {config['data']['train']}; test {config['data']['test'] or '-'}"))
        part = {"head": "first", "tail": "last", "head_tail": "first quarter and last"}[text["truncate"]]
        kept = f"the {part} {text['max_length']} tokens"
        grid.add_row("text", f"{text['tokenizer']} tokenizer, keeps {kept}, min_freq {text['min_freq']}")
        grid.add_row(
            "model",
            f"{details['model']}, embedding {config['model']['embedding_dim']}; "
            f"{details['parameters']:,} parameters ({details['embedding_parameters']:,} in the embedding)",
        )
        grid.add_row(
            "training",
            f"{train_settings['epochs']} epochs, batch {train_settings['batch_size']}, "
            f"{train_settings['optimizer']} lr {train_settings['lr']} ({train_settings['schedule']}), "
            f"seed {train_settings['seed']}",
        )
        vocabulary = f"{details['vocab_size']:,} tokens"
        cover = details["coverage"]
        if cover:
            vocabulary += (
                f"; covers {cover['token_coverage']:.1%} of the {cover['tokens']:,} tokens "
                f"({cover['word_coverage']:.1%} of {cover['distinct_words']:,} distinct words) "
                f"of {cover['data']}"
            )
        grid.add_row("vocabulary", Text(vocabulary))
        labels = details["labels"]
        grid.add_row("labels", Text(f"{len(labels)}: {', '.join(labels)}"))
        metrics = details["metrics"]
        scores = [
            f"{split} accuracy {_number(metrics[split].get('accuracy'))} macro-F1 "
            f"{_number(metrics[split].get('macro_f1'))}"
            for split in ("valid", "test")
            if split in metrics
        ]
        if metrics.get("best_epoch") is not None:
            scores.append(f"best epoch {metrics['best_epoch']}")
        if metrics.get("train_seconds") is not None:
            scores.append(f"trained in {duration(metrics['train_seconds'])}")
        grid.add_row("metrics", "; ".join(scores) or "-")
        for name, entry in metrics.get("components", {}).items():
            # Each add-on part beside the whole: what the recurrent model alone does, always visible.
            parts = [f"{split} accuracy {_number(entry[split].get('accuracy'))}" for split in entry]
            grid.add_row(f"  {name}", "; ".join(parts))
        if "blend" in metrics:
            grid.add_row("  blend", f"linear share {metrics['blend']['share']:.1f}, chosen on validation")
        baseline = metrics.get("baseline")
        if baseline and "valid" in baseline:
            accuracy = _number(baseline["valid"].get("accuracy"))
            grid.add_row("baseline", f"{baseline['model']} (not saved): valid accuracy {accuracy}")
        stdout.print(grid)


class ExportFormat(str, Enum):
    torchscript = "torchscript"
    onnx = "onnx"


@app.command()
def export(
    format_: Annotated[
        ExportFormat, typer.Option("--format", help="torchscript (needs only torch) or onnx.")
    ],
    out: Annotated[Path, typer.Option(help="Model file to write; PATH.json gets vocabulary and labels.")],
    model: ModelOption = None,
) -> None:
    """Export a model for deployment: takes token ids and lengths, returns logits and probabilities.

    Example: rnnclf export --format onnx --out model.onnx
    """
    with _user_errors():
        from rnnclf.export import PROBE_LENGTHS, export_model
        from rnnclf.rundir import resolve_checkpoint

        result = export_model(resolve_checkpoint(model), format_.value, out)
        size = result.model.stat().st_size
        shown = f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.0f} kB"
        stdout.print(
            f"wrote {result.model} ({result.format}, {shown}) and {result.metadata} "
            "(tokenizer settings, vocabulary, labels)",
            markup=False,
        )
        if result.max_difference is not None:
            stdout.print(
                f"checked: probabilities within {result.max_difference:.1e} of the checkpoint's on documents "
                f"of {', '.join(map(str, PROBE_LENGTHS))} tokens in one padded batch",
                markup=False,
            )
        for note in result.notes:
            _note(note)


@app.command("init-config")
def init_config() -> None:
    """Print a complete, commented default config.

    Example: rnnclf init-config > my.yaml
    """
    from rnnclf.config import default_yaml

    sys.stdout.write(default_yaml())


def main() -> None:
    app()
