"""`output.tensorboard: true`: one TensorBoard point per epoch, equal to metrics.jsonl (the record), none
doubled by a resume; without the optional packages, training still succeeds with one note each."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from rnnclf.cli.app import app
from rnnclf.reports.tensorboard import TAGS


def cli(*args: object) -> Result:
    return CliRunner().invoke(app, [str(arg) for arg in args])


def scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_tensorboard_scalars_follow_metrics_jsonl_across_a_resume(tiny_config: Path, tmp_path: Path) -> None:
    pytest.importorskip(
        "tensorboard", reason="tensorboard is not installed (pip install 'rnnclf[tensorboard]')"
    )
    run = tmp_path / "run"
    common = ["--run-dir", run, "--set", "output.tensorboard=true", "--set", "output.plots=false", "--quiet"]
    common += ["--set", "output.keep_last=true"]  # the finished run is continued with more epochs
    first = cli("train", tiny_config, *common, "--set", "train.epochs=1")
    assert first.exit_code == 0, first.output
    second = cli("train", tiny_config, *common, "--set", "train.epochs=2", "--resume")
    assert second.exit_code == 0, second.output
    assert "note:" not in first.stderr + second.stderr

    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    logged = scalars(run / "tensorboard")
    for key, tag in TAGS.items():
        if key == "valid_micro_f1":  # multi-label runs only
            assert tag not in logged and key not in rows[0]
            continue
        assert [step for step, _ in logged[tag]] == [1, 2], tag  # each epoch once, the resume included
        assert [value for _, value in logged[tag]] == pytest.approx([row[key] for row in rows], rel=1e-6)
    metrics = json.loads((run / "metrics.json").read_text())
    # best/*: the scores of best.pt each time training finished (after epoch 1, then after the resume).
    assert [step for step, _ in logged["best/test_accuracy"]] == [1, 2]
    assert logged["best/test_accuracy"][-1][1] == pytest.approx(metrics["test"]["accuracy"])


def test_without_the_optional_packages_training_succeeds_with_one_note_each(
    tiny_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import now raises ImportError
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    run = tmp_path / "run"
    result = cli(
        "train", tiny_config, "--run-dir", run, "--set", "output.tensorboard=true", "--set", "train.epochs=1"
    )
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    notes = [line for line in result.stderr.splitlines() if line.startswith("note:")]
    assert notes == [
        "note: output.tensorboard needs tensorboard, which is not installed: "
        "pip install 'rnnclf[tensorboard]'; training goes on without it",
        "note: no plots: plotting needs matplotlib, which is not installed: pip install 'rnnclf[plots]'",
    ]
    assert (run / "metrics.jsonl").is_file() and (run / "metrics.json").is_file()
    assert not (run / "tensorboard").exists()


def test_a_run_that_fails_early_leaves_no_tensorboard_folder(tiny_config: Path, tmp_path: Path) -> None:
    pytest.importorskip(
        "tensorboard", reason="tensorboard is not installed (pip install 'rnnclf[tensorboard]')"
    )
    run = tmp_path / "run"
    # A class-weight list of the wrong length fails after the run folder is chosen, before any epoch.
    overrides = ["--set", "output.tensorboard=true", "--set", "train.class_weights=[1.0]"]
    result = cli("train", tiny_config, "--run-dir", run, *overrides)
    assert result.exit_code == 2, result.output
    assert not run.exists()
