"""End-to-end tests of the `rnnclf` command on a tiny data set: train -> files -> eval -> predict ->
resume; repeatability; a self-contained checkpoint; and every known user error as exit code 2 with one
'error:' line on stderr, no traceback, and nothing half-written."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml
from conftest import KEYWORDS, cli_globals_restored, make_documents, write_csv, write_tiny_project
from typer.testing import CliRunner, Result

from rnnclf import config as config_module
from rnnclf.cli import render
from rnnclf.cli.app import app
from rnnclf.runs import checkpoint

LABELS = sorted(KEYWORDS)
EPOCH_KEYS = {
    "epoch",
    "train_loss",
    "valid_loss",
    "valid_accuracy",
    "valid_macro_f1",
    "words_per_s",
    "seconds",
}
REPORT_KEYS = {"accuracy", "macro_f1", "per_class", "confusion_matrix", "labels", "n"}


def cli(*args: object, input: str | None = None) -> Result:
    return CliRunner().invoke(app, [str(arg) for arg in args], input=input)


def ok(result: Result) -> Result:
    assert result.exit_code == 0, f"exit {result.exit_code}\n{result.output}\n{result.exception!r}"
    return result


def user_error(result: Result, *fragments: str) -> str:
    """Exit code 2, exactly one 'error:' line on stderr naming `fragments`, no traceback."""
    assert result.exit_code == 2, f"exit {result.exit_code}\n{result.output}\n{result.exception!r}"
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def files_under(folder: Path) -> set[Path]:
    return {path.relative_to(folder) for path in folder.rglob("*")}


@dataclass
class Run:
    root: Path  # the working directory training ran in (holds runs/LATEST)
    config: Path
    run_dir: Path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """One tiny model trained through the CLI, shared by the tests that only read it."""
    root = tmp_path_factory.mktemp("trained")
    config = write_tiny_project(root / "project")
    with pytest.MonkeyPatch.context() as patch, cli_globals_restored():
        patch.chdir(root)
        ok(cli("train", config, "--quiet", "--set", "output.keep_last=true"))  # tests read last.pt too
    run_dir = Path((root / "runs" / "LATEST").read_text(encoding="utf-8").strip())
    return Run(root, config, run_dir)


# --- train ------------------------------------------------------------------------------------------------


def test_train_writes_a_complete_run_folder(trained: Run) -> None:
    run_dir = trained.run_dir
    assert run_dir.parent == trained.root / "runs" and run_dir.name.startswith("tiny-")
    for name in ("config.yaml", "best.pt", "last.pt", "metrics.jsonl", "metrics.json"):
        assert (run_dir / name).is_file(), name
    assert not [p.name for p in run_dir.iterdir() if p.name.startswith(".")], "temporary files left"

    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1, 2, 3]
    for row in rows:
        assert set(row) >= EPOCH_KEYS
        assert row["words_per_s"] > 0 and row["seconds"] > 0

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["labels"] == LABELS
    for split, size in (("valid", 9), ("test", 30)):
        report = metrics[split]
        assert set(report) >= REPORT_KEYS
        assert report["n"] == size and report["labels"] == LABELS
        assert set(report["per_class"]) == set(LABELS)
        assert len(report["confusion_matrix"]) == 3 and all(
            len(row) == 3 for row in report["confusion_matrix"]
        )
        assert sum(map(sum, report["confusion_matrix"])) == size
    # The keywords make this easy: the model must have learned it.
    assert metrics["test"]["accuracy"] >= 0.8, metrics["test"]

    # The saved config is the resolved one and loads again.
    saved = config_module.load(run_dir / "config.yaml")
    assert saved.data.train == str(trained.config.parent / "train.csv")
    assert saved.output.run_dir is None  # training it again makes a new run


def test_best_pt_is_the_model_and_last_pt_resumes(trained: Run) -> None:
    state = torch.load(trained.run_dir / "best.pt", weights_only=True)
    # best.pt: what using the model needs, and nothing for resuming.
    model_keys = {"kind", "format_version", "rnnclf_version", "config", "vocab", "labels", "model", "epoch"}
    assert set(state) == model_keys
    assert state["kind"] == "rnnclf-checkpoint" and state["format_version"] == checkpoint.FORMAT_VERSION
    assert state["labels"] == LABELS
    assert state["config"]["model"]["hidden_dim"] == 16
    assert "pizza" in state["vocab"]["itos"]
    last = torch.load(trained.run_dir / "last.pt", weights_only=True)
    assert set(last) >= model_keys | {"optimizer", "scheduler", "scaler", "rng", "step", "history", "best"}
    assert last["epoch"] == 3
    # Every file in the run folder has the permissions the umask gives (no 0600 checkpoints).
    umask = os.umask(0o022)
    os.umask(umask)
    for path in trained.run_dir.iterdir():
        if path.is_file():
            assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path.name


def test_every_command_works_from_either_checkpoint(trained: Run, tmp_path: Path) -> None:
    """best.pt (the model: the best epoch) and last.pt (the training state: the last epoch) both serve
    eval, predict, explain, info and export."""
    for name in ("best.pt", "last.pt"):
        model = trained.run_dir / name
        report = json.loads(ok(cli("eval", "--model", model, "--json")).stdout)
        predicted = ok(cli("predict", "--model", model, "--explain", "pizza soup bread")).stdout
        details = json.loads(ok(cli("info", "--model", model, "--json")).stdout)
        assert details["checkpoint"] == str(model) and details["vocab_size"] > 0
        out = tmp_path / f"{name}.onnx"
        ok(cli("export", "--model", model, "--format", "onnx", "--out", out))
        assert out.exists()
        assert 0.0 <= report["accuracy"] <= 1.0 and predicted.split("\t")[0] in LABELS
    rows = [json.loads(line) for line in (trained.run_dir / "metrics.jsonl").read_text().splitlines()]
    best_epoch = [row["epoch"] for row in rows if row["best"]][-1]
    assert checkpoint.load(trained.run_dir / "best.pt")["epoch"] == best_epoch
    assert checkpoint.load(trained.run_dir / "last.pt")["epoch"] == len(rows)


def test_a_second_fresh_run_in_the_same_folder_is_refused(trained: Run) -> None:
    before = (trained.run_dir / "best.pt").stat().st_mtime_ns
    user_error(cli("train", trained.config, "--run-dir", trained.run_dir), "already holds a finished run")
    assert (trained.run_dir / "best.pt").stat().st_mtime_ns == before


def test_same_seed_same_metrics(trained: Run, tmp_path: Path) -> None:
    ok(cli("train", trained.config, "--run-dir", tmp_path / "again", "--quiet"))
    first = json.loads((trained.run_dir / "metrics.json").read_text())
    second = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert second["valid"] == first["valid"]
    assert second["test"] == first["test"]
    assert second["best_epoch"] == first["best_epoch"]


def test_resume_continues_from_last_pt(tiny_config: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "r"
    keep = ["--set", "output.keep_last=true"]  # a finished run keeps last.pt only when asked to
    ok(cli("train", tiny_config, "--run-dir", run_dir, "--set", "train.epochs=2", "--quiet", *keep))
    two = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(two) == 2
    result = ok(cli("train", tiny_config, "--run-dir", run_dir, "--set", "train.epochs=3", "--resume", *keep))
    assert "resuming" in result.stdout
    three = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in three] == [1, 2, 3]
    assert three[:2] == two  # the first epochs are not rerun
    assert torch.load(run_dir / "last.pt", weights_only=True)["epoch"] == 3
    assert (run_dir / "metrics.json").is_file()


def test_init_config_trains_once_data_paths_are_filled_in(tmp_path: Path) -> None:
    text = ok(cli("init-config")).stdout
    project = tmp_path / "p"
    write_csv(project / "train.csv", make_documents(60, seed=5))
    text = text.replace("train: data/train.csv", "train: train.csv", 1)
    assert "train: train.csv" in text
    (project / "my.yaml").write_text(text, encoding="utf-8")
    overrides = ["--set", "train.epochs=1", "--set", "train.device=cpu", "--set", "model.hidden_dim=16"]
    ok(cli("train", project / "my.yaml", *overrides, "--quiet"))
    latest = Path((tmp_path / "runs" / "LATEST").read_text().strip())
    assert latest.name.startswith("my-") and (latest / "best.pt").is_file()


def test_python_m_rnnclf_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "rnnclf", "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    for command in ("train", "eval", "predict", "init-config"):
        assert command in result.stdout


# --- eval -------------------------------------------------------------------------------------------------


def test_eval_uses_the_latest_run(trained: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(trained.root)
    report = json.loads(ok(cli("eval", "--json")).stdout)
    assert set(report) >= REPORT_KEYS
    assert report["n"] == 30 and report["labels"] == LABELS
    metrics = json.loads((trained.run_dir / "metrics.json").read_text())
    assert report["accuracy"] == metrics["test"]["accuracy"]
    assert report["confusion_matrix"] == metrics["test"]["confusion_matrix"]

    tables = ok(cli("eval")).stdout
    assert "accuracy" in tables and all(label in tables for label in LABELS)


def test_eval_other_data(trained: Run, tmp_path: Path) -> None:
    data = write_csv(tmp_path / "more.csv", make_documents(12, seed=9))
    report = json.loads(ok(cli("eval", "--model", trained.run_dir, "--data", data, "--json")).stdout)
    assert report["n"] == 12


def test_confusion_matrix_shows_long_labels_whole(capsys: pytest.CaptureFixture[str]) -> None:
    labels = [
        f"{word}_category_with_a_long_name" for word in ("abbreviation", "description", "entity", "human")
    ]
    labels += ["[/b] not markup", ":smile:"]
    size = len(labels)
    report = {
        "n": 60,
        "accuracy": 0.5,
        "macro_f1": 0.5,
        "labels": labels,
        "per_class": {label: {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 10} for label in labels},
        "confusion_matrix": [[10 if i == j else 0 for j in range(size)] for i in range(size)],
    }
    render.report_tables(report)
    out = capsys.readouterr().out
    assert "…" not in out
    for label in labels:
        assert label in out, label


# --- predict ----------------------------------------------------------------------------------------------


def test_predict_plain_one_line_per_document(trained: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(trained.root)  # no --model: the latest run
    lines = ok(cli("predict", "pizza cheese with bread", "the team scored a goal")).stdout.splitlines()
    assert len(lines) == 2
    parsed = [line.split("\t") for line in lines]
    assert [fields[0] for fields in parsed] == ["food", "sports"]
    for fields in parsed:
        assert len(fields) == 2 and 1 / 3 < float(fields[1]) <= 1


def test_predict_json_and_top_k(trained: Run) -> None:
    model = ["--model", trained.run_dir]
    objects = [
        json.loads(line)
        for line in ok(cli("predict", *model, "--json", "software on the computer")).stdout.splitlines()
    ]
    assert len(objects) == 1
    assert objects[0]["text"] == "software on the computer" and objects[0]["label"] == "tech"
    probabilities = objects[0]["probabilities"]
    assert set(probabilities) == set(LABELS) and sum(probabilities.values()) == pytest.approx(1, abs=1e-5)
    assert list(probabilities.values()) == sorted(probabilities.values(), reverse=True)

    top = json.loads(ok(cli("predict", *model, "--json", "--top-k", "2", "soup")).stdout)
    assert len(top["probabilities"]) == 2 and top["label"] == next(iter(top["probabilities"]))
    fields = ok(cli("predict", *model, "--top-k", "2", "soup")).stdout.strip().split("\t")
    assert len(fields) == 4 and fields[0] == top["label"]
    assert len(ok(cli("predict", *model, "--top-k", "9", "soup")).stdout.strip().split("\t")) == 6


def test_predict_stdin_keeps_the_input_order(trained: Run) -> None:
    # Different lengths, so length-sorted batching would reorder them if order were not restored.
    texts = [
        f"{' '.join(['the'] * (i % 7))} {words[0]} {words[1]}" for i, words in enumerate(KEYWORDS.values())
    ]
    texts = [*(texts * 14)[:40], "", "unseen words only"]
    result = ok(
        cli("predict", "--model", trained.run_dir, "--file", "-", "--json", input="\n".join(texts) + "\n")
    )
    objects = [json.loads(line) for line in result.stdout.splitlines()]
    assert [o["text"] for o in objects] == texts
    assert [o["label"] for o in objects[:3]] == list(KEYWORDS)


def test_checkpoint_alone_is_enough(trained: Run, tmp_path: Path) -> None:
    alone = tmp_path / "model.pt"
    shutil.copy(trained.run_dir / "best.pt", alone)
    expected = ok(cli("predict", "--model", alone, "pasta soup", "--json")).stdout
    data = write_csv(tmp_path / "labelled.csv", make_documents(9, seed=3))
    hidden = trained.root / "hidden"
    trained.config.parent.rename(hidden)  # the data files and the config are gone
    try:
        assert ok(cli("predict", "--model", alone, "pasta soup", "--json")).stdout == expected
        assert json.loads(ok(cli("eval", "--model", alone, "--data", data, "--json")).stdout)["n"] == 9
    finally:
        hidden.rename(trained.config.parent)


# --- user errors: exit 2, one line, nothing half-written ---------------------------------------------------


def tiny_with(tmp_path: Path, **sections: dict) -> Path:
    """The tiny config with some sections' keys replaced."""
    config = write_tiny_project(tmp_path / "project")
    raw = yaml.safe_load(config.read_text())
    for name, keys in sections.items():
        raw.setdefault(name, {}).update(keys)
    config.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return config


