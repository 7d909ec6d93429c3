"""train(config, run_dir) -> metrics: one readable loop.

config -> device -> data (cached preprocessing) -> model -> optimizer/schedule -> epochs of
(bucketed batches -> step) -> evaluate -> metrics.jsonl + last.pt (+ best.pt) -> final metrics.json.

Everything a resumed run needs is in last.pt: weights, optimizer, schedule, scaler, RNG state, the
epoch and the batch within it, and the partial sums of the epoch. Each epoch's batch order comes from
a generator seeded by (seed, epoch), so a run resumed mid-epoch replays exactly the same batches.

Data parallel (`torchrun --nproc-per-node N -m rnnclf train CONFIG`): every process runs this same
loop. train.batch_size is the global batch: every process builds the same global batches from the seed
and takes its own part of each (batching.shard); DistributedDataParallel averages the gradients, and the
loss is scaled so that the step equals one process's step on the whole batch (up to float order).
Validation sums confusion matrices and losses over the processes. Only rank 0 writes files and reports.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rnnclf import checkpoint
from rnnclf.batching import Encoded, collate, padding_fraction, shard, training_batches
from rnnclf.config import Config, TrainConfig, dump, validate
from rnnclf.errors import RnnclfError
from rnnclf.linear import MIN_DOCUMENTS
from rnnclf.linear import fit as fit_linear
from rnnclf.metrics import classification_report
from rnnclf.model import Blend, Model, build_model, members_of, parameter_count
from rnnclf.ngrams import naive_bayes_weights
from rnnclf.predict import logits_for
from rnnclf.prepare import Prepared, prepare
from rnnclf.report import Reporter
from rnnclf.runtime import Processes, autocast, check_precision, data_parallel, prepare_cpu, seed_everything
from rnnclf.vectors import load_pretrained

# Settings that change the model's shape, its inputs or the replayed batch order and split: a
# checkpoint only resumes under the same ones.
SHAPE_KEYS = {
    "model": (
        "cell",
        "embedding_dim",
        "hidden_dim",
        "num_layers",
        "bidirectional",
        "pooling",
        "ngrams",
        "ngram_buckets",
        "ngram_dim",
        "ngram_weighting",
        "linear_ngrams",
        "members",
    ),
    "text": ("tokenizer", "min_freq", "max_tokens", "max_length", "truncate"),
    "data": ("valid_fraction",),
    "train": ("batch_size", "seed"),
}
RESUME_KEYS = ("optimizer", "scheduler", "scaler", "rng", "epoch", "step", "history", "best", "partial")


class Average:
    """Exponential moving average of the model's weights (Polyak averaging). The raw weights train; the
    average is what each epoch evaluates and what checkpoints give to eval and predict. Averaging the
    noisy last steps of SGD lands nearer the middle of the basin. The decay ramps up as
    min(decay, (1 + n) / (10 + n)) over the first updates so the average forgets the random start."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        # Parameters only: fitted buffers (the n-gram weights, the linear model) never train, and on
        # resume they are still empty here until the checkpoint fills them.
        self.weights = {name: value.detach().clone() for name, value in model.named_parameters()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        keep = min(self.decay, (1 + self.updates) / (10 + self.updates))
        current = model.state_dict()
        for name, average in self.weights.items():
            average.lerp_(current[name], 1.0 - keep)

    def state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The model's state dict with the averaged weights in place of its own."""
        return {**model.state_dict(), **{name: value.clone() for name, value in self.weights.items()}}

    def load(self, averaged: dict[str, torch.Tensor], updates: int) -> None:
        for name, average in self.weights.items():
            average.copy_(averaged[name])
        self.updates = updates


class StopFlag:
    """Set by a signal handler; the loop checks it between steps and stops cleanly."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def set(self, number: int) -> None:
        self.signal = number

    def __bool__(self) -> bool:
        return self.signal is not None


class _Silent(Reporter):
    """The reporter of processes other than rank 0: rank 0 speaks for the whole job."""

    def __init__(self) -> None:
        super().__init__(quiet=True)

    def summary(self, text: str) -> None:
        pass


class Interrupted(Exception):
    """Training stopped on a signal after writing last.pt."""

    def __init__(self, signal: int, run_dir: Path) -> None:
        super().__init__(f"interrupted by signal {signal}")
        self.signal = signal
        self.run_dir = run_dir


def make_optimizer(model: nn.Module, config: Config, fused: bool = True) -> torch.optim.Optimizer:
    """The configured optimizer over the trainable weights; fused: one kernel per step instead of a
    chain of foreach ops (on CPU, Adam's step over the IMDB model, 15M weights mostly the n-gram table,
    takes ~19 ms instead of ~80 ms: bench/optimizer_step.py)."""
    train = config.train
    parameters = [p for p in model.parameters() if p.requires_grad]
    if train.optimizer == "sgd":
        return torch.optim.SGD(
            parameters, lr=train.lr, momentum=0.9, weight_decay=train.weight_decay, fused=fused
        )
    if train.optimizer == "adamw":
        return torch.optim.AdamW(parameters, lr=train.lr, weight_decay=train.weight_decay, fused=fused)
    return torch.optim.Adam(parameters, lr=train.lr, weight_decay=train.weight_decay, fused=fused)


def make_schedule(
    optimizer: torch.optim.Optimizer, config: Config, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup over train.warmup of all steps, then constant, cosine or linear decay to 0."""
    warmup = int(config.train.warmup * total_steps)
    shape = config.train.schedule

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if shape == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        if shape == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0 - progress

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def class_weights(config: Config, prepared: Prepared) -> torch.Tensor | None:
    setting = config.train.class_weights
    classes = len(prepared.labels)
    if setting == "none":
        return None
    if setting == "auto":
        counts = torch.bincount(prepared.train.labels, minlength=classes).float()
        # n / (k * count): a balanced data set gets all ones; a class missing from train gets 0.
        return torch.where(counts > 0, counts.sum() / (classes * counts.clamp(min=1)), torch.zeros(()))
    if len(setting) != classes:
        raise RnnclfError(
            f"train.class_weights: {len(setting)} weights given for {classes} labels "
            f"({', '.join(prepared.labels)}; sorted by name)"
        )
    return torch.tensor(setting, dtype=torch.float32)


def evaluate(
    model: Model,
    data: Any,
    labels: list[str],
    device: torch.device,
    precision: str,
    weights: torch.Tensor | None = None,
    processes: Processes | None = None,
) -> dict[str, Any]:
    """Loss and the classification report on one encoded data set.

    With several processes each scores its own contiguous part; their confusion matrices and loss sums
    add up to the figures of one process scoring everything."""
    if processes is None or processes.size == 1:
        logits = logits_for(model, data, device, precision)  # (N, C)
        loss = nn.functional.cross_entropy(logits, data.labels, weight=weights).item()
        report = classification_report(data.labels.tolist(), logits.argmax(dim=-1).tolist(), labels)
        return {"loss": loss, **report}
    classes = len(labels)
    part = shard(torch.arange(len(data)), processes.rank, processes.size)
    mine = data.slice(int(part[0]), int(part[-1]) + 1) if len(part) else data.slice(0, 0)
    logits = logits_for(model, mine, device, precision) if len(mine) else torch.empty(0, classes)  # (n, C)
    gold, guess = mine.labels, logits.argmax(dim=-1)  # (n,), (n,)
    confusion = torch.bincount(gold * classes + guess, minlength=classes * classes)  # (C*C,) row: true
    losses = nn.functional.cross_entropy(logits, gold, weight=weights, reduction="none")  # (n,)
    weight = weights[gold].sum() if weights is not None else torch.tensor(float(len(gold)))
    sums = torch.cat([confusion.double(), torch.stack([losses.sum(), weight]).double()])
    totals = processes.sum(sums)  # the same on every process
    matrix = totals[:-2].long().view(classes, classes).tolist()
    report = classification_report(*_pairs(matrix), labels)
    return {"loss": float(totals[-2] / totals[-1]), **report}


def _pairs(matrix: list[list[int]]) -> tuple[list[int], list[int]]:
    """(gold, predicted) label lists with the counts of a confusion matrix."""
    gold, predicted = [], []
    for true, row in enumerate(matrix):
        for guess, count in enumerate(row):
            gold += [true] * count
            predicted += [guess] * count
    return gold, predicted


def train_step(
    model: Model,
    batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    settings: TrainConfig,
    device: torch.device,
    loss_weights: torch.Tensor | None = None,
    loss_scale: float | None = None,
    processes: int = 1,
) -> float:
    """One optimisation step on a collated batch (ids (B, T), lengths (B,), labels (B,)); returns the loss.

    One process (loss_scale None): the loss is the batch mean. One of `processes` data-parallel ones:
    the loss is this process's share of the global batch's mean, its documents' summed loss times
    loss_scale (1 / the global batch's total weight); DDP averages gradients over the processes, so
    the gradient is taken of the share times `processes`."""
    ids, lengths, targets = batch
    ids, targets = ids.to(device, non_blocking=True), targets.to(device, non_blocking=True)
    with autocast(settings.precision, device):
        logits = model(ids, lengths, per_member=True)  # (B, K, C): K = 1, or an ensemble's members
    members = logits.size(1)
    # Each member on its own loss: (B * K, C) rows against each document's label K times. The loss
    # reported is the members' mean; the objective is their sum, so each member gets the gradient it
    # would get alone.
    # The loss in fp32: log-softmax of bf16/fp16 logits loses precision for confident predictions.
    logits = logits.float().flatten(0, 1)
    targets = targets.repeat_interleave(members)
    if loss_scale is None:
        loss = nn.functional.cross_entropy(logits, targets, weight=loss_weights)
        objective = loss * members
    else:
        total = nn.functional.cross_entropy(logits, targets, weight=loss_weights, reduction="sum")
        loss = total * loss_scale / members
        objective = loss * processes * members
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(objective).backward()
    if settings.clip_grad_norm is not None:
        scaler.unscale_(optimizer)
        # Per member, so an ensemble's members are clipped as each would be alone.
        for member in members_of(getattr(model, "module", model)):  # DDP wraps the model in .module
            nn.utils.clip_grad_norm_(member.parameters(), settings.clip_grad_norm)
    scaler.step(optimizer)
    scaler.update()
    schedule.step()
    return loss.item()


def _my_part(
    data: Encoded, indices: torch.Tensor, processes: Processes, weights: torch.Tensor | None
) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor], float | None]:
    """This process's part of a global batch, collated, and its loss scale for train_step (None: one
    process, the whole batch)."""
    if processes.size == 1:
        return collate(data, indices), None
    mine = shard(indices, processes.rank, processes.size)
    if len(mine) == 0:
        # Fewer documents than processes: DDP needs every process in every step, so this one steps
        # on a stand-in document that counts for nothing.
        return collate(data, indices[:1]), 0.0
    # Every process knows the whole global batch, so its total weight needs no communication.
    total = float(weights[data.labels[indices]].sum()) if weights is not None else float(len(indices))
    return collate(data, mine), 1.0 / total if total else 0.0


