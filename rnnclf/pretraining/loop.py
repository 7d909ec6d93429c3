"""Language-model pretraining: pretrain(config) -> metrics, and the stage `rnnclf train` runs first when
pretrain.epochs > 0.

    training split's texts (+ data.unlabeled) -> vocabulary (their words) -> a few thousand words held
    out for perplexity -> epochs of length-bucketed document batches -> LanguageModel (sampled softmax)
    -> metrics.jsonl (train/valid perplexity) + last.pt (resume) + lm.pt (best valid perplexity)

Only the training split is read: the classifier's validation documents (data.valid, or the share split
off train with the same seed) and test documents never reach the language model, and data.unlabeled may
not name their files. lm.pt records a fingerprint of every document read (rnnclf.text.fingerprints), so
a classifier started from it (model.init_from) can check that its own validation and test documents were
not among them. The classifier then starts from lm.pt and keeps its vocabulary.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from rnnclf.batching import Encoded, collate, evaluation_batches, ranges, shard, training_batches
from rnnclf.config import Config, dump, recipe
from rnnclf.data.unlabeled import read_texts
from rnnclf.errors import RnnclfError
from rnnclf.fetch import resolve_names
from rnnclf.models.language_model import LanguageModel
from rnnclf.reporter import Reporter, Silent, counted
from rnnclf.runs import checkpoint, rundir
from rnnclf.runtime import autocast, check_precision, prepare_cpu, seed_everything
from rnnclf.text.encoding import count_tokens, encode_part, tokenize_part
from rnnclf.text.fingerprints import compact, fingerprints
from rnnclf.text.vectors import load_pretrained
from rnnclf.text.vocab import Vocab
from rnnclf.training.distributed import Processes, data_parallel, prepare_once
from rnnclf.training.optimization import schedule_of
from rnnclf.training.stopping import Interrupted, StopFlag

LM_FILE = "lm.pt"
# Words of pretraining text held out to measure perplexity (whole documents, drawn at random): the full
# softmax over the vocabulary costs ~2 * H * V per word, so more would slow every epoch's end.
VALID_WORDS = 20_000
WARMUP = 0.02  # share of the steps warming up, then linear decay to 0 (ULMFiT's slanted triangle)
# `rnnclf pretrain` with pretrain.epochs = 0 (the default, which means "no stage" to rnnclf train).
DEFAULT_EPOCHS = 3


@dataclass
class Corpus:
    """The language model's documents, numericalized with its vocabulary."""

    vocab: Vocab
    train: Encoded
    valid: Encoded
    unlabeled: int  # documents from data.unlabeled among train + valid
    fingerprints: torch.Tensor  # (D,) int64, sorted: every document read (rnnclf.text.fingerprints)


@dataclass
class LMProgress:
    epoch: int = 0
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best: float | None = None  # best valid perplexity
    partial: dict[str, float] = field(
        default_factory=lambda: {"nll": 0.0, "predicted": 0, "tokens": 0, "seconds": 0.0}
    )

    def to_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "step": self.step,
            "history": self.history,
            "best": self.best,
            "partial": self.partial,
        }


def lm_path(value: str | Path) -> Path:
    """model.init_from: lm.pt itself, a `rnnclf pretrain` run folder, or a train run that pretrained."""
    path = Path(value)
    if path.is_dir():
        for candidate in (path / LM_FILE, path / "pretrain" / LM_FILE):
            if candidate.is_file():
                return candidate
        raise RnnclfError(
            f"model.init_from: {path}: no {LM_FILE} in this folder (nor in {path / 'pretrain'})"
        )
    return path


def subset(data: Encoded, indices: torch.Tensor) -> Encoded:
    """Documents `indices` (in that order) as their own data set."""
    lengths = data.lengths[indices]  # (n,)
    return Encoded.from_lengths(
        data.ids[ranges(data.offsets[indices], lengths)], lengths, data.labels[indices]
    )


def windows(data: Encoded, size: int) -> Encoded:
    """Every document cut into consecutive pieces of `size` words (the last one shorter; pieces of one
    word, which predict nothing, dropped). A step over B windows of ~70 words costs about what a step
    over B documents of ~70 words would, so an epoch makes (mean length / size) times more updates at
    the same speed: with whole IMDB reviews (~230 words, batch 128) an epoch was 176 steps.

        lengths [5, 2], size 2  ->  windows [2, 2, (1 dropped), 2]"""
    if size < 1:
        return data
    lengths = data.lengths  # (N,)
    pieces = (lengths + size - 1) // size  # (N,) windows per document
    document = torch.repeat_interleave(torch.arange(lengths.numel()), pieces)  # (W,)
    number = ranges(torch.zeros_like(pieces), pieces)  # (W,) place of each window in its document
    starts = data.offsets[document] + number * size  # (W,)
    sizes = torch.minimum(lengths[document] - number * size, torch.tensor(size))  # (W,)
    keep = sizes > 1
    starts, sizes = starts[keep], sizes[keep]
    ids = data.ids[ranges(starts, sizes)]
    return Encoded.from_lengths(ids, sizes, torch.zeros(sizes.numel(), dtype=torch.int64))