def _missing_data(tmp_path: Path) -> list[object]:
    return ["train", tiny_with(tmp_path, data={"train": "absent.csv"})]


def _empty_data(tmp_path: Path) -> list[object]:
    config = write_tiny_project(tmp_path / "project")
    (config.parent / "train.csv").write_text("")
    return ["train", config]


def _missing_column(tmp_path: Path) -> list[object]:
    config = write_tiny_project(tmp_path / "project")
    write_csv(config.parent / "train.csv", make_documents(30, seed=1), header=("sentence", "label"))
    return ["train", config]


def _one_class(tmp_path: Path) -> list[object]:
    config = write_tiny_project(tmp_path / "project")
    write_csv(config.parent / "train.csv", [(text, "food") for text, _ in make_documents(30, seed=1)])
    return ["train", config]


def _random_bytes(tmp_path: Path) -> list[object]:
    (tmp_path / "bad.pt").write_bytes(bytes(range(256)) * 8)
    return ["predict", "--model", "bad.pt", "some text"]


def _zip_but_not_torch(tmp_path: Path) -> list[object]:
    (tmp_path / "bad.pt").write_bytes(b"PK\x03\x04" + bytes(range(200)))
    return ["eval", "--model", "bad.pt"]


def _foreign_dict(tmp_path: Path) -> list[object]:
    torch.save({"weights": torch.zeros(3), "epoch": 1}, tmp_path / "foreign.pt")
    return ["eval", "--model", "foreign.pt"]


