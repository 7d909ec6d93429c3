"""train.precision where the hardware decides: auto, and bf16 on a CPU without a bf16 LSTM kernel (AVX2-only
CPUs: oneDNN raises "could not create a primitive descriptor for the LSTM forward propagation primitive").

Whether this machine runs bf16 is patched (runtime.fast_bf16, runtime.bf16_runs), so every case runs the
same on a CPU with AMX and on one without."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import rnnclf.runtime as runtime
from rnnclf.cli.app import app

CPU = torch.device("cpu")


@pytest.mark.parametrize(
    ("precision", "fast", "runs", "expected"),
    [
        ("auto", True, True, "bf16"),
        ("auto", False, True, "fp32"),  # bf16 runs but is emulated: slower than fp32
        ("auto", False, False, "fp32"),
        ("bf16", False, True, "bf16"),  # asked for, and it runs
        ("bf16", False, False, "fp32"),  # scoring only: training refuses it first
        ("fp32", True, True, "fp32"),
        ("fp16", True, True, "fp32"),  # scoring an fp16 (CUDA) model on a CPU
    ],
)
def test_the_precision_a_forward_pass_runs_in(
    monkeypatch: pytest.MonkeyPatch, precision: str, fast: bool, runs: bool, expected: str
) -> None:
    monkeypatch.setattr(runtime, "fast_bf16", lambda device: fast)
    monkeypatch.setattr(runtime, "bf16_runs", lambda device: runs)
    assert runtime.resolved_precision(precision, CPU) == expected
    with runtime.autocast(precision, CPU):
        dtype = torch.nn.Linear(2, 2)(torch.zeros(1, 2)).dtype
    assert dtype == (torch.bfloat16 if expected == "bf16" else torch.float32)


def test_the_probe_answers_what_an_lstm_does_under_bf16() -> None:
    """bf16_runs is the LSTM's own answer on this machine: where it says no, the LSTM raises."""
    lstm = torch.nn.LSTM(3, 3, batch_first=True)
    try:
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            lstm(torch.zeros(2, 4, 3))
        ran = True
    except RuntimeError:
        ran = False
    assert runtime.bf16_runs(CPU) is ran


def test_bf16_where_the_cpu_cannot_run_it_is_one_line_before_anything_is_written(
    tiny_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime, "bf16_runs", lambda device: False)
    result = CliRunner().invoke(
        app, ["train", str(tiny_config), "--run-dir", "b", "--set", "train.precision=bf16"]
    )
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.startswith("error")]
    assert lines == [
        "error: train.precision = bf16: this CPU has no bf16 LSTM kernel (it needs AVX-512 BF16 or AMX); "
        "use auto (bf16 where it runs fast, else fp32) or fp32"
    ], result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "b").exists()


def test_auto_trains_in_fp32_where_bf16_is_not_fast_and_says_so(
    tiny_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime, "fast_bf16", lambda device: False)
    runs, said = {}, {}
    for precision in ("auto", "fp32"):
        result = CliRunner().invoke(
            app, ["train", str(tiny_config), "--run-dir", precision, "--set", f"train.precision={precision}"]
        )
        assert result.exit_code == 0, result.output
        runs[precision] = json.loads((tmp_path / precision / "metrics.json").read_text(encoding="utf-8"))
        said[precision] = " ".join(result.output.split())
    assert "precision fp32 (auto)" in said["auto"]
    assert "precision fp32" in said["fp32"] and "(auto)" not in said["fp32"]
    assert runs["auto"]["test"] == runs["fp32"]["test"]  # the same training, step for step


def test_a_bf16_model_is_scored_in_fp32_where_the_cpu_cannot_run_bf16(
    tiny_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkpoint trained in bf16 elsewhere (its config says bf16) still predicts here, in fp32: the
    same probabilities as the fp32 model it holds."""
    from rnnclf.inference.predict import Predictor
    from rnnclf.runs import checkpoint

    result = CliRunner().invoke(app, ["train", str(tiny_config), "--quiet", "--run-dir", "r"])
    assert result.exit_code == 0, result.output
    state = checkpoint.load(tmp_path / "r" / "best.pt")
    texts = ["the pizza and the pasta", "a goal for the team", "code on a laptop"]
    fp32 = Predictor(state).probabilities(texts)
    state["config"]["train"]["precision"] = "bf16"
    monkeypatch.setattr(runtime, "bf16_runs", lambda device: False)
    assert torch.equal(Predictor(state).probabilities(texts), fp32)


def test_auto_takes_bf16_on_a_gpu_only_where_it_has_bf16_units(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.cuda.is_bf16_supported() also says yes where bf16 is emulated (before Ampere): slow."""

    def supported(including_emulation: bool = True) -> bool:
        return including_emulation  # a GPU that only emulates bf16

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", supported)
    cuda = torch.device("cuda")
    assert runtime.fast_bf16(cuda) is False
    assert runtime.resolved_precision("auto", cuda) == "fp32"
    assert runtime.bf16_runs(cuda) is True  # it runs: asked for, bf16 is allowed