def _prepare_once(config: Config, processes: Processes) -> Prepared:
    """prepare(config). With several processes the first one on each machine tokenizes (filling the
    cache) while the others wait, then they read the cache: a machine tokenizes the data once."""
    if processes.local_rank != 0:
        processes.barrier()
    prepared = prepare(config)
    if processes.local_rank == 0:
        processes.barrier()
    return prepared


def _fingerprint(prepared: Prepared) -> str:
    """sha256 of what every process must share: vocabulary, labels and every encoded document."""
    parts = [p for p in (prepared.train, prepared.valid, prepared.test) if p is not None]
    sizes = [[len(p), p.ids.numel()] for p in parts]
    digest = hashlib.sha256(json.dumps([prepared.vocab.get_itos(), prepared.labels, sizes]).encode())
    for tensor in (t for p in parts for t in (p.ids, p.offsets, p.labels)):
        tensor = tensor.contiguous()
        size = tensor.numel() * tensor.element_size()
        if size:  # the tensor's memory as a buffer, without a copy (no NumPy needed)
            digest.update((ctypes.c_char * size).from_address(tensor.data_ptr()))
    return digest.hexdigest()


def _check_same_data(prepared: Prepared, processes: Processes) -> str:
    """Compare the processes' fingerprints of the prepared data; a clear error when they differ."""
    test = len(prepared.test) if prepared.test is not None else 0
    mine = (
        _fingerprint(prepared),
        f"vocabulary {len(prepared.vocab)}, {len(prepared.labels)} labels, "
        f"{len(prepared.train)}/{len(prepared.valid)}/{test} train/valid/test documents",
    )
    everyone = processes.gather(mine)
    if len({digest for digest, _ in everyone}) > 1:
        listing = "; ".join(
            f"rank {rank}: {described}, sha256 {digest[:12]}"
            for rank, (digest, described) in enumerate(everyone)
        )
        raise RnnclfError(
            f"the prepared data differ between the processes ({listing}); every process must read the "
            "same data files with the same settings and rnnclf version (a stale preprocessing cache? "
            "set RNNCLF_CACHE to an empty folder)"
        )
    return mine[0]


