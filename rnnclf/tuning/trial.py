"""One trial of `rnnclf tune`: the sampled values applied to the config, then one ordinary training run
(rnnclf.training.loop.train, the same code path as `rnnclf train`; no second loop).

The loop is driven only through what it already takes: a Reporter whose epoch_end reports the epoch's
validation score to Optuna, and a stop flag. When the trial should stop (pruned, the budget spent, a
loss that is not finite), epoch_end sets the flag with a pseudo signal number below zero; the loop then
stops at that epoch boundary, after saving the epoch, exactly as it does on Ctrl-C.
"""

from __future__ import annotations

import math
import os
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rnnclf.config import Config
from rnnclf.reporter import Reporter
from rnnclf.schema import lower_is_better
from rnnclf.training.stopping import Interrupted, StopFlag
from rnnclf.tuning.folds import fold_config
from rnnclf.tuning.space import Dimension, applied, suggest

# Pseudo signal numbers: why a trial was stopped, at an epoch boundary or a step (real signals are > 0).
PRUNED, OVER_BUDGET, NOT_FINITE, CANNOT_FINISH = -1, -2, -3, -4
SCHEDULE = "schedule_epochs"  # a trial's user attribute: its train.epochs (the pruner judges by share)
FITTED = "fitted_from"  # a trial's user attribute: the trial it runs again with fewer epochs (see study.py)
AGAIN = "again_from"  # a trial's user attribute: the interrupted trial it runs again (see study.py)
INTERRUPTED = "interrupted by signal"  # the reason of a trial that Ctrl-C or SIGTERM stopped
STATES = ("complete", "pruned", "failed", "incomplete")
PROBE_STEPS = 10  # a trial's first epoch is timed from this step, for at least as many more steps


@dataclass
class TrialRecord:
    """What one trial did, as trials.csv and tune.json show it."""

    number: int
    values: dict[str, Any]
    state: str = "running"  # complete, pruned, failed, incomplete
    value: float | None = None  # the best epoch's validation score (complete trials: best.pt's)
    scores: list[float] = field(default_factory=list)  # validation score per epoch
    epoch_seconds: list[float] = field(default_factory=list)
    fold_values: list[float] = field(default_factory=list)  # tune.folds > 1: each fold's score
    reason: str = ""
    # Stopped as unable to finish in the time left: one epoch's seconds at its measured rate (one
    # training's epoch; with tune.folds a trial trains once per fold), so the study can run it again
    # with the epochs that fit. fitted_from: the trial this one runs again with fewer epochs.
    epoch_cost: float | None = None
    fitted_from: int | None = None
    # The epochs that fitted when a trial was stopped only because it could run again shorter (nothing
    # complete, nothing waiting): the study queues it with at least these, however late it asks.
    fit_epochs: int | None = None
    again_from: int | None = None  # the interrupted trial this one runs again from its start (--resume)
    seconds: float = 0.0  # the whole trial: sampling, training, bookkeeping
    train_seconds: float = 0.0  # inside rnnclf.training.loop.train (data loading included)
    started_at: float = 0.0  # time.time() when it began (for the tune's own overhead)
    folder: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def repeats(record: TrialRecord) -> str:
    """What a trial's line says when the trial runs another again (the notes that queued it are not
    printed with --quiet or by a --jobs helper): " (again from trial N)", " (trial N with the epochs that
    fit)", both (a fitted trial interrupted and run again), or ""."""
    again = f" (again from trial {record.again_from})" if record.again_from is not None else ""
    fitted = (
        f" (trial {record.fitted_from} with the epochs that fit)" if record.fitted_from is not None else ""
    )
    return again + fitted


class TrialStop(StopFlag):
    """The loop's stop flag for one trial: the user's signal (Ctrl-C, SIGTERM: shared by all trials)
    or this trial's own reason (PRUNED, OVER_BUDGET, NOT_FINITE)."""

    def __init__(self, user: StopFlag) -> None:
        self.user = user
        self.own: int | None = None
        super().__init__()

    @property  # type: ignore[override]
    def signal(self) -> int | None:
        return self.user.signal if self.user.signal is not None else self.own

    @signal.setter
    def signal(self, number: int | None) -> None:
        self.own = number


class Observer:
    """How a tune talks to the user while it works (plain lines; the CLI has a live table)."""

    def message(self, text: str) -> None:
        print(text, flush=True)

    def trial_started(self, number: int, values: dict[str, Any]) -> None:
        pass

    def epoch(self, number: int, epoch: int, score: float) -> None:
        pass

    def trial_ended(self, record: TrialRecord) -> None:
        score = f"{record.value:.4f}" if record.value is not None else "-"
        reason = f" ({record.reason})" if record.reason else ""
        self.message(
            f"trial {record.number}{repeats(record)}: {record.state}{reason}, score {score}, "
            f"{len(record.scores)} epochs, {record.seconds:.0f}s"
        )

    def close(self) -> None:
        pass


