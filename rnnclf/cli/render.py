"""What the commands show: the one place the CLI prints (tables, JSON, prediction lines, notes, errors).

Each function takes what a library call returned (plain dicts, result objects) and writes it to stdout
or stderr; the CLI parses, calls the library, and hands the result here. Training progress is the
Reporter's job (report.py); explain.py colours an explanation's tokens. No torch here: the modules a
table needs are imported when it is drawn, so `rnnclf --help` stays quick.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from rnnclf.cli.quick import prediction_line
from rnnclf.reporter import counted

stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)

MONITOR_NAMES = {
    "valid_accuracy": "accuracy",
    "valid_macro_f1": "macro-F1",
    "valid_micro_f1": "micro-F1",
    "valid_loss": "loss",
    "valid_perplexity": "perplexity",
}


class _WarningHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        stderr.print(f"warning: {record.getMessage()}", markup=False)


def route_warnings() -> None:
    """The library's logged warnings become 'warning: ...' lines on stderr (installed once)."""
    logger = logging.getLogger("rnnclf")
    if not any(isinstance(h, _WarningHandler) for h in logger.handlers):
        logger.addHandler(_WarningHandler(level=logging.WARNING))
    logger.propagate = False


def error(err: Exception) -> None:
    """A known problem as one 'error: ...' line on stderr."""
    message = " ".join(str(err).split())  # always one line
    stderr.print(f"error: {message}", markup=False)


def note(text: str) -> None:
    """One line on stderr about something optional that did not happen (the command still succeeds)."""
    stderr.print(f"note: {' '.join(text.split())}", markup=False)


def message(text: str, *, to_stderr: bool = False) -> None:
    """One plain line (never rich markup) on stdout, or on stderr."""
    (stderr if to_stderr else stdout).print(text, markup=False)


def _shown_path(value: str | Path) -> str:
    """A path as short as it stays clear: relative to the working directory when inside it."""
    path = Path(value)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(value)


def run_header(config: Path, settings: Any, folder: Path, resume: bool, differing: list[str]) -> None:
    """The first lines of `rnnclf train` and `pretrain`: where the run goes, the settings that differ
    from the defaults, and the data files. (The data's counts and the model's size follow as soon as
    training has read them; RUN/config.yaml holds every setting, and --verbose prints them.)"""
    where = "resuming" if resume else "run"
    saved = _shown_path(folder / "config.yaml")
    message(f"{where}: {_shown_path(folder)} (every setting: {saved}; --verbose prints them)")
    message(f"config {config}, set apart from the defaults: {', '.join(differing) or 'nothing'}")
    data = settings.data
    files = [f"train {_shown_path(data.train)}"]
    if data.valid:
        files.append(f"valid {_shown_path(data.valid)}")
    else:
        files.append(f"valid {data.valid_fraction:.0%} of train")
    if data.test:
        files.append(f"test {_shown_path(data.test)}")
    unlabeled = [data.unlabeled] if isinstance(data.unlabeled, str) else list(data.unlabeled or [])
    if unlabeled:
        files.append(f"unlabeled {', '.join(_shown_path(path) for path in unlabeled)}")
    if settings.model.init_from:
        files.append(f"language model {_shown_path(settings.model.init_from)}")
    message(f"files: {'; '.join(files)}")


def next_step(config: Path, folder: Path, two_stage: bool) -> None:
    """After `rnnclf pretrain`: the command that trains a classifier from the language model."""
    off = " --set pretrain.epochs=0" if two_stage else ""  # the config would pretrain again otherwise
    message(f"next: rnnclf train {config}{off} --set model.init_from={folder}")


def json_line(value: Any) -> None:
    """One JSON value on one line of stdout."""
    # Plain write, not rich: rich would turn ':name:' in a label into an emoji.
    sys.stdout.write(json.dumps(value, ensure_ascii=False) + "\n")