def _improved(monitor: str, value: float, best: float | None) -> bool:
    if best is None:
        return True
    return value < best if monitor == "valid_loss" else value > best


def _check_resumable(state: dict[str, Any], config: Config, prepared: Prepared, path: Path) -> None:
    """A checkpoint resumes only under the same model shape, text settings, labels and vocabulary."""
    missing = [key for key in RESUME_KEYS if key not in state]
    if missing:
        raise RnnclfError(f"{path}: cannot resume, the checkpoint lacks {', '.join(missing)}")
    # Validating fills in keys added since the checkpoint was written, with their defaults.
    saved, now = validate(state["config"], str(path)).to_dict(), config.to_dict()
    differing = [
        f"{section}.{key} ({saved[section][key]!r} in the checkpoint, {now[section][key]!r} now)"
        for section, keys in SHAPE_KEYS.items()
        for key in keys
        if saved[section][key] != now[section][key]
    ]
    if differing:
        raise RnnclfError(f"{path}: cannot resume, the config differs in {'; '.join(differing)}")
    if list(state["labels"]) != prepared.labels or state["vocab"]["itos"] != prepared.vocab.get_itos():
        raise RnnclfError(f"{path}: cannot resume, the training data changed (labels or vocabulary differ)")


def train(
    config: Config,
    run_dir: str | Path,
    reporter: Reporter | None = None,
    resume: bool = False,
    stop: StopFlag | None = None,
) -> dict[str, Any]:
    """Train per `config`, writing checkpoints and metrics to run_dir; returns the final metrics.

    Under torchrun every process calls this; runtime.data_parallel joins them into one job."""
    prepare_cpu()
    reporter = reporter or Reporter(quiet=True)
    stop = stop if stop is not None else StopFlag()
    with data_parallel(config.train.device) as processes:
        if not processes.primary:
            reporter = _Silent()
        return _train(config, Path(run_dir), reporter, resume, stop, processes)


