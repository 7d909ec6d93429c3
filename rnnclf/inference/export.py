"""Export a trained classifier as a deployable model: TorchScript (.pt) or ONNX (.onnx), plus a JSON file
beside it with everything needed to feed it (tokenizer settings, vocabulary, label names).

    inputs   ids      int64 (batch, time)  token ids, right-padded with pad_index (0)
             lengths  int64 (batch,)       real tokens per document, >= 1
    outputs  logits         float32 (batch, classes)
             probabilities  float32 (batch, classes)   softmax of logits; labels[i] names column i
                            (multi-label models: each label's sigmoid; the JSON says multi_label: true
                            and carries the thresholds chosen on validation data, one per label)

How, and why this way (torch 2.13):
- torch.export specializes nn.LSTM's time dimension, so it cannot yet give a model for any document
  length. Both formats therefore come from the TorchScript tracer: `torch.jit.trace` for TorchScript,
  `torch.onnx.export(..., dynamo=False)` for ONNX, with dynamic batch and time axes. torch 2.13 marks
  both as deprecated but they work; their deprecation warnings are silenced here (see _quiet_export).
- A trace records one path through the Python code. That path is the same for every input here (the
  branches depend only on the model's config), and sizes are recorded as operations, so the trace
  generalizes; the tracer's one warning comes from nn.RNN's input-size check, a constant of the model.
  Each export is still checked: the exported model must reproduce the eager model's probabilities on a
  probe batch mixing lengths (1 up to beyond the example's), or the file is deleted and export fails.
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from rnnclf import __version__
from rnnclf.errors import MissingExtra, RnnclfError
from rnnclf.files import atomic_write
from rnnclf.inference.predict import Predictor
from rnnclf.runs import checkpoint
from rnnclf.text.encoding import PAD, UNK

Format = Literal["torchscript", "onnx"]
FORMATS: tuple[str, ...] = ("torchscript", "onnx")
KIND = "rnnclf-export"
ONNX_OPSET = 17
TOLERANCE = 1e-5  # largest allowed difference in any probability between exported and eager model
# The probe batch for the check: one-token documents, lengths not seen at trace time, and one longer
# than the example the model was traced with.
PROBE_LENGTHS = (1, 2, 5, 13, 31)


class Deployable(nn.Module):
    """The classifier with probabilities added: (ids (B, T), lengths (B,)) -> (logits, probabilities);
    multi_label: each label's sigmoid instead of a softmax over classes (a constant of the trace)."""

    def __init__(self, classifier: nn.Module, multi_label: bool = False) -> None:
        super().__init__()
        self.classifier = classifier
        self.multi_label = multi_label

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.classifier(ids, lengths)  # (B, C)
        if self.multi_label:
            return logits, torch.sigmoid(logits)
        return logits, torch.softmax(logits, dim=-1)


@dataclass
class Exported:
    model: Path
    metadata: Path
    format: str
    max_difference: float | None  # largest probability difference found by the check; None: not checked
    notes: list[str] = field(default_factory=list)


def metadata_path(out: Path) -> Path:
    """model.onnx -> model.onnx.json: the vocabulary and labels travel beside the model (named after the
    whole file name, so model.pt and model.onnx exported side by side keep one each)."""
    return out.with_name(out.name + ".json")


def padded_batch(documents: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id lists -> ids (B, T) right-padded with 0, lengths (B,): what the exported model takes."""
    lengths = torch.tensor([len(document) for document in documents], dtype=torch.int64)  # (B,)
    ids = torch.zeros(len(documents), int(lengths.max()), dtype=torch.int64)  # (B, T)
    for row, document in enumerate(documents):
        ids[row, : len(document)] = torch.tensor(document, dtype=torch.int64)
    return ids, lengths


def _random_batch(lengths: tuple[int, ...], vocab_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    low = min(2, vocab_size - 1)  # real tokens, not <pad>/<unk> (when the vocabulary has any)
    documents = [torch.randint(low, vocab_size, (n,), generator=generator).tolist() for n in lengths]
    return padded_batch(documents)


@contextlib.contextmanager
def _quiet_export() -> Iterator[None]:
    """Silence what torch 2.13 says while exporting, all of it known and checked by _verify:
    - DeprecationWarning: torch.jit.trace/save/load and the TorchScript-based ONNX exporter are
      deprecated, yet the replacement (torch.export) cannot make nn.LSTM's time dimension dynamic;
    - TracerWarning: nn.RNN compares its configured input size with the input's, a model constant;
    - UserWarning (ONNX, LSTM): 'batch size other than 1 with variable length' concerns initial states
      passed as inputs; this model passes none, and the check runs a different batch size."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*batch_size other than 1.*", category=UserWarning)
        yield


def _trace(model: Deployable, example: tuple[torch.Tensor, torch.Tensor]) -> torch.jit.ScriptModule:
    with _quiet_export(), torch.no_grad():
        return torch.jit.trace(model, example, check_trace=False)  # _verify checks more lengths


