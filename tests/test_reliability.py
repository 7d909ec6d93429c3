"""Reliability: signals and crashes during training, exact resuming, hostile or broken checkpoints,
configs that are never code, and `rnnclf predict --file -` streaming a million lines.

Signal, crash and streaming tests run the real command in a child process (`python -m rnnclf`, the same
entry point as `rnnclf`); the others call the CLI in-process, which is much faster (torch loads once).
"""

from __future__ import annotations

import ast
import contextlib
import csv
import io
import json
import multiprocessing
import os
import pickle
import random
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from rnnclf.cli.app import app
from rnnclf.config import Config, load
from rnnclf.data import read_examples
from rnnclf.errors import RnnclfError
from rnnclf.inference.predict import Predictor
from rnnclf.models.addons import build_model
from rnnclf.runs import checkpoint
from rnnclf.text.tokenizers import TOKENIZERS, get_tokenizer
from rnnclf.text.vocab import Vocab, build_vocab_from_iterator

PACKAGE = Path(__file__).resolve().parents[1] / "rnnclf"
WORDS = {"ham": ["pizza", "pasta", "bread", "soup", "cheese"], "spam": ["goal", "team", "match", "coach"]}
FILLER = ["the", "a", "of", "and", "to", "in", "is"]

# Tiny, but with dropout and a warmup/cosine schedule, so resuming must restore RNG and scheduler state.
CONFIG = """\
# Tiny config for the reliability tests. Run: rnnclf train tiny.yaml
data:
  train: train.csv
text:
  min_freq: 1
model:
  cell: gru
  embedding_dim: 8
  hidden_dim: 8
  bidirectional: true
  dropout: 0.3
  embedding_dropout: 0.2
train:
  epochs: 2
  batch_size: 4
  lr: 0.01
  patience: null
  seed: 3
  device: cpu
output:
  keep_last: true       # these tests compare and resume last.pt after a run has finished too
"""


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A private preprocessing cache per test; conftest's _isolated_test already runs each test in
    tmp_path and puts back the logger, signal handlers and float mode the CLI changes in-process."""
    monkeypatch.setenv("RNNCLF_CACHE", str(tmp_path / "cache"))


# --- helpers ----------------------------------------------------------------------------------------------


def write_project(folder: Path, count: int, config: str = CONFIG, seed: int = 0) -> Path:
    """train.csv with `count` keyword documents (two classes) and tiny.yaml; returns the config path."""
    generator = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "train.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for i in range(count):
            label = ("ham", "spam")[i % 2]
            words = [generator.choice(WORDS[label]) for _ in range(2)]
            words += generator.sample(FILLER, generator.randint(1, 6))
            generator.shuffle(words)
            writer.writerow([" ".join(words), label])
    path = folder / "tiny.yaml"
    path.write_text(config, encoding="utf-8")
    return path


def invoke(*args: str) -> tuple[int, str, str]:
    """Run the CLI in-process; returns (exit code, stdout, stderr). Any exception other than the CLI's
    own exit would have been a traceback in a terminal."""
    result = CliRunner().invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, result.stdout, result.stderr


def assert_one_line_error(code: int, stderr: str, *fragments: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2, stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def child_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ, RNNCLF_CACHE=str(tmp_path / "cache"), PYTHONUNBUFFERED="1")
    env["OMP_NUM_THREADS"] = "1"  # two processes at once on a small machine; results do not depend on it
    return env


def start(args: list[str], tmp_path: Path, **options: object) -> subprocess.Popen:
    """`rnnclf ARGS` as a child process in tmp_path (stdout/stderr piped, text)."""
    options.setdefault("stdout", subprocess.PIPE)
    options.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen(
        [sys.executable, "-m", "rnnclf", *args],
        cwd=tmp_path,
        env=child_env(tmp_path),
        text=True,
        **options,  # type: ignore[arg-type]
    )


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    """Poll until `path` exists; fail early if the process ended first."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            pytest.fail(f"process ended ({process.returncode}) before {path.name} appeared: {process.stderr}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"{path} did not appear within {timeout}s")
        time.sleep(0.01)


