"""train(config) -> metrics: set-up, one readable loop, finish.

    config -> run folder -> device -> data (cached preprocessing) -> model (+ add-ons) -> optimizer ->
    epochs of (bucketed batches -> step) -> validate -> metrics.jsonl + last.pt (+ best.pt) -> finish:
    best.pt scored on valid and test (each add-on part beside the whole) -> metrics.json

The pieces live beside this module: the step (rnnclf.training.optimization), last.pt and resuming
(rnnclf.training.resume), weight averaging (rnnclf.training.averaging), data-parallel processes
(rnnclf.training.distributed),
the run folder (rnnclf.runs.rundir), the final scores (rnnclf.training.outcome), the linear baseline
(rnnclf.training.baseline).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rnnclf.batching import padding_fraction, training_batches
from rnnclf.config import Config, dump, recipe
from rnnclf.errors import RnnclfError
from rnnclf.fetch import resolve_names
from rnnclf.inference.scoring import evaluate, headline
from rnnclf.models.addons import Blend, PerMember, build_model, members_of, parameter_count, recurrent_part
from rnnclf.models.addons.linear_fit import MIN_DOCUMENTS, fit
from rnnclf.prepare import Prepared
from rnnclf.pretraining.loop import LM_FILE, language_model_stage
from rnnclf.reporter import Reporter, Silent, counted
from rnnclf.runs import checkpoint, rundir
from rnnclf.runtime import check_precision, prepare_cpu, resolved_precision, seed_everything
from rnnclf.text.vectors import load_pretrained
from rnnclf.training.averaging import Average
from rnnclf.training.baseline import linear_baseline
from rnnclf.training.distributed import Processes, check_same_data, data_parallel, my_part, prepare_once
from rnnclf.training.initialise import encoder_vocab, init_encoders, overlap
from rnnclf.training.optimization import class_weights, make_optimizer, make_schedule, train_step
from rnnclf.training.outcome import finish, summary_lines
from rnnclf.training.resume import TrainingState, check_resumable, load_last
from rnnclf.training.sparse import bring_up_to_date, sparse_wanted, use_sparse_rows
from rnnclf.training.stopping import Interrupted, StopFlag

log = logging.getLogger("rnnclf")


def train(
    config: Config,
    run_dir: str | Path | None = None,
    reporter: Reporter | None = None,
    resume: bool = False,
    stop: StopFlag | None = None,
    name: str = "run",
) -> dict[str, Any]:
    """Train per `config`; returns the final metrics (also in RUN_DIR/metrics.json).

    run_dir: where the run goes (default: config.output.run_dir, else runs/<name>-<date>-<time>; with
    resume, the latest run). A new run that fails before saving a checkpoint leaves no run folder behind
    and runs/LATEST as it was. Under torchrun every process calls this; only rank 0 writes files."""
    prepare_cpu()
    resolve_names(config)  # bare corpus or vectors names (data.train: imdb) -> fetched files
    config.train.monitor = config.monitored()  # auto -> valid_accuracy, or valid_micro_f1 (multi-label)
    reporter = reporter or Reporter(quiet=True)
    stop = stop if stop is not None else StopFlag()
    folder = rundir.chosen(config, run_dir, resume, name)
    with data_parallel(config.train.device) as processes, rundir.opened(folder, resume, processes.primary):
        if not processes.primary:
            reporter = Silent()
        return _train(config, folder, reporter, resume, stop, processes)


def _pretrained(
    config: Config, run_dir: Path, reporter: Reporter, resume: bool, stop: StopFlag, processes: Processes
) -> None:
    """pretrain.epochs > 0: the language-model stage first, in RUN_DIR/pretrain; the classifier then
    starts from its lm.pt (model.init_from). Resuming, each stage continues where it stopped: a stopped
    language model from RUN_DIR/pretrain/last.pt, a finished one (metrics.json and lm.pt there) is
    kept as it is, and once the classifier has saved RUN_DIR/last.pt only the classifier continues."""
    if config.pretrain.epochs < 1:
        return
    if config.model.init_from:
        raise RnnclfError(
            "pretrain.epochs and model.init_from are both set: pretrain a new language model "
            "(pretrain.epochs) or start from an existing one (model.init_from), not both"
        )
    stage = run_dir / rundir.PRETRAIN
    # Rank 0 looks (the run folder need not be shared between machines) and tells the others.
    started, finished, stopped = processes.from_primary(
        lambda: (
            (run_dir / rundir.LAST).exists(),
            (stage / rundir.METRICS).exists() and (stage / LM_FILE).exists(),
            (stage / rundir.LAST).exists(),
        )
    )
    if resume and started:
        pass  # the classifier has started: last.pt brings its weights
    elif resume and finished:
        reporter.message(f"stage 1/2: the language model in {stage} is trained; keeping it")
        reporter.message("stage 2/2: the classifier, started from the language model")
    else:
        reporter.message(
            f"stage 1/2: language-model pretraining ({counted(config.pretrain.epochs, 'epoch')}) in {stage}"
        )
        language_model_stage(config, stage, reporter, resume and stopped, stop, processes)
        reporter.message("stage 2/2: the classifier, started from the language model")
    config.model.init_from = str((stage / LM_FILE).resolve())


def _data(config: Config, processes: Processes, reporter: Reporter) -> tuple[Prepared, dict | None]:
    """The prepared data (cached preprocessing), the same in every process (checked). A classifier
    started from a language model (model.init_from) keeps the language model's vocabulary, and is
    refused when its validation or test documents were among that model's texts (unless allowed):
    the second value is that check's record for metrics.json (None without model.init_from)."""
    started = time.perf_counter()
    vocab = None
    if config.model.init_from:
        vocab = processes.from_primary(lambda: encoder_vocab(config))
    prepared = prepare_once(config, processes, vocab=vocab)
    reporter.message(
        f"data: {len(prepared.train)} train / {len(prepared.valid)} valid"
        + (f" / {len(prepared.test)} test" if prepared.test is not None else "")
        + f" documents, {len(prepared.labels)} labels, vocabulary {len(prepared.vocab)}"
        + f" ({'cached' if prepared.cached else 'built'} in {time.perf_counter() - started:.1f}s)"
    )
    if processes.size > 1:
        digest = check_same_data(prepared, processes)
        batch = config.train.batch_size
        reporter.message(
            f"data parallel: {processes.size} processes ({processes.backend}), global batch "
            f"{batch} (~{batch / processes.size:.0f} documents per process); "
            f"prepared data identical in every process (sha256 {digest[:12]})"
        )
    found = processes.from_primary(lambda: overlap(config)) if config.model.init_from else None
    if found and found["checked"] and (found.get("valid") or found.get("test")):  # allowed, else refused
        log.warning(
            "model.init_from_overlap: allow: %d validation and %d test documents were in the language "
            "model's training text; scores on them are biased (recorded in metrics.json)",
            found.get("valid", 0),
            found.get("test", 0),
        )
    return prepared, found


