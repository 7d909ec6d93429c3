"""Two-stage runs (pretrain.epochs > 0) and language models as a user meets them: stopping and resuming
in either stage, a folder that holds only a language model, configs saved by a run and trained again
from elsewhere, validation and test texts kept out of the language model, and the small print (the
run header, --quiet, the runs table, pretrain's default and next step, a finished run's size)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner, Result

from rnnclf.cli.app import app
from rnnclf.config import load
from rnnclf.prepare import split_texts
from rnnclf.runs import checkpoint
from rnnclf.runs.info import run_summary
from rnnclf.text.fingerprints import compact, fingerprints
from rnnclf.training.loop import train
from rnnclf.training.stopping import Interrupted

# Tiny and quick: the language model's stage takes ~6 steps an epoch, the classifier's ~11.
TWO_STAGE = [
    "pretrain.epochs=2",
    "pretrain.batch_size=16",
    "pretrain.samples=10",
    "train.epochs=2",
    "train.patience=null",
    "train.baseline=false",
    "output.plots=false",
]


def cli(*args: object) -> Result:
    return CliRunner().invoke(app, [str(arg) for arg in args])


def ok(result: Result) -> Result:
    assert result.exit_code == 0, f"exit {result.exit_code}\n{result.output}\n{result.exception!r}"
    return result


def one_line_error(result: Result, *fragments: str) -> str:
    assert result.exit_code == 2, f"exit {result.exit_code}\n{result.output}\n{result.exception!r}"
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def sets(options: list[str]) -> list[str]:
    return [part for item in options for part in ("--set", item)]


class StopAfter:
    """A stop flag whose signal arrives after `reads` reads (the loops read .signal once a step and once
    at each epoch's end)."""

    def __init__(self, reads: int) -> None:
        self.reads, self.limit, self.finishing = 0, reads, False

    @property
    def signal(self) -> int | None:
        self.reads += 1
        return 15 if self.reads > self.limit else None

    def __bool__(self) -> bool:
        return self.reads > self.limit


def final(folder: Path) -> tuple[dict, dict]:
    """best.pt's weights and metrics.json without its timings."""
    metrics = json.loads((folder / "metrics.json").read_text())
    metrics.pop("train_seconds")
    return checkpoint.load(folder / "best.pt")["model"], metrics


def assert_same_run(left: Path, right: Path) -> None:
    (weights, metrics), (other_weights, other_metrics) = final(left), final(right)
    assert metrics == other_metrics
    assert weights.keys() == other_weights.keys()
    for name in weights:
        assert torch.equal(weights[name], other_weights[name]), name


# --- item 1: stop and resume in either stage --------------------------------------------------------------


@pytest.mark.parametrize("reads, stage", [(3, "language model"), (18, "classifier")])
def test_a_two_stage_run_stopped_in_either_stage_resumes_to_the_same_result(
    tiny_config: Path, reads: int, stage: str
) -> None:
    train(load(tiny_config, TWO_STAGE), "straight")
    with pytest.raises(Interrupted) as stopped:
        train(load(tiny_config, TWO_STAGE), "stopped", stop=StopAfter(reads))
    in_classifier = Path("stopped/last.pt").exists()
    assert in_classifier == (stage == "classifier"), "the stop must land in the stage under test"
    assert stopped.value.run_dir == Path("stopped") / ("" if in_classifier else "pretrain")
    train(load(tiny_config, TWO_STAGE), "stopped", resume=True)
    assert_same_run(Path("straight"), Path("stopped"))
    lm = [
        checkpoint.load(f"{run}/pretrain/lm.pt", kind=checkpoint.LANGUAGE_MODEL)
        for run in ("straight", "stopped")
    ]
    assert all(torch.equal(value, lm[1]["model"][name]) for name, value in lm[0]["model"].items())


def test_a_folder_holding_only_a_stopped_language_model_says_what_is_true(tiny_config: Path) -> None:
    with pytest.raises(Interrupted):
        train(load(tiny_config, TWO_STAGE), "runs/half", stop=StopAfter(8))  # after the first LM epoch
    assert Path("runs/half/pretrain/last.pt").exists() and not Path("runs/half/last.pt").exists()
    assert Path("runs/LATEST").read_text().strip() == str(Path("runs/half").resolve())
    # rnnclf runs lists it, with its stage and perplexity.
    rows = json.loads(ok(cli("runs", "--json")).stdout)
    assert [row["name"] for row in rows] == ["half"]
    assert rows[0]["status"] == "stage 1/2 stopped" and rows[0]["kind"] == "language model"
    assert rows[0]["monitor"] == "valid_perplexity" and rows[0]["best_valid"] > 1
    table = ok(cli("runs")).stdout
    assert "stage 1/2 stopped" in table and "perplexity" in table
    # A new run into it: what it holds and what to run (not "already holds a trained run").
    line = one_line_error(cli("train", tiny_config, *sets(TWO_STAGE), "--run-dir", "runs/half"), "--resume")
    assert "language model stopped (no classifier yet)" in line and "trained run" not in line
    # predict, eval, info, export (through runs/LATEST): what works, in one line.
    for command in (
        ["predict", "pizza"],
        ["eval"],
        ["info"],
        ["export", "--format", "onnx", "--out", "m.onnx"],
    ):
        line = one_line_error(cli(*command), "no classifier yet", "--resume")
        assert "rnnclf train " in line and "runs/half/config.yaml" in line
    # The hint works: the run's own config.yaml, --run-dir, --resume.
    hint = line.split("finish the run with: ", 1)[1].split(" ('rnnclf runs'")[0].split()
    ok(cli(*hint[1:], "--quiet"))
    assert Path("runs/half/best.pt").exists()
    assert run_summary(Path("runs/half"))["status"] == "done"


def test_a_finished_language_model_stage_is_kept_when_the_classifier_resumes(tiny_config: Path) -> None:
    """Stopped at the classifier's first step: the finished stage is not trained again."""
    with pytest.raises(Interrupted):
        train(load(tiny_config, TWO_STAGE), "run", stop=StopAfter(14))
    lm = Path("run/pretrain/lm.pt").stat().st_mtime_ns
    if not Path("run/last.pt").exists():  # stopped at the stage boundary: the classifier saved nothing
        assert Path("run/pretrain/metrics.json").exists() and not Path("run/pretrain/last.pt").exists()
        assert run_summary(Path("run"))["status"] == "stage 1/2 done"
    result = ok(cli("train", tiny_config, *sets(TWO_STAGE), "--run-dir", "run", "--resume"))
    assert Path("run/pretrain/lm.pt").stat().st_mtime_ns == lm
    assert "stage 2/2" in result.stdout or "resuming" in result.stdout


def _child(args: list[str], cwd: Path) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-m", "rnnclf", *args], cwd=cwd, env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _kill_when(path: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, f"ended ({process.returncode}) before {path}: {process.stderr.read()}"
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.01)
    process.kill()
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL


