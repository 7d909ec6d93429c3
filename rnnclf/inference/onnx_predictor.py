"""Scoring with ONNX Runtime, without torch: an exported model (rnnclf export --format onnx) and the JSON
beside it are all it reads. The tokenizer, truncation, vocabulary, labels and multi-label thresholds come
from the JSON; the same Prediction objects as torch's Predictor come out.

    texts --tokenize, cut (rnnclf.text)--> ids --sort by length, pad, batches of 8-16--> onnxruntime
          --> probabilities (N, L) in input order --> Prediction per text

Never imports torch, nor any rnnclf module that does (tests/test_onnx_backend.py checks sys.modules in
a fresh process). Batches run on one scoring thread per core, each session.run on one intra-op thread:
as in rnnclf.inference.workers, a recurrent cell's small per-step products keep two cores busier as
two independent batches than as one batch split across both.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from rnnclf.errors import MissingExtra, RnnclfError
from rnnclf.inference.prediction import Prediction, in_chunks, threshold_override
from rnnclf.text.fasttokens import tokenize_many
from rnnclf.text.rules import cutter
from rnnclf.text.tokenizers import get_tokenizer

log = logging.getLogger("rnnclf")

KIND = "rnnclf-export"
ONNX_FILE = "model.onnx"  # `rnnclf export --format onnx` with no --out: RUN/model.onnx + RUN/model.onnx.json
INT8_FILE = "model.int8.onnx"  # ... --quantize int8: RUN/model.int8.onnx + its .json
# Documents per session.run (sorted by length, so a batch pads little). ONNX Runtime's LSTM kernels
# favour small batches here (torch's favour 64, rnnclf.inference.scoring). Measured 2026-12-05 on the
# one-epoch IMDB default model, 2 cores, two scoring threads, reviews/s, batch 16 -> 8:
#   calls of 32 random reviews (a server's batch):  int8 1,322 -> 1,723, fp32 996 -> 1,236
#   calls of 144 random reviews:                    int8 1,940 -> 2,214, fp32 1,469 -> 1,563
#   one call of 4,000 reviews (eval):               int8 2,277/2,562 -> 2,489/2,593,
#                                                   fp32 1,879/1,772 -> 1,671/1,731
# Small calls: the threads' share of the longest documents evens out with more, smaller batches.
BATCH = 8
BATCH_LARGE_FP32 = 16  # fp32 calls of LARGE_CALL documents or more
LARGE_CALL = 1024


def metadata_path(model: Path) -> Path:
    """model.onnx -> model.onnx.json."""
    return model.with_name(model.name + ".json")


def read_metadata(model: Path) -> dict[str, Any]:
    """The export's JSON (rnnclf.inference.export.metadata), checked for what scoring needs."""
    path = metadata_path(model)
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RnnclfError(
            f"{path}: missing (an exported model's vocabulary and labels travel in it)"
        ) from None
    except (OSError, ValueError) as err:
        raise RnnclfError(f"{path}: not a readable export JSON ({str(err)[:120]})") from None
    if not isinstance(meta, dict) or meta.get("kind") != KIND:
        raise RnnclfError(f'{path}: not an rnnclf export JSON (no "kind": "{KIND}")')
    missing = [key for key in ("vocab", "labels", "tokenizer", "truncation", "specials") if key not in meta]
    if missing:
        raise RnnclfError(
            f"{path}: lacks {', '.join(missing)} (exported by an older rnnclf); export the model again"
        )
    return meta


def onnxruntime_module() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise MissingExtra("the ONNX backend (--backend onnx)", "onnxruntime", "onnx") from None
    return onnxruntime