def _baseline(config: Config, prepared: Prepared, processes: Processes, reporter: Reporter) -> dict | None:
    """The linear baseline's scores (train.baseline), fitted by one process; None when off."""
    if not config.train.baseline:
        return None
    baseline = processes.from_primary(lambda: linear_baseline(prepared))
    if "valid" in baseline:
        name, value = headline(baseline["valid"])
        reporter.message(
            f"linear baseline ({baseline['model']}; reported, not saved): valid {name} "
            f"{value:.4f} ({baseline['seconds']:.1f}s)"
        )
    return baseline


def _set_up(
    config: Config, prepared: Prepared, processes: Processes, reporter: Reporter, resume: bool
) -> nn.Module:  # resume: last.pt will bring the weights
    """The model with its add-ons (a linear model fitted now, unless last.pt will bring it)."""
    model = build_model(len(prepared.vocab), len(prepared.labels), config)
    members = members_of(model)
    if config.model.init_from:
        if not resume:  # resuming: last.pt holds the weights trained from it
            init_encoders(members, config)
            reporter.message(f"initialised from the language model {config.model.init_from}")
    elif config.model.pretrained_vectors:
        found = load_pretrained(
            [m.embedding for m in members], prepared.vocab, config.model.pretrained_vectors
        )
        reporter.message(f"pretrained vectors: {found} of {len(prepared.vocab)} vocabulary words found")
    for member in members:
        member.embedding.weight.requires_grad_(not config.model.freeze_embeddings)
    sparse = sparse_wanted(config.train, len(prepared.vocab) * config.model.embedding_dim, processes)
    if sparse:
        if processes.size > 1:  # DDP all-reduces dense gradients; auto is off there
            raise RnnclfError("train.sparse_embedding trains in one process; set it to auto under torchrun")
        use_sparse_rows(member.embedding for member in members)
    if isinstance(model, Blend) and not resume:
        fitted = fit(model.linear, prepared.train, c=config.linear.c)
        reporter.message(
            f"linear model (add-on): {fitted.features:,} n-grams (1-{config.linear.ngrams}, each in >= "
            f"{MIN_DOCUMENTS} training documents), train accuracy {fitted.train_accuracy:.4f}, "
            f"{fitted.iterations} L-BFGS iterations, {fitted.seconds:.1f}s"
        )
    model.to(processes.device)
    reporter.message(
        f"model: {config.model.cell} x{config.model.num_layers}"
        + (f", ensemble of {len(members)}" if len(members) > 1 else "")
        + (f", linear 1-{config.linear.ngrams}-grams blended" if isinstance(model, Blend) else "")
        + f", {parameter_count(model):,} parameters, device {processes.device}, "
        f"precision {_precision_shown(config.train.precision, processes.device)}"
        + (", sparse word-vector steps" if sparse else "")
    )
    return model


