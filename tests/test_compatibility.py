"""A run trained before the 0.3 package layout (tests/data/run-0.2: best.pt, config.yaml and metrics made
by rnnclf 0.2.0 at commit 43b0154, on conftest's tiny data) is used unchanged by the code after it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rnnclf import Predictor
from rnnclf.cli.app import app

OLD_RUN = Path(__file__).parent / "data" / "run-0.2"


def test_a_checkpoint_from_before_the_move_predicts_as_it_did() -> None:
    expected = json.loads((OLD_RUN / "predictions.json").read_text(encoding="utf-8"))
    predictor = Predictor.from_checkpoint(OLD_RUN / "best.pt")
    results = predictor.predict([each["text"] for each in expected])
    for result, before in zip(results, expected, strict=True):
        assert result.label == before["label"]
        assert result.probabilities == pytest.approx(before["probabilities"], abs=1e-6)


def test_the_commands_read_a_run_folder_from_before_the_move(tmp_path: Path) -> None:
    run = shutil.copytree(OLD_RUN, tmp_path / "old-run")
    runner = CliRunner()
    listed = runner.invoke(app, ["runs", str(tmp_path), "--json"])
    assert listed.exit_code == 0, listed.output
    assert [(row["name"], row["status"]) for row in json.loads(listed.output)] == [("old-run", "done")]
    info = runner.invoke(app, ["info", "--model", str(run), "--json"])
    assert info.exit_code == 0, info.output
    assert json.loads(info.output)["labels"] == ["food", "sports", "tech"]
    predicted = runner.invoke(app, ["predict", "--model", str(run), "pizza and cheese"])
    assert predicted.exit_code == 0, predicted.output
    assert predicted.output.split("\t")[0] == "food"
