"""`rnnclf export`: the exported model (TorchScript via torch, ONNX via onnxruntime), fed only from the
JSON beside it, gives rnnclf's own probabilities on documents of different lengths in one padded batch,
for every cell, pooling and direction."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Any, get_args

import pytest
import torch
from typer.testing import CliRunner, Result

from rnnclf.cli.app import app
from rnnclf.config import Config, ModelConfig
from rnnclf.inference.export import export_model, padded_batch
from rnnclf.inference.predict import Predictor
from rnnclf.models.addons import build_model
from rnnclf.runs import checkpoint
from rnnclf.text.encoding import truncator
from rnnclf.text.tokenizers import get_tokenizer
from rnnclf.text.vocab import Vocab

try:
    import onnx  # noqa: F401
    import onnxruntime

    HAVE_ONNX = True
except ImportError:
    HAVE_ONNX = False

FORMATS = [
    "torchscript",
    pytest.param(
        "onnx",
        marks=pytest.mark.skipif(
            not HAVE_ONNX, reason="onnx and onnxruntime are not installed (pip install 'rnnclf[onnx]')"
        ),
    ),
]
SUFFIX = {"torchscript": "pt", "onnx": "onnx"}

# Lengths 1 to 31 in one batch (the export was traced on lengths 7, 3, 5), an empty document, unknown
# words, and punctuation the tokenizer splits off.
DOCUMENTS = [
    "pizza",
    "",
    "the team scored a late goal in the match , and the coach was happy !",
    "my laptop chip and code",
    "zzyzx qwerty",
    " ".join(["bread cheese soup and pasta with the team"] * 4),
]


def cli(*args: object) -> Result:
    return CliRunner().invoke(app, [str(arg) for arg in args])


def encode(meta: dict[str, Any], texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """What a deployment does with the JSON alone: tokenize, truncate, look up, pad."""
    settings = Config().text.model_copy(update={k: meta["text"][k] for k in ("max_length", "truncate")})
    tokenize, cut = get_tokenizer(meta["text"]["tokenizer"]), truncator(settings)
    index = {token: i for i, token in enumerate(meta["vocab"])}
    documents = [
        [index.get(t, meta["unk_index"]) for t in cut(tokenize(text))] or [meta["unk_index"]]
        for text in texts
    ]
    return padded_batch(documents)


def runner(format: str, path: Path) -> Any:
    """The exported model as a function (ids, lengths) -> probabilities, run by its own runtime."""
    if format == "torchscript":
        with warnings.catch_warnings():  # torch 2.13: torch.jit is deprecated, still the way to load it
            warnings.simplefilter("ignore", DeprecationWarning)
            model = torch.jit.load(str(path))
        return lambda ids, lengths: model(ids, lengths)[1]
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    assert names == ["logits", "probabilities"]
    return lambda ids, lengths: torch.from_numpy(
        session.run(["probabilities"], {"ids": ids.numpy(), "lengths": lengths.numpy()})[0]
    )


@pytest.mark.parametrize("format", FORMATS)
def test_exported_model_matches_rnnclf(tiny_run: Path, tmp_path: Path, format: str) -> None:
    out = tmp_path / f"model.{SUFFIX[format]}"
    result = cli("export", "--model", tiny_run, "--format", format, "--out", out)
    assert result.exit_code == 0, result.output
    assert "checked: probabilities within" in result.stdout
    meta = json.loads(Path(f"{out}.json").read_text(encoding="utf-8"))
    assert meta["kind"] == "rnnclf-export" and meta["format"] == format and meta["model_file"] == out.name
    predictor = Predictor.from_checkpoint(tiny_run / "best.pt")
    assert meta["labels"] == predictor.labels and meta["vocab"] == predictor.vocab.get_itos()

    ids, lengths = encode(meta, DOCUMENTS)
    assert lengths.tolist()[:2] == [1, 1] and int(lengths.max()) > 7  # longer than the traced example
    run = runner(format, out)
    together = run(ids, lengths)  # (6, C): every document padded to the longest
    expected = predictor.probabilities(DOCUMENTS)
    torch.testing.assert_close(together, expected, atol=1e-5, rtol=0)
    for row in range(len(DOCUMENTS)):  # alone, without padding: the same numbers
        alone = run(ids[row : row + 1, : lengths[row]], lengths[row : row + 1])
        torch.testing.assert_close(alone, together[row : row + 1], atol=1e-6, rtol=0)
    labels = [meta["labels"][i] for i in together.argmax(dim=-1).tolist()]
    assert labels == [p.label for p in predictor.predict(DOCUMENTS)]


def make_checkpoint(folder: Path, **model: Any) -> Path:
    """An untrained model of the given shape saved as a checkpoint (random weights are as good as trained
    ones for checking that export computes the same function)."""
    torch.manual_seed(3)
    members = model.pop("members", 1)
    config = Config.model_validate(
        {"model": {"embedding_dim": 8, "hidden_dim": 6, **model}, "ensemble": {"members": members}}
    )
    itos = ["<pad>", "<unk>", *[f"w{i}" for i in range(40)]]
    classifier = build_model(len(itos), 4, config)
    state = {
        "config": config.to_dict(),
        "vocab": Vocab(itos, default_index=1).to_dict(),
        "labels": ["a", "b", "c", "d"],
        "model": classifier.state_dict(),
    }
    path = folder / "model.pt"
    checkpoint.save(state, path)
    return path


CELLS = ("rnn", "gru", "lstm")
# Every pooling the config allows, each with another cell, direction and depth.
SHAPES = [
    {"pooling": pooling, "cell": CELLS[i % 3], "bidirectional": i % 2 == 0, "num_layers": 1 + i % 2}
    for i, pooling in enumerate(get_args(ModelConfig.model_fields["pooling"].annotation))
] + [
    {"pooling": "last", "cell": "lstm", "bidirectional": True, "num_layers": 2},
    {"pooling": "mean", "cell": "lstm", "bidirectional": True, "num_layers": 1, "members": 3},
]


@pytest.mark.parametrize("format", FORMATS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "-".join(str(v) for v in s.values()))
def test_every_model_shape_exports_exactly(tmp_path: Path, format: str, shape: dict[str, Any]) -> None:
    source = make_checkpoint(tmp_path, **shape)
    exported = export_model(source, format, tmp_path / f"m.{SUFFIX[format]}")
    assert exported.max_difference is not None and exported.max_difference <= 1e-5
    generator = torch.Generator().manual_seed(5)
    documents = [torch.randint(2, 42, (n,), generator=generator).tolist() for n in (9, 1, 40, 4, 17)]
    ids, lengths = padded_batch(documents)  # (5, 40)
    model = Predictor.from_checkpoint(source).model
    with torch.no_grad():
        expected = torch.softmax(model(ids, lengths), dim=-1)
    torch.testing.assert_close(runner(format, exported.model)(ids, lengths), expected, atol=1e-5, rtol=0)


def test_export_errors_are_one_line(tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = cli("export", "--model", tiny_run, "--format", "torchscript", "--out", tmp_path / "no" / "m.pt")
    assert result.exit_code == 2 and result.stderr.splitlines() == [
        f"error: --out {tmp_path / 'no' / 'm.pt'}: folder {tmp_path / 'no'} does not exist"
    ]
    result = cli("export", "--model", tiny_run, "--format", "torchscript", "--out", tmp_path)
    assert result.exit_code == 2 and "is a folder" in result.stderr

    monkeypatch.setitem(sys.modules, "onnx", None)  # as if the extra were not installed
    result = cli("export", "--model", tiny_run, "--format", "onnx", "--out", tmp_path / "m.onnx")
    assert result.exit_code == 2 and result.stderr.splitlines() == [
        "error: --format onnx needs onnx, which is not installed: pip install 'rnnclf[onnx]'"
    ]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not HAVE_ONNX, reason="onnx is not installed (pip install 'rnnclf[onnx]')")
def test_onnx_without_onnxruntime_is_written_but_not_checked(
    tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    result = cli("export", "--model", tiny_run, "--format", "onnx", "--out", tmp_path / "m.onnx")
    assert result.exit_code == 0, result.output
    assert "checked" not in result.stdout
    assert result.stderr.splitlines() == [
        "note: not checked: onnxruntime is not installed (pip install 'rnnclf[onnx]')"
    ]
    assert (tmp_path / "m.onnx").stat().st_size > 0 and (tmp_path / "m.onnx.json").is_file()


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "-".join(str(v) for v in s.values()))
def test_onnx_recurrence_computes_the_classifier_eagerly(tmp_path: Path, shape: dict[str, Any]) -> None:
    """OnnxClassifier run by torch (what the exporter traces) is the classifier's own function, and its
    weights in ONNX's layout are the cells' weights with the gate blocks moved, not changed."""
    from rnnclf.inference.onnx_recurrence import GATE_ORDER, OnnxLayer, with_onnx_recurrence

    model = Predictor.from_checkpoint(make_checkpoint(tmp_path, **shape)).model.eval()
    generator = torch.Generator().manual_seed(7)
    documents = [torch.randint(2, 42, (n,), generator=generator).tolist() for n in (9, 1, 40, 4)]
    ids, lengths = padded_batch(documents)  # (4, 40)
    swapped = with_onnx_recurrence(model)
    layers = [module for module in swapped.modules() if isinstance(module, OnnxLayer)]
    assert len(layers) == shape["num_layers"] * shape.get("members", 1)
    first = layers[0]
    blocks = len(GATE_ORDER[shape["cell"]])
    assert first.w.shape[0] == (2 if shape["bidirectional"] else 1)
    assert sorted(first.w[0].chunk(blocks)[i].sum().item() for i in range(blocks)) == sorted(
        first.directions[0].weight_ih_l0.chunk(blocks)[i].sum().item() for i in range(blocks)
    )
    with torch.no_grad():
        torch.testing.assert_close(swapped(ids, lengths), model(ids, lengths), atol=1e-6, rtol=0)
    assert not any(type(module).__name__ == "OnnxClassifier" for module in model.modules())  # untouched


@pytest.mark.skipif(not HAVE_ONNX, reason="onnx and onnxruntime are not installed")
def test_onnx_export_runs_each_layer_as_one_recurrent_node(tmp_path: Path) -> None:
    """A bidirectional 2-layer LSTM: one ONNX LSTM node per layer, told the lengths (sequence_lens), both
    directions in it; no per-step gathers to reverse documents."""
    import onnx

    source = make_checkpoint(tmp_path, cell="lstm", bidirectional=True, num_layers=2, pooling="max")
    exported = export_model(source, "onnx", tmp_path / "m.onnx")
    graph = onnx.load(str(exported.model)).graph
    lstm = [node for node in graph.node if node.op_type == "LSTM"]
    assert len(lstm) == 2
    for node in lstm:
        attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attributes["direction"] == b"bidirectional"
        assert len(node.input) >= 5 and node.input[4]  # sequence_lens given
    assert not [node for node in graph.node if node.op_type == "GatherElements"]