def _precision_shown(precision: str, device: torch.device) -> str:
    """'bf16', or for auto what it chose here: 'fp32 (auto)'."""
    return f"{resolved_precision(precision, device)} (auto)" if precision == "auto" else precision


def _state(
    config: Config, prepared: Prepared, model: nn.Module, processes: Processes, run_dir: Path, resume: bool
) -> TrainingState:
    """Optimizer, schedule, scaler and weight average around the model; with resume, as last.pt left them."""
    settings = config.train
    # Not fused under torch.distributed: there the torchrun resume test aborted a process ("terminate
    # called without an active exception") in 2 of 17 runs with fused steps, 0 of 16 without.
    optimizer = make_optimizer(model, config, fused=processes.size == 1)
    first = training_batches(prepared.train.lengths, settings.batch_size, torch.Generator().manual_seed(0))
    state = TrainingState(
        config,
        prepared,
        model,
        optimizer,
        make_schedule(optimizer, config, len(first) * settings.epochs),
        torch.amp.GradScaler(processes.device.type, enabled=settings.precision == "fp16"),
        processes,
        Average(model, settings.ema) if settings.ema is not None else None,
    )
    if resume:
        source, saved = processes.from_primary(lambda: load_last(run_dir))  # rank 0 reads, all get it
        check_resumable(saved, config, prepared, source)
        state.restore(saved)
    return state