class TrialReporter(Reporter):
    """Training's reporter inside a trial: each epoch's score goes to Optuna (for pruning) and to the
    observer; it raises the stop flag when the trial should end at this epoch boundary."""

    def __init__(
        self,
        trial: Any,
        record: TrialRecord,
        metric: str,
        deadline: float,
        stop: TrialStop,
        observer: Observer,
        first_fold: bool = True,
        folds_after: int = 0,
        shorter: Callable[[float, float], int | None] | None = None,
    ) -> None:
        super().__init__(quiet=True)
        self.trial, self.record, self.metric = trial, record, metric
        self.deadline, self.stop, self.observer = deadline, stop, observer
        self.first_fold = first_fold  # with tune.folds, only the first fold's epochs go to the pruner
        self.folds_after = folds_after  # with tune.folds, the trainings still to come after this one
        # shorter(seconds left, one epoch's seconds): the epochs with which the study could run this trial
        # again to fit (fit_to_time), else None; shorter None: it could not (train.epochs not searched,
        # a rerun).
        self.shorter = shorter
        self.fit_epochs: int | None = None  # what `shorter` answered when it decided a stop
        self.seconds: list[float] = []  # this training's epochs
        self.reason = ""  # why the trial stopped, when the reason needs numbers (CANNOT_FINISH)
        self.has_complete = False  # whether the study holds a complete trial: once true, always
        self.waiting = False  # whether a trial waits in the study's queue (asked at each epoch's start)
        self.timed_from: tuple[float, int] | None = None  # (time.time(), step) after its first steps
        self.epoch_cost: float | None = None  # one epoch's seconds, as the cannot-finish rule estimated it
        self.judged_early = False  # whether _cannot_finish_early has judged this training

    def summary(self, text: str) -> None:
        pass  # a trial's own summary lines: the tune's table says it

    def epoch_start(self, epoch: int, epochs: int, batches: int, done: int = 0) -> None:
        super().epoch_start(epoch, epochs, batches, done)
        # Past the deadline a trial that is not in its last epoch can only end incomplete (stopped at
        # this epoch's boundary) and is never chosen: once the study holds a complete trial it stops
        # at its next step instead of finishing the epoch. On GoEmotions (15 minutes, 2 cores) a trial
        # started 19 s before the deadline ran a 198 s first epoch past it. The study's first complete
        # trial still ends epochs whole (a budget too short for it says how long one epoch took).
        # A waiting trial matters only until one is complete (every rule asks for either): then not asked.
        self.waiting = not self._study_has_complete() and queue_waiting(self.trial.study)

    def step(self, done: int, loss: float, words_per_s: float) -> None:
        super().step(done, loss, words_per_s)
        if not (self.has_complete or self.waiting or self.shorter):
            return
        now = time.time()
        if self.has_complete and self._epoch < self._epochs and now >= self.deadline:
            self.stop.set(OVER_BUDGET)
        elif not self.judged_early and self._epoch == 1 and self._cannot_finish_early(done, now):
            self.stop.set(CANNOT_FINISH)

    def _cannot_finish_early(self, done: int, now: float) -> bool:
        """The cannot-finish rule (_cannot_finish) judged within the first epoch, at the rate of its first
        steps: a trial whose schedule is far too long for the time left stops within seconds, not after
        a whole epoch. On GoEmotions (15 minutes on 2 cores) such trials took 15-85 s each, up to 300 s of
        a tune. Timed from its PROBE_STEPS-th step (the first steps allocate and warm up), and judged once
        another PROBE_STEPS steps and 5% of the epoch are behind it: batches are drawn in random order,
        so their mean time is the epoch's. Validation is left out of the estimate (it errs towards going
        on); the epoch boundary judges again with whole epochs."""
        if self.timed_from is None:
            if done >= PROBE_STEPS:
                self.timed_from = (now, done)
            return False
        since, first = self.timed_from
        steps = done - first
        if steps < max(PROBE_STEPS, self._batches // 20):
            return False
        self.judged_early = True
        epochs = self._epochs * (1 + self.folds_after)  # this training's epochs and the folds' to come
        per_step = (now - since) / steps
        self.epoch_cost = per_step * self._batches
        needed = per_step * (self._batches * epochs - done)
        reason = self._late(needed, now, f"its {epochs} epochs", f"the rate of its first {done} steps")
        if not reason or not (self.has_complete or self.waiting or self._runs_shorter(now)):
            return False
        self.reason = reason
        return True

    def _late(self, needed: float, now: float, what: str, rate: str) -> str:
        """Why `needed` more seconds from `now` cannot end by the deadline ("" when they can)."""
        if now + needed <= self.deadline:
            return ""
        return f"cannot finish {what} in the {self.deadline - now:.0f}s left (about {needed:.0f}s at {rate})"

    def _runs_shorter(self, now: float) -> bool:
        """Whether a stopped trial could run again with a schedule that fits the time left: so a study's
        first trial, when its schedule cannot end in the budget, is stopped and run again shorter rather
        than stopped by the budget with nothing complete (a 30 s TREC tune ran 4 of the config's 10
        epochs and ended with "too short for one trial", where 3 epochs fit)."""
        if not (self.shorter and self.epoch_cost):
            return False
        self.fit_epochs = self.shorter(self.deadline - now, self.epoch_cost)
        return self.fit_epochs is not None

    def _study_has_complete(self) -> bool:
        """has_complete, asking the study only while it is false (a complete trial stays complete)."""
        self.has_complete = self.has_complete or _has_complete(self.trial)
        return self.has_complete

    def epoch_end(self, row: dict[str, Any]) -> None:
        score = float(row[self.metric])
        if self.first_fold:
            self.record.scores.append(score)
            self.record.epoch_seconds.append(float(row["seconds"]))
            self.observer.epoch(self.record.number, row["epoch"], score)
        if not (math.isfinite(row["train_loss"]) and math.isfinite(score)):
            self.stop.set(NOT_FINITE)
            return
        if self.first_fold:
            self.trial.report(score, row["epoch"])
        if row["epoch"] >= self._epochs:  # the last epoch: let the run finish and be scored
            return
        self.seconds.append(float(row["seconds"]))
        now = time.time()
        if now >= self.deadline:
            self.stop.set(OVER_BUDGET)
        elif self._cannot_finish(row["epoch"], now):
            self.stop.set(CANNOT_FINISH)
        elif self.first_fold and self.trial.should_prune():
            self.stop.set(PRUNED)

    def _cannot_finish(self, epoch: int, now: float) -> bool:
        """Whether the epochs left of this trial's schedule (and of its folds still to come), at the rate
        of its epochs so far, end after the deadline, while the study already holds a complete trial or
        another trial waits in its queue (the config given, behind the adversarial starting trial).
        Such a trial would be stopped by the budget and never chosen: the time goes to trials that can
        finish (on GoEmotions, 15 minutes on 2 cores, one such trial took 205-260 s of a tune's 900).
        Early stopping may end a trial before its schedule, so the estimate is an upper bound. While the
        study holds no complete trial and none waits, a trial is stopped by it only where it can run
        again with a schedule that fits (_runs_shorter); a budget too short for any trial still says so."""
        left = (self._epochs - epoch) + self.folds_after * self._epochs
        self.epoch_cost = sum(self.seconds) / len(self.seconds)
        needed = left * self.epoch_cost
        reason = self._late(needed, now, f"its {left} epochs left", "its rate")
        if not reason or not (self._study_has_complete() or self.waiting or self._runs_shorter(now)):
            return False
        self.reason = reason
        return True


# A fitted trial's time beyond its epochs at the measured rate: validation (left out of the early
# estimate) and the epochs' spread, as a share; loading the cached preprocessing and building the model.
FIT_MARGIN, FIT_START_SECONDS = 1.15, 10.0


def fit_to_time(
    values: dict[str, Any], dimensions: list[Dimension], left: float, epoch_seconds: float
) -> dict[str, Any] | None:
    """The values of a trial stopped as unable to finish, with train.epochs cut to the most that fit in
    `left` seconds at `epoch_seconds` an epoch (its measured rate; with tune.folds, times the folds),
    or None: train.epochs not searched, or fewer epochs than its dimension allows fit. The trial is then
    run again from its start with the shorter schedule (the learning rate decays over it), instead of
    its time going unused: on GoEmotions (15 minutes on 2 cores) 3-9 draws a tune were stopped this way
    and 96-235 s of each 900 went unused at the end."""
    epochs = next((dim for dim in dimensions if dim.key == "train.epochs"), None)
    if epochs is None or epoch_seconds <= 0:
        return None
    fit = int((left - FIT_START_SECONDS) / (epoch_seconds * FIT_MARGIN))
    fit = min(fit, int(values["train.epochs"]) - 1)
    if epochs.choices is not None:
        allowed = [int(choice) for choice in epochs.choices if int(choice) <= fit]
        fit = max(allowed, default=0)
    else:
        step = int(epochs.step or 1)
        fit = int(epochs.low) + (fit - int(epochs.low)) // step * step
        if fit < epochs.low:
            return None
    if fit < 1:
        return None
    return {**values, "train.epochs": fit}


def _holds(study: Any, state: str) -> bool:
    """Whether the study holds a trial in this state (an Optuna TrialState's name)."""
    import optuna

    return bool(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState[state],)))