@pytest.mark.slow
def test_kill_9_in_each_stage_then_resume_equals_an_uninterrupted_run(
    tiny_config: Path, tmp_path: Path
) -> None:
    # Many short epochs, so each kill lands inside the stage whose checkpoint it waits for.
    options = [*TWO_STAGE, "pretrain.epochs=12", "train.epochs=8"]
    ok(cli("train", tiny_config, *sets(options), "--run-dir", "straight", "--quiet"))
    args = ["train", str(tiny_config), *sets(options), "--run-dir", "killed", "--quiet"]
    _kill_when(tmp_path / "killed" / "pretrain" / "last.pt", _child(args, tmp_path))
    assert not (tmp_path / "killed" / "last.pt").exists(), "killed in the language model's stage"
    _kill_when(tmp_path / "killed" / "last.pt", _child([*args, "--resume"], tmp_path))
    assert not (tmp_path / "killed" / "metrics.json").exists(), "killed in the classifier's stage"
    process = _child([*args, "--resume"], tmp_path)
    assert process.wait(timeout=300) == 0, process.stderr.read()
    assert_same_run(tmp_path / "straight", tmp_path / "killed")


@pytest.mark.slow
def test_ctrl_c_in_the_language_model_stage_prints_a_resume_command_that_finishes(
    tiny_config: Path, tmp_path: Path
) -> None:
    args = ["train", str(tiny_config), *sets([*TWO_STAGE, "pretrain.epochs=200"]), "--run-dir", "run"]
    process = _child(args, tmp_path)
    while not (tmp_path / "run" / "pretrain" / "last.pt").exists():
        assert process.poll() is None, process.stderr.read()
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "run/pretrain/last.pt saved. Resume with: rnnclf train " in stderr
    command = stderr.split("Resume with: ", 1)[1].split()
    assert command[-1] == "--resume" and "pretrain.epochs=200" in command
    state = checkpoint.load(tmp_path / "run" / "pretrain" / "last.pt", kind=checkpoint.LANGUAGE_MODEL)
    assert state["epoch"] < 200


# --- item 2: a saved config trains again, from anywhere ---------------------------------------------------


