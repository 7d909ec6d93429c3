"""`rnnclf runs` (the table of runs) and `rnnclf info` (one checkpoint in detail), with --json."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import KEYWORDS, write_csv
from typer.testing import CliRunner, Result

from rnnclf.cli.app import app
from rnnclf.inference.predict import Predictor
from rnnclf.models.addons import parameter_count
from rnnclf.runs.info import duration, list_runs, model_summary

LABELS = sorted(KEYWORDS)


def cli(*args: object) -> Result:
    return CliRunner().invoke(app, [str(arg) for arg in args])


def ok(result: Result) -> Result:
    assert result.exit_code == 0, f"exit {result.exit_code}\n{result.output}\n{result.exception!r}"
    return result


def one_error_line(result: Result, fragment: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], lines


# --- runs -------------------------------------------------------------------------------------------------


def test_runs_lists_the_trained_run(tiny_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tiny_run.parent.parent)  # the default folder is ./runs
    rows = json.loads(ok(cli("runs", "--json")).stdout)
    assert len(rows) == 1
    row = rows[0]
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    history = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    assert row["name"] == tiny_run.name and row["latest"] is True and row["status"] == "done"
    # n-grams and the linear model are on by default
    assert row["model"] == "lstm 1x16 bi, max"
    assert row["data"].endswith("project/train.csv")
    assert row["epochs"] == row["epochs_planned"] == 3
    assert row["monitor"] == "valid_accuracy" and row["best_epoch"] == metrics["best_epoch"]
    assert row["best_valid"] == history[metrics["best_epoch"] - 1]["valid_accuracy"]
    assert row["test_accuracy"] == metrics["test"]["accuracy"]
    assert row["train_seconds"] == metrics["train_seconds"]
    assert row["date"] and len(row["date"]) == len("2026-11-26 10:15")

    table = ok(cli("runs")).stdout
    for fragment in (f"{tiny_run.name} *", "done", "project/train.csv", "lstm 1x16 bi, max", "3/3"):
        assert fragment in table, fragment
    # One metric, the monitored one, on valid and on test: its name in the header.
    assert "best valid accuracy" in table and "test accuracy" in table
    assert f"{row['best_valid']:.4f} (ep. {row['best_epoch']})" in table
    assert row["test_score"] == row["test_accuracy"] and f"{row['test_score']:.4f}" in table


def test_runs_shows_what_it_can_of_unfinished_and_damaged_runs(tiny_run: Path, tmp_path: Path) -> None:
    folder = tmp_path / "many"
    shutil.copytree(tiny_run, folder / "finished")
    stopped = folder / "stopped"  # interrupted after two epochs: no metrics.json yet
    stopped.mkdir()
    for name in ("config.yaml", "last.pt"):
        shutil.copy(tiny_run / name, stopped / name)
    lines = (tiny_run / "metrics.jsonl").read_text().splitlines()
    (stopped / "metrics.jsonl").write_text("\n".join(lines[:2]) + '\n{"epoch": 3, "trai', encoding="utf-8")
    damaged = folder / "damaged"
    damaged.mkdir()
    (damaged / "config.yaml").write_text("model: [unclosed\n", encoding="utf-8")
    (folder / "notes").mkdir()  # not a run: no run files
    (folder / "README.txt").write_text("not a run\n", encoding="utf-8")

    rows = {row["name"]: row for row in list_runs(folder)}
    assert set(rows) == {"finished", "stopped", "damaged"}
    assert rows["stopped"]["status"] == "stopped" and rows["stopped"]["epochs"] == 2
    assert rows["stopped"]["train_seconds"] == pytest.approx(
        sum(json.loads(line)["seconds"] for line in lines[:2])
    )
    assert rows["stopped"]["test_accuracy"] is None
    assert rows["damaged"]["status"] == "no epoch" and rows["damaged"]["model"] == "-"
    table = ok(cli("runs", folder)).stdout
    assert "stopped" in table and "damaged" in table and "notes" not in table

    # A run folder itself is listed alone.
    assert [row["name"] for row in list_runs(folder / "finished")] == ["finished"]


def test_runs_in_an_empty_or_missing_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = ok(cli("runs", tmp_path / "empty"))
    assert result.stdout == "" and result.stderr.startswith("note: no runs under")
    assert json.loads(ok(cli("runs", tmp_path / "empty", "--json")).stdout) == []
    one_error_line(cli("runs"), "runs: no such folder")  # no ./runs here
    (tmp_path / "file").write_text("x", encoding="utf-8")
    one_error_line(cli("runs", tmp_path / "file"), "is a file")


def test_summaries() -> None:
    model = {"cell": "gru", "num_layers": 2, "hidden_dim": 64, "bidirectional": False, "pooling": "mean"}
    assert model_summary({"model": model}) == "gru 2x64, mean"
    with_addons = {
        "model": {**model, "bidirectional": True},
        "ensemble": {"members": 3},
        "linear": {"ngrams": 3},
    }
    assert model_summary(with_addons) == "gru 2x64 bi, mean, ensemble of 3, + linear 1-3-grams"
    assert model_summary({}) == "-"
    assert [duration(s) for s in (None, 4.4, 65, 3600 * 2 + 7 * 60)] == ["-", "4s", "1m 05s", "2h 07m"]


# --- info -------------------------------------------------------------------------------------------------


def test_info_describes_the_checkpoint(tiny_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tiny_run.parent.parent)  # no --model: the latest run
    details = json.loads(ok(cli("info", "--json")).stdout)
    predictor = Predictor.from_checkpoint(tiny_run / "best.pt")
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert details["checkpoint"] == str(tiny_run / "best.pt")
    assert details["format_version"] == 2 and details["rnnclf_version"]
    assert details["vocab_size"] == len(predictor.vocab)
    assert details["labels"] == LABELS
    assert details["parameters"] == parameter_count(predictor.model)
    assert details["embedding_parameters"] == len(predictor.vocab) * 16
    assert details["config"]["model"]["hidden_dim"] == 16
    assert details["metrics"]["test"]["accuracy"] == metrics["test"]["accuracy"]
    assert details["metrics"]["best_epoch"] == metrics["best_epoch"]
    # Coverage defaults to the run's test file, whose words all occur in training here.
    assert details["coverage"]["data"].endswith("test.csv")
    assert details["coverage"]["token_coverage"] == 1.0

    text = ok(cli("info")).stdout
    for fragment in (
        f"{details['vocab_size']} tokens",
        f"{details['parameters']:,} parameters",
        "3: food, sports, tech",
        "format 2",
        "lstm 1x16 bi, max",
        # The linear baseline is reported beside the recurrent model's scores.
        f"valid accuracy {metrics['baseline']['valid']['accuracy']:.4f}",
        f"test accuracy {metrics['test']['accuracy']:.4f}",
    ):
        assert fragment in " ".join(text.split()), fragment


def test_info_coverage_on_other_data(tiny_run: Path, tmp_path: Path) -> None:
    # 5 tokens, 4 known ('zzyzx' is not in the vocabulary); 4 distinct words, 3 known.
    data = write_csv(tmp_path / "d.csv", [("pizza zzyzx goal", "food"), ("goal code", "tech")])
    cover = json.loads(ok(cli("info", "--model", tiny_run, "--data", data, "--json")).stdout)["coverage"]
    assert cover["documents"] == 2 and cover["tokens"] == 5 and cover["distinct_words"] == 4
    assert cover["token_coverage"] == pytest.approx(4 / 5)
    assert cover["word_coverage"] == pytest.approx(3 / 4)
    text = " ".join(ok(cli("info", "--model", tiny_run, "--data", data)).stdout.split())
    assert "covers 80.0% of the 5 tokens (75.0% of 4 distinct words)" in text


def test_info_on_last_pt_reports_the_epochs_inside(tiny_run: Path) -> None:
    details = json.loads(ok(cli("info", "--model", tiny_run / "last.pt", "--json")).stdout)
    last = json.loads((tiny_run / "metrics.jsonl").read_text().splitlines()[-1])
    assert details["epoch"] == 3
    assert details["metrics"]["valid"]["accuracy"] == last["valid_accuracy"]


def test_info_errors_are_one_line(tiny_run: Path, tmp_path: Path) -> None:
    (tmp_path / "x.pt").write_bytes(b"not a checkpoint")
    one_error_line(cli("info", "--model", tmp_path / "x.pt"), "not an rnnclf checkpoint")
    one_error_line(cli("info", "--model", tiny_run, "--data", tmp_path / "none.csv"), "no such file")