def _number(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "-"


def print_wide(table: Table) -> None:
    """Print a table without cutting any cell to '…'. To a file or pipe: at its natural width, even
    past 80 columns. On a terminal: long labels wrap inside their cells; wider only if it cannot fit."""
    measured = Measurement.get(stdout, stdout.options.update(max_width=10_000), table)
    needed = measured.minimum if stdout.is_terminal else measured.maximum
    # Console.print(width=) cannot exceed the console's width, so a wider table gets its own console.
    console = stdout if needed <= stdout.width else Console(highlight=False, width=needed, file=sys.stdout)
    console.print(table)


def multilabel_tables(report: dict[str, Any]) -> None:
    """`rnnclf eval` of a multi-label model: the scores, and per label its scores and 2x2 counts."""
    stdout.print(
        f"documents {report['n']}   micro-F1 {report['micro_f1']:.4f}   macro-F1 {report['macro_f1']:.4f}   "
        f"samples-F1 {report['samples_f1']:.4f}\nsubset accuracy {report['subset_accuracy']:.4f}   "
        f"Hamming loss {report['hamming_loss']:.4f}   labels per document {report['label_cardinality']:.3f} "
        f"(predicted {report['predicted_cardinality']:.3f})"
    )
    thresholds = sorted(set(report.get("thresholds", [])))
    if thresholds:
        shown = (
            f"{thresholds[0]:.2f}"
            if len(thresholds) == 1
            else f"per label, {thresholds[0]:.2f}-{thresholds[-1]:.2f}"
        )
        stdout.print(f"threshold {shown}")
    per_label = Table(title="per label (tp fp fn tn: the label's 2x2 counts)")
    per_label.add_column("label", overflow="fold")
    for column in ("precision", "recall", "f1", "support", "tp", "fp", "fn", "tn"):
        per_label.add_column(column, justify="right")
    for label, scores in report["per_class"].items():
        per_label.add_row(
            Text(label),
            *(f"{scores[name]:.3f}" for name in ("precision", "recall", "f1")),
            *(str(scores[name]) for name in ("support", "tp", "fp", "fn", "tn")),
        )
    print_wide(per_label)


def report_tables(report: dict[str, Any]) -> None:
    """`rnnclf eval`: the scores line, the per-class table and the confusion matrix."""
    if report.get("multi_label"):
        multilabel_tables(report)
        return
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
    print_wide(per_class)
    # Columns are numbered (label names would not fit side by side); the rows give each number's label.
    confusion = Table(title="confusion matrix (rows: true label, columns: predicted, by number)")
    confusion.add_column("true label", overflow="fold")
    for number in range(1, len(report["labels"]) + 1):
        confusion.add_column(str(number), justify="right")
    for number, (label, row) in enumerate(zip(report["labels"], report["confusion_matrix"], strict=True), 1):
        confusion.add_row(Text(f"{number} {label}"), *map(str, row))
    print_wide(confusion)


def prediction(result: Any, explanation: Any, top_k: int | None, as_json: bool) -> None:
    """`rnnclf predict`, one document: a JSON object, or 'label<TAB>p' pairs (and the explanation)."""
    out = sys.stdout
    if as_json and explanation is not None:
        record = result.to_dict()
        if isinstance(explanation, list):  # multi-label: one per chosen label
            record["explanations"] = [each.to_dict() for each in explanation]
        else:
            record["explanation"] = explanation.to_dict()
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
        return
    out.write(prediction_line(result, top_k, as_json) + "\n")  # the same line as the fast path's
    if explanation is None:
        return
    from rnnclf.inference.explain import summary  # imports torch: only when there is an explanation

    for each in explanations(explanation):
        out.write(f"  why {each.label}: {summary(each)}\n")
        out.flush()  # rich writes the next line through the same stream
        stdout.print(Text("  ") + highlighted(each))


def explanations(explanation: Any) -> list[Any]:
    """One explanation, a list of them (multi-label: one per chosen label), or none, as a list."""
    if explanation is None:
        return []
    return explanation if isinstance(explanation, list) else [explanation]


def runs_table(rows: list[dict[str, Any]], folder: Path) -> None:
    """`rnnclf runs`: one row per run (from runinfo.list_runs), or a note when there is none. The valid
    and test columns show one metric, the one each run monitors (perplexity for a language model); when
    every run shows the same, its name is in the header, else in each cell."""
    from rnnclf.runs.info import data_summary, duration

    if not rows:
        note(f"no runs under {folder}/ (train one with 'rnnclf train CONFIG')")
        return
    names = {MONITOR_NAMES.get(row["monitor"], row["monitor"]) for row in rows}
    shared = names.pop() if len(names) == 1 else None
    table = Table(title=f"runs under {folder}/", caption="* the latest run: the default --model")
    for column in ("run", "date", "status", "data", "model"):
        table.add_column(column, overflow="fold")
    valid_header = f"best valid {shared}" if shared else "best valid"
    test_header = f"test {shared}" if shared and shared != "perplexity" else "test"
    for column in ("epochs", valid_header, test_header, "time"):
        table.add_column(column, justify="right")
    for row in rows:
        planned = row["epochs_planned"]
        name = "" if shared else MONITOR_NAMES.get(row["monitor"], row["monitor"]) + " "
        digits = 1 if row["monitor"] == "valid_perplexity" else 4
        best = row["best_valid"]
        best_text = "-" if best is None else f"{name}{best:.{digits}f} (ep. {row['best_epoch']})"
        test = row["test_score"]
        table.add_row(
            Text(row["name"] + (" *" if row["latest"] else ""), style="bold" if row["latest"] else ""),
            row["date"] or "-",
            row["status"],
            Text(data_summary(row["data"])),
            row["model"],
            f"{row['epochs']}/{planned}" if planned else str(row["epochs"]),
            best_text,
            "-" if test is None else f"{name}{test:.4f}",
            duration(row["train_seconds"]),
        )
    print_wide(table)


def info_grid(details: dict[str, Any]) -> None:
    """`rnnclf info`: one checkpoint's details (from runinfo.checkpoint_info), one topic a row."""
    from rnnclf.runs.info import duration

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
        f"{counted(train_settings['epochs'], 'epoch')}, batch {train_settings['batch_size']}, "
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
        (
            f"{split} micro-F1 {_number(metrics[split].get('micro_f1'))} "
            if "micro_f1" in metrics[split]
            else ""
        )
        + f"{split} accuracy {_number(metrics[split].get('accuracy'))} macro-F1 "
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
    if "thresholds" in metrics:  # multi-label
        values = sorted(set(metrics["thresholds"]["values"].values()))
        shown = f"{values[0]:.2f}" if len(values) == 1 else f"{values[0]:.2f}-{values[-1]:.2f}"
        grid.add_row("thresholds", f"{metrics['thresholds']['mode']}: {shown}, chosen on validation")
    baseline = metrics.get("baseline")
    if baseline and "valid" in baseline:
        name = "micro-F1" if baseline["valid"].get("multi_label") else "accuracy"
        value = _number(baseline["valid"].get("micro_f1" if name == "micro-F1" else "accuracy"))
        grid.add_row("baseline", f"{baseline['model']} (not saved): valid {name} {value}")
    stdout.print(grid)


def export_summary(result: Any, probe_lengths: Iterable[int]) -> None:
    """`rnnclf export`: the files written, the check against the checkpoint, and the export's notes."""
    size = result.model.stat().st_size
    shown = f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.0f} kB"
    stdout.print(
        f"wrote {result.model} ({result.format}, {shown}) and {result.metadata} "
        "(tokenizer rules, vocabulary, labels)",
        markup=False,
    )
    if result.max_difference is not None:
        stdout.print(
            f"checked: probabilities within {result.max_difference:.1e} of the checkpoint's on documents "
            f"of {', '.join(map(str, probe_lengths))} tokens in one padded batch",
            markup=False,
        )
    quantization = getattr(result, "quantization", None)
    if quantization:
        stdout.print(
            f"int8: {quantization['int8_bytes'] / 1e6:.1f} MB, {quantization['size_ratio']:.0%} of the fp32 "
            f"model's {quantization['fp32_bytes'] / 1e6:.1f} MB; probabilities within "
            f"{quantization['probe_max_difference']:.1e} of fp32 on the same documents",
            markup=False,
        )
        scores = quantization["validation"]
        if "error" not in scores:
            metric = scores["metric"].replace("_", "-")
            stdout.print(
                f"int8 on validation ({scores['documents']:,} documents): {metric} {scores['int8']:.4f} vs "
                f"fp32 {scores['fp32']:.4f} ({100 * scores['difference']:+.2f} points), same label for "
                f"{scores['agreement']:.2%} of documents",
                markup=False,
            )
    for text in result.notes:
        note(text)