def finish(process: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def model_tensors(path: Path) -> dict[str, torch.Tensor]:
    return checkpoint.load(path)["model"]


def assert_same_tensors(left: dict[str, torch.Tensor], right: dict[str, torch.Tensor]) -> None:
    assert left.keys() == right.keys()
    for name in left:
        assert torch.equal(left[name], right[name]), name


def tiny_checkpoint(path: Path) -> Path:
    """A valid (untrained) rnnclf checkpoint without training anything."""
    config = Config()
    config.model.embedding_dim, config.model.hidden_dim = 4, 4
    itos = ["<pad>", "<unk>", "pizza", "goal"]
    model = build_model(len(itos), 2, config)
    state = {
        "config": config.to_dict(),
        "vocab": Vocab(itos, default_index=1).to_dict(),
        "labels": ["ham", "spam"],
        "model": model.state_dict(),
    }
    checkpoint.save(state, path)
    return path


def labelled_csv(path: Path) -> Path:
    path.write_text("text,label\npizza soup,ham\ngoal team,spam\n", encoding="utf-8")
    return path


# --- SIGINT / SIGTERM / a second Ctrl-C -------------------------------------------------------------------


TIMING_FIELDS = ("seconds", "words_per_s")


@pytest.mark.slow
def test_ctrl_c_mid_epoch_then_resume_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    config = write_project(tmp_path, count=160)
    # The override must survive into the printed resume command, or the resumed run would differ.
    # Weight averaging on: the average and the raw weights both have to resume exactly.
    args = ["train", str(config), "--quiet", "--set", "train.epochs=3", "--set", "train.ema=0.9"]
    reference = start([*args, "--run-dir", "reference"], tmp_path)
    interrupted = start([*args, "--run-dir", "interrupted"], tmp_path)
    run = tmp_path / "interrupted"

    # After epoch 1 (last.pt appears), signal about a third of an epoch into epoch 2.
    wait_for(run / "last.pt", interrupted)
    first_epoch = json.loads((run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()[0])
    time.sleep(first_epoch["seconds"] / 3)
    interrupted.send_signal(signal.SIGINT)
    code, _, stderr = finish(interrupted)

    assert code == 130, stderr
    assert "Traceback" not in stderr
    state = checkpoint.load(run / "last.pt")
    assert (state["epoch"], state["step"] > 0) == (1, True), "the checkpoint must be from inside epoch 2"
    # The run tells how to resume; that exact command (rnnclf = python -m rnnclf) finishes it.
    command = shlex.split(stderr.split("Resume with: ", 1)[1].splitlines()[0])
    assert command[:2] == ["rnnclf", "train"]
    assert "--resume" in command and "train.epochs=3" in command and "train.ema=0.9" in command
    code, _, stderr = finish(start(command[1:], tmp_path))
    assert code == 0, stderr

    code, _, stderr = finish(reference)
    assert code == 0, stderr
    for name in ("best.pt", "last.pt"):
        assert_same_tensors(model_tensors(tmp_path / "reference" / name), model_tensors(run / name))
    reference_state, resumed_state = (
        checkpoint.load(tmp_path / "reference" / "last.pt"),
        checkpoint.load(run / "last.pt"),
    )
    assert_same_tensors(reference_state["training_model"], resumed_state["training_model"])
    assert reference_state["average_updates"] == resumed_state["average_updates"] > 0
    for group, other in zip(
        reference_state["optimizer"]["state"].values(),
        resumed_state["optimizer"]["state"].values(),
        strict=True,
    ):
        assert all(torch.equal(group[key], other[key]) for key in group)
    metrics = [json.loads((folder / "metrics.json").read_text()) for folder in (tmp_path / "reference", run)]
    for entry in metrics:
        entry.pop("train_seconds")
        entry["baseline"].pop("seconds")
    assert metrics[0] == metrics[1]
    rows = [
        [
            {key: value for key, value in json.loads(line).items() if key not in TIMING_FIELDS}
            for line in (folder / "metrics.jsonl").read_text().splitlines()
        ]
        for folder in (tmp_path / "reference", run)
    ]
    assert len(rows[0]) == 3 and rows[0] == rows[1]


@pytest.mark.slow
def test_sigterm_saves_last_pt_and_exits_143(tmp_path: Path) -> None:
    config = write_project(tmp_path, count=160)
    # Many epochs: the signal must land while training runs, however fast this machine is.
    args = ["train", str(config), "--quiet", "--run-dir", "run", "--set", "train.epochs=500"]
    process = start(args, tmp_path)
    wait_for(tmp_path / "run" / "config.yaml", process)  # written when training starts
    time.sleep(0.3)
    process.send_signal(signal.SIGTERM)
    code, _, stderr = finish(process)
    assert code == 143, stderr
    assert "Traceback" not in stderr
    assert "--run-dir run --resume" in stderr and "train.epochs=500" in stderr
    state = checkpoint.load(tmp_path / "run" / "last.pt")
    assert state["step"] > 0 or state["epoch"] > 0
    assert not list((tmp_path / "run").glob(".*.tmp"))


@pytest.mark.slow
def test_second_ctrl_c_quits_at_once_and_writes_nothing(tmp_path: Path) -> None:
    # Three 5-million-character documents keep data preparation busy for a while: the first Ctrl-C
    # lands there (training has not taken a step yet), the second must not wait for it to finish.
    config = write_project(tmp_path, count=40)
    with (tmp_path / "train.csv").open("a", encoding="utf-8") as handle:
        for label in ("ham", "spam", "ham"):
            handle.write(f"{'pizza goal ' * 460_000},{label}\n")
    process = start(["train", str(config), "--run-dir", "run"], tmp_path)
    assert process.stdout is not None and process.stderr is not None
    header = [process.stdout.readline() for _ in range(3)]  # printed just before the handlers go in
    assert header[0].startswith("run: run (") and header[2].startswith("files: train "), header
    time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    assert process.stderr.readline().startswith("stopping after this step")
    process.send_signal(signal.SIGINT)
    started = time.monotonic()
    code, _, stderr = finish(process)
    assert code == 130
    assert time.monotonic() - started < 5
    assert "Traceback" not in stderr and "interrupted; last.pt saved" not in stderr
    assert not (tmp_path / "run" / "last.pt").exists() and not (tmp_path / "run" / "best.pt").exists()


# --- SIGKILL at any moment --------------------------------------------------------------------------------


def load_everything(folders: list[Path]) -> int:
    """Load every checkpoint in the folders as a checkpoint and as a predictor; returns how many."""
    found = 0
    for folder in folders:
        for path in sorted(folder.glob("*.pt")):
            state = checkpoint.load(path)
            Predictor(state, source=str(path)).predict(["pizza and goal"])
            found += 1
    return found


@pytest.mark.slow
def test_sigkill_at_random_moments_leaves_loadable_checkpoints(tmp_path: Path) -> None:
    # Tiny epochs, so checkpoint writes (two per epoch) take a large share of the time between kills.
    config = write_project(tmp_path, count=30)
    args = ["train", str(config), "--quiet", "--set", "train.epochs=1000"]
    generator = random.Random(20261126)
    # The first run is killed only once it has written a checkpoint, at a random moment after: start-up
    # alone takes 3-4 s on a loaded 2-core machine, longer than most of the random moments below, and
    # with no checkpoint ever written the kills below would only ever hit fresh start-ups.
    folders = [tmp_path / "first"]
    process = start([*args, "--run-dir", str(folders[0])], tmp_path, stdout=subprocess.DEVNULL)
    wait_for(folders[0] / "last.pt", process)
    time.sleep(generator.uniform(0.0, 1.0))  # steps and checkpoint writes of the next epochs
    process.kill()
    code, _, stderr = finish(process)
    assert code == -signal.SIGKILL, stderr
    load_everything(folders)
    for attempt in range(10):
        resume = bool(folders) and (folders[-1] / "last.pt").exists()
        if not resume:  # nothing to resume yet (killed before the first epoch ended): a new run
            folders.append(tmp_path / f"run{attempt}")
        process = start(
            [*args, "--run-dir", str(folders[-1]), *(["--resume"] if resume else [])],
            tmp_path,
            stdout=subprocess.DEVNULL,
        )
        time.sleep(generator.uniform(0.2, 6.0))  # start-up, data preparation, steps, checkpoint writes
        process.kill()
        code, _, stderr = finish(process)
        assert code == -signal.SIGKILL, stderr  # it was still running: no resume failed along the way
        load_everything(folders)
    assert load_everything(folders) >= 1


def _save_forever(path: Path, states: list[dict]) -> None:
    for number in range(10**9):
        checkpoint.save(states[number % len(states)], path)


def test_sigkill_in_the_middle_of_a_checkpoint_write_keeps_the_old_file(tmp_path: Path) -> None:
    """A forked child rewrites one checkpoint in a loop (4 MB, so most of its time is spent inside
    save); it is killed at random moments. The file must always load whole, never half old, half new."""
    path = tmp_path / "last.pt"
    states = [
        {
            "config": {},
            "vocab": {},
            "labels": [],
            "model": {"w": torch.full((1_000_000,), float(i))},
            "step": i,
        }
        for i in range(3)
    ]
    checkpoint.save(states[0], path)
    context = multiprocessing.get_context("fork")
    generator = random.Random(7)
    for _ in range(15):
        child = context.Process(target=_save_forever, args=(path, states))
        child.start()
        time.sleep(generator.uniform(0.05, 0.3))
        os.kill(child.pid, signal.SIGKILL)
        child.join()
        state = checkpoint.load(path)
        assert torch.equal(state["model"]["w"], states[state["step"]]["model"]["w"])
    # The kills did land mid-write: their temporary files are left (never under a *.pt name).
    assert list(tmp_path.glob(".last.pt.*.tmp"))
    assert [p.name for p in tmp_path.glob("*.pt")] == ["last.pt"]


def test_a_failed_save_keeps_the_old_file_and_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tiny_checkpoint(tmp_path / "best.pt")
    before = path.read_bytes()

    def half_then_fail(obj: object, file: io.BufferedWriter) -> None:
        file.write(before[: len(before) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", half_then_fail)
    with pytest.raises(RnnclfError, match=r"best\.pt: cannot write \(No space left on device\)"):
        checkpoint.save({"config": {}, "vocab": {}, "labels": [], "model": {}}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["best.pt"]


# --- resuming under a different model shape ---------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One epoch of tiny training, in-process; returns the config (its run folder is beside it)."""
    folder = tmp_path_factory.mktemp("trained")
    config = write_project(folder, count=40)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RNNCLF_CACHE", str(folder / "cache"))
        patch.chdir(folder)
        code, _, stderr = invoke("train", str(config), "--run-dir", str(folder / "run"), "--quiet")
        assert code == 0, stderr
        yield config


@pytest.mark.parametrize(
    ("overrides", "keys"),
    [
        (["model.hidden_dim=16"], ["model.hidden_dim (8 in the checkpoint, 16 now)"]),
        (["model.cell=lstm", "model.bidirectional=false"], ["model.cell", "model.bidirectional"]),
        (["text.max_length=10"], ["text.max_length"]),
        (["ensemble.members=2", "linear.ngrams=2"], ["ensemble.members", "linear.ngrams"]),
        # The optimizer's state is laid out by these two.
        (["train.sparse_embedding=true"], ["train.sparse_embedding ('auto' in the checkpoint, True now)"]),
        (["train.optimizer=sgd"], ["train.optimizer ('adam' in the checkpoint, 'sgd' now)"]),
    ],
)
def test_resume_with_a_different_model_shape_names_the_keys(
    trained_run: Path, overrides: list[str], keys: list[str]
) -> None:
    run = trained_run.parent / "run"
    before = (run / "last.pt").read_bytes()
    sets = [part for item in overrides for part in ("--set", item)]
    code, _, stderr = invoke("train", str(trained_run), "--run-dir", str(run), "--resume", "--quiet", *sets)
    assert_one_line_error(code, stderr, "last.pt", "cannot resume", *keys)
    assert (run / "last.pt").read_bytes() == before


def test_resume_rewrites_best_pt_after_a_kill_between_the_two_writes(tmp_path: Path) -> None:
    """At an epoch's end last.pt is written, then best.pt. A kill between the two leaves last.pt at the
    best epoch and best.pt one epoch behind; resuming rewrites best.pt from last.pt."""
    config = write_project(tmp_path, count=40)
    run = tmp_path / "run"
    code, _, stderr = invoke(
        "train", str(config), "--run-dir", str(run), "--quiet", "--set", "train.epochs=1"
    )
    assert code == 0, stderr
    stale = {**checkpoint.load(run / "best.pt"), "epoch": 0}
    checkpoint.save({k: v for k, v in stale.items() if k not in checkpoint.STAMP}, run / "best.pt")
    assert checkpoint.load(run / "last.pt")["history"][-1]["best"]
    code, _, stderr = invoke(
        "train", str(config), "--run-dir", str(run), "--quiet", "--resume", "--set", "train.epochs=1"
    )
    assert code == 0, stderr
    best, last = checkpoint.load(run / "best.pt"), checkpoint.load(run / "last.pt")
    assert best["epoch"] == last["epoch"] == 1
    assert_same_tensors(best["model"], last["model"])


def test_a_signal_after_the_last_epoch_lets_the_final_scores_finish_then_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    import rnnclf.training.loop as train_module

    config = write_project(tmp_path, count=40)
    scoring = train_module.finish

    def signalled_while_scoring(*args: object, **kwargs: object) -> object:
        os.kill(os.getpid(), signal.SIGINT)  # the handler runs now, between two bytecodes
        return scoring(*args, **kwargs)

    monkeypatch.setattr(train_module, "finish", signalled_while_scoring)
    code, _, _ = invoke("train", str(config), "--run-dir", "run", "--set", "train.epochs=1")
    stderr = capfd.readouterr().err
    assert code == 130, stderr
    # It said what would happen, and that happened: final metrics written, no plots, exit 130.
    assert "training is complete; writing the final metrics.json, then stopping without plots" in stderr
    assert "stopping after this step" not in stderr
    run = tmp_path / "run"
    assert json.loads((run / "metrics.json").read_text())["best_epoch"] == 1
    assert not (run / "learning_curves.png").exists()
    assert (run / "best.pt").exists() and (run / "last.pt").exists()


def test_training_from_python_leaves_no_half_made_run_when_it_fails(tmp_path: Path) -> None:
    """rnnclf.training.loop.train() gives the CLI's guarantee: a new run that fails before its first
    checkpoint
    leaves no run folder and runs/LATEST as it was."""
    from rnnclf.training.loop import train

    config_path = write_project(tmp_path, count=40)
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "LATEST").write_text("/earlier/run\n", encoding="utf-8")
    settings = load(config_path)
    settings.data.label_column = "no_such_column"
    with pytest.raises(RnnclfError, match="no_such_column"):
        train(settings, tmp_path / "runs" / "new")
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["LATEST"]
    assert (tmp_path / "runs" / "LATEST").read_text(encoding="utf-8") == "/earlier/run\n"
    # And a run that succeeds is recorded as the latest.
    settings.data.label_column = "label"
    settings.train.epochs = 1
    train(settings, tmp_path / "runs" / "new")
    latest = (tmp_path / "runs" / "LATEST").read_text(encoding="utf-8").strip()
    assert latest == str((tmp_path / "runs" / "new").resolve())


# --- hostile and broken checkpoints -----------------------------------------------------------------------


class RunsACommand:
    """Unpickling this runs a shell command: what a crafted checkpoint would try."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


def hostile_files(folder: Path, marker: Path) -> list[Path]:
    """The same payload as a torch zip checkpoint, a legacy torch file and a plain pickle."""
    state = {"kind": checkpoint.KIND, "format_version": 1, "config": {}, "vocab": {}, "labels": []}
    zipped, legacy, plain = folder / "evil.pt", folder / "legacy.pt", folder / "plain.pkl"
    torch.save({**state, "model": {"weight": RunsACommand(marker)}}, zipped)
    torch.save({**state, "model": RunsACommand(marker)}, legacy, _use_new_zipfile_serialization=False)
    plain.write_bytes(pickle.dumps(RunsACommand(marker)))
    return [zipped, legacy, plain]


def test_the_hostile_payload_is_real(tmp_path: Path) -> None:
    """Control: loaded unsafely, the crafted file does run its command (so the tests below mean something)."""
    marker = tmp_path / "RAN"
    zipped = hostile_files(tmp_path, marker)[0]
    torch.load(zipped, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("command", ["eval", "predict"])
def test_crafted_checkpoint_runs_nothing(tmp_path: Path, command: str) -> None:
    marker = tmp_path / "MARKER"
    data = labelled_csv(tmp_path / "data.csv")
    args = ["eval", "--data", str(data)] if command == "eval" else ["predict", "pizza soup"]
    zipped, legacy, plain = hostile_files(tmp_path, marker)
    for path, fragment in (
        (zipped, "refers to Python code (posix.system)"),
        (legacy, "not a PyTorch zip archive"),
        (plain, "not a PyTorch zip archive"),
    ):
        code, stdout, stderr = invoke(*args, "--model", str(path))
        assert_one_line_error(code, stderr, path.name, fragment)
        assert not marker.exists(), f"{path.name}: the payload ran"
        assert stdout == ""


@pytest.mark.slow
def test_crafted_checkpoint_runs_nothing_in_a_real_process(tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    evil = hostile_files(tmp_path, marker)[0]
    code, stdout, stderr = finish(start(["predict", "--model", str(evil), "pizza"], tmp_path))
    assert_one_line_error(code, stderr, "evil.pt", "posix.system", "weights_only")
    assert not marker.exists() and stdout == ""


def broken_checkpoints(folder: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, a fragment its error must hold)."""
    good = tiny_checkpoint(folder / "good.pt")
    data = good.read_bytes()
    state = checkpoint.load(good)
    files: dict[str, tuple[Path, str]] = {}

    def add(name: str, content: bytes | None = None, payload: object = None, fragment: str = "") -> None:
        path = folder / f"{name}.pt"
        if content is not None:
            path.write_bytes(content)
        else:
            torch.save(payload, path)
        files[name] = (path, fragment)

    add("newer", payload={**state, "format_version": checkpoint.FORMAT_VERSION + 1}, fragment="newer")
    add("truncated-half", data[: len(data) // 2], fragment="truncated or damaged")
    add("truncated-end", data[:-20], fragment="truncated or damaged")
    add("truncated-start", data[:30], fragment="truncated or damaged")
    add("random", random.Random(1).randbytes(4096), fragment="not a PyTorch zip")
    add("random-zip", b"PK\x03\x04" + random.Random(2).randbytes(4096), fragment="truncated or damaged")
    add("empty", b"", fragment="empty file")
    add("text", b"this is not a model\n", fragment="not a PyTorch zip")
    add("json", json.dumps({"kind": checkpoint.KIND}).encode(), fragment="not a PyTorch zip")
    add("tensor", payload=torch.zeros(3), fragment="not an rnnclf checkpoint")
    add("other-dict", payload={"weights": torch.zeros(3)}, fragment="not an rnnclf checkpoint")
    add("no-version", payload={"kind": checkpoint.KIND}, fragment="format_version")
    add(
        "missing-keys",
        payload={"kind": checkpoint.KIND, "format_version": checkpoint.FORMAT_VERSION},
        fragment="lacks config",
    )
    # A file of rnnclf 0.1 (format 1): its models cannot be rebuilt; say so and what to do.
    add("format-1", payload={**state, "format_version": 1}, fragment="retrain it with this version")
    add("wrong-types", payload={**state, "model": [1, 2]}, fragment="wrong type")
    wrong_shape = {
        **state,
        "config": {**state["config"], "model": {**state["config"]["model"], "hidden_dim": 5}},
    }
    add("wrong-shape", payload=wrong_shape, fragment="do not fit together")
    return files


def test_broken_checkpoints_are_one_line_errors(tmp_path: Path) -> None:
    data = labelled_csv(tmp_path / "data.csv")
    good = tiny_checkpoint(tmp_path / "good.pt")
    code, stdout, stderr = invoke("predict", "--model", str(good), "pizza")  # control: a good file works
    assert code == 0 and stdout.split("\t")[0] in ("ham", "spam"), stderr
    for name, (path, fragment) in broken_checkpoints(tmp_path).items():
        for args in (["eval", "--data", str(data)], ["predict", "pizza"]):
            code, stdout, stderr = invoke(*args, "--model", str(path))
            assert_one_line_error(code, stderr, f"{name}.pt", fragment)
            assert stdout == ""


def test_every_truncation_of_a_checkpoint_is_refused_cleanly(tmp_path: Path) -> None:
    data = tiny_checkpoint(tmp_path / "good.pt").read_bytes()
    path = tmp_path / "cut.pt"
    for size in sorted({*range(0, len(data), max(1, len(data) // 60)), len(data) - 1}):
        path.write_bytes(data[:size])
        with pytest.raises(RnnclfError) as caught:
            checkpoint.load(path)
        assert "\n" not in str(caught.value) and "cut.pt" in str(caught.value)


# --- configs are data, never code -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("yaml_text", "overrides", "fragment"),
    [
        ('model:\n  cell: !!python/object/apply:os.system ["touch {marker}"]\n', [], "invalid YAML"),
        ('!!python/object/new:os.system ["touch {marker}"]\n', [], "invalid YAML"),
        ("train:\n  seed: !!python/name:os.system\n", [], "invalid YAML"),
        ("", ['train.seed=!!python/object/apply:os.system ["touch {marker}"]'], "invalid YAML"),
        ("text:\n  tokenizer: os.system\n", [], "text.tokenizer"),
        ("model:\n  cell: \"__import__('os').system('touch {marker}')\"\n", [], "model.cell"),
        ("train:\n  optimizer: torch.optim.SGD\n", [], "train.optimizer"),
    ],
)
def test_config_values_are_never_code(
    tmp_path: Path, yaml_text: str, overrides: list[str], fragment: str
) -> None:
    marker = tmp_path / "MARKER"
    config = tmp_path / "evil.yaml"
    config.write_text(yaml_text.format(marker=marker), encoding="utf-8")
    sets = [part for item in overrides for part in ("--set", item.format(marker=marker))]
    code, _, stderr = invoke("train", str(config), "--run-dir", str(tmp_path / "run"), *sets)
    assert_one_line_error(code, stderr, fragment)
    assert not marker.exists()
    assert not (tmp_path / "run").exists()


def test_source_loads_yaml_safely_and_checkpoints_with_weights_only() -> None:
    """Static guarantee over the package: only yaml.safe_* is used, every torch.load passes
    weights_only=True, and nothing evaluates or imports code by name."""
    for file in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
        for node in ast.walk(tree):
            where = f"{file.name}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                if node.value.id == "yaml":
                    assert node.attr in ("safe_load", "safe_dump", "YAMLError"), where
                if node.value.id == "torch" and node.attr == "load":
                    parent_calls = [
                        call for call in ast.walk(tree) if isinstance(call, ast.Call) and call.func is node
                    ]
                    assert parent_calls, where
                    keywords = {k.arg: k.value for k in parent_calls[0].keywords}
                    value = keywords.get("weights_only")
                    assert isinstance(value, ast.Constant) and value.value is True, where
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in ("eval", "exec", "compile", "__import__"), where
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [alias.name for alias in node.names] + [getattr(node, "module", None) or ""]
                # importlib.resources reads package data (fetch's catalog.yaml); it imports no code.
                if getattr(node, "module", None) == "importlib" and names[:-1] == ["resources"]:
                    continue
                assert not {"pickle", "importlib", "marshal", "dill"} & {n.split(".")[0] for n in names}, (
                    where
                )


# --- predict --file - streams -----------------------------------------------------------------------------


def test_predict_stdin_with_bad_utf8_names_the_line(tmp_path: Path) -> None:
    model = tiny_checkpoint(tmp_path / "model.pt")
    result = CliRunner().invoke(
        app, ["predict", "--model", str(model), "--file", "-"], input=b"ok\nfine\n\xffbad\n"
    )
    assert_one_line_error(result.exit_code, result.stderr, "stdin: line 3", "not UTF-8")


def test_predict_stdin_bom_and_crlf_are_not_part_of_the_text(tmp_path: Path) -> None:
    model = tiny_checkpoint(tmp_path / "model.pt")
    lines = "\ufeffpizza\r\ngoal\r\n".encode()
    result = CliRunner().invoke(app, ["predict", "--model", str(model), "--file", "-", "--json"], input=lines)
    assert result.exit_code == 0, result.stderr
    assert [json.loads(line)["text"] for line in result.stdout.splitlines()] == ["pizza", "goal"]


@pytest.mark.slow
def test_predict_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    model = tiny_checkpoint(tmp_path / "model.pt")
    (tmp_path / "in.txt").write_text("pizza\n" * 200_000, encoding="utf-8")
    process = start(["predict", "--model", str(model), "--file", "in.txt"], tmp_path)
    assert process.stdout is not None
    process.stdout.readline()
    process.stdout.close()  # like `| head -1`
    assert process.wait(timeout=120) == 128 + signal.SIGPIPE
    assert process.stderr is not None and process.stderr.read() == ""


def memory_kib(pid: int, field: str) -> int:
    """VmRSS / VmHWM (peak) of a running process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


LINES = 1_000_000
PEAK_LIMIT_MIB = 1024  # the whole process, torch included (it needs ~300 MiB here)
GROWTH_LIMIT_MIB = 128  # from 20% to 100% of the stream: no per-line memory is kept


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads peak memory from /proc")
def test_predict_streams_a_million_lines_in_order_with_bounded_memory(tmp_path: Path) -> None:
    config = write_project(tmp_path, count=80)
    code, _, stderr = invoke("train", str(config), "--run-dir", str(tmp_path / "run"), "--quiet")
    assert code == 0, stderr
    model = tmp_path / "run" / "best.pt"
    texts = ["pizza pasta bread", "goal team match coach"]
    expected = [p.label for p in Predictor.from_checkpoint(model).predict(texts)]
    assert expected == ["ham", "spam"], "the tiny model must tell the two texts apart"

    process = subprocess.Popen(
        [sys.executable, "-m", "rnnclf", "predict", "--model", str(model), "--file", "-"],
        cwd=tmp_path,
        env=child_env(tmp_path),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=(tmp_path / "stderr.txt").open("wb"),
    )
    assert process.stdin is not None and process.stdout is not None

    def feed() -> None:  # a generator writing as the child reads: the input never exists as a whole
        block = "".join(f"{texts[i % 2]}\n" for i in range(10_000)).encode()
        try:
            for _ in range(LINES // 10_000):
                process.stdin.write(block)
            process.stdin.close()
        except BrokenPipeError:  # the child died; the assertions below say why
            pass

    writer = threading.Thread(target=feed, daemon=True)
    started = time.monotonic()
    writer.start()
    wanted = [label.encode() for label in expected]
    count, mismatches, rss_at_fifth, peak = 0, 0, 0, 0
    for line in process.stdout:
        mismatches += line.split(b"\t", 1)[0] != wanted[count % 2]
        count += 1
        if count == LINES // 5:
            rss_at_fifth = memory_kib(process.pid, "VmRSS")
        if count == LINES:
            peak = memory_kib(process.pid, "VmHWM")  # all output is out; only the exit is left
    seconds = time.monotonic() - started
    writer.join()
    assert process.wait(timeout=60) == 0, (tmp_path / "stderr.txt").read_text()
    assert count == LINES and mismatches == 0
    assert peak / 1024 < PEAK_LIMIT_MIB, f"peak {peak / 1024:.0f} MiB"
    assert (peak - rss_at_fifth) / 1024 < GROWTH_LIMIT_MIB, f"grew {(peak - rss_at_fifth) / 1024:.0f} MiB"
    print(f"predicted {LINES:,} lines in {seconds:.1f}s; peak RSS {peak / 1024:.0f} MiB")


# --- configs: deep nesting and alias bombs ----------------------------------------------------------------


@pytest.mark.parametrize("depth", [50, 350, 450, 1000])
@pytest.mark.parametrize("template", ["model:\n  cell: {value}\n", "model: {value}\n", "train: {value}\n"])
def test_deeply_nested_config_values_are_one_line_errors(tmp_path: Path, depth: int, template: str) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text(template.format(value="[" * depth + "]" * depth), encoding="utf-8")
    with pytest.raises(RnnclfError) as caught:
        load(path)
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 400


def test_yaml_alias_bomb_is_a_short_error_not_a_gigabyte_message(tmp_path: Path) -> None:
    """Seven lines of aliases make a value of 9**7 strings; the message must not spell it out."""
    lines = ["model:", '  - &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for previous, name in zip("abcdef", "bcdefg", strict=True):
        lines.append(f"  - &{name} [{', '.join([f'*{previous}'] * 9)}]")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(RnnclfError) as caught:
        load(path)
    assert "section 'model' must be a mapping" in str(caught.value) and len(str(caught.value)) < 400


# --- property-based: arbitrary input raises nothing but RnnclfError ---------------------------------------

PROPERTIES = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
# YAML made of its own syntax: indentation, flow collections, anchors, aliases, tags, block scalars.
YAML_SYNTAX = st.lists(
    st.sampled_from([*"abc:- \n\t[]{},&*!|>'\"#%@`?.0123456789", "!!python/object:os.system ", "&x ", "*x"]),
    max_size=40,
).map("".join)
NESTED = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=25,
)
SECTION_NAMES = st.sampled_from(["data", "text", "model", "train", "output"])


@PROPERTIES
@given(
    text=YAML_SYNTAX
    | st.builds(lambda s, k, v: yaml.safe_dump({s: {k: v}}), SECTION_NAMES, st.text(max_size=12), NESTED),
    overrides=st.lists(
        st.builds("{}.{}={}".format, SECTION_NAMES, st.sampled_from(["cell", "seed", "x"]), YAML_SYNTAX),
        max_size=2,
    ),
)
def test_property_config_loader_raises_only_rnnclf_error(
    tmp_path: Path, text: str, overrides: list[str]
) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load(path, overrides)
    except RnnclfError as error:
        assert "\n" not in str(error)


@PROPERTIES
@given(
    texts=st.lists(st.text(alphabet=st.characters(exclude_categories=[])), max_size=6),
    tokenizer=st.sampled_from(TOKENIZERS),
    min_freq=st.integers(-1, 4),
    specials=st.lists(st.text(max_size=4), max_size=3),
    special_first=st.booleans(),
    max_tokens=st.none() | st.integers(-1, 8),
)
def test_property_tokenize_then_build_vocab_raises_only_rnnclf_error(
    texts: list[str],
    tokenizer: str,
    min_freq: int,
    specials: list[str],
    special_first: bool,
    max_tokens: int | None,
) -> None:
    tokens = [get_tokenizer(tokenizer)(text) for text in texts]
    try:
        vocab = build_vocab_from_iterator(iter(tokens), min_freq, specials, special_first, max_tokens)
    except RnnclfError:
        return
    vocab.set_default_index(0 if len(vocab) else None)
    if len(vocab):
        assert all(0 <= i < len(vocab) for line in tokens for i in vocab.lookup_indices(line))
    assert Vocab.from_dict(vocab.to_dict()) == vocab


@PROPERTIES
@given(value=NESTED | st.fixed_dictionaries({"itos": NESTED}, optional={"default_index": NESTED}))
def test_property_vocab_from_dict_raises_only_rnnclf_error(value: object) -> None:
    # RnnclfError only (its message may quote a key holding a newline; the CLI prints errors on one line).
    with contextlib.suppress(RnnclfError):
        Vocab.from_dict(value)  # type: ignore[arg-type]


@PROPERTIES
@given(
    header=st.lists(st.text(max_size=10), min_size=1, max_size=4),
    text_column=st.text(max_size=10),
    label_column=st.text(max_size=10),
    rows=st.lists(st.lists(st.text(max_size=10), max_size=5), max_size=4),
    format=st.sampled_from(["csv", "tsv", "jsonl"]),
)
def test_property_readers_with_any_columns_raise_only_rnnclf_error(
    tmp_path: Path, header: list[str], text_column: str, label_column: str, rows: list[list[str]], format: str
) -> None:
    path = tmp_path / f"fuzz.{format}"
    if format == "jsonl":
        path.write_text(
            "\n".join(json.dumps(dict(zip(header, row, strict=False))) for row in rows), encoding="utf-8"
        )
    else:
        buffer = io.StringIO()
        writer = csv.writer(buffer, delimiter="," if format == "csv" else "\t")
        writer.writerows([header, *rows])
        path.write_text(buffer.getvalue(), encoding="utf-8")
    try:
        examples = read_examples(path, format, text_column, label_column)
    except RnnclfError as error:
        assert "\n" not in str(error)
    else:
        assert len(examples.texts) == len(examples.labels) > 0