def joined(first: Encoded, second: Encoded) -> Encoded:
    return Encoded.from_lengths(
        torch.cat([first.ids, second.ids]),
        torch.cat([first.lengths, second.lengths]),
        torch.cat([first.labels, second.labels]),
    )


def check_unlabeled(config: Config) -> None:
    """data.unlabeled must not name the files the classifier validates or tests on (nor, with data.valid
    null, the training file whose share is split off for validation), unless the user allows it."""
    data = config.data
    paths = [data.unlabeled] if isinstance(data.unlabeled, str) else list(data.unlabeled or [])
    if config.model.init_from_overlap == "allow":
        return
    roles = [(data.valid, "data.valid", "its documents are"), (data.test, "data.test", "its documents are")]
    if data.valid is None:
        roles.append((data.train, "data.train", "its validation share (data.valid_fraction) is"))
    for path in paths:
        for other, key, what in roles:
            if other is not None and _same_file(path, other):
                raise RnnclfError(
                    f"data.unlabeled: {path} is {key}: {what} what the classifier is judged on and would "
                    "reach the language model; name other texts, or set model.init_from_overlap: allow"
                )


def _same_file(first: str, second: str) -> bool:
    try:
        return Path(first).resolve() == Path(second).resolve() or Path(first).samefile(second)
    except OSError:
        return False


def build_corpus(config: Config, processes: Processes) -> Corpus:
    """The training split's documents and data.unlabeled's, with a vocabulary counted over both."""
    from rnnclf.prepare import split_texts

    check_unlabeled(config)
    unlabeled = config.data.unlabeled
    paths = [unlabeled] if isinstance(unlabeled, str) else list(unlabeled or [])
    texts = [text for path in paths for text in read_texts(path, config.data.text_column)]
    part = tokenize_part(texts, config.text) if texts else None
    extra = count_tokens(part) if part is not None else Counter()
    prepared = prepare_once(config, processes, extra_counts=extra)
    train = prepared.train  # its labels (a class each, or a multi-label matrix) play no part here
    documents = Encoded(train.ids, train.offsets, torch.zeros(len(train), dtype=torch.int64))
    if part is not None:
        documents = joined(documents, encode_part(part, [0] * len(texts), prepared.vocab))
    # Held out: documents in a seeded random order until VALID_WORDS words or a tenth of all words,
    # whichever is less (at least one document, never all).
    order = torch.randperm(len(documents), generator=torch.Generator().manual_seed(config.train.seed))
    words = torch.cumsum(documents.lengths[order], dim=0)
    budget = min(VALID_WORDS, 0.1 * float(words[-1]))
    held = min(max(1, int((words <= budget).sum())), len(documents) - 1)
    if held < 1:
        raise RnnclfError(f"{config.data.train}: a language model needs at least 2 training documents")
    # Fingerprints of every document read: the training split as prepare() made it, and the unlabeled.
    read = processes.from_primary(lambda: compact(fingerprints([*split_texts(config)["train"], *texts])))
    return Corpus(
        prepared.vocab, subset(documents, order[held:]), subset(documents, order[:held]), len(texts), read
    )


def predicted(lengths: torch.Tensor, directions: int) -> int:
    """Words a batch asks the language model to predict: all but one per document and direction."""
    return int((lengths - 1).clamp(min=0).sum()) * directions


def perplexity(
    model: LanguageModel, data: Encoded, device: torch.device, precision: str
) -> tuple[float, float]:
    """(mean negative log-likelihood per predicted word, perplexity) with the full softmax."""
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for indices in evaluation_batches(data.lengths, 32):
            ids, lengths, _ = collate(data, indices)
            with autocast(precision, device):
                nll, n = model(ids.to(device), lengths)
            total, count = total + float(nll), count + int(n)
    model.train()
    loss = total / max(count, 1)
    return loss, math.exp(min(loss, 50.0))


