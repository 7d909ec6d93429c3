"""Export a trained classifier as a deployable model: TorchScript (.pt) or ONNX (.onnx), plus a JSON file
beside it with everything needed to feed it (the tokenizer's rules as data, vocabulary, label names). ONNX
may also be quantized to int8 weights (ONNX Runtime's dynamic quantization), scored beside fp32 on the
run's validation split. With no --out, ONNX goes into the run folder (rnnclf.inference.backends).

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
import logging
import tempfile
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
from rnnclf.inference.backends import fingerprint
from rnnclf.inference.onnx_predictor import INT8_FILE, ONNX_FILE, OnnxPredictor
from rnnclf.inference.onnx_recurrence import with_onnx_recurrence
from rnnclf.inference.predict import Predictor
from rnnclf.runs import checkpoint
from rnnclf.text.rules import PAD, UNK, tokenizer_rules, truncation

Format = Literal["torchscript", "onnx"]
FORMATS: tuple[str, ...] = ("torchscript", "onnx")
QUANTIZATIONS: tuple[str, ...] = ("int8",)
# int8: ONNX Runtime's dynamic quantization of these operators' weights (int8, one scale per tensor;
# activations quantized on the fly): the word vectors (Gather, most of the file), the LSTM cells and the
# matrix products. GRU and Elman (RNN) cells have no int8 kernel there and stay fp32.
QUANTIZED_OPERATORS = ["Gather", "MatMul", "LSTM"]
MAX_INT8_SHARE = 1 / 3  # an int8 file larger than this share of the fp32 one is reported
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
    quantization: dict[str, Any] | None = None  # int8: sizes, and fp32 vs int8 scores on validation


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
            with_onnx_recurrence(model),  # ONNX's own LSTM/GRU/RNN nodes, told the lengths
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
    """The JSON that travels with the exported model: how to turn text into its inputs (the tokenizer's
    rules as data, truncation, specials, vocabulary), what its outputs mean, and which checkpoint it
    came from (rnnclf.inference.backends.current tells whether it still matches)."""
    itos = predictor.vocab.get_itos()
    text, data = predictor.config.text, predictor.config.data
    pad_index = itos.index(PAD) if PAD in itos else 0
    unk_index = itos.index(UNK) if UNK in itos else 1
    return {
        "kind": KIND,
        "format": format,
        "model_file": model_file,
        "rnnclf_version": __version__,
        "checkpoint": str(source.resolve()),
        "checkpoint_format_version": checkpoint.FORMAT_VERSION,
        **fingerprint(source),
        "quantized": None,
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
        # How text becomes ids, as data: tokenizer rules (applied in order: lowercase, each regex
        # replacement, strip, split), then truncation, then the vocabulary (unknown: unk_index).
        "tokenizer": tokenizer_rules(text.tokenizer),
        "truncation": truncation(text.max_length, text.truncate),
        "specials": {
            "pad": PAD,
            "pad_index": pad_index,
            "unk": UNK,
            "unk_index": unk_index,
            "empty_document": "one unk_index token",
        },
        "text": {  # the settings by name (as in rnnclf's config), kept for readers of earlier exports
            "tokenizer": text.tokenizer,
            "max_length": text.max_length,
            "truncate": text.truncate,
            "empty_document": "one unk_index token",
        },
        "pad_index": pad_index,
        "unk_index": unk_index,
        # How `rnnclf eval` reads labelled files for this model (its test data by default).
        "data": {
            "test": data.test,
            "format": data.format,
            "text_column": data.text_column,
            "label_column": data.label_column,
            "label_separator": data.label_separator,
        },
        "labels": predictor.labels,
        "vocab": itos,
        "config": predictor.config.to_dict(),  # the run's whole config, for `rnnclf serve`'s GET /model
    }


def default_out(checkpoint_path: Path, format: str, quantize: str | None) -> Path:
    """No --out: ONNX goes into the run folder, beside the checkpoint, where `--backend auto` finds it
    (int8 under its own name, which auto never picks); TorchScript needs --out."""
    if format != "onnx":
        raise RnnclfError("--out: needed for --format torchscript (only ONNX has a place in the run folder)")
    return checkpoint_path.parent / (INT8_FILE if quantize else ONNX_FILE)


def export_model(
    checkpoint_path: str | Path, format: str, out: str | Path | None = None, quantize: str | None = None
) -> Exported:
    """Write the model at `checkpoint_path` to `out` in `format` (None: RUN/model.onnx, or
    RUN/model.int8.onnx with quantize="int8"), plus its JSON metadata beside it."""
    if format not in FORMATS:
        raise RnnclfError(f"--format {format}: unknown; choose {' or '.join(FORMATS)}")
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise RnnclfError(f"--quantize {quantize}: unknown; choose {' or '.join(QUANTIZATIONS)}")
    if quantize is not None and format != "onnx":
        raise RnnclfError("--quantize int8: only with --format onnx")
    source = Path(checkpoint_path)
    out = default_out(source, format, quantize) if out is None else Path(out)
    meta = metadata_path(out)
    if out.is_dir():
        example = out / f"model.{_suffix(format)}"
        raise RnnclfError(f"--out {out}: is a folder; give a file name, e.g. {example}")
    if not out.parent.is_dir():
        raise RnnclfError(f"--out {out}: folder {out.parent} does not exist")
    predictor = Predictor.from_checkpoint(source)
    model = Deployable(predictor.model, predictor.multi_label).eval()
    if quantize is not None:
        return _export_int8(predictor, model, source, out)
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


def _export_int8(predictor: Predictor, model: Deployable, source: Path, out: Path) -> Exported:
    """An fp32 ONNX export (checked as usual) quantized to int8 weights; the int8 model is scored beside
    the fp32 one on the run's validation split and the difference is reported and recorded."""
    try:
        import onnxruntime  # noqa: F401
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError:
        raise MissingExtra("--quantize int8", "onnxruntime", "onnx") from None
    vocab_size = len(predictor.vocab)
    example = _random_batch((7, 3, 5), vocab_size, seed=0)
    with tempfile.TemporaryDirectory(prefix=".rnnclf-int8-", dir=out.parent) as folder:
        fp32, int8 = Path(folder) / ONNX_FILE, Path(folder) / INT8_FILE
        run = _write_onnx(model, example, fp32)
        assert run is not None  # onnxruntime is installed (imported above)
        difference = _verify(model, run, vocab_size)
        if not difference <= TOLERANCE:
            raise RnnclfError(
                f"export to onnx is wrong: probabilities differ by {difference:.2e} from the model's own; "
                "nothing was written"
            )
        fp32_meta = metadata(predictor, source, "onnx", fp32.name)
        atomic_write(metadata_path(fp32), json.dumps(fp32_meta, ensure_ascii=False).encode())
        # Its advice to run a pre-processing step (shape inference for other operators) goes to the
        # root logger; this graph's quantized operators need none of it.
        logging.disable(logging.WARNING)
        try:
            with _quiet_export(), contextlib.redirect_stdout(io.StringIO()):
                quantize_dynamic(
                    fp32, int8, weight_type=QuantType.QInt8, op_types_to_quantize=QUANTIZED_OPERATORS
                )
        finally:
            logging.disable(logging.NOTSET)
        int8_meta = {**fp32_meta, "model_file": out.name, "quantized": "int8"}
        atomic_write(metadata_path(int8), json.dumps(int8_meta, ensure_ascii=False).encode())
        sizes = {"fp32_bytes": fp32.stat().st_size, "int8_bytes": int8.stat().st_size}
        ids, lengths = _random_batch(PROBE_LENGTHS, vocab_size, seed=1)
        probe = OnnxPredictor(int8).session.run(
            ["probabilities"], {"ids": ids.numpy(), "lengths": lengths.numpy()}
        )
        with torch.no_grad():
            expected = model(ids, lengths)[1]
        probe_difference = float((torch.from_numpy(probe[0]) - expected).abs().max())
        quantization = {
            "type": "int8",
            "operators": QUANTIZED_OPERATORS,
            **sizes,
            "size_ratio": sizes["int8_bytes"] / sizes["fp32_bytes"],
            "probe_max_difference": probe_difference,
            "validation": _validation_scores(predictor, fp32, int8),
        }
        int8_meta["quantization"] = quantization
        atomic_write(out, int8.read_bytes())
    atomic_write(metadata_path(out), json.dumps(int8_meta, ensure_ascii=False).encode())
    notes = []
    if quantization["size_ratio"] > MAX_INT8_SHARE:
        notes.append(
            f"the int8 file is {quantization['size_ratio']:.0%} of the fp32 one's size "
            f"(GRU and RNN cells have no int8 kernel in ONNX Runtime and stay fp32)"
        )
    if quantization["validation"].get("error"):
        notes.append(f"int8 accuracy not measured: {quantization['validation']['error']}")
    return Exported(out, metadata_path(out), "onnx", difference, notes, quantization)