def _size(count: int) -> str:
    """Bytes as a short size: '84 MB', '1.8 GB'; '-' when unknown."""
    if not count:
        return "-"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}" if count < 10 * scale else f"{count / scale:.0f} {unit}"
    return f"{count} B"


CATALOG_WIDTH = 100


def data_catalog(rows: list[dict[str, Any]]) -> None:
    """`rnnclf data list`: the corpora, then the word vectors, that `rnnclf data fetch NAME` knows."""
    corpora = Table(title="corpora (rnnclf data fetch NAME, or data.train: NAME in a config)")
    vectors = Table(title="word vectors (model.pretrained_vectors: NAME)")
    for table, kind, columns in (
        (corpora, "corpus", ("name", "download", "documents", "classes", "licence", "source")),
        (vectors, "vectors", ("name", "download", "dimension", "words", "licence", "source")),
    ):
        longest = max((len(row["name"]) + 2 for row in rows if row["kind"] == kind), default=4)
        for column in columns:
            # A name is what the user types: never broken over lines (nor a size).
            table.add_column(
                column,
                overflow="fold",
                justify="right" if column in ("download", "words") else "left",
                no_wrap=column in ("name", "download"),
                min_width=longest if column == "name" else None,
            )
    for row in rows:
        name = Text(row["name"] + (" *" if row["fetched"] else ""))
        # The title only: the addresses (and every label, the checksums) are in `rnnclf data list --json`.
        source = Text(f"{row['title']}" + (f"; {row['note']}" if row["note"] else ""))
        if row["kind"] == "corpus":
            documents = " / ".join(f"{count:,} {split}" for split, count in row["documents"].items())
            classes = f"{row['classes']}: {', '.join(row['labels'][:4])}" + (
                ", ..." if row["classes"] > 4 else ""
            )
            corpora.add_row(name, _size(row["size"]), documents, Text(classes), Text(row["licence"]), source)
        else:
            size = ("~" + _size(row["size"])) if row["size"] else "-"
            vectors.add_row(
                name, size, str(row["dimension"]), f"{row['words']:,}", Text(row["licence"]), source
            )
    # Long cells (licences, titles, addresses) wrap inside their columns: at the terminal's width, and at
    # CATALOG_WIDTH in a pipe or file (at its natural width the table is ~1,000 columns; --json has all).
    console = stdout if stdout.is_terminal else Console(highlight=False, width=CATALOG_WIDTH, file=sys.stdout)
    console.print(corpora)
    console.print(vectors)
    console.print(
        "* fetched already. Checksums: SHA-256, pinned from the published loaders. Addresses, checksums and "
        "all labels: rnnclf data list --json"
    )