def pretrain(
    config: Config,
    run_dir: str | Path | None = None,
    reporter: Reporter | None = None,
    resume: bool = False,
    stop: Any = None,
    name: str = "pretrain",
) -> dict[str, Any]:
    """`rnnclf pretrain`: the language-model stage alone, into its own run folder (lm.pt inside)."""
    prepare_cpu()
    resolve_names(config)
    reporter = reporter or Reporter(quiet=True)
    if config.pretrain.epochs < 1:  # 0 means "no stage" to rnnclf train; here it means the default
        config.pretrain.epochs = DEFAULT_EPOCHS
        reporter.message(
            f"pretrain.epochs is 0 (no language-model stage in rnnclf train): rnnclf pretrain trains "
            f"{counted(DEFAULT_EPOCHS, 'epoch')} (choose with --set pretrain.epochs=N)"
        )
    folder = rundir.chosen(config, run_dir, resume, name)
    if resume and not (folder / rundir.LAST).exists() and rundir.stage(folder) == "language model finished":
        raise RnnclfError(
            f"{folder}: this language model has finished, nothing to resume; train a classifier from it "
            f"with rnnclf train CONFIG --set model.init_from={folder}"
        )
    with data_parallel(config.train.device) as processes, rundir.opened(folder, resume, processes.primary):
        if not processes.primary:
            reporter = Silent()
        return language_model_stage(
            config, folder, reporter, resume, stop if stop is not None else StopFlag(), processes
        )


