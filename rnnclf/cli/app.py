"""The `rnnclf` command: parse arguments, call one library function, hand the result to render.py.

Known problems (RnnclfError) become one line on stderr and exit code 2. Library modules are imported
inside the commands so `rnnclf --help` and `init-config` start without loading torch. What `train` does
around training (run folder, Ctrl-C, resume hint, plots) is in cli_train.py.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import os
import signal
import sys
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from rnnclf.cli import render
from rnnclf.cli import train as cli_train
from rnnclf.cli import tune as cli_tune
from rnnclf.errors import RnnclfError

app = typer.Typer(
    add_completion=True,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Train, evaluate and use recurrent (RNN/GRU/LSTM) text classifiers from one YAML file.\n\n"
    'Example: rnnclf train configs/trec.yaml && rnnclf predict "What is the capital of Peru ?"',
    epilog="Tab completion of commands and options: run 'rnnclf --install-completion' once "
    "(bash, zsh, fish or PowerShell), then open a new shell.",
)

ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model", "-m", help="Run folder or checkpoint file. Default: the latest run trained here."
    ),
]
# predict and eval: which columns of a csv/tsv/jsonl/parquet file hold the text and the labels.
TextColumnOption = Annotated[
    str | None,
    typer.Option(help="The column (JSON field) holding the text. Default: the model's data.text_column."),
]
LabelColumnOption = Annotated[
    str | None,
    typer.Option(help="The column (JSON field) holding the labels. Default: the model's data.label_column."),
]
# train and pretrain: where the run goes, resuming it, and how much it prints.
RunDirOption = Annotated[Path | None, typer.Option(help="Where outputs go (overrides output.run_dir).")]
ResumeOption = Annotated[
    bool, typer.Option(help="Continue the run in --run-dir (or the latest) from last.pt.")
]
QuietOption = Annotated[
    bool, typer.Option(help="Print one line per epoch, the final result and warnings only.")
]
VerboseOption = Annotated[
    bool, typer.Option(help="Also print the whole resolved config (always saved as RUN_DIR/config.yaml).")
]
SET_HELP = (
    "Override a key: --set {example} (repeatable). Relative paths in a --set are read from the working "
    "directory; those in the config file from the file's folder."
)
# predict and eval: which engine scores (rnnclf.inference.backends).
BackendOption = Annotated[
    str,
    typer.Option(
        "--backend",
        help="torch, onnx (ONNX Runtime, without torch: the run's model.onnx from 'rnnclf export --format "
        "onnx', or --model FILE.onnx) or auto: onnx when the run holds a current export, else torch.",
    ),
]


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """RnnclfError -> 'error: ...' on stderr, exit code 2; no traceback."""
    render.route_warnings()
    try:
        yield
    except RnnclfError as err:
        render.error(err)
        raise typer.Exit(2) from None


@app.command()
def train(
    config: Annotated[Path, typer.Argument(help="YAML config file.")],
    set_: Annotated[
        list[str] | None, typer.Option("--set", help=SET_HELP.format(example="train.epochs=3"))
    ] = None,
    run_dir: RunDirOption = None,
    resume: ResumeOption = False,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Train a classifier (with pretrain.epochs > 0: a language model first, then the classifier from it).

    Example: rnnclf train configs/trec.yaml --set train.epochs=3
    """
    with _user_errors():
        cli_train.run(config, set_ or [], run_dir, resume, quiet, verbose=verbose)