@pytest.mark.parametrize("kind", ["single-stage", "two-stage", "init_from"])
def test_a_run_trains_again_from_its_config_yaml_in_another_working_directory(
    tiny_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    options = ["train.epochs=2", "train.baseline=false", "output.plots=false"]
    if kind == "two-stage":
        options += TWO_STAGE
    if kind == "init_from":
        ok(cli("pretrain", tiny_config, *sets(TWO_STAGE), "--run-dir", "lm", "--quiet"))
        options += ["model.init_from=lm"]  # relative to the working directory, as a command-line path
    ok(cli("train", tiny_config, *sets(options), "--run-dir", "first", "--quiet"))
    saved = yaml.safe_load(Path("first/config.yaml").read_text())
    assert saved["output"]["run_dir"] is None
    assert Path(saved["data"]["train"]).is_absolute() and Path(saved["data"]["test"]).is_absolute()
    if kind == "two-stage":  # the recipe, not the pair the schema refuses together
        assert saved["pretrain"]["epochs"] == 2 and saved["model"]["init_from"] is None
    if kind == "init_from":
        assert saved["model"]["init_from"] == str(tmp_path / "lm")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    ok(cli("train", tmp_path / "first" / "config.yaml", "--quiet"))
    again = Path(Path("runs/LATEST").read_text().strip())
    assert again.parent == elsewhere / "runs" and again.name.startswith("config-")
    assert_same_run(tmp_path / "first", again)


# --- item 3: validation and test texts stay out of the language model -------------------------------------


def test_init_from_a_language_model_that_read_this_validation_split_is_refused(tiny_config: Path) -> None:
    """The issue's case: pretrained with train.seed=13, the classifier with train.seed=2 validates on
    documents the language model read."""
    ok(
        cli(
            "pretrain", tiny_config, "--set", "train.seed=13", "--set", "pretrain.epochs=1", "--run-dir", "lm"
        )
    )
    lm = checkpoint.load("lm/lm.pt", kind=checkpoint.LANGUAGE_MODEL)
    split = split_texts(load(tiny_config, ["train.seed=13"]))
    assert len(split["train"]) == 81 and lm["fingerprints"].dtype == torch.int64
    assert torch.equal(lm["fingerprints"], compact(fingerprints(split["train"])))  # sorted, each text once
    base = ["model.init_from=lm", "train.seed=2", "train.epochs=1", "output.plots=false"]
    line = one_line_error(cli("train", tiny_config, *sets(base)), "model.init_from_overlap: allow")
    counts = line.split("lm.pt: ", 1)[1]
    assert counts.startswith(
        ("1 of the 9 validation", "2 of", "3 of", "4 of", "5 of", "6 of", "7 of", "8 of")
    )
    assert "and 0 of the 30 test documents" in counts
    assert not Path("runs").exists() or not list(Path("runs").glob("*/best.pt"))
    # Allowed: it trains, and metrics.json records what was found.
    ok(cli("train", tiny_config, *sets([*base, "model.init_from_overlap=allow"]), "--run-dir", "allowed"))
    record = json.loads(Path("allowed/metrics.json").read_text())["init_from_overlap"]
    assert record["setting"] == "allow" and record["checked"] and record["valid"] > 0 and record["test"] == 0
    # The same seed: the language model read none of the classifier's validation documents.
    ok(cli("train", tiny_config, *sets([*base, "train.seed=13"]), "--run-dir", "same", "--quiet"))
    record = json.loads(Path("same/metrics.json").read_text())["init_from_overlap"]
    assert record == {"checked": True, "setting": "refuse", "valid": 0, "test": 0}


def test_unlabeled_text_holding_test_documents_is_found_by_its_fingerprints(tiny_config: Path) -> None:
    texts = split_texts(load(tiny_config))["test"]
    copied = tiny_config.parent / "copy.txt"  # other case and spacing: still found
    copied.write_text("".join(f"  {text.upper()}\n" for text in texts))
    ok(
        cli(
            "pretrain",
            tiny_config,
            *sets(["pretrain.epochs=1", f"data.unlabeled={copied}"]),
            "--run-dir",
            "lm",
        )
    )
    one_line_error(
        cli("train", tiny_config, "--set", "model.init_from=lm"), "0 of the 9 validation", "30 of the 30 test"
    )


@pytest.mark.parametrize("key", ["data.test", "data.train"])
def test_unlabeled_naming_the_test_or_split_train_file_is_refused(tiny_config: Path, key: str) -> None:
    named = tiny_config.parent / ("test.csv" if key == "data.test" else "train.csv")
    options = ["pretrain.epochs=1", f"data.unlabeled={named}"]
    for command in ("pretrain", "train"):
        one_line_error(
            cli(command, tiny_config, *sets(options)), f"is {key}", "model.init_from_overlap: allow"
        )
    assert not Path("runs").exists() or not any(Path("runs").iterdir())
    ok(cli("pretrain", tiny_config, *sets([*options, "model.init_from_overlap=allow"]), "--quiet"))


def test_a_two_stage_run_finds_no_overlap_in_its_own_language_model(tiny_config: Path) -> None:
    ok(cli("train", tiny_config, *sets(TWO_STAGE), "--run-dir", "run", "--quiet"))
    record = json.loads(Path("run/metrics.json").read_text())["init_from_overlap"]
    assert record == {"checked": True, "setting": "refuse", "valid": 0, "test": 0}


# --- item 5: what the terminal shows ----------------------------------------------------------------------


def test_train_starts_with_a_short_header_and_verbose_adds_the_config(tiny_config: Path) -> None:
    out = ok(cli("train", tiny_config, "--set", "train.epochs=1", "--run-dir", "a")).stdout
    lines = out.splitlines()
    assert lines[0].startswith("run: a (every setting: a/config.yaml")
    assert (
        lines[1].startswith("config ")
        and "train.epochs: 1" in lines[1]
        and "model.hidden_dim: 16" in lines[1]
    )
    assert lines[2] == "files: train project/train.csv; valid 10% of train; test project/test.csv"
    assert "config (" not in out and "\ndata:\n" not in out and len(lines) < 15
    verbose = ok(cli("train", tiny_config, "--set", "train.epochs=1", "--run-dir", "b", "--verbose")).stdout
    assert "config (" in verbose and "  embedding_dim: 16" in verbose


def test_quiet_keeps_one_line_per_epoch_and_the_result(tiny_config: Path) -> None:
    out = ok(cli("train", tiny_config, "--set", "train.epochs=2", "--quiet")).stdout
    assert [line.split()[1] for line in out.splitlines() if line.startswith("epoch ")] == ["1/2", "2/2"]
    assert "best epoch" in out and "run:" not in out and "files:" not in out and "data:" not in out


# --- item 6 (the runs table) and item 7 (small things) ----------------------------------------------------


def _fake_run(folder: Path, config: dict, rows: list[dict], metrics: dict | None) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    (folder / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    if metrics is not None:
        (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


def test_runs_table_shows_the_monitored_metric_on_valid_and_test_and_perplexity() -> None:
    model = {"cell": "lstm", "num_layers": 1, "hidden_dim": 8, "bidirectional": True, "pooling": "max"}
    _fake_run(
        Path("runs/multi"), {"data": {"multi_label": True}, "model": model, "train": {"epochs": 2}},
        [{"epoch": 1, "valid_micro_f1": 0.61, "valid_accuracy": 0.2, "best": True}],
        {"test": {"micro_f1": 0.55, "accuracy": 0.11}},
    )  # fmt: skip
    row = run_summary(Path("runs/multi"))
    assert (row["monitor"], row["best_valid"], row["test_score"]) == ("valid_micro_f1", 0.61, 0.55)
    table = ok(cli("runs")).stdout
    assert "best valid micro-F1" in table and "test micro-F1" in table and "0.5500" in table
    _fake_run(
        Path("runs/lm"), {"model": model, "pretrain": {"epochs": 3}},
        [{"epoch": 1, "valid_perplexity": 88.25, "best": True}], {"kind": "language_model"},
    )  # fmt: skip
    (Path("runs/lm") / "lm.pt").write_bytes(b"")
    row = run_summary(Path("runs/lm"))
    assert (row["kind"], row["status"], row["best_valid"], row["epochs_planned"]) == (
        "language model",
        "done",
        88.25,
        3,
    )
    table = ok(cli("runs")).stdout
    assert "perplexity 88.2 (ep. 1)" in table and "micro-F1 0.6100" in table  # mixed: names in the cells


def test_pretrain_on_the_default_config_trains_three_epochs_and_shows_the_next_step(
    tiny_config: Path,
) -> None:
    out = ok(cli("pretrain", tiny_config, "--run-dir", "lm")).stdout
    assert "rnnclf pretrain trains 3 epochs" in out
    assert len(Path("lm/metrics.jsonl").read_text().splitlines()) == 3
    assert out.splitlines()[-1] == f"next: rnnclf train {tiny_config} --set model.init_from=lm"
    assert yaml.safe_load(Path("lm/config.yaml").read_text())["pretrain"]["epochs"] == 3
    # The vocabulary (~40 words) is smaller than pretrain.samples (1,024): the full softmax.
    assert "full softmax (pretrain.samples >= vocabulary size)" in out
    assert json.loads(Path("lm/metrics.json").read_text())["softmax"] == "full"
    assert not Path("lm/last.pt").exists() and Path("lm/lm.pt").exists()
    # The next step works as printed.
    ok(cli(*out.splitlines()[-1].split()[2:], "--set", "train.epochs=1", "--quiet"))
    # info and export on it: one line saying what works.
    for command in (
        ["info", "--model", "lm"],
        ["export", "--model", "lm", "--format", "onnx", "--out", "m.onnx"],
    ):
        one_line_error(cli(*command), "a language model finished (rnnclf pretrain)", "model.init_from=lm")
    one_line_error(
        cli("pretrain", tiny_config, "--run-dir", "lm", "--resume"), "has finished, nothing to resume"
    )


def test_one_epoch_is_singular(tiny_config: Path) -> None:
    out = ok(cli("train", tiny_config, *sets([*TWO_STAGE, "pretrain.epochs=1", "train.epochs=1"]))).stdout
    assert "(1 epoch)" in out and "(1 epochs)" not in out


# --- item 10: a finished run keeps the model, not the resume state ----------------------------------------


def test_a_finished_run_keeps_best_pt_only_unless_keep_last(tiny_config: Path) -> None:
    ok(cli("train", tiny_config, "--set", "train.epochs=2", "--run-dir", "small", "--quiet"))
    assert Path("small/best.pt").exists() and not Path("small/last.pt").exists()
    one_line_error(
        cli("train", tiny_config, "--set", "train.epochs=3", "--run-dir", "small", "--resume"),
        "has finished", "output.keep_last: false",
    )  # fmt: skip
    one_line_error(cli("train", tiny_config, "--run-dir", "small"), "already holds a finished run")
    # keep_last: last.pt stays, and --resume with more epochs trains on.
    keep = ["train.epochs=2", "output.keep_last=true"]
    ok(cli("train", tiny_config, *sets(keep), "--run-dir", "kept", "--quiet"))
    size = sum(path.stat().st_size for path in Path("small").iterdir())
    kept = sum(path.stat().st_size for path in Path("kept").iterdir())
    assert Path("kept/last.pt").stat().st_size > Path("kept/best.pt").stat().st_size
    assert size < kept - Path("kept/best.pt").stat().st_size
    more = ["train.epochs=3", "output.keep_last=true"]
    ok(cli("train", tiny_config, *sets(more), "--run-dir", "kept", "--resume", "--quiet"))
    assert len(Path("kept/metrics.jsonl").read_text().splitlines()) == 3


def test_a_language_model_without_fingerprints_is_used_with_a_warning(tiny_config: Path) -> None:
    """lm.pt of rnnclf 0.2 records no texts: the check cannot run, and says so."""
    ok(cli("pretrain", tiny_config, "--set", "pretrain.epochs=1", "--run-dir", "lm", "--quiet"))
    old = checkpoint.load("lm/lm.pt", kind=checkpoint.LANGUAGE_MODEL)
    old = {key: value for key, value in old.items() if key not in (*checkpoint.STAMP, "fingerprints")}
    checkpoint.save(old, "lm/lm.pt", kind=checkpoint.LANGUAGE_MODEL)
    result = ok(cli("train", tiny_config, *sets(["model.init_from=lm", "train.epochs=1"]), "--run-dir", "c"))
    assert "does not record its training texts" in result.stderr
    assert json.loads(Path("c/metrics.json").read_text())["init_from_overlap"]["checked"] is False


def test_a_pretrain_folder_stopped_in_its_first_epoch_is_a_language_model(tiny_config: Path) -> None:
    from rnnclf.pretraining.loop import pretrain

    with pytest.raises(Interrupted):
        pretrain(load(tiny_config, ["pretrain.epochs=2", "pretrain.batch_size=16"]), "lm", stop=StopAfter(2))
    assert Path("lm/last.pt").exists() and not Path("lm/lm.pt").exists()
    row = run_summary(Path("lm"))
    assert (row["kind"], row["status"]) == ("language model", "stopped")
    line = one_line_error(
        cli("predict", "--model", "lm", "pizza"), "a language model stopped (rnnclf pretrain)"
    )
    assert "rnnclf pretrain lm/config.yaml --run-dir lm --resume" in line
    ok(cli("pretrain", "lm/config.yaml", "--run-dir", "lm", "--resume", "--quiet"))
    assert run_summary(Path("lm"))["status"] == "done"