def _train(
    config: Config, run_dir: Path, reporter: Reporter, resume: bool, stop: StopFlag, processes: Processes
) -> dict[str, Any]:
    settings = config.train
    device = processes.device
    check_precision(settings.precision, device)
    seed_everything(settings.seed)

    started = time.perf_counter()
    prepared = _prepare_once(config, processes)
    reporter.message(
        f"data: {len(prepared.train)} train / {len(prepared.valid)} valid"
        + (f" / {len(prepared.test)} test" if prepared.test is not None else "")
        + f" documents, {len(prepared.labels)} labels, vocabulary {len(prepared.vocab)}"
        + f" ({'cached' if prepared.cached else 'built'} in {time.perf_counter() - started:.1f}s)"
    )
    if processes.size > 1:
        digest = _check_same_data(prepared, processes)
        reporter.message(
            f"data parallel: {processes.size} processes ({processes.backend}), global batch "
            f"{settings.batch_size} (~{settings.batch_size / processes.size:.0f} documents per process); "
            f"prepared data identical in every process (sha256 {digest[:12]})"
        )
    model = build_model(len(prepared.vocab), len(prepared.labels), config.model)
    members = members_of(model)
    if config.model.pretrained_vectors:
        embeddings = [member.embedding for member in members]
        found = load_pretrained(embeddings, prepared.vocab, config.model.pretrained_vectors)
        reporter.message(f"pretrained vectors: {found} of {len(prepared.vocab)} vocabulary words found")
    for member in members:
        member.embedding.weight.requires_grad_(not config.model.freeze_embeddings)
    if members[0].ngram_weights is not None and not resume:  # a resumed run reads them from last.pt
        ngram_weights = naive_bayes_weights(
            prepared.train,
            len(prepared.labels),
            config.model.ngrams,
            len(prepared.vocab),
            config.model.ngram_buckets,
        )
        for member in members:  # counted once, the same for every member
            member.ngram_weights.copy_(ngram_weights)
    if isinstance(model, Blend) and not resume:  # a resumed run reads the fitted model from last.pt
        fitted = fit_linear(model.linear, prepared.train, c=config.model.linear_c)
        reporter.message(
            f"linear model: {fitted.features:,} n-grams (1-{config.model.linear_ngrams}, each in >= "
            f"{MIN_DOCUMENTS} training documents), train accuracy {fitted.train_accuracy:.4f}, "
            f"{fitted.iterations} L-BFGS iterations, {fitted.seconds:.1f}s"
        )
    model.to(device)
    if processes.rank > 0:  # the same initial weights everywhere, but each process its own dropout
        seed_everything(settings.seed + processes.rank)
    reporter.message(
        f"model: {config.model.cell} x{config.model.num_layers}"
        + (f", {len(members)} members" if len(members) > 1 else "")
        + f", {parameter_count(model):,} "
        f"parameters, device {device}, precision {settings.precision}"
    )

    # Not fused under torch.distributed: there the torchrun resume test aborted a process ("terminate
    # called without an active exception") in 2 of 17 runs with fused steps, 0 of 16 without.
    optimizer = make_optimizer(model, config, fused=processes.size == 1)
    lengths = prepared.train.lengths
    steps_per_epoch = len(training_batches(lengths, settings.batch_size, torch.Generator().manual_seed(0)))
    schedule = make_schedule(optimizer, config, steps_per_epoch * settings.epochs)
    scaler = torch.amp.GradScaler(device.type, enabled=settings.precision == "fp16")
    weights = class_weights(config, prepared)
    loss_weights = weights.to(device) if weights is not None else None

    # Progress through training; all of it goes into last.pt.
    average = Average(model, settings.ema) if settings.ema is not None else None
    epoch, step, history, best = 0, 0, [], None
    partial = {"loss_sum": 0.0, "documents": 0, "words": 0, "seconds": 0.0}
    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"
    if resume:

        def load_last() -> tuple[Path, dict[str, Any]]:
            # A kill between writing best.pt and last.pt at an epoch's end leaves only best.pt, which
            # then holds the same state.
            source = last_path if last_path.exists() or not best_path.exists() else best_path
            return source, checkpoint.load(source)

        source, state = processes.from_primary(load_last)  # rank 0 reads it; every process gets it
        _check_resumable(state, config, prepared, source)
        # With averaging on, "model" holds the average and "training_model" the raw weights.
        model.load_state_dict(state.get("training_model", state["model"]))
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        processes.restore_random_state(state["rng"], settings.seed)
        epoch, step, history, best = state["epoch"], state["step"], state["history"], state["best"]
        partial = state["partial"]
        if average is not None:
            # A checkpoint saved without averaging starts the average from its weights.
            average.load(state["model"], state.get("average_updates", 0))
        reporter.message(f"resuming {source} at epoch {epoch + 1}, batch {step}")
    if processes.primary:
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_text(run_dir / "config.yaml", dump(config))
    net = processes.wrap(model)  # what the steps run; `model` is what checkpoints and evaluation use

    def snapshot() -> dict[str, Any]:
        averaged = {}
        if average is not None:
            averaged = {"training_model": model.state_dict(), "average_updates": average.updates}
        return {
            "config": config.to_dict(),
            "vocab": prepared.vocab.to_dict(),
            "labels": prepared.labels,
            "model": average.state_dict(model) if average is not None else model.state_dict(),
            **averaged,
            "optimizer": optimizer.state_dict(),
            "scheduler": schedule.state_dict(),
            "scaler": scaler.state_dict(),
            "rng": processes.random_state(),
            "epoch": epoch,
            "step": step,
            "history": history,
            "best": best,
            "partial": partial,
        }

    monitor, labels, world = settings.monitor, prepared.labels, processes.size
    while epoch < settings.epochs and not _patience_over(history, monitor, settings.patience):
        generator = torch.Generator().manual_seed(settings.seed * 1_000_003 + epoch)
        batches = training_batches(lengths, settings.batch_size, generator)  # the same in every process
        reporter.epoch_start(epoch + 1, settings.epochs, len(batches), step)
        net.train()
        tick = time.perf_counter()
        for indices in batches[step:]:
            batch, loss_scale = _my_part(prepared.train, indices, processes, weights)
            loss = train_step(
                net, batch, optimizer, schedule, scaler, settings, device, loss_weights, loss_scale, world
            )
            # The global batch's loss, and a stop signal if any process got one: all stop together.
            loss, signal = processes.agree(loss, stop.signal)
            if average is not None:
                average.update(model)
            step += 1
            partial["loss_sum"] += loss * len(indices)
            partial["documents"] += len(indices)
            partial["words"] += int(lengths[indices].sum())
            now = time.perf_counter()
            partial["seconds"] += now - tick
            tick = now
            reporter.step(
                step, partial["loss_sum"] / partial["documents"], partial["words"] / partial["seconds"]
            )
            if signal is not None:
                if step < len(batches):
                    state = snapshot()  # every process: it gathers their random states
                    if processes.primary:
                        checkpoint.save(state, last_path)
                    reporter.close()
                    raise Interrupted(signal, run_dir)
                break  # the epoch is complete: finish it normally, then stop below
        if average is None:
            valid = evaluate(model, prepared.valid, labels, device, settings.precision, weights, processes)
        else:
            training_weights = {name: value.clone() for name, value in model.state_dict().items()}
            model.load_state_dict(average.state_dict(model))
            valid = evaluate(model, prepared.valid, labels, device, settings.precision, weights, processes)
            model.load_state_dict(training_weights)
        row = {
            "epoch": epoch + 1,
            "train_loss": partial["loss_sum"] / max(1, partial["documents"]),
            "valid_loss": valid["loss"],
            "valid_accuracy": valid["accuracy"],
            "valid_macro_f1": valid["macro_f1"],
            "words_per_s": partial["words"] / max(partial["seconds"], 1e-9),
            "seconds": partial["seconds"],
            "lr": schedule.get_last_lr()[0],
            "padding": padding_fraction(lengths, batches),
        }
        improved = _improved(monitor, row[monitor], best)
        if improved:
            best = row[monitor]
        row["best"] = improved
        history.append(row)
        epoch, step = epoch + 1, 0
        partial = {"loss_sum": 0.0, "documents": 0, "words": 0, "seconds": 0.0}
        state = snapshot()
        if processes.primary:
            # metrics.jsonl is rewritten from history so a resumed run never duplicates a line.
            _write_text(run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in history))
            if improved:
                checkpoint.save(state, best_path)
            checkpoint.save(state, last_path)
        reporter.epoch_end(row)
        _, signal = processes.agree(0.0, stop.signal)
        if signal is not None:
            reporter.close()
            raise Interrupted(signal, run_dir)

    seconds = time.perf_counter() - started
    return _finish(config, run_dir, prepared, model, weights, history, seconds, reporter, processes)


