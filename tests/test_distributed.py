"""Data-parallel training on CPU (gloo), two processes on tiny data.

`python -m torch.distributed.run --nproc-per-node 2 -m rnnclf train ...` (= torchrun) must write one set
of outputs (rank 0's), whose checkpoint loads for eval and predict; train like one process given the
same global batch and seed; check that every process prepared the same data (and fail clearly when
not); stop all processes together on a signal to any one of them, then resume under torchrun; and end,
not hang, when a process dies.

Tolerance for "like one process": the gradients are the same up to float summation order (DDP adds two
partial sums where one process adds one), so losses agree to ~1e-7 here; the tests allow 1e-4 on every
loss, 1e-3 on any weight, and accuracies equal to within one document.
"""

from __future__ import annotations

import copy
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from conftest import cli_globals_restored, make_documents, write_csv, write_tiny_project
from typer.testing import CliRunner

from rnnclf.batching import collate, shard
from rnnclf.cli.app import app
from rnnclf.config import Config
from rnnclf.models.addons import PerMember
from rnnclf.models.classifier import Classifier
from rnnclf.runs import checkpoint
from rnnclf.training.distributed import Processes, my_part
from rnnclf.training.optimization import train_step

# No dropout: with it, each process draws its own masks and the runs differ by design.
# keep_last: the tests compare the finished runs' last.pt (the training state) too.
SAME_AS_ONE = [
    "--set",
    "model.dropout=0",
    "--set",
    "model.embedding_dropout=0",
    "--set",
    "output.keep_last=true",
]
# Long enough that a signal lands mid-training on any machine (about 0.1 s an epoch here).
LONG = ["--set", "train.epochs=1000", "--set", "train.patience=null", "--set", "output.plots=false"]
LOSS_TOLERANCE, WEIGHT_TOLERANCE = 1e-4, 1e-3
EXIT_WITHIN_S = 30  # a dead or stopped process must end the whole job within this
# Real processes: gloo, and /proc to find torchrun's workers.
processes_test = pytest.mark.skipif(
    not (torch.distributed.is_available() and torch.distributed.is_gloo_available())
    or not Path("/proc/self/task").exists(),
    reason="needs torch.distributed with gloo, and Linux /proc",
)


def invoke(*args: object) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [str(arg) for arg in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, result.stdout, result.stderr


def child_env(**extra: str) -> dict[str, str]:
    # One thread per process on a small machine; a short process-group timeout bounds any hang.
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
        "RNNCLF_DIST_TIMEOUT": "60",
        **extra,
    }


def torchrun(args: list[str], cwd: Path) -> subprocess.Popen:
    """`torchrun --standalone --nproc-per-node 2 -m rnnclf ARGS` (standalone: a free port of its own)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    return subprocess.Popen(
        [*command, "-m", "rnnclf", *args],
        cwd=cwd,
        env=child_env(),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def by_hand(args_per_rank: list[list[str]], cwd: Path) -> list[subprocess.Popen]:
    """The processes of one job started without torchrun, from the environment torchrun would set."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    size = str(len(args_per_rank))
    return [
        subprocess.Popen(
            [sys.executable, "-m", "rnnclf", *args],
            cwd=cwd,
            env=child_env(
                MASTER_ADDR="127.0.0.1",
                MASTER_PORT=port,
                RANK=str(rank),
                LOCAL_RANK=str(rank),
                WORLD_SIZE=size,
                LOCAL_WORLD_SIZE=size,
            ),
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for rank, args in enumerate(args_per_rank)
    ]


def finish(process: subprocess.Popen, timeout: float = 120) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"still running after {timeout}s:\n{out}\n{err}")
    return process.returncode, out, err