def _train(
    config: Config, run_dir: Path, reporter: Reporter, resume: bool, stop: StopFlag, processes: Processes
) -> dict[str, Any]:
    # --- set-up: data, baseline, model, optimizer, and where a resumed run left off
    settings, device, started = config.train, processes.device, time.perf_counter()
    check_precision(settings.precision, device)
    seed_everything(settings.seed)
    if processes.primary and not resume:  # first, so that the run is listed from its first stage on
        rundir.write_config(run_dir, dump(recipe(config)))
    _pretrained(config, run_dir, reporter, resume, stop, processes)
    # A two-stage run resumed before its classifier saved anything starts the classifier afresh.
    if resume and config.pretrain.epochs > 0:
        resume = processes.from_primary(lambda: (run_dir / rundir.LAST).exists())
    seed_everything(settings.seed)
    prepared, found = _data(config, processes, reporter)
    baseline = _baseline(config, prepared, processes, reporter)
    model = _set_up(config, prepared, processes, reporter, resume)
    if processes.rank > 0:  # the same initial weights everywhere, but each process its own dropout
        seed_everything(settings.seed + processes.rank)
    state = _state(config, prepared, model, processes, run_dir, resume)
    progress, lengths, labels = state.progress, prepared.train.lengths, prepared.labels
    if resume:
        reporter.message(
            f"resuming {run_dir / rundir.LAST} at epoch {progress.epoch + 1}, batch {progress.step}"
        )
    if processes.primary:
        rundir.write_config(run_dir, dump(recipe(config)))
    weights = class_weights(config, prepared)
    loss_weights = weights.to(device) if weights is not None else None
    net = processes.wrap(PerMember(model))  # what steps run: each member's logits (B, K, C)
    members, recurrent = members_of(model), recurrent_part(model)

    # --- the loop: epochs of steps, each epoch validated and saved
    while progress.epoch < settings.epochs and not progress.patience_over(settings.patience):
        generator = torch.Generator().manual_seed(settings.seed * 1_000_003 + progress.epoch)
        batches = training_batches(lengths, settings.batch_size, generator)  # the same in every process
        reporter.epoch_start(progress.epoch + 1, settings.epochs, len(batches), progress.step)
        net.train()
        tick = time.perf_counter()
        for indices in batches[progress.step :]:
            batch, loss_scale = my_part(prepared.train, indices, processes, weights)
            loss = train_step(
                net, members, batch, state.optimizer, state.schedule, state.scaler, settings, device,
                loss_weights, loss_scale, processes.size,
            )  # fmt: skip
            # The global batch's loss, and a stop signal if any process got one: all stop together.
            loss, signal = processes.agree(loss, stop.signal)
            if state.average is not None:
                state.average.update(model)
            now = time.perf_counter()
            progress.add_step(loss, len(indices), int(lengths[indices].sum()), now - tick)
            tick = now
            reporter.step(progress.step, progress.loss, progress.words_per_s)
            if signal is not None and progress.step < len(batches):
                snapshot = state.snapshot()  # every process: it gathers their random states
                if processes.primary:
                    checkpoint.save(snapshot, run_dir / rundir.LAST)
                reporter.close()
                raise Interrupted(signal, run_dir)
        # Each epoch validates the recurrent model alone (a blend's share is chosen at the end).
        bring_up_to_date(state.optimizer)  # sparse word vectors: every row as dense Adam has it
        raw = state.average.swapped_in(model) if state.average is not None else None
        valid = evaluate(  # multi-label: at thresholds chosen on this pass (train.thresholds)
            recurrent,
            prepared.valid,
            labels,
            device,
            settings.precision,
            weights,
            processes,
            settings.thresholds,
        )
        if raw is not None:
            model.load_state_dict(raw)
        lr, padding = state.schedule.get_last_lr()[0], padding_fraction(lengths, batches)
        row = progress.end_epoch(valid, lr, padding, settings.monitor)
        snapshot = state.snapshot()
        if processes.primary:
            rundir.write_history(run_dir, progress.history)
            checkpoint.save(snapshot, run_dir / rundir.LAST)  # last.pt first: see resume.load_last
            if row["best"]:
                checkpoint.save(checkpoint.model_only(snapshot), run_dir / rundir.BEST)
        reporter.epoch_end(row)
        _, signal = processes.agree(0.0, stop.signal)
        if signal is not None:
            reporter.close()
            raise Interrupted(signal, run_dir)

    # --- finish: best.pt scored, each add-on part beside the whole, metrics.json
    stop.finishing = True
    metrics = finish(model, prepared, run_dir, settings, processes, weights)
    metrics.update(epochs_run=len(progress.history), train_seconds=time.perf_counter() - started)
    if baseline is not None:
        metrics["baseline"] = baseline
    if found is not None:
        metrics["init_from_overlap"] = found
    if processes.primary:
        rundir.write_metrics(run_dir, metrics)
        if not config.output.keep_last:  # finished: best.pt is the model; last.pt only resumed it
            (run_dir / rundir.LAST).unlink(missing_ok=True)
    for line in summary_lines(metrics, config.model.cell, run_dir / rundir.BEST):
        reporter.summary(line)
    return metrics
