"""Pictures of a run: learning curves per epoch and a normalized confusion matrix (multi-label runs:
per-label F1 bars), as PNG files.

matplotlib is an optional extra (`pip install 'rnnclf[plots]'`); without it every function here raises
MissingExtra, which the CLI turns into a one-line hint. Figures are built with matplotlib's object API
(Figure, not pyplot): no global state, no GUI backend, safe to call from any thread or test.
Files are written atomically (rnnclf.files.atomic_write), like checkpoints.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from rnnclf.errors import MissingExtra, RnnclfError
from rnnclf.files import atomic_write
from rnnclf.runs import rundir

DPI = 110
# Past this many classes the cells are too small to carry numbers; the colours still tell.
ANNOTATE_UP_TO = 15
LABEL_CHARACTERS = 24  # longer class names are shortened on the axes


def require_matplotlib() -> None:
    """Raise MissingExtra unless matplotlib can be imported (cheap to call before slow work)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise MissingExtra("plotting", "matplotlib", "plots") from None


def _figure(width: float, height: float) -> Any:
    require_matplotlib()
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _save(figure: Any, path: str | Path) -> Path:
    """Render to `path` atomically: never a half-written PNG."""
    import matplotlib

    path = Path(path)
    if path.parent and not path.parent.is_dir():
        raise RnnclfError(f"{path}: cannot write the plot, folder {path.parent} does not exist")
    # parse_math off: a label like '$5' is data, not mathtext. Missing glyphs (a label in a script
    # the bundled font lacks) are drawn as boxes; matplotlib's warning about it is noise here.
    with matplotlib.rc_context({"text.parse_math": False}), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        atomic_write(path, lambda file: figure.savefig(file, format="png"))
    return path


def _short(label: str) -> str:
    label = " ".join(label.split())  # a newline or tab in a class name would break the axis layout
    return label if len(label) <= LABEL_CHARACTERS else label[: LABEL_CHARACTERS - 1] + "…"


def learning_curves(history: list[dict[str, Any]], path: str | Path, title: str | None = None) -> Path:
    """learning_curves_figure, written to `path` as a PNG."""
    return _save(learning_curves_figure(history, title), path)


def learning_curves_figure(history: list[dict[str, Any]], title: str | None = None) -> Any:
    """Two panels over epochs: train and valid loss; valid scores. Single-label: cross-entropy, accuracy
    and macro-F1; multi-label (rows with valid_micro_f1): binary cross-entropy, subset accuracy, micro-
    and macro-F1. The best epoch (the one best.pt holds) is marked. `history` holds metrics.jsonl rows."""
    if not history:
        raise RnnclfError("no finished epoch to plot (metrics.jsonl is empty)")
    from matplotlib.ticker import MaxNLocator

    multi_label = all("valid_micro_f1" in row for row in history)
    epochs = [row["epoch"] for row in history]
    best = [row["epoch"] for row in history if row.get("best")]
    figure = _figure(10, 4)
    loss, score = figure.subplots(1, 2)
    loss.plot(epochs, [row["train_loss"] for row in history], "o-", label="train loss")
    loss.plot(epochs, [row["valid_loss"] for row in history], "s-", label="valid loss")
    # Multi-label training minimises each label's binary cross-entropy (mean over labels), not softmax's.
    loss.set_ylabel("binary cross-entropy loss (mean over labels)" if multi_label else "cross-entropy loss")
    accuracy = "valid subset accuracy" if multi_label else "valid accuracy"
    score.plot(epochs, [row["valid_accuracy"] for row in history], "o-", color="C2", label=accuracy)
    if all("valid_macro_f1" in row for row in history):
        f1 = [row["valid_macro_f1"] for row in history]
        score.plot(epochs, f1, "^--", color="C4", label="valid macro-F1")
    if multi_label:
        micro = [row["valid_micro_f1"] for row in history]
        score.plot(epochs, micro, "v-.", color="C5", label="valid micro-F1")
    score.set_ylabel("validation score")
    for axes in (loss, score):
        if best:
            axes.axvline(best[-1], color="grey", linestyle=":", label=f"best epoch ({best[-1]})")
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(alpha=0.3)
        axes.legend()
    figure.suptitle(title or "learning curves")
    return figure


def normalized(matrix: list[list[int]]) -> list[list[float]]:
    """Each row divided by its total: the share of a true class given each prediction (0 for a class
    with no documents, instead of a division by zero)."""
    return [[count / sum(row) if sum(row) else 0.0 for count in row] for row in matrix]