def _validation_scores(predictor: Predictor, fp32: Path, int8: Path) -> dict[str, Any]:
    """fp32 and int8 ONNX scores on the run's validation split (data.valid, or the share of train held
    out with train.seed, as training drew it): {"metric", "documents", "fp32", "int8", "difference",
    "agreement"} (agreement: share of documents given the same label, or label set); {"error"} when the
    data cannot be read."""
    from rnnclf.data import read_configured, stratified_split

    data, seed = predictor.config.data, predictor.config.train.seed
    try:
        examples = read_configured(data.valid or data.train, data)
    except RnnclfError as err:
        return {"error": str(err)}
    texts, labels = examples.texts, examples.labels
    if data.valid is None:
        firsts = [(each[0] if each else "") for each in labels] if data.multi_label else labels
        _, held_out = stratified_split(firsts, data.valid_fraction, seed)
        texts, labels = [texts[i] for i in held_out], [labels[i] for i in held_out]
    scores, decisions = {}, {}
    for name, path in (("fp32", fp32), ("int8", int8)):
        scorer = OnnxPredictor(path)
        probabilities = scorer.probabilities(texts)  # (N, L)
        if data.multi_label:
            import numpy as np

            from rnnclf.inference.onnx_predictor import _label_matrix, multilabel_scores

            chosen = probabilities >= np.array(scorer.thresholds)
            gold = _label_matrix(labels, scorer.labels, examples.source)
            scores[name] = multilabel_scores(gold, chosen, scorer.labels, scorer.thresholds)["micro_f1"]
            decisions[name] = [tuple(row) for row in chosen.tolist()]
        else:
            index = {label: i for i, label in enumerate(scorer.labels)}
            guesses = probabilities.argmax(axis=1).tolist()
            known = [
                (index[label], guess) for label, guess in zip(labels, guesses, strict=True) if label in index
            ]
            scores[name] = sum(gold == guess for gold, guess in known) / max(1, len(known))
            decisions[name] = guesses
    agreement = sum(a == b for a, b in zip(decisions["fp32"], decisions["int8"], strict=True))
    return {
        "metric": "micro_f1" if data.multi_label else "accuracy",
        "documents": len(texts),
        "fp32": scores["fp32"],
        "int8": scores["int8"],
        "difference": scores["int8"] - scores["fp32"],
        "agreement": agreement / max(1, len(texts)),
    }


def _suffix(format: str) -> str:
    return "onnx" if format == "onnx" else "pt"