def queue_waiting(study: Any) -> bool:
    """Whether a trial waits in the study's queue (a starting trial, a fitted one): the next ask takes it."""
    return _holds(study, "WAITING")


def _has_complete(trial: Any) -> bool:
    """Whether the trial's study holds a complete trial (a stopped trial then leaves a result)."""
    return _holds(trial.study, "COMPLETE")


def _score(metrics: dict[str, Any], metric: str) -> float:
    """metrics.json's validation score of best.pt for a monitor name (valid_accuracy -> valid.accuracy)."""
    return float(metrics["valid"][metric.removeprefix("valid_")])


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def run_trial(
    base: Config,
    trial: Any,
    dimensions: list[Dimension],
    tune_dir: Path,
    metric: str,
    deadline: float,
    user_stop: StopFlag,
    observer: Observer,
    folds: list[tuple[str, str]] | None = None,
) -> TrialRecord:
    """Sample, train, and record one trial. Raises Interrupted (after recording) when the user stopped it.
    With folds (tune.folds > 1): one training per fold, the first in the trial's folder (its model is the
    one kept), the others in FOLDER/folds/K; the trial's score is the mean of the folds' scores."""
    from rnnclf.training.loop import train

    started = time.perf_counter()
    values = suggest(trial, dimensions)
    folder = tune_dir / "trials" / f"{trial.number:04d}"
    record = TrialRecord(
        trial.number,
        values,
        folder=str(folder),
        started_at=time.time(),
        fitted_from=trial.user_attrs.get(FITTED),
        again_from=trial.user_attrs.get(AGAIN),
    )
    trainings = len(folds) if folds else 1

    def shorter(left: float, epoch_seconds: float) -> int | None:  # see TrialReporter._runs_shorter
        fitted = fit_to_time(values, dimensions, left, epoch_seconds * trainings)
        return None if fitted is None else int(fitted["train.epochs"])

    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    observer.trial_started(trial.number, values)
    stop = TrialStop(user_stop)
    refit = shorter if record.fitted_from is None else None  # a trial is run again shorter once only
    reporter: TrialReporter | None = None
    interrupted: Interrupted | None = None
    try:
        config = applied(base, values)
        trial.set_user_attr(SCHEDULE, config.train.epochs)
        training = time.perf_counter()
        try:
            if not folds:
                reporter = TrialReporter(trial, record, metric, deadline, stop, observer, shorter=refit)
                metrics = train(config, folder, reporter, stop=stop)
            for number, files in enumerate(folds or []):
                after = len(folds or []) - number - 1
                first = number == 0
                reporter = TrialReporter(
                    trial, record, metric, deadline, stop, observer, first, after, refit if first else None
                )
                where = folder if number == 0 else folder / "folds" / str(number)
                metrics = train(fold_config(config, files), where, reporter, stop=stop)
                record.fold_values.append(_score(metrics, metric))
                if number > 0:  # only the first fold's model may be kept
                    (where / "last.pt").unlink(missing_ok=True)
                    (where / "best.pt").unlink(missing_ok=True)
        finally:
            record.train_seconds = time.perf_counter() - training
    except Interrupted as stopped:
        if stopped.signal == PRUNED:
            record.state = "pruned"
        elif stopped.signal == NOT_FINITE:
            record.state, record.reason = "failed", "the loss or score is not finite (NaN or inf)"
        elif stopped.signal == OVER_BUDGET:
            record.state, record.reason = "incomplete", "the budget ran out"
        elif stopped.signal == CANNOT_FINISH:
            record.state, record.reason = "incomplete", reporter.reason if reporter else ""
            record.epoch_cost = reporter.epoch_cost if reporter else None
            record.fit_epochs = reporter.fit_epochs if reporter else None
        else:
            record.state, record.reason = "incomplete", f"{INTERRUPTED} {stopped.signal}"
            interrupted = stopped
    except Exception as err:  # a value the model refuses, out of memory, ...: this trial fails, not the study
        record.state, record.reason = "failed", f"{type(err).__name__}: {_one_line(err)}"
    else:
        value = sum(record.fold_values) / len(record.fold_values) if folds else _score(metrics, metric)
        record.state, record.value = "complete", value
    if record.value is None and record.scores and record.state != "failed" and not folds:
        finite = [score for score in record.scores if math.isfinite(score)]
        if finite:  # the best epoch so far: shown, never chosen (only complete trials are)
            record.value = min(finite) if lower_is_better(metric) else max(finite)
    record.seconds = time.perf_counter() - started
    (folder / "last.pt").unlink(missing_ok=True)  # a trial is never resumed: only best.pt may stay
    if record.state != "complete":
        (folder / "best.pt").unlink(missing_ok=True)
    for key, value in record.to_dict().items():
        if key not in ("number", "values"):
            trial.set_user_attr(key, value)
    if interrupted is not None:
        raise interrupted
    return record