def scoring_threads() -> int:
    """One scoring thread per core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


class OnnxPredictor:
    """An exported ONNX model ready to label text: the public methods of rnnclf.inference.predict.Predictor
    that the CLI and a server use (predict, predict_stream, probabilities, labels, multi_label,
    thresholds), with probabilities as NumPy arrays."""

    backend = "onnx"

    def __init__(self, model: str | Path, threshold: float | None = None) -> None:
        import numpy

        self._np = numpy
        self.path = Path(model)
        self.source = self.path  # what was loaded, for messages and plot titles
        meta = read_metadata(self.path)
        self.metadata = meta
        self.labels: list[str] = [str(label) for label in meta["labels"]]
        self.multi_label = bool(meta.get("multi_label", False))
        self.quantized: str | None = meta.get("quantized")
        self.thresholds = self._thresholds(meta, threshold)
        rules, cut = meta["tokenizer"], meta["truncation"]
        self.tokenizer_name = rules["name"]
        self.max_length, self.truncate = int(cut["max_length"]), cut["keep"]
        self._tokenize = get_tokenizer(self.tokenizer_name)  # the fast equal of the JSON's rules
        self._cut = cutter(self.max_length, self.truncate)
        self.itos: list[str] = meta["vocab"]
        self._stoi = {token: i for i, token in enumerate(self.itos)}
        self.pad_index = int(meta["specials"]["pad_index"])
        self.unk_index = int(meta["specials"]["unk_index"])
        # What eval needs of a config (data.test and how to read it), without pydantic or torch.
        data = {"test": None, "format": "auto", "text_column": "text", "label_column": "label"}
        data |= {"multi_label": self.multi_label, "label_separator": ","} | meta.get("data", {})
        text = {"tokenizer": self.tokenizer_name, "max_length": self.max_length, "truncate": self.truncate}
        self.config = SimpleNamespace(data=SimpleNamespace(**data), text=SimpleNamespace(**text))
        self.threads = scoring_threads()
        self.session = self._session()

    def _session(self) -> Any:
        onnxruntime = onnxruntime_module()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1  # parallel over batches instead (see the module docstring)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: its optimizer's notices are not the user's business
        try:
            return onnxruntime.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own types for a missing or damaged file
            raise RnnclfError(f"{self.path}: onnxruntime cannot load it ({str(err)[:160]})") from None

    def _thresholds(self, meta: dict[str, Any], override: float | None) -> list[float]:
        """Multi-label decision thresholds, one per label: the override, else the export's."""
        if override is not None:
            return threshold_override(override, self.multi_label, len(self.labels))
        saved = meta.get("thresholds") or [0.5] * len(self.labels)
        if len(saved) != len(self.labels):
            raise RnnclfError(f"{self.path}.json: {len(saved)} thresholds for {len(self.labels)} labels")
        return [float(t) for t in saved]

    # -- text -> ids ---------------------------------------------------------------------------------
    def encode(self, texts: list[str]) -> tuple[Any, Any]:
        """(flat ids (tokens,) int64, lengths (N,) int64): tokenized, cut, looked up; an empty
        document is one <unk> (as rnnclf.text.encoding.encode_part)."""
        np = self._np
        fast = tokenize_many(texts, self.tokenizer_name, self.max_length, self.truncate)
        if fast is not None:  # many texts: Arrow's kernels; local ids -> vocabulary ids by one table
            itos, local, counts = fast
            table = np.array([self._stoi.get(token, self.unk_index) for token in itos], dtype=np.int64)
            ids = table[np.frombuffer(local, dtype=np.int32)] if len(local) else np.empty(0, np.int64)
            lengths = np.frombuffer(counts, dtype=np.int32).astype(np.int64)
        else:
            get, unknown, tokenize, cut = self._stoi.get, self.unk_index, self._tokenize, self._cut
            documents = [[get(token, unknown) for token in cut(tokenize(text))] for text in texts]
            lengths = np.array([len(d) for d in documents], dtype=np.int64)
            ids = np.fromiter((i for d in documents for i in d), dtype=np.int64, count=int(lengths.sum()))
        if (lengths == 0).any():  # empty documents: one <unk> each, spliced in at their place
            offsets = np.concatenate([[0], np.cumsum(lengths)])
            ids = np.insert(ids, offsets[:-1][lengths == 0], self.unk_index)
            lengths = np.maximum(lengths, 1)
        return ids, lengths

    def _batches(self, lengths: Any) -> list[Any]:
        """Document indices sorted by length (stable), cut into batches (BATCH, see above)."""
        order = self._np.argsort(lengths, kind="stable")
        size = BATCH_LARGE_FP32 if len(order) >= LARGE_CALL and not self.quantized else BATCH
        return [order[start : start + size] for start in range(0, len(order), size)]

    def probabilities(self, texts: list[str]) -> Any:
        """(N, L) float32 probabilities, in input order (softmax, or each label's sigmoid)."""
        if not texts:
            return self._np.empty((0, len(self.labels)), dtype=self._np.float32)
        return self.scores(*self.encode(texts))

    def scores(self, ids: Any, lengths: Any) -> Any:
        """(N, L) float32 probabilities of encoded documents (`encode`'s flat ids and lengths)."""
        np = self._np
        out = np.empty((len(lengths), len(self.labels)), dtype=np.float32)
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])  # (N,) where each document starts

        def score(batch: Any) -> None:
            sizes = lengths[batch]  # (B,)
            steps = int(sizes.max())
            padded = np.full((len(batch), steps), self.pad_index, dtype=np.int64)  # (B, T)
            mask = np.arange(steps)[None, :] < sizes[:, None]  # (B, T): real tokens, row by row
            # Positions of each row's tokens in the flat ids, in row order (what mask selects).
            starts = np.repeat(offsets[batch] - np.concatenate([[0], np.cumsum(sizes)[:-1]]), sizes)
            padded[mask] = ids[starts + np.arange(int(sizes.sum()))]
            feeds = {"ids": padded, "lengths": sizes.astype(np.int64)}
            out[batch] = self.session.run(["probabilities"], feeds)[0]

        run_parallel([lambda b=batch: score(b) for batch in self._batches(lengths)], self.threads)
        return out

    # -- labels --------------------------------------------------------------------------------------
    def predict(self, texts: list[str], top_k: int | None = None) -> list[Prediction]:
        """Label each text; probabilities of the top_k classes (all when None), most likely first.
        Multi-label: every label's probability, and the chosen labels (at most top_k of them)."""
        np = self._np
        probabilities = self.probabilities(texts)  # (N, L)
        order = np.argsort(-probabilities, axis=1, kind="stable")  # (N, L) most likely first
        values = np.take_along_axis(probabilities, order, axis=1).tolist()
        order = order.tolist()
        if self.multi_label:
            thresholds = self.thresholds
            results = []
            for text, row, names in zip(texts, values, order, strict=True):
                named = [self.labels[i] for i in names]
                picked = [self.labels[i] for i, p in zip(names, row, strict=True) if p >= thresholds[i]][
                    :top_k
                ]
                results.append(
                    Prediction(text, picked[0] if picked else "", dict(zip(named, row, strict=True)), picked)
                )
            return results
        keep = len(self.labels) if top_k is None else max(1, min(top_k, len(self.labels)))
        results = []
        for text, row, names in zip(texts, values, order, strict=True):
            named = [self.labels[i] for i in names[:keep]]
            results.append(Prediction(text, named[0], dict(zip(named, row[:keep], strict=True))))
        return results

    def predict_stream(
        self, texts: Iterable[str], top_k: int | None = None, chunk: int = 2048
    ) -> Iterator[Prediction]:
        """Predict an unbounded stream in chunks: memory stays bounded, output order is input order."""
        return in_chunks(self.predict, texts, top_k, chunk)


