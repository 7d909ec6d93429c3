"""A multi-label run end to end through the CLI on tiny data: train -> eval -> predict (--threshold,
--top-k, --json, --file -, --explain) -> export metadata -> resume; thresholds chosen on validation only."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest
import torch
from test_cli import cli, ok, user_error
from test_export import runner

from rnnclf.inference.predict import Predictor

KEYWORDS = {
    "food": ["pizza", "pasta", "bread", "cheese", "soup"],
    "sports": ["goal", "match", "team", "score", "coach"],
    "tech": ["computer", "software", "chip", "code", "laptop"],
}
FILLER = ["the", "a", "of", "and", "to", "in", "is", "it", "that", "was"]
CONFIG = """\
data:
  train: train.csv
  test: test.csv
  multi_label: true
text:
  min_freq: 1
model:
  embedding_dim: 16
  hidden_dim: 16
train:
  epochs: 6
  batch_size: 8
  lr: 0.03
  seed: 7
  device: cpu
  baseline: false
  monitor: valid_loss  # micro-F1 on 15 validation documents reaches 1 early and stops improving
output:
  plots: false
  keep_last: true  # the resume test continues the finished run with more epochs
"""


def documents(count: int, seed: int) -> list[tuple[str, str]]:
    """Each document has one or two labels, two keywords of each, among filler words."""
    generator = random.Random(seed)
    names = sorted(KEYWORDS)
    rows = []
    for i in range(count):
        chosen = sorted({names[i % 3], *([names[(i // 3) % 3]] if i % 2 else [])})
        words = [w for label in chosen for w in generator.sample(KEYWORDS[label], 2)]
        words += generator.sample(FILLER, generator.randint(2, 6))
        generator.shuffle(words)
        rows.append((" ".join(words), ",".join(chosen)))
    return rows


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("multilabel")
    for name, count, seed in (("train.csv", 150, 1), ("test.csv", 30, 2)):
        with (folder / name).open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            writer.writerows(documents(count, seed))
    (folder / "ml.yaml").write_text(CONFIG, encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        ok(cli("train", folder / "ml.yaml", "--run-dir", folder / "run", "--quiet"))
    return folder


def test_training_learns_and_chooses_thresholds_on_validation(trained: Path) -> None:
    from rnnclf.inference.predict import Predictor
    from rnnclf.inference.scoring import logits_for
    from rnnclf.prepare import prepare
    from rnnclf.reports.multilabel_metrics import choose_thresholds

    run = trained / "run"
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    assert all("valid_micro_f1" in row for row in rows)
    assert metrics["thresholds"]["chosen_on"] == "valid"
    # Far above chance: the keywords decide the labels.
    assert metrics["test"]["micro_f1"] > 0.8, metrics["test"]
    # The saved thresholds are the ones that maximise micro-F1 on the validation split, recomputed here
    # from best.pt's validation probabilities.
    predictor = Predictor.from_checkpoint(run / "best.pt")
    prepared = prepare(predictor.config)
    probabilities = torch.sigmoid(logits_for(predictor.model, prepared.valid, torch.device("cpu")))  # (N, L)
    expected = choose_thresholds(probabilities, prepared.valid.labels, "global")
    assert predictor.thresholds == pytest.approx(expected)
    assert list(metrics["thresholds"]["values"].values()) == pytest.approx(expected)


def test_monitor_auto_is_micro_f1_for_multi_label_runs() -> None:
    from rnnclf.config import validate

    assert validate({"data": {"multi_label": True}}).monitored() == "valid_micro_f1"
    assert validate({}).monitored() == "valid_accuracy"


def test_eval_json_and_tables(trained: Path) -> None:
    result = ok(cli("eval", "--model", trained / "run", "--json"))
    report = json.loads(result.stdout)
    keys = {"micro_f1", "macro_f1", "samples_f1", "subset_accuracy", "hamming_loss", "label_cardinality"}
    assert keys <= set(report) and report["n"] == 30
    assert set(report["per_class"]["food"]) >= {
        "precision",
        "recall",
        "f1",
        "support",
        "tp",
        "fp",
        "fn",
        "tn",
    }
    tables = ok(cli("eval", "--model", trained / "run")).stdout
    assert "micro-F1" in tables and "Hamming loss" in tables and "per label" in tables
    info = ok(cli("info", "--model", trained / "run")).stdout
    assert "thresholds" in info and "global" in info and "chosen on validation" in info


def test_predict_lines_threshold_top_k_json_and_stdin(trained: Path) -> None:
    run = trained / "run"
    line = ok(cli("predict", "--model", run, "pizza cheese goal match the")).stdout.strip()
    chosen = dict(pair.split(":") for pair in line.split())
    assert set(chosen) == {"food", "sports"}, line
    # A threshold above every probability chooses nothing: the marker.
    assert ok(cli("predict", "--model", run, "--threshold", "0.999", "pizza")).stdout.strip() == "(no label)"
    # A tiny threshold chooses every label; --top-k keeps the most likely ones.
    everything = ok(cli("predict", "--model", run, "--threshold", "0.001", "pizza")).stdout.split()
    assert len(everything) == 3
    assert ok(
        cli("predict", "--model", run, "--threshold", "0.001", "--top-k", "1", "pizza")
    ).stdout.split() == [everything[0]]
    streamed = ok(
        cli("predict", "--model", run, "--file", "-", "--json", input="pizza soup\ncode chip laptop\n")
    )
    records = [json.loads(text) for text in streamed.stdout.splitlines()]
    assert [record["labels"] for record in records] == [["food"], ["tech"]]
    assert set(records[0]["probabilities"]) == {"food", "sports", "tech"}
    explained = ok(
        cli("predict", "--model", run, "--explain", "--json", "pizza cheese goal match the")
    ).stdout
    reasons = json.loads(explained)["explanations"]
    assert sorted(reason["label"] for reason in reasons) == ["food", "sports"]


@pytest.mark.parametrize("value", ["0", "1", "1.5", "-0.1"])
def test_a_threshold_outside_zero_one_is_a_one_line_error(trained: Path, value: str) -> None:
    user_error(
        cli("predict", "--model", trained / "run", "--threshold", value, "x"),
        "--threshold",
        "between 0 and 1",
    )


def test_export_metadata_says_multi_label_and_carries_the_thresholds(trained: Path) -> None:
    out = trained / "model.pt"
    ok(cli("export", "--model", trained / "run", "--format", "torchscript", "--out", out))
    meta = json.loads((trained / "model.pt.json").read_text(encoding="utf-8"))
    saved = torch.load(trained / "run" / "best.pt", weights_only=True)["thresholds"]
    assert (
        meta["multi_label"] is True
        and meta["thresholds"] == saved
        and meta["labels"] == ["food", "sports", "tech"]
    )
    # The exported model's probabilities are each label's sigmoid, as Predictor's.
    ids, lengths = torch.tensor([[5, 6, 0]]), torch.tensor([2])
    probabilities = runner("torchscript", out)(ids, lengths)  # (1, 3)
    expected = torch.sigmoid(
        Predictor.from_checkpoint(trained / "run" / "best.pt").model.eval()(ids, lengths)
    )
    assert torch.allclose(probabilities, expected, atol=1e-6)


def test_resume_continues_a_multi_label_run(trained: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(trained)
    ok(cli("train", trained / "ml.yaml", "--run-dir", trained / "run", "--resume", "--set", "train.epochs=7"))
    rows = (trained / "run" / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(rows) == 7
    assert "thresholds" in torch.load(trained / "run" / "best.pt", weights_only=True)


def test_linear_add_on_with_multi_label_is_a_one_line_error(trained: Path) -> None:
    user_error(
        cli("train", trained / "ml.yaml", "--set", "linear.ngrams=2"),
        "linear.ngrams",
        "data.multi_label: true",
    )


def test_a_multi_label_ensemble_scores_each_member_at_the_chosen_thresholds(
    trained: Path, tmp_path: Path
) -> None:
    run = tmp_path / "ensemble"
    ok(
        cli(
            "train", trained / "ml.yaml", "--run-dir", run, "--quiet",
            "--set", "ensemble.members=2", "--set", "train.epochs=2",
        )
    )  # fmt: skip
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    assert set(metrics["components"]) == {"recurrent", "member 1", "member 2"}
    assert all("micro_f1" in entry["test"] for entry in metrics["components"].values())
    # The saved model is the ensemble: its scores are the "recurrent" component's.
    assert metrics["components"]["recurrent"]["test"]["micro_f1"] == pytest.approx(
        metrics["test"]["micro_f1"]
    )
    line = ok(cli("predict", "--model", run, "--json", "pizza")).stdout
    assert "labels" in json.loads(line)
