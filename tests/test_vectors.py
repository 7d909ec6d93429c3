"""Pretrained word vectors: GloVe and word2vec text files (plain or gzip) initialise matching vocabulary
rows of every ensemble member, the coverage is reported, frozen rows stay put, and a dimension mismatch
is a one-line error naming the file and line."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from rnnclf.cli.app import app
from rnnclf.errors import RnnclfError
from rnnclf.runs import checkpoint
from rnnclf.text.vectors import load_pretrained, read_vectors
from rnnclf.text.vocab import Vocab

DIM = 4
# Words of the tiny corpus (tests/conftest.py) plus one the corpus never uses.
VECTORS = {
    "pizza": [0.5, -1.0, 2.0, 0.25],
    "goal": [1.5, 0.0, -0.5, 3.0],
    "laptop": [-2.0, 0.75, 1.0, -1.25],
    "zeppelin": [9.0, 9.0, 9.0, 9.0],
}


def write_vectors(path: Path, header: bool = False, compress: bool = False, dim: int = DIM) -> Path:
    lines = [f"{len(VECTORS)} {dim}"] if header else []
    lines += [" ".join([word, *(str(x) for x in vector[:dim])]) for word, vector in VECTORS.items()]
    text = "\n".join(lines) + "\n"
    if compress:
        with gzip.open(path, "wt", encoding="utf-8") as file:
            file.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(("header", "compress"), [(False, False), (True, False), (False, True), (True, True)])
def test_reads_glove_and_word2vec_plain_or_gzip(tmp_path: Path, header: bool, compress: bool) -> None:
    path = write_vectors(tmp_path / "v.txt", header=header, compress=compress)
    found = read_vectors(path, {"pizza", "goal", "absent"}, DIM)
    assert found == {"pizza": VECTORS["pizza"], "goal": VECTORS["goal"]}  # only the words asked for


def test_dimension_mismatch_names_the_file_line_and_fix(tmp_path: Path) -> None:
    path = write_vectors(tmp_path / "v.txt", header=True, dim=3)
    with pytest.raises(RnnclfError) as caught:
        read_vectors(path, {"pizza"}, DIM)
    message = str(caught.value)
    assert str(path) in message and "line 2" in message and "set model.embedding_dim: 3" in message


def test_matching_rows_of_every_embedding_are_set(tmp_path: Path) -> None:
    path = write_vectors(tmp_path / "v.txt")
    vocab = Vocab(["<pad>", "<unk>", "pizza", "cheese", "goal"], default_index=1)
    torch.manual_seed(0)
    embeddings = [torch.nn.Embedding(5, DIM) for _ in range(2)]
    before = [embedding.weight.detach().clone() for embedding in embeddings]
    assert load_pretrained(embeddings, vocab, path) == 2
    for embedding, old in zip(embeddings, before, strict=True):
        assert embedding.weight[2].tolist() == VECTORS["pizza"]
        assert embedding.weight[4].tolist() == VECTORS["goal"]
        for row in (0, 1, 3):  # not in the file: untouched
            assert torch.equal(embedding.weight[row], old[row])


def test_training_reports_coverage_and_frozen_vectors_stay(tiny_config: Path, tmp_path: Path) -> None:
    vectors = write_vectors(tmp_path / "v.txt.gz", header=True, compress=True)
    run_dir = tmp_path / "run"
    sets = [
        f"model.pretrained_vectors={vectors}",
        "model.freeze_embeddings=true",
        f"model.embedding_dim={DIM}",
    ]
    result = CliRunner().invoke(
        app,
        ["train", str(tiny_config), "--run-dir", str(run_dir), *(x for s in sets for x in ("--set", s))],
    )
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    assert "pretrained vectors: 3 of " in result.output  # pizza, goal, laptop; not zeppelin
    state = checkpoint.load(run_dir / "best.pt")
    itos = state["vocab"]["itos"]
    table = state["model"]["embedding.weight"]
    for word in ("pizza", "goal", "laptop"):
        assert table[itos.index(word)].tolist() == VECTORS[word]  # frozen: unchanged by training


def test_mismatched_vectors_stop_training_with_exit_2(tiny_config: Path, tmp_path: Path) -> None:
    vectors = write_vectors(tmp_path / "v.txt", dim=3)
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        [
            "train",
            str(tiny_config),
            "--run-dir",
            str(run_dir),
            "--set",
            f"model.pretrained_vectors={vectors}",
        ],
    )
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "line 1" in lines[0], result.stderr
    assert "Traceback" not in result.output
    assert not (run_dir / "best.pt").exists()