def _write_torchscript(model: Deployable, example: tuple[torch.Tensor, torch.Tensor], out: Path) -> Callable:
    traced = _trace(model, example)
    buffer = io.BytesIO()
    with _quiet_export():
        torch.jit.save(traced, buffer)
    atomic_write(out, buffer.getvalue())
    with _quiet_export():
        loaded = torch.jit.load(str(out))

    def run(ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return loaded(ids, lengths)[1]

    return run


def _write_onnx(model: Deployable, example: tuple[torch.Tensor, torch.Tensor], out: Path) -> Callable | None:
    try:
        import onnx  # noqa: F401  (torch's exporter needs it)
    except ImportError:
        raise MissingExtra("--format onnx", "onnx", "onnx") from None
    buffer = io.BytesIO()
    with _quiet_export(), torch.no_grad():
        torch.onnx.export(
            model,
            example,
            buffer,
            dynamo=False,
            input_names=["ids", "lengths"],
            output_names=["logits", "probabilities"],
            dynamic_axes={
                "ids": {0: "batch", 1: "time"},
                "lengths": {0: "batch"},
                "logits": {0: "batch"},
                "probabilities": {0: "batch"},
            },
            opset_version=ONNX_OPSET,
        )
    atomic_write(out, buffer.getvalue())
    try:
        import onnxruntime
    except ImportError:
        return None  # written, but nothing here can run it to check
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])

    def run(ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        feeds = {"ids": ids.numpy(), "lengths": lengths.numpy()}
        return torch.from_numpy(session.run(["probabilities"], feeds)[0])

    return run


def _verify(model: Deployable, run: Callable, vocab_size: int) -> float:
    """Largest probability difference between the exported and the eager model on a probe batch that
    mixes lengths (so padding is exercised) and has another batch size than the trace example."""
    ids, lengths = _random_batch(PROBE_LENGTHS, vocab_size, seed=1)
    with torch.no_grad():
        expected = model(ids, lengths)[1]  # (B, C)
    return float((run(ids, lengths) - expected).abs().max())


def metadata(predictor: Predictor, source: Path, format: str, model_file: str) -> dict[str, Any]:
    """The JSON that travels with the exported model: how to turn text into its inputs, and what its
    outputs mean."""
    itos = predictor.vocab.get_itos()
    text = predictor.config.text
    return {
        "kind": KIND,
        "format": format,
        "model_file": model_file,
        "rnnclf_version": __version__,
        "checkpoint": str(source),
        "checkpoint_format_version": checkpoint.FORMAT_VERSION,
        "inputs": {
            "ids": "int64 (batch, time): token ids (vocab index), right-padded with pad_index",
            "lengths": "int64 (batch,): real tokens per document, at least 1",
        },
        "outputs": {
            "logits": "float32 (batch, classes)",
            "probabilities": (
                "float32 (batch, labels): sigmoid of each logit; column i is labels[i], chosen when at or "
                "above thresholds[i]"
                if predictor.multi_label
                else "float32 (batch, classes): softmax of logits; column i is labels[i]"
            ),
        },
        "multi_label": predictor.multi_label,
        **({"thresholds": predictor.thresholds} if predictor.multi_label else {}),
        "text": {
            "tokenizer": text.tokenizer,
            "max_length": text.max_length,
            "truncate": text.truncate,
            "empty_document": "one unk_index token",
        },
        "pad_index": itos.index(PAD) if PAD in itos else 0,
        "unk_index": itos.index(UNK) if UNK in itos else 1,
        "labels": predictor.labels,
        "vocab": itos,
    }


def export_model(checkpoint_path: str | Path, format: str, out: str | Path) -> Exported:
    """Write the model at `checkpoint_path` to `out` in `format`, plus its JSON metadata beside it."""
    if format not in FORMATS:
        raise RnnclfError(f"--format {format}: unknown; choose {' or '.join(FORMATS)}")
    out = Path(out)
    meta = metadata_path(out)
    if out.is_dir():
        example = out / f"model.{_suffix(format)}"
        raise RnnclfError(f"--out {out}: is a folder; give a file name, e.g. {example}")
    if not out.parent.is_dir():
        raise RnnclfError(f"--out {out}: folder {out.parent} does not exist")
    source = Path(checkpoint_path)
    predictor = Predictor.from_checkpoint(source)
    model = Deployable(predictor.model, predictor.multi_label).eval()
    vocab_size = len(predictor.vocab)
    example = _random_batch((7, 3, 5), vocab_size, seed=0)  # mixed lengths: the padded path gets traced
    notes = []
    writer = _write_torchscript if format == "torchscript" else _write_onnx
    run = writer(model, example, out)
    difference = None
    if run is None:
        notes.append("not checked: onnxruntime is not installed (pip install 'rnnclf[onnx]')")
    else:
        difference = _verify(model, run, vocab_size)
        if not difference <= TOLERANCE:  # also catches NaN
            out.unlink(missing_ok=True)
            raise RnnclfError(
                f"export to {format} is wrong: probabilities differ by {difference:.2e} from the model's own "
                f"on documents of different lengths (tolerance {TOLERANCE}); nothing was written"
            )
    atomic_write(meta, json.dumps(metadata(predictor, source, format, out.name), ensure_ascii=False).encode())
    return Exported(out, meta, format, difference, notes)


def _suffix(format: str) -> str:
    return "onnx" if format == "onnx" else "pt"