def fetched(result: Any) -> None:
    """`rnnclf data fetch`: where the corpus or vectors are, and how to train on them."""
    if not result.fetched:
        stdout.print(f"{result.name}: already in {result.path}; nothing to do", markup=False)
        return
    stdout.print(f"{result.name}: {result.path}", markup=False)
    if result.documents:
        counts = ", ".join(
            f"{split}.csv.gz {count:,} documents" for split, count in sorted(result.documents.items())
        )
        stdout.print(f"  {counts}\n  train with: rnnclf train {result.config}", markup=False)


def highlighted(explanation: Any) -> Text:
    """The tokens as one line, coloured by score on a terminal: green pushed toward the label, red
    against it, brighter for stronger; unscored tokens (past the cap) dim. Tokens are data, so this is
    a Text built piece by piece, never markup."""
    strongest = max((abs(score) for score in explanation.scores if score is not None), default=0.0)
    line = Text()
    for index, (token, score) in enumerate(zip(explanation.tokens, explanation.scores, strict=True)):
        if index:
            line.append(" ")
        line.append(token, style=_style(score, strongest))
    return line


def _style(score: float | None, strongest: float) -> str:
    if score is None:
        return "dim"
    share = score / strongest if strongest > 0 else 0.0
    if share >= 0.5:
        return "bold black on green"
    if share >= 0.15:
        return "green"
    if share <= -0.5:
        return "bold white on red"
    if share <= -0.15:
        return "red"
    return ""


def tune_summary(summary: dict[str, Any]) -> None:
    """The end of `rnnclf tune`: the best trial (chosen on validation), the linear baseline beside it,
    the best trial's test score (scored once), and where everything is."""
    from rnnclf.inference.scoring import headline

    name = MONITOR_NAMES.get(summary["metric"], summary["metric"])
    best, states = summary["best"], summary["states"]
    counts = ", ".join(f"{count} {state}" for state, count in states.items() if count)
    stdout.print(f"{summary['trial_count']} trials ({counts}) in {summary['seconds']:.0f}s", markup=False)
    stdout.print(f"best trial {best['number']}: valid {name} {best['valid']:.4f}", markup=False)
    for key, value in best["values"].items():  # best.yaml holds the exact values
        stdout.print(f"  {key}: {f'{value:.4g}' if isinstance(value, float) else value}", markup=False)

    def shown(scores: dict[str, Any]) -> str:
        # The headline score, and the tune's own metric beside it where that is another (macro-F1).
        label, value = headline(scores)
        key = summary["metric"].removeprefix("valid_")
        extra = f", {name} {scores[key]:.4f}" if name != label and isinstance(scores.get(key), float) else ""
        return f"{label} {value:.4f}{extra}"

    if summary.get("baseline_valid"):
        line = f"linear baseline: valid {shown(summary['baseline_valid'])} (fitted once, same split)"
        stdout.print(line, markup=False)
    if summary.get("test"):
        stdout.print(f"best trial on test (scored once): {shown(summary['test'])}", markup=False)
    complete = states.get("complete", 0)
    chosen = f"the best of {complete} validation scores" if complete > 1 else "one trial's validation score"
    stdout.print(
        f"note: {chosen} reads optimistic; the test score is the honest estimate",
        markup=False,
    )
    stdout.print(f"best config: {summary['best_yaml']} (rnnclf train {summary['best_yaml']})", markup=False)
    if best.get("here", True):
        stdout.print(f"best run (runs/LATEST): {best['folder']}", markup=False)
    else:
        stdout.print(
            f"best run: {best['folder']} on the worker that ran it ({best['worker']}); its test score is "
            "scored there when its tune ends",
            markup=False,
        )
    for path in summary.get("plots", []):
        stdout.print(f"plot: {path}", markup=False)
    stdout.print(f"{summary['tune_dir']}: {_size(summary['size_bytes'])}", markup=False)