def _patience_over(history: list[dict[str, Any]], monitor: str, patience: int | None) -> bool:
    """True when the last `patience` epochs brought no improvement of the monitored metric."""
    if patience is None or not history:
        return False
    best_epoch = max(i for i, row in enumerate(history) if row["best"])
    return len(history) - 1 - best_epoch >= patience


def _finish(
    config: Config,
    run_dir: Path,
    prepared: Prepared,
    model: Model,
    weights: torch.Tensor | None,
    history: list[dict[str, Any]],
    seconds: float,
    reporter: Reporter,
    processes: Processes,
) -> dict[str, Any]:
    """Score best.pt on valid (and test) and write metrics.json."""
    device = processes.device

    def load_best() -> dict[str, Any]:
        best = checkpoint.load(run_dir / "best.pt", map_location="cpu" if processes.size > 1 else device)
        return {"model": best["model"], "epoch": best["epoch"]}

    best = processes.from_primary(load_best)
    model.load_state_dict(best["model"])
    precision, labels = config.train.precision, prepared.labels
    metrics: dict[str, Any] = {
        "best_epoch": best["epoch"],
        "epochs_run": len(history),
        "train_seconds": seconds,
        "labels": labels,
        "valid": evaluate(model, prepared.valid, labels, device, precision, weights, processes),
    }
    if prepared.test is not None:
        metrics["test"] = evaluate(model, prepared.test, labels, device, precision, weights, processes)
    if processes.primary:
        _write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    line = f"best epoch {best['epoch']}: valid accuracy {metrics['valid']['accuracy']:.4f}"
    if "test" in metrics:
        line += (
            f", test accuracy {metrics['test']['accuracy']:.4f} macro-F1 {metrics['test']['macro_f1']:.4f}"
        )
    reporter.summary(f"{line} ({seconds:.0f}s); model: {run_dir / 'best.pt'}")
    return metrics


def _write_text(path: Path, text: str) -> None:
    """Write a small text file atomically (no half-written metrics after a crash)."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)