def _pickled_object(tmp_path: Path) -> list[object]:
    torch.save({"path": Path("x")}, tmp_path / "object.pt")
    return ["predict", "--model", "object.pt", "text"]


def _empty_checkpoint(tmp_path: Path) -> list[object]:
    (tmp_path / "empty.pt").write_bytes(b"")
    return ["predict", "--model", "empty.pt", "text"]


def _empty_run_folder(tmp_path: Path) -> list[object]:
    (tmp_path / "runs" / "x").mkdir(parents=True)
    return ["predict", "--model", "runs/x", "text"]


def _tiny(*args: object, **sections: dict) -> Callable[[Path], list[object]]:
    def setup(tmp_path: Path) -> list[object]:
        return [args[0], tiny_with(tmp_path, **sections), *args[1:]]

    return setup


ERRORS: dict[str, tuple[Callable[[Path], list[object]], list[str]]] = {
    "missing config": (lambda tmp: ["train", "absent.yaml"], ["absent.yaml", "no such config file"]),
    "missing data file": (_missing_data, ["absent.csv", "no such file"]),
    "empty data file": (_empty_data, ["train.csv", "no examples"]),
    "missing column": (_missing_column, ["no text column 'text'", "'sentence'"]),
    "one class": (_one_class, ["only one class", "'food'"]),
    "unknown key": (
        _tiny("train", model={"hiden_dim": 8}),
        ["model.hiden_dim", "did you mean 'model.hidden_dim'"],
    ),
    "bad value": (_tiny("train", train={"lr": -1}), ["train.lr = -1", "greater than 0"]),
    "bad type": (_tiny("train", train={"epochs": "many"}), ["train.epochs = many", "integer"]),
    "--set bad key": (
        _tiny("train", "--set", "train.epoch=3"),
        ["train.epoch", "did you mean 'train.epochs'"],
    ),
    "--set bad value": (_tiny("train", "--set", "model.cell=cnn"), ["--set 'model.cell=cnn'", "'lstm'"]),
    "--set bad form": (_tiny("train", "--set", "epochs"), ["SECTION.KEY=VALUE"]),
    "class weights count": (
        _tiny("train", train={"class_weights": [1, 2]}),
        ["2 weights given for 3 labels"],
    ),
    "fp16 on cpu": (_tiny("train", "--set", "train.precision=fp16"), ["fp16", "CUDA"]),
    "resume nothing": (_tiny("train", "--resume"), ["--resume", "--run-dir"]),
    "missing checkpoint": (lambda tmp: ["predict", "--model", "absent.pt", "x"], ["absent.pt", "no such"]),
    "random bytes": (_random_bytes, ["bad.pt", "not an rnnclf checkpoint"]),
    "zip but not torch": (_zip_but_not_torch, ["bad.pt", "checkpoint"]),
    "foreign dict": (_foreign_dict, ["foreign.pt", "not an rnnclf checkpoint"]),
    "pickled object": (_pickled_object, ["object.pt"]),
    "empty checkpoint": (_empty_checkpoint, ["empty.pt"]),
    "run folder without checkpoint": (_empty_run_folder, ["no best.pt or last.pt"]),
    "eval without a run": (lambda tmp: ["eval"], ["no trained run found"]),
    "predict without a run": (lambda tmp: ["predict", "hello"], ["no trained run found"]),
    "predict nothing": (lambda tmp: ["predict"], ["nothing to predict"]),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_user_error(case: str, tmp_path: Path) -> None:
    setup, fragments = ERRORS[case]
    args = setup(tmp_path)
    before = files_under(tmp_path)
    user_error(cli(*args), *fragments)
    assert files_under(tmp_path) == before, "the failed command left files behind"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is available here")
def test_cuda_without_a_gpu(tiny_config: Path, tmp_path: Path) -> None:
    before = files_under(tmp_path)
    user_error(
        cli("train", tiny_config, "--set", "train.device=cuda"), "train.device = cuda", "no CUDA device"
    )
    assert files_under(tmp_path) == before


def test_truncated_checkpoint(trained: Run, tmp_path: Path) -> None:
    data = (trained.run_dir / "best.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    user_error(cli("predict", "--model", "cut.pt", "text"), "cut.pt")
    user_error(cli("eval", "--model", "cut.pt"), "cut.pt")


def test_missing_files_for_eval_and_predict(trained: Run) -> None:
    model = ["--model", trained.run_dir]
    user_error(cli("eval", *model, "--data", "absent.csv"), "absent.csv", "no such file")
    user_error(cli("predict", *model, "--file", "absent.txt"), "absent.txt", "no such file")


def test_failure_after_the_run_folder_exists_leaves_nothing(
    tiny_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that fails before its first checkpoint removes its folder and is not 'the latest run'."""
    from rnnclf.errors import RnnclfError
    from rnnclf.training import loop as train_module

    def fail(*args: object, **kwargs: object) -> None:
        raise RnnclfError("failed during the first epoch")

    monkeypatch.setattr(train_module, "evaluate", fail)  # after run_dir/config.yaml is written
    before = files_under(tmp_path)
    user_error(cli("train", tiny_config), "failed during the first epoch")
    assert files_under(tmp_path) == before
    # The same when runs/ already holds an earlier run: LATEST keeps pointing at that one.
    (tmp_path / "runs" / "old").mkdir(parents=True)
    (tmp_path / "runs" / "LATEST").write_text(str(tmp_path / "runs" / "old") + "\n")
    before = files_under(tmp_path)
    user_error(cli("train", tiny_config), "failed during the first epoch")
    assert files_under(tmp_path) == before
    assert (tmp_path / "runs" / "LATEST").read_text().strip() == str(tmp_path / "runs" / "old")


@pytest.mark.slow
def test_real_process_error_has_no_traceback(tmp_path: Path) -> None:
    (tmp_path / "bad.pt").write_bytes(os.urandom(64))
    result = subprocess.run(
        [sys.executable, "-m", "rnnclf", "predict", "--model", "bad.pt", "text"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stdout == ""
