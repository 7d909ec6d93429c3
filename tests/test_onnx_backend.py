"""The ONNX Runtime backend (rnnclf.inference.backends, onnx_predictor): the same probabilities (within
1e-5) and labels as torch for every cell, direction, pooling and depth; predict and eval without torch
in the process; `--backend auto` never uses an export older than its checkpoint; int8 export; the
tokenizer rules in the export JSON; and the onnxruntime example of docs/export.md, run as written."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import time
from itertools import product
from pathlib import Path
from typing import Any, get_args

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner, Result

from rnnclf.cli.app import app
from rnnclf.config import Config, ModelConfig
from rnnclf.inference.backends import current, load_predictor
from rnnclf.inference.export import export_model
from rnnclf.inference.predict import Predictor
from rnnclf.models.addons import build_model
from rnnclf.runs import checkpoint
from rnnclf.text.rules import apply_rules, tokenizer_rules
from rnnclf.text.tokenizers import TOKENIZERS, get_tokenizer
from rnnclf.text.vocab import Vocab

onnxruntime = pytest.importorskip(
    "onnxruntime", reason="onnxruntime is not installed (pip install 'rnnclf[onnx]')"
)
pytest.importorskip("onnx")

ROOT = Path(__file__).resolve().parents[1]
WORDS = [f"w{i}" for i in range(60)]
LABELS = ["a", "b", "c", "d"]
# Lengths 0 to ~45 tokens, unknown words, punctuation the tokenizer splits off.
DOCUMENTS = [
    "",
    "w1",
    "w3 w4, w5 (w6)! unknown words here?",
    " ".join(WORDS[:45]),
    "W7 w8 w9",
    " ".join(WORDS[10:30]),
]


def cli(*args: object) -> Result:
    return CliRunner().invoke(app, [str(arg) for arg in args])


def write_data(path: Path, count: int = 40, multi_label: bool = False) -> Path:
    rows = []
    for i in range(count):
        words = [WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(i % 13)]
        label = ",".join(LABELS[: 1 + i % 3]) if multi_label else LABELS[i % 4]
        rows.append((" ".join(words), label))
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("text", "label"))
        writer.writerows(rows)
    return path


def make_run(folder: Path, vocab_size: int = 62, multi_label: bool = False, **model: Any) -> Path:
    """A run folder holding best.pt of an untrained model of the given shape (random weights compute a
    function as well as trained ones), its data files named in its config."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(3)
    data = write_data(folder / "data.csv", multi_label=multi_label).resolve()
    members = model.pop("members", 1)
    config = Config.model_validate(
        {
            "data": {"train": str(data), "test": str(data), "multi_label": multi_label},
            "text": {"max_length": 24, "truncate": "head_tail"},
            "model": {"embedding_dim": 8, "hidden_dim": 6, **model},
            "ensemble": {"members": members},
        }
    )
    itos = ["<pad>", "<unk>", *WORDS, *[f"x{i}" for i in range(vocab_size - 2 - len(WORDS))]]
    state = {
        "config": config.to_dict(),
        "vocab": Vocab(itos, default_index=1).to_dict(),
        "labels": LABELS,
        "model": build_model(len(itos), len(LABELS), config).state_dict(),
    }
    if multi_label:
        state["thresholds"] = [0.3, 0.5, 0.6, 0.45]
    checkpoint.save(state, folder / "best.pt")
    return folder