def ranks_of(launcher: subprocess.Popen, count: int = 2, timeout: float = 60) -> dict[int, int]:
    """{rank: pid} of torchrun's worker processes (its children, told apart by their RANK)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = {}
        children = Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children").read_text().split()
        for pid in children:
            try:
                variables = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            for variable in variables:
                if variable.startswith(b"RANK="):
                    found[int(variable[5:])] = int(pid)
        if len(found) == count:
            return found
        time.sleep(0.05)
    pytest.fail("torchrun's worker processes did not appear")


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            pytest.fail(f"ended ({process.returncode}) before {path.name} appeared: {process.communicate()}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"{path} did not appear within {timeout}s")
        time.sleep(0.02)


def gone(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return True
    return status == "Z"  # ended, not yet reaped


# --- the math, in one process: global batch -> parts -> averaged gradients --------------------------------


def test_shards_partition_each_global_batch() -> None:
    for size in (1, 2, 3, 8):
        for count in (1, 2, 7, 8, 64):
            batch = torch.randperm(count)
            parts = [shard(batch, rank, size) for rank in range(size)]
            assert torch.equal(torch.cat(parts), batch)
            assert max(map(len, parts)) - min(map(len, parts)) <= 1


@pytest.mark.parametrize("adversarial", [0.0, 0.5])
@pytest.mark.parametrize("class_weights", [None, [1.0, 3.0, 0.5]])
@pytest.mark.parametrize("batch_size", [7, 2])  # 2 documents for 3 processes: one steps on a stand-in
def test_parts_average_to_the_whole_batch_gradient(
    class_weights: list[float] | None, batch_size: int, adversarial: float
) -> None:
    """What DDP does (average the processes' gradients) with the loss each process computes equals one
    process's gradient on the whole global batch; with adversarial steps too (each document's
    perturbation is aimed by its own gradient, whatever share of the loss it holds)."""
    from rnnclf.text.encoding import encode_texts
    from rnnclf.text.vocab import build_vocab_from_iterator

    documents = make_documents(batch_size, seed=3)
    vocab = build_vocab_from_iterator([text.split() for text, _ in documents], specials=["<pad>", "<unk>"])
    vocab.set_default_index(1)
    labels = sorted({label for _, label in documents} | {"food", "sports", "tech"})
    config = Config()
    config.model.embedding_dim, config.model.hidden_dim = 8, 8
    config.model.dropout = config.model.embedding_dropout = 0.0
    config.train.clip_grad_norm = None
    config.train.adversarial = adversarial
    data = encode_texts(
        [text for text, _ in documents], [labels.index(label) for _, label in documents], config.text, vocab
    )
    weights = torch.tensor(class_weights) if class_weights else None
    indices = torch.arange(batch_size)
    torch.manual_seed(0)
    model = Classifier(len(vocab), len(labels), config.model)

    def gradients(batch: tuple, loss_scale: float | None, processes: int) -> list[torch.Tensor]:
        copy_ = copy.deepcopy(model)
        optimizer = torch.optim.SGD(copy_.parameters(), lr=0.0)  # a step that leaves the weights
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
        scaler = torch.amp.GradScaler("cpu", enabled=False)
        device = torch.device("cpu")
        train_step(
            PerMember(copy_), [copy_], batch, optimizer, schedule, scaler, config.train, device,
            weights, loss_scale, processes,
        )  # fmt: skip
        return [p.grad.clone() for p in copy_.parameters()]

    whole = gradients(collate(data, indices), None, 1)
    size = 3
    parts = [
        gradients(*my_part(data, indices, Processes(torch.device("cpu"), rank, size), weights), size)
        for rank in range(size)
    ]
    averaged = [torch.stack(grads).mean(dim=0) for grads in zip(*parts, strict=True)]
    for one, other in zip(whole, averaged, strict=True):
        torch.testing.assert_close(other, one, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("documents", "size"), [(7, 3), (2, 3)])  # (2, 3): one process scores nothing
def test_summed_parts_of_validation_equal_one_process(documents: int, size: int) -> None:
    """evaluate() with several processes: each scores its part, the sums over processes give the
    single-process figures (here the processes' sums are added up by hand)."""
    from rnnclf.inference.scoring import evaluate
    from rnnclf.text.encoding import encode_texts
    from rnnclf.text.vocab import build_vocab_from_iterator

    rows = make_documents(documents, seed=5)
    vocab = build_vocab_from_iterator([text.split() for text, _ in rows], specials=["<pad>", "<unk>"])
    vocab.set_default_index(1)
    labels = ["food", "sports", "tech"]
    config = Config()
    config.model.embedding_dim, config.model.hidden_dim = 8, 8
    data = encode_texts([t for t, _ in rows], [labels.index(label) for _, label in rows], config.text, vocab)
    torch.manual_seed(1)
    model = Classifier(len(vocab), len(labels), config.model)
    weights = torch.tensor([1.0, 2.0, 0.5])
    cpu = torch.device("cpu")
    single = evaluate(model, data, labels, cpu, "fp32", weights)

    parts = [Processes(cpu, rank, size) for rank in range(size)]
    seen: list[torch.Tensor] = []
    for processes in parts:  # first pass: what each process contributes
        processes.sum = lambda values: seen.append(values) or values  # type: ignore[method-assign]
        evaluate(model, data, labels, cpu, "fp32", weights, processes)
    total = torch.stack(seen).sum(dim=0)
    for processes in parts:  # second pass: every process receives the total, as from all_reduce
        processes.sum = lambda values: total  # type: ignore[method-assign]
        shared = evaluate(model, data, labels, cpu, "fp32", weights, processes)
        assert shared["loss"] == pytest.approx(single["loss"], rel=1e-6)
        assert {k: v for k, v in shared.items() if k != "loss"} == {
            k: v for k, v in single.items() if k != "loss"
        }


# --- two processes, end to end ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """The tiny project trained by one process (in-process) and by two (torchrun), same config."""
    folder = tmp_path_factory.mktemp("distributed")
    config = write_tiny_project(folder / "project")
    with pytest.MonkeyPatch.context() as patch, cli_globals_restored():
        patch.chdir(folder)
        code, _, stderr = invoke("train", config, "--run-dir", folder / "one", "--quiet", *SAME_AS_ONE)
        assert code == 0, stderr
        started = time.monotonic()
        code, stdout, stderr = finish(
            torchrun(["train", str(config), "--run-dir", "two", *SAME_AS_ONE], folder)
        )
        yield {
            "folder": folder,
            "one": folder / "one",
            "two": folder / "two",
            "code": code,
            "stdout": stdout,
            "stderr": stderr,
            "seconds": time.monotonic() - started,
        }


@pytest.mark.slow
@processes_test
def test_two_processes_write_one_set_of_outputs(runs: dict) -> None:
    assert runs["code"] == 0, runs["stderr"]
    assert "Traceback" not in runs["stderr"]
    one, two = runs["one"], runs["two"]
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    # Rank 0 alone reports: the config, the set-up lines and the summary appear once.
    stdout = runs["stdout"]
    for line in ("run: ", "data parallel: 2 processes (gloo)", "best epoch ", "model: lstm"):
        assert stdout.count(line) == 1, (line, stdout)
    # ... and says the processes prepared identical data (vocabulary, labels, every document).
    assert "prepared data identical in every process (sha256 " in stdout
    assert (runs["folder"] / "runs" / "LATEST").read_text().strip() == str(two.resolve())
    # The same checkpoint format as one process's: same keys, no DDP 'module.' prefixes.
    single, double = checkpoint.load(one / "last.pt"), checkpoint.load(two / "last.pt")
    assert single.keys() == double.keys()
    assert single["model"].keys() == double["model"].keys()
    assert len(double["rng"]["ranks"]) == 2  # each process's dropout stream, for resuming
    print(f"two-process run: {runs['seconds']:.1f}s")


@pytest.mark.slow
@processes_test
def test_two_process_checkpoint_serves_eval_and_predict(runs: dict) -> None:
    assert runs["code"] == 0, runs["stderr"]
    metrics = json.loads((runs["two"] / "metrics.json").read_text())
    code, stdout, stderr = invoke("eval", "--model", runs["two"], "--json")
    assert code == 0, stderr
    assert json.loads(stdout)["accuracy"] == pytest.approx(metrics["test"]["accuracy"])
    code, stdout, stderr = invoke("predict", "--model", runs["two"], "pizza pasta bread", "goal team match")
    assert code == 0, stderr
    assert [line.split("\t")[0] for line in stdout.splitlines()] == ["food", "sports"]


def assert_trained_alike(one: Path, two: Path) -> None:
    """The run folders of one process and of two agree: every epoch's losses and learning rate, the
    accuracies within one document, the best epoch and the last weights (tolerances above)."""
    rows = [
        [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()] for run in (one, two)
    ]
    assert len(rows[0]) == len(rows[1]) == 3
    valid_documents = json.loads((one / "metrics.json").read_text())["valid"]["n"]
    for single, double in zip(*rows, strict=True):
        for key in ("train_loss", "valid_loss", "lr"):
            assert double[key] == pytest.approx(single[key], abs=LOSS_TOLERANCE), key
        assert abs(double["valid_accuracy"] - single["valid_accuracy"]) <= 1 / valid_documents + 1e-9
    final = [json.loads((run / "metrics.json").read_text()) for run in (one, two)]
    for split in ("valid", "test"):
        single, double = final[0][split], final[1][split]
        assert double["n"] == single["n"]
        assert abs(double["accuracy"] - single["accuracy"]) <= 1 / single["n"] + 1e-9
        assert double["loss"] == pytest.approx(single["loss"], abs=LOSS_TOLERANCE)
    assert final[0]["best_epoch"] == final[1]["best_epoch"]
    first, second = checkpoint.load(one / "last.pt"), checkpoint.load(two / "last.pt")
    for name, tensor in first["model"].items():
        assert (second["model"][name] - tensor).abs().max() < WEIGHT_TOLERANCE, name


@pytest.mark.slow
@processes_test
def test_two_processes_train_like_one_on_the_same_global_batch(runs: dict) -> None:
    assert runs["code"] == 0, runs["stderr"]
    assert_trained_alike(runs["one"], runs["two"])


@pytest.mark.slow
@processes_test
def test_two_processes_train_like_one_with_adversarial_steps(tmp_path: Path) -> None:
    """Two forward and backward passes a step, each process aiming the perturbations of its own
    documents: together they train as one process does on the whole global batch."""
    config = write_tiny_project(tmp_path / "project")
    settings = [*SAME_AS_ONE, "--set", "train.adversarial=0.1"]
    with pytest.MonkeyPatch.context() as patch, cli_globals_restored():
        patch.chdir(tmp_path)
        code, _, stderr = invoke("train", config, "--run-dir", tmp_path / "one", "--quiet", *settings)
        assert code == 0, stderr
    code, _, stderr = finish(
        torchrun(["train", str(config), "--run-dir", "two", "--quiet", *settings], tmp_path)
    )
    assert code == 0, stderr
    assert_trained_alike(tmp_path / "one", tmp_path / "two")


@pytest.mark.slow
@processes_test
def test_sparse_word_vector_steps_are_refused_in_one_line_under_several_processes(tmp_path: Path) -> None:
    """DDP all-reduces dense gradients: train.sparse_embedding true is one line on every process (auto
    is off there), and no run is left."""
    config = write_tiny_project(tmp_path / "project")
    options = ["--run-dir", "run", "--quiet", "--set", "train.sparse_embedding=true"]
    processes = by_hand([["train", str(config), *options]] * 2, tmp_path)
    for process in processes:
        code, _, stderr = finish(process, timeout=EXIT_WITHIN_S + 60)
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert code == 2, stderr
        assert len(lines) == 1 and "train.sparse_embedding trains in one process" in lines[0], stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
@processes_test
def test_processes_that_prepared_different_data_stop_with_a_clear_error(tmp_path: Path) -> None:
    """Two processes started by hand; the second reads a different copy of the data (one document
    more), as on a machine with a stale copy. Both say so in one line and exit 2; nothing is written."""
    config = write_tiny_project(tmp_path / "project")
    stale = write_tiny_project(tmp_path / "stale")
    write_csv(tmp_path / "stale" / "train.csv", make_documents(91, seed=1))
    options = ["--run-dir", "run", "--quiet"]
    processes = by_hand([["train", str(config), *options], ["train", str(stale), *options]], tmp_path)
    for rank, process in enumerate(processes):
        code, _, stderr = finish(process, timeout=EXIT_WITHIN_S + 60)
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert code == 2, stderr
        assert len(lines) == 1 and lines[0].startswith(f"error: rank {rank}: the prepared data differ"), (
            stderr
        )
        assert "rank 0: vocabulary 32, 3 labels, 81/9/30 train/valid/test documents" in lines[0]
        assert "rank 1: vocabulary" in lines[0]
    assert not (tmp_path / "run" / "last.pt").exists()


@pytest.mark.slow
@processes_test
def test_a_signal_to_one_process_stops_all_after_the_same_step_then_resume_under_torchrun(
    tmp_path: Path,
) -> None:
    config = write_tiny_project(tmp_path / "project")
    launcher = torchrun(["train", str(config), "--run-dir", "run", "--quiet", *LONG], tmp_path)
    ranks = ranks_of(launcher)
    wait_for(tmp_path / "run" / "metrics.jsonl", launcher)  # an epoch is done: training is under way
    first_epoch = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    time.sleep(first_epoch["seconds"] / 2)  # most likely mid-epoch (either way it must stop cleanly)
    os.kill(ranks[1], signal.SIGTERM)  # rank 0 gets no signal: it must learn of it and save last.pt
    started = time.monotonic()
    code, _, stderr = finish(launcher, timeout=EXIT_WITHIN_S + 30)
    assert time.monotonic() - started < EXIT_WITHIN_S
    assert code != 0
    assert gone(ranks[0]) and gone(ranks[1])
    assert stderr.count("interrupted; run/last.pt saved") == 1, stderr  # rank 0 only
    state = checkpoint.load(tmp_path / "run" / "last.pt")
    assert state["epoch"] >= 1
    assert not list((tmp_path / "run").glob(".*.tmp"))

    # The printed command resumes under torchrun; finish the epoch that was interrupted.
    command = shlex.split(stderr.split("Resume with: ", 1)[1].splitlines()[0])
    assert command[:5] == ["torchrun", "--nproc-per-node", "2", "-m", "rnnclf"] and "--resume" in command
    epochs = state["epoch"] + 1  # finish the interrupted epoch (or, stopped at an epoch's end, one more)
    code, stdout, stderr = finish(torchrun([*command[5:], "--set", f"train.epochs={epochs}"], tmp_path))
    assert code == 0, stderr
    assert stdout.count("best epoch ") == 1
    rows = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(row)["epoch"] for row in rows] == list(range(1, epochs + 1))