def language_model_stage(
    config: Config, folder: Path, reporter: Reporter, resume: bool, stop: Any, processes: Processes
) -> dict[str, Any]:
    """Train the language model into `folder` (lm.pt, last.pt, metrics.jsonl, metrics.json); with
    resume, continue from folder/last.pt. Returns the stage's metrics."""
    settings, device, started = config.pretrain, processes.device, time.perf_counter()
    # TensorBoard (a wrapping reporter) logs the classifier's epochs; this stage's are in its metrics.jsonl.
    reporter = getattr(reporter, "inner", reporter)
    precision = config.train.precision
    check_precision(precision, device)
    seed_everything(config.train.seed)
    corpus = build_corpus(config, processes)
    reporter.message(
        f"pretraining texts: {len(corpus.train) + len(corpus.valid)} documents"
        + (f" ({corpus.unlabeled} unlabeled)" if corpus.unlabeled else "")
        + f", {int(corpus.train.lengths.sum()):,} words; {len(corpus.valid)} held out for perplexity "
        f"({int(corpus.valid.lengths.sum()):,} words); vocabulary {len(corpus.vocab)}"
    )
    model = LanguageModel(len(corpus.vocab), config.model)
    # Drawing at least as many words as the vocabulary holds costs more than scoring them all.
    samples = settings.samples if settings.samples < len(corpus.vocab) else 0
    model.set_unigram(torch.bincount(corpus.train.ids.long(), minlength=len(corpus.vocab)))
    if config.model.pretrained_vectors:
        found = load_pretrained([model.embedding], corpus.vocab, config.model.pretrained_vectors)
        reporter.message(f"pretrained vectors: {found} of {len(corpus.vocab)} vocabulary words found")
    model.to(device)
    train = windows(corpus.train, settings.window)
    lengths = train.lengths
    per_epoch = len(training_batches(lengths, settings.batch_size, torch.Generator().manual_seed(0)))
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr, fused=processes.size == 1)
    schedule = schedule_of(optimizer, WARMUP, "linear", per_epoch * settings.epochs)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    progress = LMProgress()
    last = folder / rundir.LAST
    if resume and last.exists():
        saved = processes.from_primary(lambda: checkpoint.load(last, kind=checkpoint.LANGUAGE_MODEL))
        if saved["vocab"]["itos"] != corpus.vocab.get_itos():
            raise RnnclfError(
                f"{last}: cannot resume, the pretraining texts changed (the vocabulary differs)"
            )
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["scheduler"])
        scaler.load_state_dict(saved["scaler"])
        processes.restore_random_state(saved["rng"], config.train.seed)
        progress = LMProgress(
            saved["epoch"], saved["step"], saved["history"], saved["best"], saved["partial"]
        )
        reporter.message(f"resuming {last} at epoch {progress.epoch + 1}, batch {progress.step}")
    elif processes.rank > 0:
        seed_everything(config.train.seed + processes.rank)
    if processes.primary:
        folder.mkdir(parents=True, exist_ok=True)
        rundir.write_config(folder, dump(recipe(config)))
    net = processes.wrap(model)

    def snapshot() -> dict[str, Any]:
        return {
            "config": config.to_dict(), "vocab": corpus.vocab.to_dict(), "labels": [],
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": schedule.state_dict(), "scaler": scaler.state_dict(),
            "rng": processes.random_state(), "fingerprints": corpus.fingerprints, **progress.to_dict(),
        }  # fmt: skip

    reporter.message(
        f"language model: {config.model.cell} x{config.model.num_layers}"
        + (" (forward and backward)" if model.directions == 2 else "")
        + f", {sum(p.numel() for p in model.parameters()):,} parameters, "
        + (f"sampled softmax ({samples} words a step)" if samples else "full softmax")
        + (" (pretrain.samples >= vocabulary size)" if samples != settings.samples else "")
    )
    unit, reporter.speed_unit = reporter.speed_unit, "token-directions/s"
    while progress.epoch < settings.epochs:
        generator = torch.Generator().manual_seed(config.train.seed * 1_000_003 + progress.epoch)
        batches = training_batches(lengths, settings.batch_size, generator)
        reporter.epoch_start(progress.epoch + 1, settings.epochs, len(batches), progress.step)
        tick = time.perf_counter()
        for indices in batches[progress.step :]:
            mine = shard(indices, processes.rank, processes.size) if processes.size > 1 else indices
            everyone = predicted(lengths[indices], model.directions)  # the global batch's words
            ids, batch_lengths, _ = collate(train, mine if len(mine) else indices[:1])
            with autocast(precision, device):
                nll, _ = net(ids.to(device), batch_lengths, samples)
            share = nll * (processes.size / max(everyone, 1)) if len(mine) else nll * 0.0
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(share).backward()
            scaler.unscale_(optimizer)
            if config.train.clip_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.train.clip_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            schedule.step()
            loss, signal = processes.agree(float(share.detach()) / processes.size, stop.signal)
            now = time.perf_counter()
            part = progress.partial
            progress.step += 1
            part["nll"] += loss * everyone
            part["predicted"] += everyone
            part["tokens"] += int(lengths[indices].sum()) * model.directions
            part["seconds"] += now - tick
            tick = now
            reporter.step(
                progress.step, part["nll"] / max(part["predicted"], 1), part["tokens"] / part["seconds"]
            )
            if signal is not None and progress.step < len(batches):
                state = snapshot()
                if processes.primary:
                    checkpoint.save(state, last, kind=checkpoint.LANGUAGE_MODEL)
                reporter.close()
                raise Interrupted(signal, folder)
        valid_loss, valid_ppl = perplexity(model, corpus.valid, device, precision)
        part = progress.partial
        train_loss = part["nll"] / max(part["predicted"], 1)
        improved = progress.best is None or valid_ppl < progress.best
        row = {
            "epoch": progress.epoch + 1,
            "train_loss": train_loss,
            # With a sampled softmax the training loss is that of the sampled problem: lower than the
            # full softmax's, so train_perplexity is an estimate; valid_perplexity is exact.
            "train_perplexity": math.exp(min(train_loss, 50.0)),
            "valid_loss": valid_loss,
            "valid_perplexity": valid_ppl,
            "token_directions_per_s": part["tokens"] / max(part["seconds"], 1e-9),
            "seconds": part["seconds"],
            "lr": schedule.get_last_lr()[0],
            "best": improved,
        }
        progress.history.append(row)
        progress.best = valid_ppl if improved else progress.best
        progress.epoch, progress.step = progress.epoch + 1, 0
        progress.partial = LMProgress().partial
        state = snapshot()
        if processes.primary:
            rundir.write_history(folder, progress.history)
            checkpoint.save(state, last, kind=checkpoint.LANGUAGE_MODEL)
            if improved:
                best = {key: state[key] for key in ("config", "vocab", "labels", "model", "fingerprints")}
                best.update(epoch=progress.epoch, valid_perplexity=valid_ppl)
                checkpoint.save(best, folder / LM_FILE, kind=checkpoint.LANGUAGE_MODEL)
        reporter.epoch_end(row)
        _, signal = processes.agree(0.0, stop.signal)
        if signal is not None and progress.epoch < settings.epochs:
            reporter.close()
            raise Interrupted(signal, folder)
    reporter.speed_unit = unit
    history = progress.history
    metrics = {
        "kind": "language_model",
        "epochs_run": len(history),
        "best_valid_perplexity": progress.best,
        "token_directions_per_s": sum(r["token_directions_per_s"] * r["seconds"] for r in history)
        / max(sum(r["seconds"] for r in history), 1e-9),
        "train_seconds": time.perf_counter() - started,
        "documents": len(corpus.train) + len(corpus.valid),
        "unlabeled_documents": corpus.unlabeled,
        "softmax": f"sampled ({samples} words a step)" if samples else "full",
    }
    if processes.primary:
        rundir.write_metrics(folder, metrics)
        if not config.output.keep_last:  # finished: lm.pt is what is used; last.pt only resumed it
            last.unlink(missing_ok=True)
    reporter.summary(
        f"language model: best valid perplexity {progress.best:.1f} ({folder / LM_FILE}), "
        f"{metrics['token_directions_per_s']:,.0f} token-directions/s"
    )
    return metrics