@app.command()
def pretrain(
    config: Annotated[Path, typer.Argument(help="YAML config file (its model section sets the shape).")],
    set_: Annotated[
        list[str] | None, typer.Option("--set", help=SET_HELP.format(example="pretrain.epochs=3"))
    ] = None,
    run_dir: RunDirOption = None,
    resume: ResumeOption = False,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Pretrain a language model on the training texts (+ data.unlabeled) for model.init_from.

    It has the classifier's embedding and recurrent layers (forward and backward for a bidirectional
    model) and trains pretrain.epochs passes (3 when pretrain.epochs is 0); the run folder gets lm.pt
    (best held-out perplexity), and the last line is the rnnclf train command that uses it.

    Example: rnnclf pretrain configs/imdb-pretrained.yaml --set pretrain.epochs=2
    """
    with _user_errors():
        cli_train.run(config, set_ or [], run_dir, resume, quiet, command="pretrain", verbose=verbose)


@app.command()
def tune(
    config: Annotated[Path, typer.Argument(help="YAML config file (its tune section: budget, space...).")],
    budget: Annotated[
        str | None, typer.Option(help="Wall time of the whole search: 300, 10m, 1h (default: tune.budget).")
    ] = None,
    trials: Annotated[int | None, typer.Option(help="Stop after this many trials.")] = None,
    jobs: Annotated[int, typer.Option(help="Worker processes here, each with its share of the cores.")] = 1,
    storage: Annotated[
        str | None,
        typer.Option(
            help="Optuna storage URL (postgresql://...) shared by workers; default: SQLite in the folder."
        ),
    ] = None,
    study: Annotated[str | None, typer.Option(help="Study name in --storage (workers join by name).")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a key: --set model.cell=gru (repeatable).")
    ] = None,
    run_dir: Annotated[
        Path | None, typer.Option(help="The tune folder (default: runs/tune-NAME-DATE-TIME).")
    ] = None,
    resume: Annotated[
        bool, typer.Option(help="Continue the tune in --run-dir with the budget left.")
    ] = False,
    quiet: Annotated[bool, typer.Option(help="One line per trial instead of the live table.")] = False,
) -> None:
    """Search for the best recurrent model on the validation split within a time budget (Optuna).

    Example: rnnclf tune configs/trec.yaml --budget 10m
    """
    with _user_errors():
        cli_tune.run(config, set_ or [], run_dir, resume, quiet, budget, trials, jobs, storage, study)


@app.command("eval")
def evaluate(
    model: ModelOption = None,
    data: Annotated[
        str | None,
        typer.Option(
            help="Labelled data: a csv, tsv, jsonl, parquet or fastText file, or a folder per class. "
            "Default: the run's data.test."
        ),
    ] = None,
    text_column: TextColumnOption = None,
    label_column: LabelColumnOption = None,
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    plot: Annotated[
        Path | None, typer.Option(help="Also draw the normalized confusion matrix to this PNG file.")
    ] = None,
    backend: BackendOption = "auto",
) -> None:
    """Score a trained model: accuracy, macro-F1, per-class table, confusion matrix.

    Multi-label models: micro-, macro- and samples-F1, subset accuracy, Hamming loss, label cardinality,
    and per label precision, recall, F1 and its 2x2 counts; --plot draws per-label F1 bars.

    A file is read as training reads it, by the model's data.text_column and data.label_column, or by
    --text-column and --label-column.

    Example: rnnclf eval --model runs/trec-20261126-101500 --data data/test.csv.gz --plot confusion.png
    """
    with _user_errors():
        from rnnclf.inference.backends import load_predictor, score_file

        if plot is not None:
            from rnnclf.reports import plots

            plots.require_matplotlib()  # before the slow part: say so now, not after scoring
        predictor = load_predictor(model, backend)
        checkpoint_path = predictor.path
        report = score_file(predictor, data, text_column, label_column)
        if json_:
            render.json_line(report)
        else:
            render.report_tables(report)
        if plot is not None:
            from rnnclf.reports.metrics import headline

            source = Path(data or predictor.config.data.test or "?").name
            name, value = headline(report)
            scores = f"{name} {value:.4f}, macro-F1 {report['macro_f1']:.4f}"
            title = f"{checkpoint_path.parent.name}/{checkpoint_path.name} on {source}\n{scores}"
            title += f", {report['n']} documents"
            if report.get("multi_label"):  # per-label F1 bars: a confusion matrix needs one label each
                plots.per_label_f1(report, plot, title)
            else:
                plots.confusion_matrix(report["confusion_matrix"], report["labels"], plot, title)
            # With --json, stdout is the JSON alone.
            kind = "per-label F1" if report.get("multi_label") else "confusion matrix"
            render.message(f"{kind}: {plot}", to_stderr=json_)


@app.command()
def predict(
    text: Annotated[list[str] | None, typer.Argument(help="Documents to label.")] = None,
    model: ModelOption = None,
    file: Annotated[
        str | None,
        typer.Option(
            "--file",
            "-f",
            help="Documents to label: the text column of a csv, tsv, jsonl or parquet file; one document "
            "per line of any other file; '-' reads stdin (one per line).",
        ),
    ] = None,
    text_column: TextColumnOption = None,
    top_k: Annotated[
        int | None,
        typer.Option(min=1, help="Show the K most likely labels (multi-label: at most K chosen labels)."),
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option(
            help="Multi-label models: choose labels at or above T (0 < T < 1) instead of the saved ones."
        ),
    ] = None,
    json_: Annotated[bool, typer.Option("--json", help="One JSON object per document.")] = False,
    explain: Annotated[
        bool,
        typer.Option(
            "--explain",
            help="Show the tokens that pushed each prediction most, by occlusion: score = p(label) - "
            "p(label without the token); the first 200 tokens of a document are scored.",
        ),
    ] = False,
    backend: BackendOption = "auto",
) -> None:
    """Label new text, with probabilities.

    Multi-label models print every label at or above its threshold as label:probability (or
    "(no label)"); --json gives all probabilities and the chosen labels.

    A file's text is its data.text_column (the model's, or --text-column); a .txt file or stdin holds one
    document per line.

    Example: rnnclf predict "What is the capital of Peru ?" --top-k 3 --explain
    """
    with _user_errors():
        from rnnclf.data.documents import texts_to_score
        from rnnclf.inference.backends import load_predictor

        if not text and file is None:
            raise RnnclfError("nothing to predict: give TEXT arguments or --file PATH (--file - for stdin)")
        if threshold is not None and not 0.0 < threshold < 1.0:  # before loading: a one-line error
            raise RnnclfError(f"--threshold {threshold}: must lie strictly between 0 and 1")
        if explain and backend == "onnx":
            raise RnnclfError("--explain: needs the torch backend (it reads the model's words one by one)")
        predictor = load_predictor(model, "torch" if explain else backend, threshold=threshold)
        documents: Iterator[str] = iter(text or [])
        if file is not None:
            data = predictor.config.data
            read = texts_to_score(file, text_column or data.text_column, data.format, data.label_column)
            documents = itertools.chain(documents, read)
        if explain:  # imported only then: a plain predict starts faster without it
            from rnnclf.inference.explain import explain_labels, explain_one
        try:
            for result in predictor.predict_stream(documents, top_k=top_k):
                explanation = None
                if explain and result.labels is not None:  # multi-label: one per chosen label
                    explanation = explain_labels(predictor, result.text, result.labels)
                elif explain:
                    explanation = explain_one(predictor, result.text)
                render.prediction(result, explanation, top_k, json_)
            sys.stdout.flush()
        except BrokenPipeError:
            # The reader stopped early (`rnnclf predict -f big.txt | head`): end quietly, as Unix tools
            # do; stdout goes to /dev/null so the interpreter's final flush cannot fail again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(128 + signal.SIGPIPE) from None


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
        from rnnclf.runs.info import list_runs

        rows = list_runs(folder)
        if json_:
            render.json_line(rows)
        else:
            render.runs_table(rows, folder)


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
        from rnnclf.runs.info import checkpoint_info
        from rnnclf.runs.rundir import resolve_checkpoint

        details = checkpoint_info(resolve_checkpoint(model), data)
        if json_:
            render.json_line(details)
        else:
            render.info_grid(details)


class ExportFormat(str, Enum):
    torchscript = "torchscript"
    onnx = "onnx"


@app.command()
def export(
    format_: Annotated[
        ExportFormat, typer.Option("--format", help="torchscript (needs only torch) or onnx.")
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            help="Model file to write; PATH.json gets the tokenizer rules, vocabulary and labels. ONNX "
            "default: the run folder's model.onnx (model.int8.onnx with --quantize), which predict and "
            "eval then use without torch."
        ),
    ] = None,
    model: ModelOption = None,
    quantize: Annotated[
        str | None,
        typer.Option(
            help="int8: ONNX with int8 weights (about 1/4 the size, faster); its accuracy beside fp32's on "
            "the run's validation data is printed and kept in the JSON."
        ),
    ] = None,
) -> None:
    """Export a model for deployment: takes token ids and lengths, returns logits and probabilities.

    Example: rnnclf export --format onnx --quantize int8
    """
    with _user_errors():
        from rnnclf.inference.export import PROBE_LENGTHS, export_model
        from rnnclf.runs.rundir import resolve_checkpoint

        result = export_model(resolve_checkpoint(model), format_.value, out, quantize)
        render.export_summary(result, PROBE_LENGTHS)


@app.command()
def serve(
    model: Annotated[
        str | None,
        typer.Argument(
            metavar="[RUN_OR_MODEL]", help="Run folder or model file. Default: the latest run trained here."
        ),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0: every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    backend: Annotated[str, typer.Option(help="torch, or onnx (ONNX Runtime, no torch).")] = "torch",
    workers: Annotated[int, typer.Option(help="Server processes, each with its own model.")] = 1,
    max_batch: Annotated[int, typer.Option(help="Most documents scored together.")] = 128,
    max_wait_ms: Annotated[
        float, typer.Option(help="Longest wait for more requests to join a batch (milliseconds).")
    ] = 2.0,
    max_queue: Annotated[
        int, typer.Option(help="Most documents waiting to be scored; past it requests get 503.")
    ] = 256,
    max_texts: Annotated[int, typer.Option(help="Most texts in one request (413 past it).")] = 256,
    max_body: Annotated[int, typer.Option(help="Largest request body in bytes (413 past it).")] = 1_048_576,
    max_connections: Annotated[
        int, typer.Option(help="Most open connections; past it requests get 503.")
    ] = 256,
    access_log: Annotated[bool, typer.Option(help="Log every request on stderr.")] = False,
) -> None:
    """Serve a model over HTTP: POST /predict, GET /health, GET /model, GET /docs.

    Requests arriving together are scored together (up to --max-batch documents, waiting at most
    --max-wait-ms). SIGTERM or Ctrl-C stops accepting, finishes the requests in flight and exits 0.
    Binds to 127.0.0.1: put TLS and authentication in front before exposing it (docs/serving.md).

    Example: rnnclf serve runs/trec-20261126-101500 --port 8000
    """
    with _user_errors():
        from rnnclf.inference.serve import ServeSettings
        from rnnclf.inference.serve import serve as serve_model

        settings = ServeSettings(
            model=model,
            host=host,
            port=port,
            backend=backend,
            workers=workers,
            max_batch=max_batch,
            max_wait_ms=max_wait_ms,
            max_queue=max_queue,
            max_texts=max_texts,
            max_body=max_body,
            max_connections=max_connections,
            access_log=access_log,
        )
        serve_model(settings)


data_app = typer.Typer(
    no_args_is_help=True,
    help="Corpora and word vectors by name: list them, or fetch one (verified, unpacked, with a config).\n\n"
    "Example: rnnclf data fetch imdb",
)
app.add_typer(data_app, name="data")


@data_app.command("list")
def data_list(json_: Annotated[bool, typer.Option("--json", help="Print one JSON list.")] = False) -> None:
    """Show the corpora and word vectors rnnclf can fetch by name: size, classes, licence, source.

    Example: rnnclf data list
    """
    with _user_errors():
        from rnnclf.fetch import catalog

        rows = catalog()
        if json_:
            render.json_line(rows)
        else:
            render.data_catalog(rows)


@data_app.command("fetch")
def data_fetch(
    name: Annotated[str, typer.Argument(help="A corpus or vectors name from 'rnnclf data list'.")],
    folder: Annotated[
        Path | None,
        typer.Option("--dir", help="Folder to write into. Default: $RNNCLF_DATA, else ~/.cache/rnnclf."),
    ] = None,
    archive: Annotated[
        list[Path] | None,
        typer.Option(
            help="A file of the corpus or vectors downloaded by hand (repeatable): used instead of "
            "downloading it, once its SHA-256 matches the pinned one."
        ),
    ] = None,
) -> None:
    """Download a corpus or word vectors from the official source, check its SHA-256 and unpack it.

    A corpus becomes train.csv.gz and test.csv.gz (columns text,label) and a config.yaml that trains on
    them. Fetching again is a no-op; an interrupted download resumes. Where this machine cannot reach the
    source, download the file elsewhere and give it with --archive: it is checked the same way.

    Example: rnnclf data fetch imdb && rnnclf train ~/.cache/rnnclf/corpora/imdb/config.yaml
    """
    with _user_errors():
        from rnnclf.cli.progress import Transfer
        from rnnclf.fetch import fetch

        try:
            result = fetch(name, folder, Transfer(), archive or [])
        except KeyboardInterrupt:
            render.message("interrupted; run the same command again to resume the download", to_stderr=True)
            raise typer.Exit(128 + signal.SIGINT) from None
        render.fetched(result)


@app.command("init-config")
def init_config() -> None:
    """Print a complete, commented default config.

    Example: rnnclf init-config > my.yaml
    """
    from rnnclf.config import default_yaml

    sys.stdout.write(default_yaml())


def _whole_sentences(commands: typer.Typer) -> None:
    """Each command's help as whole paragraphs that the help screen wraps at its own width.

    Typer keeps a docstring's line breaks, so a sentence broken for the source's 110 columns was also
    broken in the middle on an 80- or 100-column screen. Paragraphs (blank-line separated) stay; inside
    one, lines join with spaces; an "Example:" line starts a paragraph of its own."""
    for info in commands.registered_commands:
        text = info.help if info.help is not None else inspect.getdoc(info.callback)
        if text:
            info.help = _reflowed(text)
    for group in commands.registered_groups:
        if group.typer_instance is not None:
            _whole_sentences(group.typer_instance)


def _reflowed(text: str) -> str:
    paragraphs: list[list[str]] = [[]]
    for line in text.splitlines():
        if not line.strip() or line.startswith("Example:"):
            paragraphs.append([])
        if line.strip():
            paragraphs[-1].append(line.strip())
    return "\n\n".join(" ".join(lines) for lines in paragraphs if lines)


_whole_sentences(app)


def main() -> None:
    if int(os.environ.get("WORLD_SIZE", "1") or "1") > 1:
        _main_under_torchrun()
    app()


def _main_under_torchrun() -> None:
    """One process of a torchrun job: run the command, then leave without interpreter shutdown.

    Why: gloo's worker threads can still be dropping a finished all-reduce, whose tensors Python owns,
    when the interpreter shuts down; the thread then cannot take the GIL and the process aborts
    ("terminate called without an active exception", SIGABRT) after the run has finished and written
    everything, and torchrun reports the job as failed. Seen in about 1 run in 8 of a two-process job on
    2 cores (torch 2.13). Exit handlers still run and output is flushed; files are closed by then."""
    import atexit

    try:
        app()
        code: object = 0
    except SystemExit as done:
        code = done.code
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)