CELLS = ("rnn", "gru", "lstm")
POOLINGS = get_args(ModelConfig.model_fields["pooling"].annotation)
# Every pooling with every cell; directions and depths alternate so each cell meets both of each.
SHAPES = [
    {"cell": cell, "pooling": pooling, "bidirectional": i % 2 == 0, "num_layers": 1 + (i // 2) % 2}
    for i, (pooling, cell) in enumerate(product(POOLINGS, CELLS))
] + [{"cell": "lstm", "pooling": "mean", "bidirectional": True, "num_layers": 1, "members": 2}]


def test_shapes_cover_every_cell_direction_and_depth() -> None:
    for cell in CELLS:
        mine = [shape for shape in SHAPES if shape["cell"] == cell]
        assert {s["bidirectional"] for s in mine} == {True, False}
        assert {s["num_layers"] for s in mine} == {1, 2}
    assert {s["pooling"] for s in SHAPES} == set(POOLINGS)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "-".join(str(v) for v in s.values()))
def test_onnx_predictor_matches_torch(tmp_path: Path, shape: dict[str, Any]) -> None:
    run = make_run(tmp_path / "run", **dict(shape))
    export_model(run / "best.pt", "onnx")
    onnx, torch_predictor = load_predictor(run, "auto"), load_predictor(run, "torch")
    assert onnx.backend == "onnx" and isinstance(torch_predictor, Predictor)
    texts = DOCUMENTS * 12  # more than one batch of 64, lengths mixed
    expected = torch_predictor.probabilities(texts).numpy()
    got = onnx.probabilities(texts)
    assert got.shape == expected.shape and abs(got - expected).max() <= 1e-5
    for mine, theirs in zip(
        onnx.predict(texts, top_k=2), torch_predictor.predict(texts, top_k=2), strict=True
    ):
        assert mine.label == theirs.label and list(mine.probabilities) == list(theirs.probabilities)


def test_multi_label_predictions_and_scores_match_torch(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", multi_label=True, cell="gru", pooling="max")
    export_model(run / "best.pt", "onnx")
    onnx, torch_predictor = load_predictor(run, "onnx"), load_predictor(run, "torch")
    assert onnx.thresholds == [0.3, 0.5, 0.6, 0.45] == torch_predictor.thresholds
    for mine, theirs in zip(onnx.predict(DOCUMENTS), torch_predictor.predict(DOCUMENTS), strict=True):
        assert mine.labels == theirs.labels and mine.label == theirs.label
    ours = json.loads(cli("eval", "--model", run, "--backend", "onnx", "--json").stdout)
    reference = json.loads(cli("eval", "--model", run, "--backend", "torch", "--json").stdout)
    assert ours.keys() == reference.keys() and ours["per_class"] == reference["per_class"]
    for key in ("micro_f1", "macro_f1", "samples_f1", "subset_accuracy", "hamming_loss"):
        assert ours[key] == pytest.approx(reference[key], abs=1e-12)


def test_cli_predict_and_eval_agree_across_backends(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", cell="lstm", pooling="attention", bidirectional=True)
    assert cli("export", "--format", "onnx", "--model", run).exit_code == 0
    assert (run / "model.onnx").is_file() and (run / "model.onnx.json").is_file()
    outputs = {}
    for backend in ("torch", "onnx", "auto"):
        result = cli(
            "predict", "--model", run, "--backend", backend, "--json", "--top-k", "2", *DOCUMENTS[1:]
        )
        assert result.exit_code == 0, result.output
        outputs[backend] = [json.loads(line) for line in result.stdout.splitlines()]
    for torch_line, onnx_line in zip(outputs["torch"], outputs["onnx"], strict=True):
        assert torch_line["label"] == onnx_line["label"]
        assert torch_line["probabilities"] == pytest.approx(onnx_line["probabilities"], abs=1e-5)
    assert outputs["auto"] == outputs["onnx"]
    reports = [
        json.loads(cli("eval", "--model", run, "--backend", b, "--json").stdout) for b in ("torch", "onnx")
    ]
    assert reports[0] == reports[1]  # the same labels, so the same counts and scores


TORCH_FREE = """
import sys
from rnnclf.cli.quick import main  # the `rnnclf` entry point
for command in [{commands}]:
    sys.argv = ["rnnclf", *command]
    try:
        main()
    except SystemExit as done:
        assert not done.code, (command, done.code)
loaded = sorted(name for name in sys.modules if name.split(".")[0] in ({modules}))
print("not wanted:", len(loaded), loaded[:3])
"""


def run_commands(commands: list[list[str]], modules: tuple[str, ...], cwd: Path) -> str:
    """Run rnnclf commands in one fresh process; its stdout, ending with the count of `modules` loaded."""
    code = TORCH_FREE.format(commands=", ".join(map(repr, commands)), modules=", ".join(map(repr, modules)))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_predict_and_eval_on_onnx_never_import_torch(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", cell="gru", pooling="concat", bidirectional=True)
    export_model(run / "best.pt", "onnx")
    commands = [
        ["predict", "--model", str(run), "w1 w2", "w3"],
        ["predict", "--model", str(run), "--json", "--top-k", "2", "w4"],
        ["predict", "--model", str(run), "--file", str(run / "data.csv")],  # not the fast path
        ["eval", "--model", str(run)],
        ["eval", "--model", str(run), "--backend", "onnx", "--json"],
    ]
    out = run_commands(commands, ("torch",), tmp_path)
    assert out.rstrip().endswith("not wanted: 0 []"), out
    assert "accuracy" in out  # eval ran


def test_cold_predict_takes_the_fast_path_with_the_same_output(tmp_path: Path) -> None:
    """`rnnclf predict TEXT...` with simple flags imports neither typer, rich, pydantic nor torch, and
    prints what the full command prints."""
    run = make_run(tmp_path / "run", multi_label=True, cell="lstm", pooling="last")
    export_model(run / "best.pt", "onnx")
    for flags in ([], ["--json"], ["--top-k", "2", "--threshold", "0.4"], ["--backend=onnx", "-m", str(run)]):
        command = ["predict", "--model", str(run), *flags, *DOCUMENTS[1:4]]
        out = run_commands([command], ("torch", "typer", "rich", "pydantic"), tmp_path)
        assert out.rstrip().endswith("not wanted: 0 []"), out
        full = cli(*command)
        assert full.exit_code == 0 and out.splitlines()[:-1] == full.stdout.splitlines()
    # Anything else goes to the full app: its help, its one-line errors.
    help_text = run_commands([["predict", "--help"]], (), tmp_path)
    assert "--backend" in help_text and "Usage" in help_text
    done = subprocess.run(
        [sys.executable, "-m", "rnnclf", "predict", "--model", str(tmp_path / "nowhere"), "w1"],
        capture_output=True,
        text=True,
    )
    assert (
        done.returncode == 2
        and done.stderr == f"error: {tmp_path / 'nowhere'}: no such run folder or checkpoint\n"
    )


def test_auto_never_uses_an_export_older_than_its_checkpoint(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", cell="lstm")
    export_model(run / "best.pt", "onnx")
    assert current(run / "model.onnx", run / "best.pt")
    copy = tmp_path / "copy"  # copied: new mtimes, same bytes: still current (by SHA-256)
    copy.mkdir()
    for name in ("best.pt", "model.onnx", "model.onnx.json"):
        (copy / name).write_bytes((run / name).read_bytes())
    assert current(copy / "model.onnx", copy / "best.pt") and load_predictor(copy).backend == "onnx"

    time.sleep(0.01)
    make_run(tmp_path / "run", cell="lstm", hidden_dim=7)  # the run changes: a new best.pt
    assert not current(run / "model.onnx", run / "best.pt")
    result = cli("predict", "--model", run, "w1 w2")
    assert (
        result.exit_code == 0
        and result.stderr.startswith("warning: ")
        and "scoring with torch" in result.stderr
    )
    assert load_predictor(run).backend == "torch"
    result = cli("predict", "--model", run, "--backend", "onnx", "w1")
    assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1
    assert (
        "was exported from another best.pt" in result.stderr
        and "rnnclf export --format onnx" in result.stderr
    )


def test_onnx_backend_errors_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = make_run(tmp_path / "run", cell="rnn")
    result = cli("predict", "--model", run, "--backend", "onnx", "w1")
    assert result.exit_code == 2 and result.stderr.splitlines() == [
        f"error: --backend onnx: {run} holds no model.onnx; make it with 'rnnclf export --format onnx "
        f"--model {run}'"
    ]
    export_model(run / "best.pt", "onnx")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if the extra were not installed
    result = cli("predict", "--model", run, "--backend", "onnx", "w1")
    assert result.exit_code == 2 and result.stderr.splitlines() == [
        "error: the ONNX backend (--backend onnx) needs onnxruntime, which is not installed: "
        "pip install 'rnnclf[onnx]'"
    ]
    result = cli("predict", "--model", run, "--backend", "tpu", "w1")
    assert result.exit_code == 2 and "--backend tpu: unknown" in result.stderr
    result = cli("predict", "--model", run / "model.onnx", "--backend", "torch", "w1")
    assert result.exit_code == 2 and "is an ONNX model" in result.stderr


def test_int8_export_is_small_close_and_reports_its_validation_scores(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", vocab_size=4000, cell="lstm", pooling="max", embedding_dim=32)
    result = cli("export", "--format", "onnx", "--quantize", "int8", "--model", run)
    assert result.exit_code == 0, result.output
    assert "int8 on validation (4 documents): accuracy" in result.stdout and "points)" in result.stdout
    export_model(run / "best.pt", "onnx")
    int8, fp32 = run / "model.int8.onnx", run / "model.onnx"
    assert int8.stat().st_size <= fp32.stat().st_size / 3
    meta = json.loads((run / "model.int8.onnx.json").read_text(encoding="utf-8"))
    scores = meta["quantization"]["validation"]
    assert meta["quantized"] == "int8" and scores["documents"] == 4
    assert scores["difference"] == pytest.approx(scores["int8"] - scores["fp32"])
    assert load_predictor(run).path == fp32  # auto takes the fp32 export, never the int8 one
    quantized = load_predictor(int8)
    assert quantized.quantized == "int8"
    difference = abs(
        quantized.probabilities(DOCUMENTS) - load_predictor(run, "torch").probabilities(DOCUMENTS).numpy()
    )
    assert 0 < difference.max() < 0.05  # int8 is close, not equal
    result = cli(
        "export", "--format", "torchscript", "--quantize", "int8", "--model", run, "--out", tmp_path / "m.pt"
    )
    assert result.exit_code == 2 and "only with --format onnx" in result.stderr


CONFORMANCE = [
    json.loads(line)["text"]
    for line in (ROOT / "tests" / "conformance" / "torchtext_basic_english.jsonl")
    .read_text(encoding="utf-8")
    .splitlines()
]


@pytest.mark.parametrize("name", TOKENIZERS)
def test_tokenizer_rules_as_data_give_the_tokenizers_tokens(name: str) -> None:
    rules = json.loads(json.dumps(tokenizer_rules(name)))  # as a reader of the JSON gets them
    tokenize = get_tokenizer(name)
    for text in [*CONFORMANCE, *DOCUMENTS, 'He said "Hi!"<br />It\'s\u2028 x\x1c y  ']:
        assert apply_rules(rules, text) == tokenize(text)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("aZ .,'\"!?;:()<br />\t\n\u00a0\u2028xÉß")), max_size=40))
def test_tokenizer_rules_on_generated_text(text: str) -> None:
    for name in TOKENIZERS:
        assert apply_rules(tokenizer_rules(name), text) == get_tokenizer(name)(text)


def test_docs_onnxruntime_example_runs_without_rnnclf(tiny_run: Path, tmp_path: Path) -> None:
    """The snippet of docs/export.md, extracted as docs/regenerate.py does, gives `rnnclf predict`'s labels
    and probabilities with neither rnnclf nor torch imported."""
    page = (ROOT / "docs" / "export.md").read_text(encoding="utf-8")
    snippet = re.search(r"```python\n(import json.*?)```", page, re.DOTALL)
    assert snippet is not None
    (tmp_path / "export").mkdir()
    export_model(tiny_run / "best.pt", "onnx", tmp_path / "export" / "trec.onnx")
    check = snippet.group(1) + (
        "\nimport sys\nassert not [m for m in sys.modules if m.split('.')[0] in ('rnnclf', 'torch')]\n"
    )
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-I", "-c", check], capture_output=True, text=True, cwd=tmp_path, env=environment
    )
    assert done.returncode == 0, done.stderr
    texts = re.findall(r"^texts = \[(.*)\]$", snippet.group(1), re.MULTILINE)[0]
    texts = json.loads(f"[{texts}]")
    result = cli("predict", "--model", tiny_run, "--backend", "torch", *texts)
    expected = [f"{line}\t{text}" for line, text in zip(result.stdout.splitlines(), texts, strict=True)]
    assert done.stdout.splitlines() == expected
