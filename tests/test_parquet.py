"""Parquet input (data.format: parquet, or the .parquet extension), as Hugging Face `datasets` and pandas
write it: the same column options and one-line errors as CSV, ClassLabel names from the file's metadata, and
a one-line hint when pyarrow (the `parquet` extra) is missing."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from rnnclf.data import read_examples
from rnnclf.errors import MissingExtra, RnnclfError


def write_parquet(path: Path, columns: dict[str, list[Any]], metadata: dict[str, Any] | None = None) -> Path:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table(columns)
    if metadata is not None:
        table = table.replace_schema_metadata({"huggingface": json.dumps(metadata)})
    pq.write_table(table, path)
    return path


def huggingface(names: list[str]) -> dict[str, Any]:
    """The schema metadata `datasets` writes for a text column and a ClassLabel column."""
    return {
        "info": {
            "features": {
                "text": {"dtype": "string", "_type": "Value"},
                "label": {"names": names, "_type": "ClassLabel"},
            }
        }
    }


def error(path: Path, **options: str) -> str:
    with pytest.raises(RnnclfError) as caught:
        read_examples(path, **options)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
    return message


def test_huggingface_class_labels_become_names(tmp_path: Path) -> None:
    path = write_parquet(
        tmp_path / "train.parquet",
        {"text": ["a fine film", "dull"], "label": [1, 0], "idx": [0, 1]},
        huggingface(["neg", "pos"]),
    )
    examples = read_examples(path)
    assert (examples.texts, examples.labels) == (["a fine film", "dull"], ["pos", "neg"])


def test_columns_by_name_explicit_format_and_plain_labels(tmp_path: Path) -> None:
    path = write_parquet(
        tmp_path / "data.bin",
        {"sentence": ["x", "y", "z"], "stars": [5, 1, 5], "flag": [True, False, True]},
    )
    examples = read_examples(path, format="parquet", text_column="sentence", label_column="stars")
    assert examples.labels == ["5", "1", "5"]
    assert read_examples(path, format="parquet", text_column="sentence", label_column="flag").labels == [
        "true",
        "false",
        "true",
    ]


def test_errors_name_the_file_the_column_and_the_row(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "d.parquet", {"Text": ["a", None], "label": ["x", None]})
    assert "no text column 'text'" in error(path) and "did you mean 'Text'?" in error(path)
    assert "row 2: text column 'Text' must hold strings, got a missing value" in error(
        path, text_column="Text"
    )
    fine_text = write_parquet(tmp_path / "e.parquet", {"text": ["a", "b"], "label": ["x", None]})
    assert "row 2: empty label in column 'label'" in error(fine_text)
    numbers = write_parquet(tmp_path / "n.parquet", {"text": [1, 2], "label": ["x", "y"]})
    assert "must hold strings, got int" in error(numbers)
    out_of_range = write_parquet(
        tmp_path / "o.parquet", {"text": ["a"], "label": [7]}, huggingface(["neg", "pos"])
    )
    assert "class number 7" in error(out_of_range)
    empty = write_parquet(tmp_path / "empty.parquet", {"text": [], "label": []})
    assert "no examples" in error(empty)
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 not really")
    assert "not a readable Parquet file" in error(broken)


def test_missing_pyarrow_is_a_one_line_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "train.parquet"
    path.write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow -> ImportError
    with pytest.raises(MissingExtra, match=r"needs pyarrow, .*pip install 'rnnclf\[parquet\]'"):
        read_examples(path)
