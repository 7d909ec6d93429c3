"""Messy data through the CLI: `rnnclf train` either stops with one line naming the file (and line) and
exit code 2, leaving no half-made run behind, or, where the data is usable, warns with counts and trains.

The commands run in-process (typer's CliRunner) so torch is imported once; an exception other than the
CLI's own exit would be a traceback in a real terminal and fails the test.
"""

from __future__ import annotations

import csv
import io
import json
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rnnclf.cli.app import app

CONFIG = """\
# Tiny config for the messy-data tests. Run: rnnclf train tiny.yaml
data:
  train: {train}
  test: {test}
  format: {format}
text:
  min_freq: 1
model:
  cell: gru
  embedding_dim: 4
  hidden_dim: 4
  bidirectional: false
train:
  epochs: 1
  batch_size: 16
  patience: null
  device: cpu
"""

WORDS = {"ham": ["pizza", "pasta", "bread", "soup"], "spam": ["goal", "team", "match", "coach"]}


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A private preprocessing cache per test; conftest's _isolated_test already runs each test in
    tmp_path and puts back the logger, signal handlers and float mode the CLI changes in-process."""
    monkeypatch.setenv("RNNCLF_CACHE", str(tmp_path / "cache"))


# --- helpers ----------------------------------------------------------------------------------------------


def documents(count: int, seed: int = 0, labels: tuple[str, ...] = ("ham", "spam")) -> list[tuple[str, str]]:
    generator = random.Random(seed)
    rows = []
    for i in range(count):
        label = labels[i % len(labels)]
        words = WORDS.get(label, ["other"])
        rows.append((" ".join(generator.choice(words) for _ in range(generator.randint(2, 6))), label))
    return rows


def csv_text(rows: list[tuple[str, ...]], header: tuple[str, ...] = ("text", "label")) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def project(
    folder: Path,
    train: str | bytes,
    name: str = "train.csv",
    test: str | bytes | None = None,
    format: str = "auto",
) -> Path:
    """Write the training file (and test file) and a config naming them; returns the config path."""
    folder.mkdir(parents=True, exist_ok=True)
    for filename, content in ((name, train), ("test" + Path(name).suffix, test)):
        if content is not None:
            data = content.encode("utf-8") if isinstance(content, str) else content
            (folder / filename).write_bytes(data)
    test_name = f"test{Path(name).suffix}" if test is not None else "null"
    config = folder / "tiny.yaml"
    config.write_text(CONFIG.format(train=name, test=test_name, format=format), encoding="utf-8")
    return config


def train(config: Path, run_dir: Path) -> tuple[int, str]:
    """`rnnclf train CONFIG --run-dir RUN --quiet`; returns (exit code, stderr)."""
    result = CliRunner().invoke(app, ["train", str(config), "--run-dir", str(run_dir), "--quiet"])
    # Anything but the CLI's own exit would have printed a traceback in a terminal.
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return result.exit_code, result.stderr


def assert_data_error(config: Path, *fragments: str) -> str:
    """Exit code 2, exactly one non-empty stderr line 'error: ...' holding every fragment, and no run
    left behind: no checkpoint, no run folder, runs/LATEST not pointing at it."""
    run_dir = config.parent / "run"
    code, stderr = train(config, run_dir)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2, stderr
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert not (run_dir / "last.pt").exists() and not (run_dir / "best.pt").exists()
    assert not run_dir.exists()
    latest = Path("runs/LATEST")
    assert not latest.exists() or str(run_dir.resolve()) not in latest.read_text(encoding="utf-8")
    return lines[0]


def assert_trains_with_warning(config: Path, *fragments: str) -> list[str]:
    """Exit code 0, best.pt and metrics.json written, and a 'warning: ...' line holding every fragment."""
    run_dir = config.parent / "run"
    code, stderr = train(config, run_dir)
    assert code == 0, stderr
    assert (run_dir / "best.pt").is_file() and (run_dir / "metrics.json").is_file()
    warnings = [line for line in stderr.splitlines() if line.startswith("warning: ")]
    assert any(all(fragment in line for fragment in fragments) for line in warnings), (fragments, stderr)
    assert "error" not in stderr
    return warnings


# --- errors: one line naming the file (and line), exit code 2 ---------------------------------------------


def test_invalid_utf8(tmp_path: Path) -> None:
    data = csv_text(documents(10)).encode("utf-8").split(b"\n")
    data[3] = b"caf\xe9 au lait,ham"  # Latin-1, not UTF-8
    assert_data_error(project(tmp_path, b"\n".join(data)), "train.csv", "line 4", "UTF-8")


def test_invalid_utf8_in_the_test_file(tmp_path: Path) -> None:
    test = b"text,label\n\xff\xfe,ham\n"
    assert_data_error(project(tmp_path, csv_text(documents(20)), test=test), "test.csv", "line 2", "UTF-8")


def test_csv_ragged_row(tmp_path: Path) -> None:
    text = csv_text(documents(10)) + "one,two,three\n" + csv_text(documents(4), header=())
    assert_data_error(project(tmp_path, text), "train.csv", "line 12", "3 fields but the header has 2")


def test_csv_unclosed_quote(tmp_path: Path) -> None:
    text = csv_text(documents(10)) + '"never closed,ham\n' + csv_text(documents(4), header=())
    assert_data_error(project(tmp_path, text), "train.csv", "line 12", "unclosed quote")


@pytest.mark.parametrize(
    ("header", "missing"),
    [(("body", "label"), "text"), (("text", "category"), "label"), (("text",), "label")],
)
def test_missing_or_renamed_column(tmp_path: Path, header: tuple[str, ...], missing: str) -> None:
    rows = [row[: len(header)] for row in documents(10)]
    message = assert_data_error(project(tmp_path, csv_text(rows, header)), "train.csv", f"'{missing}'")
    assert "columns present" in message


def test_duplicate_header_names(tmp_path: Path) -> None:
    rows = [(text, label, text) for text, label in documents(10)]
    text = csv_text(rows, header=("text", "label", "text"))
    assert_data_error(project(tmp_path, text), "train.csv", "line 1", "duplicate column names")


def test_label_column_with_one_class(tmp_path: Path) -> None:
    rows = documents(20, labels=("ham",))
    assert_data_error(project(tmp_path, csv_text(rows)), "train.csv", "only one class", "'ham'")


def test_data_set_of_one_row(tmp_path: Path) -> None:
    assert_data_error(project(tmp_path, csv_text(documents(1))), "train.csv", "one class")


def test_data_set_of_no_rows(tmp_path: Path) -> None:
    assert_data_error(project(tmp_path, "text,label\n"), "train.csv", "no examples")


def test_jsonl_line_that_is_not_json(tmp_path: Path) -> None:
    lines = [json.dumps({"text": text, "label": label}) for text, label in documents(10)]
    lines[6] = '{"text": "cut short", "label": '
    config = project(tmp_path, "\n".join(lines) + "\n", name="train.jsonl")
    assert_data_error(config, "train.jsonl", "line 7", "not valid JSON")


def test_folder_per_class_where_every_folder_is_empty(tmp_path: Path) -> None:
    for label in ("ham", "spam"):
        (tmp_path / "docs" / label).mkdir(parents=True)
    config = project(tmp_path / "p", "", name="unused.csv")
    config.write_text(CONFIG.format(train="../docs", test="null", format="folder"), encoding="utf-8")
    assert_data_error(config, "docs", "no examples")


def test_failed_run_leaves_the_previous_latest_run_in_place(tmp_path: Path) -> None:
    runs = Path("runs")
    runs.mkdir()
    (runs / "LATEST").write_text("/somewhere/earlier-run\n", encoding="utf-8")
    assert_data_error(project(tmp_path, csv_text(documents(1))), "train.csv")
    assert (runs / "LATEST").read_text(encoding="utf-8") == "/somewhere/earlier-run\n"


# --- usable data: a warning with counts, then a normal run ------------------------------------------------


def test_empty_documents(tmp_path: Path) -> None:
    rows = [*documents(30), ("", "ham"), ("", "spam")]
    assert_trains_with_warning(project(tmp_path, csv_text(rows)), "train.csv", "2 empty documents")


def test_whitespace_only_documents(tmp_path: Path) -> None:
    rows = [*documents(30), ("   ", "ham"), ("\t\n", "spam"), ("\u3000\u00a0", "ham")]
    assert_trains_with_warning(project(tmp_path, csv_text(rows)), "train.csv", "3 empty documents")


def test_test_labels_unseen_in_training(tmp_path: Path) -> None:
    test = csv_text([*documents(10, seed=1), ("mystery text", "eggs"), ("more mystery", "eggs")])
    config = project(tmp_path, csv_text(documents(30)), test=test)
    assert_trains_with_warning(config, "test.csv", "2 test documents", "unseen in training", "eggs")
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["test"]["n"] == 10  # scored on the documents with known labels


def test_five_million_character_document(tmp_path: Path) -> None:
    huge = ("pizza " * 833_334)[:5_000_000]
    config = project(tmp_path, csv_text([*documents(30), (huge, "ham")]))
    code, stderr = train(config, tmp_path / "run")
    assert code == 0, stderr
    assert (tmp_path / "run" / "best.pt").is_file()


def test_empty_folder_in_folder_per_class(tmp_path: Path) -> None:
    for index, (text, label) in enumerate(documents(24)):
        path = tmp_path / "docs" / label / f"{index:03}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    (tmp_path / "docs" / "eggs").mkdir()
    config = project(tmp_path / "p", "", name="unused.csv")
    config.write_text(CONFIG.format(train="../docs", test="null", format="folder"), encoding="utf-8")
    run_dir = config.parent / "run"
    assert_trains_with_warning(config, "docs", "1 class folder without .txt files skipped", "'eggs'")
    assert json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))["labels"] == ["ham", "spam"]
