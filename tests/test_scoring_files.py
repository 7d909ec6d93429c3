"""Files scored by column: `rnnclf predict --file` and `rnnclf eval --data` read csv/tsv/jsonl/parquet and
fastText as training does, with the model's columns or --text-column/--label-column; .txt and stdin hold one
document a line; a header row is never a document; every missing-column error names what chooses columns."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import make_documents, write_csv
from typer.testing import CliRunner, Result

from rnnclf.cli.app import app
from rnnclf.data import read_examples
from rnnclf.data.documents import texts_to_score
from rnnclf.errors import RnnclfError

ROWS = make_documents(12, seed=5)
TEXTS = [text for text, _ in ROWS]


def cli(*args: object, input: str | bytes | None = None) -> Result:
    return CliRunner().invoke(app, [str(arg) for arg in args], input=input)


def one_error_line(result: Result, *fragments: str) -> str:
    assert result.exit_code == 2, f"exit {result.exit_code}\n{result.output}\n{result.exception!r}"
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def predicted_texts(result: Result) -> list[str]:
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    return [json.loads(line)["text"] for line in result.stdout.splitlines()]


def write_table(path: Path, rows: list[tuple[str, str]], text: str = "text", label: str = "label") -> Path:
    """The rows in the format the name says, with a third column that must never reach the text."""
    records = [{"id": str(i), text: t, label: y} for i, (t, y) in enumerate(rows)]
    if path.suffix in (".csv", ".tsv"):
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(
                handle, ["id", text, label], delimiter="," if path.suffix == ".csv" else "\t"
            )
            writer.writeheader()
            writer.writerows(records)
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    elif path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(records), path)
    else:  # fastText lines
        path.write_text("".join(f"__label__{y} {t}\n" for t, y in rows), encoding="utf-8")
    return path


# --- predict --file -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["docs.csv", "docs.tsv", "docs.jsonl", "docs.parquet"])
def test_predict_reads_the_text_column_of_a_table(tiny_run: Path, tmp_path: Path, name: str) -> None:
    path = write_table(tmp_path / name, ROWS)
    assert predicted_texts(cli("predict", "--model", tiny_run, "--file", path, "--json")) == TEXTS


def test_predict_reads_a_fasttext_file_line_by_line_without_its_labels(
    tiny_run: Path, tmp_path: Path
) -> None:
    path = write_table(tmp_path / "docs.txt", ROWS)
    assert predicted_texts(cli("predict", "--model", tiny_run, "--file", path, "--json")) == TEXTS


def test_a_txt_file_and_stdin_are_one_document_per_line(tiny_run: Path, tmp_path: Path) -> None:
    lines = ["pizza, with cheese", "goal", "", "a, b and c"]
    (tmp_path / "docs.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert (
        predicted_texts(cli("predict", "--model", tiny_run, "--file", tmp_path / "docs.txt", "--json"))
        == lines
    )
    from_stdin = cli("predict", "--model", tiny_run, "--file", "-", "--json", input="\n".join(lines) + "\n")
    assert predicted_texts(from_stdin) == lines


def test_other_columns_are_chosen_with_text_column(tiny_run: Path, tmp_path: Path) -> None:
    path = write_table(tmp_path / "tickets.csv", ROWS, text="message", label="category")
    one_error_line(
        cli("predict", "--model", tiny_run, "--file", path),
        "tickets.csv",
        "no text column 'text'",
        "'message'",
        "--text-column",
        "data.text_column",
    )
    chosen = cli("predict", "--model", tiny_run, "--file", path, "--text-column", "message", "--json")
    assert predicted_texts(chosen) == TEXTS


@pytest.mark.parametrize("header", ["text,label", "id\ttext\tlabel", "Text , category"])
def test_a_header_line_is_never_scored_as_a_document(tiny_run: Path, tmp_path: Path, header: str) -> None:
    body = header + "\n" + "".join(f"{t},{y}\n" for t, y in ROWS)
    (tmp_path / "docs.txt").write_text(body, encoding="utf-8")
    one_error_line(
        cli("predict", "--model", tiny_run, "--file", tmp_path / "docs.txt"), "docs.txt: line 1", "header"
    )
    one_error_line(cli("predict", "--model", tiny_run, "--file", "-", input=body), "stdin: line 1", "header")


@pytest.mark.parametrize("name", ["docs.csv", "docs.txt"])
def test_gzipped_files_are_read_like_plain_ones(tiny_run: Path, tmp_path: Path, name: str) -> None:
    import gzip

    plain = write_table(tmp_path / name, ROWS).read_bytes()
    (tmp_path / f"{name}.gz").write_bytes(gzip.compress(plain))
    result = cli("predict", "--model", tiny_run, "--file", tmp_path / f"{name}.gz", "--json")
    assert predicted_texts(result) == TEXTS


def test_stdin_is_read_as_it_comes(monkeypatch: pytest.MonkeyPatch) -> None:
    # The first document is there before the writer has finished (or closed) the stream.
    read_end, write_end = os.pipe()
    with os.fdopen(read_end, "rb") as reader, os.fdopen(write_end, "wb") as writer:
        monkeypatch.setattr(sys, "stdin", type("Stdin", (), {"buffer": reader})())
        writer.write(b"first document\n")
        writer.flush()
        documents = texts_to_score("-")
        got: list[str] = []
        thread = threading.Thread(target=lambda: got.append(next(documents)), daemon=True)
        thread.start()
        thread.join(timeout=20)
        assert got == ["first document"], "the first line was not yielded before the end of the stream"
        writer.write(b"second\n")
        writer.close()
        assert list(documents) == ["second"]


def test_reading_documents_imports_no_torch(tmp_path: Path) -> None:
    write_table(tmp_path / "docs.csv", ROWS)
    code = (
        "import sys; from rnnclf.data.documents import texts_to_score, labelled_to_score; "
        "texts = list(texts_to_score('docs.csv')); assert len(texts) == 12, texts; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    environment = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=environment, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()


# --- eval --data ----------------------------------------------------------------------------------------


def eval_json(*args: object) -> dict:
    result = cli("eval", *args, "--json")
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    return json.loads(result.stdout)


@pytest.mark.parametrize("name", ["docs.tsv", "docs.jsonl", "docs.parquet", "docs.txt"])
def test_eval_scores_every_format_alike(tiny_run: Path, tmp_path: Path, name: str) -> None:
    reference = eval_json("--model", tiny_run, "--data", write_csv(tmp_path / "ref.csv", ROWS))
    report = eval_json("--model", tiny_run, "--data", write_table(tmp_path / name, ROWS))
    assert report["n"] == len(ROWS)
    assert report["confusion_matrix"] == reference["confusion_matrix"]


def test_eval_on_differently_named_columns(tiny_run: Path, tmp_path: Path) -> None:
    path = write_table(tmp_path / "tickets.csv", ROWS, text="message", label="category")
    one_error_line(
        cli("eval", "--model", tiny_run, "--data", path, "--text-column", "message"),
        "no label column 'label'",
        "--label-column",
        "data.label_column",
    )
    one_error_line(cli("eval", "--model", tiny_run, "--data", path), "no text column 'text'", "--text-column")
    report = eval_json(
        "--model", tiny_run, "--data", path, "--text-column", "message", "--label-column", "category"
    )
    reference = eval_json("--model", tiny_run, "--data", write_csv(tmp_path / "ref.csv", ROWS))
    assert report["n"] == len(ROWS) and report["confusion_matrix"] == reference["confusion_matrix"]


def test_eval_jsonl_missing_field_names_the_flag(tiny_run: Path, tmp_path: Path) -> None:
    path = write_table(tmp_path / "tickets.jsonl", ROWS, text="message", label="label")
    one_error_line(
        cli("eval", "--model", tiny_run, "--data", path), "line 1", "no text field 'text'", "--text-column"
    )


# --- training's readers name the config keys ------------------------------------------------------------


@pytest.mark.parametrize("name", ["train.csv", "train.jsonl", "train.parquet"])
def test_a_missing_column_in_training_data_names_the_config_key(tmp_path: Path, name: str) -> None:
    path = write_table(tmp_path / name, ROWS, text="message", label="label")
    with pytest.raises(RnnclfError) as caught:
        read_examples(path)
    assert "no text" in str(caught.value) and "choose the text column with data.text_column" in str(
        caught.value
    )
    with pytest.raises(RnnclfError) as caught:
        read_examples(path, text_column="message", label_column="category")
    assert "choose the label column with data.label_column" in str(caught.value)


# --- one message for a byte that is not UTF-8 -----------------------------------------------------------


def test_predict_and_training_describe_a_bad_byte_in_the_same_words(tiny_run: Path, tmp_path: Path) -> None:
    lines = b"text,label\npizza,food\ncaf\xe9 soup,food\n"
    (tmp_path / "bad.csv").write_bytes(lines)
    (tmp_path / "bad.txt").write_bytes(lines.replace(b"text,label\n", b"first\n"))
    wanted = "line 3: not UTF-8 text (byte 0xe9 at column 4); re-save the file as UTF-8"
    with pytest.raises(RnnclfError, match=r"bad\.csv: line 3: not UTF-8 text \(byte 0xe9 at column 4\)"):
        read_examples(tmp_path / "bad.csv")
    one_error_line(cli("predict", "--model", tiny_run, "--file", tmp_path / "bad.txt"), "bad.txt: " + wanted)
    one_error_line(cli("predict", "--model", tiny_run, "--file", tmp_path / "bad.csv"), "bad.csv: " + wanted)
    one_error_line(cli("eval", "--model", tiny_run, "--data", tmp_path / "bad.csv"), "bad.csv: " + wanted)
    piped = cli(
        "predict", "--model", tiny_run, "--file", "-", input=lines.replace(b"text,label\n", b"first\n")
    )
    one_error_line(piped, "stdin: " + wanted)


def test_a_file_without_a_header_row_is_told_to_have_one(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("".join(f"{t},{y}\n" for t, y in ROWS), encoding="utf-8")
    with pytest.raises(RnnclfError) as caught:
        read_examples(path)
    message = str(caught.value)
    assert "the first row must be a header naming the columns" in message and "data.text_column" in message
