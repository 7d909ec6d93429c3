"""Pictures: learning_curves.png and confusion_matrix.png at the end of training, `rnnclf eval --plot`,
and a one-line note or error (never a traceback) when matplotlib is missing.

Every PNG is checked as a file: signature, every chunk's CRC, IHDR size, and the pixel data inflates
to exactly height x (1 + width x channels) bytes."""

from __future__ import annotations

import json
import struct
import sys
import zlib
from pathlib import Path

import pytest
from conftest import KEYWORDS
from typer.testing import CliRunner, Result

from rnnclf.cli.app import app
from rnnclf.errors import MissingExtra, RnnclfError
from rnnclf.reports import plots

try:
    import matplotlib  # noqa: F401

    HAVE_MATPLOTLIB = True
except ImportError:
    HAVE_MATPLOTLIB = False
# The tests of what happens without matplotlib run either way.
needs_matplotlib = pytest.mark.skipif(
    not HAVE_MATPLOTLIB, reason="matplotlib is not installed (pip install 'rnnclf[plots]')"
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # PNG colour type -> samples per pixel


def cli(*args: object) -> Result:
    return CliRunner().invoke(app, [str(arg) for arg in args])


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) of a PNG after checking that the whole file is well formed."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path}: not a PNG"
    position, chunks, pixels = 8, [], b""
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        (crc,) = struct.unpack(">I", data[position + 8 + length : position + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"{path}: bad CRC in {kind!r}"
        chunks.append(kind)
        if kind == b"IDAT":
            pixels += body
        position += 12 + length
    assert chunks[0] == b"IHDR" and chunks[-1] == b"IEND" and b"IDAT" in chunks, chunks
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    assert depth == 8
    assert len(zlib.decompress(pixels)) == height * (1 + width * CHANNELS[colour])
    return width, height


def no_temporary_files(folder: Path) -> None:
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")], "temporary files left"


# --- at the end of training -------------------------------------------------------------------------------


@needs_matplotlib
def test_training_draws_learning_curves_and_confusion_matrix(tiny_run: Path) -> None:
    width, height = png_size(tiny_run / "learning_curves.png")
    assert (width, height) == (1100, 440)  # 10 x 4 inches at 110 dpi
    width, height = png_size(tiny_run / "confusion_matrix.png")
    assert 500 <= width <= 1000 and 400 <= height <= 1000, (width, height)
    for name in ("learning_curves.png", "confusion_matrix.png"):
        assert (tiny_run / name).stat().st_size > 10_000, name  # drawn, not blank
    no_temporary_files(tiny_run)


@needs_matplotlib
def test_write_run_plots_without_metrics_json_draws_the_curves_only(tmp_path: Path) -> None:
    # A run stopped before its end has epochs (metrics.jsonl) but no final scores (metrics.json).
    rows = [
        {"epoch": 1, "train_loss": 1.0, "valid_loss": 0.9, "valid_accuracy": 0.5, "best": True},
        {"epoch": 2, "train_loss": 0.7, "valid_loss": 0.8, "valid_accuracy": 0.6, "best": True},
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert plots.write_run_plots(tmp_path) == [tmp_path / "learning_curves.png"]
    png_size(tmp_path / "learning_curves.png")


@needs_matplotlib
def test_write_run_plots_needs_a_finished_epoch(tmp_path: Path) -> None:
    with pytest.raises(RnnclfError, match=r"no metrics\.jsonl"):
        plots.write_run_plots(tmp_path)
    (tmp_path / "metrics.jsonl").write_text("", encoding="utf-8")
    with pytest.raises(RnnclfError, match="no finished epoch"):
        plots.write_run_plots(tmp_path)


# --- eval --plot ------------------------------------------------------------------------------------------


@needs_matplotlib
def test_eval_plot_draws_the_confusion_matrix_of_any_data(tiny_run: Path, tmp_path: Path) -> None:
    from conftest import make_documents, write_csv

    data = write_csv(tmp_path / "other.csv", make_documents(12, seed=11))
    result = cli("eval", "--model", tiny_run, "--data", data, "--plot", tmp_path / "cm.png", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)  # --json: stdout is the JSON alone
    assert report["n"] == 12
    assert "confusion matrix: " in result.stderr
    png_size(tmp_path / "cm.png")
    no_temporary_files(tmp_path)


@needs_matplotlib
def test_eval_plot_into_a_missing_folder_is_one_error_line(tiny_run: Path, tmp_path: Path) -> None:
    result = cli("eval", "--model", tiny_run, "--plot", tmp_path / "nowhere" / "cm.png")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"error: {tmp_path / 'nowhere' / 'cm.png'}: cannot write the plot, folder "
        f"{tmp_path / 'nowhere'} does not exist"
    ]


# --- the pictures themselves ------------------------------------------------------------------------------


def test_confusion_matrix_is_row_normalized() -> None:
    assert plots.normalized([[3, 1], [0, 0]]) == [[0.75, 0.25], [0.0, 0.0]]


@needs_matplotlib
def test_labels_are_data_not_markup(tmp_path: Path) -> None:
    # '$' would start mathtext, '[/b]' is rich markup, a newline would break the axis: all drawn as text.
    labels = ["$5 off", "[/b] closing", "two\nlines", "a very long class name that goes on and on"]
    matrix = [[5, 1, 0, 0], [0, 4, 0, 2], [1, 1, 1, 1], [0, 0, 0, 0]]
    width, height = png_size(plots.confusion_matrix(matrix, labels, tmp_path / "odd.png", "odd labels"))
    assert width > 400 and height > 400


@needs_matplotlib
def test_many_classes_grow_the_figure(tmp_path: Path) -> None:
    small = png_size(plots.confusion_matrix([[1, 0], [0, 1]], ["a", "b"], tmp_path / "small.png"))
    labels = [f"class {i}" for i in range(30)]
    matrix = [[(i + j) % 3 for j in range(30)] for i in range(30)]
    large = png_size(plots.confusion_matrix(matrix, labels, tmp_path / "large.png"))
    assert large[0] > small[0] and large[1] > small[1]


@needs_matplotlib
def test_one_epoch_curves(tmp_path: Path) -> None:
    row = {"epoch": 1, "train_loss": 1.0, "valid_loss": 0.9, "valid_accuracy": 0.5, "valid_macro_f1": 0.4}
    png_size(plots.learning_curves([row], tmp_path / "one.png"))


@needs_matplotlib
def test_a_matrix_that_does_not_fit_the_labels_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RnnclfError, match="not 3x3"):
        plots.confusion_matrix([[1, 0], [0, 1]], sorted(KEYWORDS), tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


# --- without matplotlib -----------------------------------------------------------------------------------


def test_without_matplotlib_training_ends_with_a_one_line_note(
    tiny_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now raises ImportError
    with pytest.raises(MissingExtra):
        plots.require_matplotlib()
    result = cli("train", tiny_config, "--run-dir", tmp_path / "run", "--set", "train.epochs=1", "--quiet")
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if line.startswith("note: ")]
    assert notes == [
        "note: no plots: plotting needs matplotlib, which is not installed: pip install 'rnnclf[plots]'"
    ]
    assert "Traceback" not in result.output
    assert (tmp_path / "run" / "metrics.json").is_file()
    assert not list((tmp_path / "run").glob("*.png"))


def test_output_plots_false_draws_nothing_and_says_nothing(
    tiny_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    overrides = ["--set", "train.epochs=1", "--set", "output.plots=false"]
    result = cli("train", tiny_config, "--run-dir", tmp_path / "run", *overrides, "--quiet")
    assert result.exit_code == 0, result.output
    assert "note:" not in result.stderr
    assert not list((tmp_path / "run").glob("*.png"))


def test_eval_plot_without_matplotlib_is_one_error_line(
    tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    result = cli("eval", "--model", tiny_run, "--plot", tmp_path / "cm.png")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "error: plotting needs matplotlib, which is not installed: pip install 'rnnclf[plots]'"
    ]
    assert result.stdout == ""  # refused before scoring, not after
    assert not (tmp_path / "cm.png").exists()


# --- what the pictures say ----------------------------------------------------------------------------------


def epochs(multi_label: bool) -> list[dict]:
    rows = []
    for epoch in (1, 2, 3):
        row = {
            "epoch": epoch,
            "train_loss": 1 / epoch,
            "valid_loss": 1.2 / epoch,
            "valid_accuracy": 0.2 * epoch,
        }
        row["valid_macro_f1"] = 0.15 * epoch
        if multi_label:
            row["valid_micro_f1"] = 0.25 * epoch
        rows.append(row | {"best": epoch == 3})
    return rows


@needs_matplotlib
def test_multilabel_learning_curves_name_binary_cross_entropy_and_subset_accuracy() -> None:
    loss, score = plots.learning_curves_figure(epochs(multi_label=True)).axes
    assert loss.get_ylabel().startswith("binary cross-entropy")
    names = [line.get_label() for line in score.get_lines()]
    assert "valid subset accuracy" in names and "valid micro-F1" in names and "valid accuracy" not in names


@needs_matplotlib
def test_single_label_learning_curves_name_cross_entropy_and_accuracy() -> None:
    loss, score = plots.learning_curves_figure(epochs(multi_label=False)).axes
    assert loss.get_ylabel() == "cross-entropy loss"
    names = [line.get_label() for line in score.get_lines()]
    assert "valid accuracy" in names and not any("micro" in name or "subset" in name for name in names)


@needs_matplotlib
def test_the_per_label_legend_covers_no_bar() -> None:
    labels = [f"label {i}" for i in range(12)]
    per_class = {
        label: {
            "f1": 0.99 - 0.01 * i,
            "precision": 0.9,
            "recall": 0.9,
            "support": 50 - i,
            "tp": 1,
            "fp": 2,
            "fn": 3,
        }
        for i, label in enumerate(labels)
    }
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    figure = plots.per_label_f1_figure({"per_class": per_class, "micro_f1": 0.9})
    FigureCanvasAgg(figure).draw()  # lays the figure out as savefig does
    (axes,) = figure.axes
    assert axes.get_legend() is None, "a legend inside the axes covers a bar: every row holds one"
    (legend,) = figure.legends
    assert "micro-F1 0.900" in [text.get_text() for text in legend.get_texts()]
    renderer = figure.canvas.get_renderer()
    plotted = axes.get_tightbbox(renderer)  # the bars, their notes and the tick labels
    assert not legend.get_window_extent(renderer).overlaps(plotted)
