"""Multi-label data: every reader format, the no-label warning, empty-label errors naming the line, the
single-label warning on joined labels, and preparation into (N, L) targets."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from rnnclf.config import validate
from rnnclf.data import read_examples
from rnnclf.errors import RnnclfError
from rnnclf.prepare import prepare


def read(path: Path, **options: object) -> list:
    return read_examples(path, multi_label=True, **options).labels  # type: ignore[arg-type]


def test_csv_and_tsv_labels_joined_by_the_separator(tmp_path: Path) -> None:
    csv_file = tmp_path / "d.csv"
    csv_file.write_text('text,label\none,"sports, politics"\ntwo,sports\nthree,"b,a,b"\n', encoding="utf-8")
    assert read(csv_file) == [("politics", "sports"), ("sports",), ("a", "b")]
    tsv_file = tmp_path / "d.tsv"
    tsv_file.write_text("text\tlabel\none\tx|y\ntwo\ty\n", encoding="utf-8")
    assert read(tsv_file, separator="|") == [("x", "y"), ("y",)]


def test_jsonl_list_string_number_and_null(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    rows = [
        {"text": "a", "labels": ["joy", "anger", "joy"]},
        {"text": "b", "labels": "joy,fear"},
        {"text": "c", "labels": [3, True]},
        {"text": "d", "labels": None},
        {"text": "e", "labels": []},
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    assert read(path, label_column="labels") == [("anger", "joy"), ("fear", "joy"), ("3", "true"), (), ()]


def test_fasttext_every_label_on_the_line(tmp_path: Path) -> None:
    path = tmp_path / "d.txt"
    path.write_text("__label__b __label__a some text\n__label__c more\nno label here\n", encoding="utf-8")
    examples = read_examples(path, multi_label=True)
    assert examples.labels == [("a", "b"), ("c",), ()]
    assert examples.texts == ["some text", "more", "no label here"]


def test_folder_per_class_cannot_be_multi_label(tmp_path: Path) -> None:
    (tmp_path / "data" / "pos").mkdir(parents=True)
    (tmp_path / "data" / "pos" / "a.txt").write_text("good", encoding="utf-8")
    with pytest.raises(RnnclfError, match="folder-per-class data cannot hold several labels"):
        read_examples(tmp_path / "data", multi_label=True)


def test_documents_without_labels_are_kept_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "d.csv"
    path.write_text("text,label\none,a\ntwo,\nthree,\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="rnnclf"):
        assert read(path) == [("a",), (), ()]
    assert "2 documents without any label kept" in caplog.text


@pytest.mark.parametrize(
    ("name", "content", "line"),
    [
        ("d.csv", 'text,label\nok,a\nbad,"a,,b"\n', 3),
        ("d.jsonl", '{"text": "ok", "label": ["a"]}\n{"text": "bad", "label": ["a", " "]}\n', 2),
        ("d.txt", "__label__a ok\n__label__ __label__b bad\n", 2),
    ],
)
def test_an_empty_label_inside_a_list_names_the_line(
    tmp_path: Path, name: str, content: str, line: int
) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(RnnclfError, match=f"{name}: line {line}: empty label in the list"):
        read(path)


def test_single_label_config_on_joined_labels_says_how_to_switch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "d.csv"
    path.write_text('text,label\none,"a,b"\ntwo,"b,c"\nthree,a\n', encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="rnnclf"):
        assert read_examples(path).labels == ["a,b", "b,c", "a"]
    assert "2 of 3 labels contain ','" in caplog.text
    assert "data.multi_label: true" in caplog.text


def _config(tmp_path: Path, train_rows: str, **train: object) -> object:
    (tmp_path / "train.csv").write_text("text,label\n" + train_rows, encoding="utf-8")
    (tmp_path / "valid.csv").write_text('text,label\nx y,"a,zzz"\ny,\n', encoding="utf-8")
    raw = {
        "data": {
            "train": str(tmp_path / "train.csv"),
            "valid": str(tmp_path / "valid.csv"),
            "multi_label": True,
        },
        "text": {"min_freq": 1},
        "train": train,
    }
    return validate(raw)


def test_prepared_targets_are_a_label_matrix(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = _config(tmp_path, 'x,"b,a"\ny,b\nz,\n')
    with caplog.at_level(logging.WARNING, logger="rnnclf"):
        prepared = prepare(config, use_cache=False)
    assert prepared.labels == ["a", "b"]
    assert prepared.train.labels.tolist() == [[1, 1], [0, 1], [0, 0]]
    # An unseen label is dropped from its document, which keeps its known labels.
    assert prepared.valid.labels.tolist() == [[1, 0], [0, 0]]
    assert "1 validation labels unseen in training (zzz)" in caplog.text


def test_one_distinct_label_is_an_error_naming_the_key(tmp_path: Path) -> None:
    config = _config(tmp_path, "x,a\ny,a\nz,\n")
    with pytest.raises(RnnclfError, match=r"^data.multi_label: .* has 1 distinct label \(only 'a'\)"):
        prepare(config, use_cache=False)


def test_cache_key_includes_the_multi_label_keys(tmp_path: Path) -> None:
    from rnnclf.prepare import _cache_key

    config = _config(tmp_path, "x,a\ny,b\n")
    key = _cache_key(config)
    config.data.label_separator = ";"
    assert _cache_key(config) != key
    config.data.multi_label = False
    assert len({key, _cache_key(config)}) == 2


@pytest.mark.parametrize("value", [0, 1, 1.5, -0.2])
def test_fixed_threshold_outside_zero_one_is_an_error_naming_the_key(value: float) -> None:
    with pytest.raises(RnnclfError, match=r"^config: train.thresholds = .*strictly between 0 and 1"):
        validate({"train": {"thresholds": value}})


def test_parquet_list_column_and_joined_strings(tmp_path: Path) -> None:
    from test_parquet import write_parquet

    lists = write_parquet(tmp_path / "l.parquet", {"text": ["a", "b", "c"], "label": [["y", "x"], [], None]})
    assert read(lists) == [("x", "y"), (), ()]
    joined = write_parquet(tmp_path / "j.parquet", {"text": ["a", "b"], "label": ["x;y", "y"]})
    assert read(joined, separator=";") == [("x", "y"), ("y",)]
    bad = write_parquet(tmp_path / "b.parquet", {"text": ["a", "b"], "label": ["x", "x;;y"]})
    with pytest.raises(RnnclfError, match="row 2 of column 'label'"):
        read(bad, separator=";")