def run_parallel(jobs: list[Any], threads: int) -> None:
    """Run the jobs on `threads` threads (job i on thread i % threads); the first exception raised in
    any job is raised here once all threads stop. onnxruntime releases the GIL inside session.run."""
    if threads <= 1 or len(jobs) <= 1:
        for job in jobs:
            job()
        return
    errors: list[BaseException] = []

    def work(mine: list[Any]) -> None:
        try:
            for job in mine:
                if errors:
                    return
                job()
        except BaseException as err:  # handed to the calling thread below
            errors.append(err)

    pool = [threading.Thread(target=work, args=(jobs[k::threads],)) for k in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    if errors:
        raise errors[0]


def score_file(
    predictor: OnnxPredictor,
    path: str | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
) -> dict[str, Any]:
    """rnnclf.inference.scoring.score_file without torch: the scores of a labelled file (default: the
    test set the export's JSON names), read by rnnclf.data's readers with the run's data settings
    (text_column/label_column override its columns, as in rnnclf.data.documents)."""
    from rnnclf.data.documents import labelled_to_score
    from rnnclf.data.labelsets import known_labels
    from rnnclf.reports.metrics import classification_report

    data = predictor.config.data
    if not (path or data.test):
        raise RnnclfError("no --data given and the export's JSON names no test data")
    examples = labelled_to_score(path or data.test, data, text_column, label_column, by_name=bool(path))
    if predictor.multi_label:
        gold = _label_matrix(examples.labels, predictor.labels, examples.source)  # (N, L) bool
        chosen = predictor.probabilities(examples.texts) >= predictor._np.array(predictor.thresholds)
        return multilabel_scores(gold, chosen, predictor.labels, predictor.thresholds)
    keep, gold = known_labels(examples.labels, predictor.labels, examples.source, "evaluation")
    predicted = predictor.probabilities([examples.texts[i] for i in keep]).argmax(axis=1).tolist()
    return classification_report(gold, predicted, predictor.labels)


def _label_matrix(label_sets: list, names: list[str], source: str) -> Any:
    """(N, L) bool: [i, l] when document i carries names[l]; unknown labels are left out, with a warning
    (rnnclf.data.labelsets.label_cells, as the torch path's matrix)."""
    import numpy as np

    from rnnclf.data.labelsets import label_cells

    rows, columns = label_cells(label_sets, names, source, "evaluation")
    gold = np.zeros((len(label_sets), len(names)), dtype=bool)
    gold[rows, columns] = True
    return gold


def multilabel_scores(gold: Any, chosen: Any, labels: list[str], thresholds: list[float]) -> dict[str, Any]:
    """rnnclf.reports.multilabel_metrics.multilabel_report on NumPy (N, L) bool arrays, the same keys and
    values (the tests compare the two)."""
    import numpy as np

    n, size = gold.shape
    tp = (gold & chosen).sum(axis=0).astype(np.float64)
    fp = (~gold & chosen).sum(axis=0).astype(np.float64)
    fn = (gold & ~chosen).sum(axis=0).astype(np.float64)
    tn = (~gold & ~chosen).sum(axis=0).astype(np.float64)

    def ratio(numerator: Any, denominator: Any) -> Any:
        return np.where(denominator > 0, numerator / np.maximum(denominator, 1e-12), 0.0)

    def fraction(numerator: float, denominator: float) -> float:
        return numerator / denominator if denominator else 0.0

    precision, recall, f1 = ratio(tp, tp + fp), ratio(tp, tp + fn), ratio(2 * tp, 2 * tp + fp + fn)
    seen = (tp + fp + fn) > 0
    both = (gold & chosen).sum(axis=1).astype(np.float64)
    sizes = (gold.sum(axis=1) + chosen.sum(axis=1)).astype(np.float64)
    per_document = np.where(sizes > 0, 2 * both / np.maximum(sizes, 1), 1.0)
    subset = float((gold == chosen).all(axis=1).mean()) if n else 0.0
    tp_all, fp_all, fn_all = float(tp.sum()), float(fp.sum()), float(fn.sum())
    table = {"tp": tp, "fp": fp, "fn": fn, "tn": tn}
    return {
        "n": n,
        "multi_label": True,
        "accuracy": subset,
        "subset_accuracy": subset,
        "micro_precision": fraction(tp_all, tp_all + fp_all),
        "micro_recall": fraction(tp_all, tp_all + fn_all),
        "micro_f1": fraction(2 * tp_all, 2 * tp_all + fp_all + fn_all),
        "macro_f1": float(f1[seen].mean()) if seen.any() else 0.0,
        "samples_f1": float(per_document.mean()) if n else 0.0,
        "hamming_loss": fraction(fp_all + fn_all, n * size),
        "label_cardinality": float(gold.sum(axis=1).mean()) if n else 0.0,
        "predicted_cardinality": float(chosen.sum(axis=1).mean()) if n else 0.0,
        "per_class": {
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(tp[i] + fn[i]),
                **{name: int(table[name][i]) for name in ("tp", "fp", "fn", "tn")},
            }
            for i, label in enumerate(labels)
        },
        "labels": list(labels),
        "thresholds": [float(t) for t in thresholds],
    }