def confusion_matrix(
    matrix: list[list[int]], labels: list[str], path: str | Path, title: str | None = None
) -> Path:
    """A row-normalized confusion matrix (rows: true label, columns: predicted), labelled axes, a
    colour bar, and in each cell the share and the count (for up to ANNOTATE_UP_TO classes)."""
    classes = len(labels)
    if len(matrix) != classes or any(len(row) != classes for row in matrix):
        raise RnnclfError(f"confusion matrix is not {classes}x{classes} (one row and column per label)")
    shares = normalized(matrix)
    side = max(4.5, (0.45 if classes <= ANNOTATE_UP_TO else 0.3) * classes + 3.0)  # inches
    figure = _figure(side + 1.2, side)
    axes = figure.subplots()
    image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    colorbar = figure.colorbar(image, ax=axes, shrink=0.8)
    colorbar.set_label("share of the true label's documents")
    names = [_short(label) for label in labels]
    font = 9 if classes <= 20 else 7
    axes.set_xticks(range(classes), labels=names, fontsize=font)
    axes.tick_params(axis="x", labelrotation=45)
    for tick in axes.get_xticklabels():  # rotated names end under their column
        tick.set_horizontalalignment("right")
        tick.set_rotation_mode("anchor")
    axes.set_yticks(range(classes), labels=names, fontsize=font)
    axes.set_xlabel("predicted label")
    axes.set_ylabel("true label")
    if classes <= ANNOTATE_UP_TO:
        for i, row in enumerate(matrix):
            for j, count in enumerate(row):
                share = shares[i][j]
                colour = "white" if share > 0.5 else "black"  # readable on dark and light cells
                axes.text(j, i, f"{share:.2f}\n({count})", ha="center", va="center", color=colour, fontsize=8)
    axes.set_title(title or "confusion matrix (rows normalized)")
    return _save(figure, path)


def per_label_f1(report: dict[str, Any], path: str | Path, title: str | None = None) -> Path:
    """per_label_f1_figure, written to `path` as a PNG."""
    return _save(per_label_f1_figure(report, title), path)


def per_label_f1_figure(report: dict[str, Any], title: str | None = None) -> Any:
    """Multi-label results: one horizontal bar per label, its F1 at the decision thresholds, labels by
    support (most frequent on top), each bar annotated with precision, recall and its 2x2 counts
    (tp, fp, fn); a dashed line marks micro-F1, named in a legend below the axes (inside, it would
    cover a bar: every row of the plot holds one)."""
    per_class = report["per_class"]
    labels = sorted(per_class, key=lambda label: (-per_class[label]["support"], label))
    figure = _figure(9, max(3.0, 0.32 * len(labels) + 2.0))
    axes = figure.subplots()
    positions = range(len(labels))
    axes.barh(positions, [per_class[label]["f1"] for label in labels], color="C0")
    for position, label in zip(positions, labels, strict=True):
        scores = per_class[label]
        note = (
            f"F1 {scores['f1']:.2f}  P {scores['precision']:.2f}  R {scores['recall']:.2f}  "
            f"tp {scores.get('tp', '?')} fp {scores.get('fp', '?')} fn {scores.get('fn', '?')}"
        )
        axes.text(1.01, position, note, va="center", fontsize=7, transform=axes.get_yaxis_transform())
    axes.axvline(report["micro_f1"], color="C3", linestyle="--", label=f"micro-F1 {report['micro_f1']:.3f}")
    axes.set_yticks(
        list(positions), labels=[f"{_short(label)} ({per_class[label]['support']})" for label in labels]
    )
    axes.invert_yaxis()
    axes.set_xlim(0.0, 1.0)
    axes.set_xlabel("F1 (label support in brackets)")
    figure.legend(loc="outside lower center", frameon=False, fontsize=8)
    axes.grid(axis="x", alpha=0.3)
    axes.set_title(title or "per-label F1")
    return figure


def write_run_plots(run_dir: str | Path) -> list[Path]:
    """learning_curves.png from metrics.jsonl and confusion_matrix.png from metrics.json (the test set
    when the run had one, else the validation set) in run_dir; returns the files written."""
    require_matplotlib()
    run_dir = Path(run_dir)
    history = rundir.read_history(run_dir, strict=True)
    written = [learning_curves(history, run_dir / rundir.LEARNING_CURVES, f"{run_dir.name}")]
    metrics = rundir.read_metrics(run_dir)
    if metrics is None:
        return written  # training did not finish: no final scores to draw
    split = "test" if "test" in metrics else "valid"
    report = metrics[split]
    heading = f"{run_dir.name}: {split} set, best.pt (epoch {metrics.get('best_epoch', '?')})\n"
    if report.get("multi_label"):
        title = (
            heading
            + f"micro-F1 {report['micro_f1']:.4f}, macro-F1 {report['macro_f1']:.4f}, {report['n']} documents"
        )
        written.append(per_label_f1(report, run_dir / rundir.PER_LABEL, title))
        return written
    title = (
        heading
        + f"accuracy {report['accuracy']:.4f}, macro-F1 {report['macro_f1']:.4f}, {report['n']} documents"
    )
    matrix_path = run_dir / rundir.CONFUSION_MATRIX
    written.append(confusion_matrix(report["confusion_matrix"], report["labels"], matrix_path, title))
    return written