@pytest.mark.slow
@processes_test
@pytest.mark.parametrize("launcher", ["torchrun", "by hand"])
def test_killing_one_process_ends_the_job(tmp_path: Path, launcher: str) -> None:
    config = write_tiny_project(tmp_path / "project")
    args = ["train", str(config), "--run-dir", "run", "--quiet", *LONG]
    if launcher == "torchrun":
        job = torchrun(args, tmp_path)
        ranks = ranks_of(job)
        survivor = job
    else:
        first, second = by_hand([args, args], tmp_path)
        ranks = {0: first.pid, 1: second.pid}
        job = survivor = first
    wait_for(tmp_path / "run" / "metrics.jsonl", job)
    os.kill(ranks[1], signal.SIGKILL)
    started = time.monotonic()
    code, _, stderr = finish(survivor, timeout=EXIT_WITHIN_S + 30)
    assert time.monotonic() - started < EXIT_WITHIN_S, stderr
    assert code != 0
    assert gone(ranks[0])
    if launcher == "by hand":  # no torchrun to stop it: rank 0 notices by itself, in one line
        second.wait()
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1, stderr
        assert lines[0].startswith("error: rank 0: stopped because another process of this job failed")


@pytest.mark.slow
@processes_test
def test_two_processes_pretrain_like_one(tmp_path: Path) -> None:
    """rnnclf pretrain under torchrun: one lm.pt, and (full softmax, no dropout: nothing random) the
    same perplexities and weights as one process on the same global batches."""
    config = write_tiny_project(tmp_path / "project")
    same = [*SAME_AS_ONE, "--set", "pretrain.samples=0", "--set", "pretrain.epochs=2"]
    code, _, stderr = invoke("pretrain", config, "--run-dir", tmp_path / "one", "--quiet", *same)
    assert code == 0, stderr
    code, stdout, stderr = finish(torchrun(["pretrain", str(config), "--run-dir", "two", *same], tmp_path))
    assert code == 0, stderr
    assert stdout.count("language model: best valid perplexity") == 1  # rank 0 reports
    rows = [
        [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        for name in ("one", "two")
    ]
    for single, double in zip(*rows, strict=True):
        for key in ("train_loss", "valid_loss"):
            assert double[key] == pytest.approx(single[key], abs=LOSS_TOLERANCE), key
    kind = checkpoint.LANGUAGE_MODEL
    one, two = (checkpoint.load(tmp_path / name / "lm.pt", kind=kind)["model"] for name in ("one", "two"))
    for name, tensor in one.items():
        assert (two[name] - tensor).abs().max() < WEIGHT_TOLERANCE, name


@pytest.mark.parametrize(
    ("arguments", "code"), [(["init-config"], 0), (["train", "missing.yaml"], 2), (["nonsense"], 2)]
)
def test_a_torchrun_process_leaves_with_its_output_exit_code_and_exit_handlers(
    tmp_path: Path, arguments: list[str], code: int
) -> None:
    # Under torchrun main() ends the process without interpreter shutdown (a gloo thread could abort
    # it there); nothing it printed, no exit handler and no exit code may be lost on the way out.
    program = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('exit handler ran'))\n"
        f"sys.argv = ['rnnclf', *{arguments!r}]\n"
        "from rnnclf.cli.app import main\n"
        "main()\n"
    )
    alone = subprocess.run(
        [sys.executable, "-c", program],
        cwd=tmp_path,
        env=child_env(PYTHONUNBUFFERED=""),  # buffered output, as when a user pipes it
        text=True,
        capture_output=True,
    )
    job = subprocess.run(
        [sys.executable, "-c", program],
        cwd=tmp_path,
        env=child_env(PYTHONUNBUFFERED="", WORLD_SIZE="2", RANK="1", LOCAL_RANK="1"),
        text=True,
        capture_output=True,
    )
    assert job.returncode == alone.returncode == code, job.stderr
    assert job.stdout == alone.stdout
    assert job.stdout.rstrip().endswith("exit handler ran")
    assert job.stderr == alone.stderr
