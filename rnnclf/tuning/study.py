"""The search itself: an Optuna study (seeded TPE sampler, a pruner on each epoch's validation score)
in Optuna storage, worked by one or more processes until the budget or the trial count is spent.

    tune(config, tune_dir, ...) -> outcome     the library function behind `rnnclf tune`

Storage is a SQLite file in TUNE_DIR unless `storage` names another database (PostgreSQL for workers on
several machines, joined by study name). `jobs` worker processes run here, each with its share of the
cores. The budget is wall time from the call, preparation included; a trial running when it ends stops
at its next epoch boundary. The time spent is kept in the study, so --resume continues with what is left.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import socket
import sqlite3
import time
from pathlib import Path
from typing import Any

from rnnclf.config import Config, dump, validate
from rnnclf.errors import MissingExtra, RnnclfError
from rnnclf.files import atomic_write
from rnnclf.runs import rundir
from rnnclf.runtime import check_precision, choose_device, cpu_count, prepare_cpu
from rnnclf.schema import lower_is_better, parse_duration
from rnnclf.training.stopping import Interrupted, StopFlag
from rnnclf.tuning.folds import write_folds
from rnnclf.tuning.space import (
    Dimension,
    applied,
    search_space,
    starting_points,
    thresholds_follow_metric,
    trained_with,
)
from rnnclf.tuning.trial import (
    AGAIN,
    FITTED,
    INTERRUPTED,
    Observer,
    TrialRecord,
    fit_to_time,
    queue_waiting,
    run_trial,
)

STUDY_DB = "study.db"
TUNE_CONFIG = "config.yaml"
SPENT = "spent_seconds"  # a study user attribute: the budget used by earlier (interrupted) commands
BUDGET = "budget_seconds"  # a study user attribute: the budget it was given (null: none), for --resume
TRIALS = "trials"  # a study user attribute: the trial count it was given (null: none), for --resume
NO_LIMIT = "tune: no budget and no trial count; set --budget or --trials (tune.budget)"


def require_optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise MissingExtra("rnnclf tune", "optuna", "tune") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def budget_seconds(config: Config, flag: str | None) -> float | None:
    """--budget (else tune.budget) in seconds; None: no time limit."""
    if flag is None:
        return parse_duration(config.tune.budget) if config.tune.budget is not None else None
    try:
        return parse_duration(flag)
    except ValueError as err:
        raise RnnclfError(f"--budget {flag}: {err}") from None


def trial_config(config: Config) -> Config:
    """What every trial trains from: no test split (the test is scored once, on the best trial only),
    no baseline (fitted once per tune), no run folder of its own, and what `trained_with` says (the
    tune's metric monitored, the tune's precision)."""
    raw = applied(config, trained_with(config)).to_dict()
    raw["data"]["test"] = None
    raw["train"]["baseline"] = False
    raw["output"].update(run_dir=None, plots=False, tensorboard=False)
    return validate(raw, "tune")


def _pruner(optuna: Any, name: str, epochs: int) -> Any:
    if name == "median":
        from rnnclf.tuning.pruning import ScheduleMedianPruner  # imports optuna

        # Two trials run whole before any is pruned (the first is the config given: a reference that
        # means something), and no trial is judged on its first epoch alone (steps are epochs, counted
        # from 1: pruning starts at the second). It waited for four: on GoEmotions (15 minutes, 2 cores)
        # 4-16 trials fit, so four unpruned trials of 100-600 s each took most of the budget.
        return ScheduleMedianPruner(startup_trials=2, warmup_epochs=2)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 2))
    return optuna.pruners.NopPruner()


def storage_url(tune_dir: Path, storage: str | None) -> str:
    """--storage as SQLAlchemy needs it (default: SQLite in TUNE_DIR). A bare postgresql:// URL means
    psycopg 3 to SQLAlchemy 2.1; with only psycopg2 installed, it is said explicitly."""
    if storage is None:
        return f"sqlite:///{(tune_dir / STUDY_DB).resolve()}"
    bare = storage.startswith(("postgresql://", "postgres://"))
    if bare and not _importable("psycopg") and _importable("psycopg2"):
        return "postgresql+psycopg2://" + storage.split("://", 1)[1]
    return storage


def _importable(module: str) -> bool:
    """Whether a PostgreSQL driver is installed (psycopg or psycopg2: known names, nothing imported by a
    name read from input)."""
    try:
        if module == "psycopg":
            import psycopg  # noqa: F401
        elif module == "psycopg2":
            import psycopg2  # noqa: F401
        else:
            raise ValueError(module)
    except ImportError:
        return False
    return True


def _sqlite(path: Path) -> sqlite3.Connection:
    """A connection to the study's SQLite file in WAL mode with synchronous NORMAL. In SQLite's default
    mode every commit waits for the disk and a writer waits for readers: with --jobs 2 on TREC both
    workers stalled together at their trials' commits (3.5 s and 20 s in one 10-minute tune). In WAL
    mode readers and the writer do not block each other and a commit does not wait for the disk; a
    killed process loses nothing, a power cut at most the last commits. Several local workers write to
    one file: waiting up to 60 s for its lock beats failing."""
    connection = sqlite3.connect(path, timeout=60)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    return connection


def _storage(optuna: Any, tune_dir: Path, storage: str | None, attempts: int = 5) -> Any:
    """Optuna's RDB storage. Workers starting together on a fresh database race to create its tables;
    the loser's error goes away on a second try."""
    database = (tune_dir / STUDY_DB).resolve()
    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(
                storage_url(tune_dir, storage),
                engine_kwargs={"creator": lambda: _sqlite(database)} if storage is None else {},
            )
        except ImportError as err:
            raise RnnclfError(
                f"--storage {storage}: its database driver is missing ({err}); for postgresql URLs: "
                "pip install psycopg2-binary"
            ) from None
        except Exception as err:
            if attempt == attempts - 1:
                raise RnnclfError(
                    f"--storage {storage or 'sqlite'}: cannot open ({' '.join(str(err).split())[:200]})"
                ) from None
            time.sleep(1.0 + attempt)
    raise AssertionError("unreachable")


def open_study(config: Config, tune_dir: Path, storage: str | None, name: str, worker: int) -> Any:
    """The study in its storage (created by the first worker, joined by the others)."""
    optuna = require_optuna()
    direction = "minimize" if lower_is_better(config.tuned_on()) else "maximize"
    backend = _storage(optuna, tune_dir, storage)
    epochs = max(config.train.epochs, *_epoch_choices(config))
    return optuna.create_study(
        storage=backend,
        study_name=name,
        direction=direction,
        # Ten random trials (the first are the starting trials) before TPE models the scores. Four was
        # measured on GoEmotions (docs/tuning.md, "The sampler"): TPE then sampled around the config's
        # global threshold and at low learning rates, and the tunes scored lower (test macro-F1 0.432
        # against 0.446, medians of 3 tune seeds). One density over all keys (multivariate) and
        # running trials counted as if at the worst score (constant_liar: --jobs workers do not draw
        # the same point) are Optuna 5's defaults, named here so the tune a seed gives, and what was
        # measured, does not change with Optuna's defaults (before 5: one density per key, no liar).
        sampler=optuna.samplers.TPESampler(
            seed=config.tune.seed + worker, n_startup_trials=10, multivariate=True, constant_liar=True
        ),
        pruner=_pruner(optuna, config.tune.pruner, epochs),
        load_if_exists=True,
    )


def _epoch_choices(config: Config) -> list[int]:
    dims, _ = search_space(config)
    for dim in dims:
        if dim.key == "train.epochs":
            return [int(v) for v in (dim.choices or (dim.low, dim.high))]
    return [config.train.epochs]


def _finished(study: Any) -> int:
    """Trials begun (running or ended); not the starting point waiting in the queue for its first ask."""
    waiting = require_optuna().trial.TrialState.WAITING
    return sum(trial.state != waiting for trial in study.get_trials(deepcopy=False))


def _interrupted(trial: Any) -> bool:
    """Whether Ctrl-C or SIGTERM stopped this trial (told as pruned, with that reason): it says nothing
    about its settings and runs again on --resume."""
    pruned = require_optuna().trial.TrialState.PRUNED
    return trial.state == pruned and str(trial.user_attrs.get("reason", "")).startswith(INTERRUPTED)


def _counted(study: Any) -> int:
    """The trials that count towards tune.trials: those begun, less those an interrupt stopped (each runs
    again on --resume: `--trials 4` interrupted in its fourth trial still ends with four)."""
    waiting = require_optuna().trial.TrialState.WAITING
    return sum(
        trial.state != waiting and not _interrupted(trial) for trial in study.get_trials(deepcopy=False)
    )


def too_late(study: Any, deadline: float, now: float, queued: bool = False) -> str:
    """Why no trial should start now ("" when one may): the time left is shorter than the fastest epoch
    any trial of the study has run (a trial started now would end no epoch before the deadline: on
    GoEmotions, 15 minutes on 2 cores, trials started with 7-21 s left ran their 14-33 s first epoch past
    it), or than the quickest complete trial took. In the last minute of a 15-minute GoEmotions tune,
    where the quickest complete trial took 63 s, 18 trials were drawn and each stopped within seconds as
    unable to finish: the sampler draws without regard to cost, so the time left rarely holds one.
    `queued`: the next trial waits in the study's queue, not a draw: one queued by fit_to_time, whose
    epochs were chosen to fit the time left, or a starting trial (the config given, after the
    adversarial one that may take the quickest complete trial's time and more: IMDB's first 5,000
    reviews, 710 s against 436 s). Only the fastest-epoch rule applies to it; the cannot-finish rule
    stops it after its first steps if it cannot finish, and fits it to the time left."""
    trials = study.get_trials(deepcopy=False)
    left = deadline - now
    epochs = [seconds for trial in trials for seconds in trial.user_attrs.get("epoch_seconds", [])]
    if epochs and left < min(epochs):
        return f"no trial started in the last {left:.0f}s: the fastest epoch took {min(epochs):.0f}s"
    complete = require_optuna().trial.TrialState.COMPLETE
    whole = [
        trial.user_attrs["seconds"]
        for trial in trials
        if trial.state == complete and "seconds" in trial.user_attrs
    ]
    if whole and left < min(whole) and not queued:
        return f"no trial started in the last {left:.0f}s: the quickest complete trial took {min(whole):.0f}s"
    return ""


def _queue_fitted(
    study: Any, trial: Any, record: TrialRecord, dimensions: list[Dimension], deadline: float, trainings: int
) -> None:
    """A trial stopped as unable to finish (it has an epoch cost) goes back in the queue with the epochs
    that fit (fit_to_time), once: a fitted trial that still cannot finish is not fitted again. Not while
    another trial waits in the queue (the config given, behind the adversarial starting trial): that one
    runs next, and the epochs that fit now would not fit after it."""
    if record.epoch_cost is None or record.fitted_from is not None or queue_waiting(study):
        return
    fitted = fit_to_time(record.values, dimensions, deadline - time.time(), record.epoch_cost * trainings)
    if fitted is None and record.fit_epochs is not None:
        # Stopped on the promise of a rerun (nothing complete, nothing waiting): the seconds since the
        # reporter judged must not turn it into no model at all; fit_to_time's margin covers them.
        fitted = {**record.values, "train.epochs": record.fit_epochs}
    if fitted is None:
        return
    study.enqueue_trial(fitted, user_attrs={FITTED: record.number})
    record.reason += f"; queued again with {fitted['train.epochs']} epochs, the most that fit"
    trial.set_user_attr("reason", record.reason)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fail_lost_trials(study: Any) -> int:
    """Trials left RUNNING by a process of this machine that is gone (kill -9): marked failed, so a
    resumed study neither waits for them nor counts them as running."""
    optuna = require_optuna()
    lost = 0
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        host, _, pid = str(trial.user_attrs.get("worker", "")).rpartition(":")
        if host == socket.gethostname() and pid.isdigit() and not _alive(int(pid)):
            study._storage.set_trial_user_attr(trial._trial_id, "state", "failed")
            study._storage.set_trial_user_attr(trial._trial_id, "reason", "lost: its process was killed")
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
            lost += 1
    return lost


def queue_interrupted(study: Any) -> list[int]:
    """Trials that an interrupt stopped (Ctrl-C, SIGTERM) say nothing about their settings: on --resume
    each goes back in the queue, once, behind any trial already waiting, and runs again from its start
    (a trial is never resumed mid-way). So a Ctrl-C in the tenth minute of the adversarial starting
    trial does not lose it. Returns the numbers of the trials queued again."""
    trials = study.get_trials(deepcopy=False)
    queued = {trial.user_attrs.get(AGAIN) for trial in trials}
    numbers = []
    for trial in trials:
        if not _interrupted(trial) or trial.number in queued:
            continue
        attrs = {AGAIN: trial.number}
        if trial.user_attrs.get(FITTED) is not None:  # a fitted trial stays fitted once only
            attrs[FITTED] = trial.user_attrs[FITTED]
        study.enqueue_trial(dict(trial.params), user_attrs=attrs)
        numbers.append(trial.number)
    return numbers


def work(
    config: Config,
    dimensions: list[Dimension],
    tune_dir: Path,
    storage: str | None,
    name: str,
    deadline: float,
    worker: int,
    stop: StopFlag,
    observer: Observer,
) -> None:
    """One worker: ask the study for a trial, run it, tell the result; until the deadline, the trial
    count, or a stop signal."""
    optuna = require_optuna()
    state = optuna.trial.TrialState
    study = open_study(config, tune_dir, storage, name, worker)
    metric = config.tuned_on()
    base = trial_config(config)
    folds = write_folds(config, tune_dir) if config.tune.folds > 1 else None
    # The first trial of a study always starts: a budget spent before it (preparation) then ends at its
    # first epoch boundary, which says how long an epoch takes.
    while stop.signal is None and (time.time() < deadline or (worker == 0 and _finished(study) == 0)):
        if config.tune.trials is not None and _counted(study) >= config.tune.trials:
            break
        late = too_late(study, deadline, time.time(), queued=queue_waiting(study))
        if late:
            observer.message(late)
            break
        trial = study.ask()
        try:
            record = run_trial(base, trial, dimensions, tune_dir, metric, deadline, stop, observer, folds)
        except Interrupted:
            study.tell(trial, state=state.PRUNED)  # kept as incomplete; never chosen
            raise
        if record.state == "complete":
            study.tell(trial, record.value)
            _keep_best_only(study, record.number)
        elif record.state == "failed":
            study.tell(trial, state=state.FAIL)
        else:
            _queue_fitted(study, trial, record, dimensions, deadline, len(folds) if folds else 1)
            study.tell(trial, state=state.PRUNED)
        observer.trial_ended(record)


def _keep_best_only(study: Any, number: int) -> None:
    """Only the best complete trial so far keeps its best.pt: the tune folder stays bounded."""
    optuna = require_optuna()
    best = study.best_trial.number
    # Finished trials only: a trial another worker is running still writes and reads its best.pt.
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        folder = trial.user_attrs.get("folder")
        if folder and trial.number != best and trial.number <= number:
            (Path(folder) / "best.pt").unlink(missing_ok=True)


class HelperObserver(Observer):
    """A --jobs helper process says one line per trial it ran (the main process shows the table)."""

    def message(self, text: str) -> None:
        if text.startswith("trial "):
            super().message(text)


def _worker_process(
    raw: dict[str, Any],
    dims: list[Dimension],
    tune_dir: str,
    storage: str | None,
    name: str,
    deadline: float,
    worker: int,
    threads: int,
    ready: Any,
) -> None:
    """A worker started by --jobs (its own process, its share of the cores); SIGINT/SIGTERM stop its
    running trial at the next step."""
    import torch

    prepare_cpu()
    torch.set_num_threads(threads)
    stop = StopFlag()
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda sig, frame: stop.set(sig))
    config = validate(raw, "tune")
    open_study(config, Path(tune_dir), storage, name, worker)
    ready.set()
    with contextlib.suppress(Interrupted):  # its trial is recorded; the main process prints the hint
        work(config, dims, Path(tune_dir), storage, name, deadline, worker, stop, HelperObserver())


def tune(
    config: Config,
    tune_dir: str | Path,
    budget: str | None = None,
    trials: int | None = None,
    jobs: int = 1,
    storage: str | None = None,
    study_name: str | None = None,
    resume: bool = False,
    observer: Observer | None = None,
    stop: StopFlag | None = None,
) -> dict[str, Any]:
    """Search per config.tune (budget and trials overridden by the arguments); returns the outcome
    (rnnclf.tuning.outcome.summarize). Raises Interrupted after saving the study when `stop` is set
    by a signal."""
    import torch

    from rnnclf.fetch import resolve_names
    from rnnclf.tuning import outcome

    started = time.time()
    prepare_cpu()
    optuna = require_optuna()
    observer = observer or Observer()
    stop = stop if stop is not None else StopFlag()
    if trials is not None:
        config.tune.trials = trials
    seconds = budget_seconds(config, budget)
    # (a resumed tune may take its budget and trial count from the study: checked once it is open)
    if seconds is None and config.tune.trials is None and not resume:
        raise RnnclfError(NO_LIMIT)
    if jobs < 1:
        raise RnnclfError(f"--jobs {jobs}: must be at least 1")
    dimensions, kept = search_space(config)  # a bad space fails here, before any training
    # A precision no trial could train in (bf16 on a CPU without a bf16 LSTM kernel): one line now,
    # not one failed trial after another until the budget is spent.
    precision = trained_with(config)["train.precision"]
    check_precision(precision, choose_device(config.train.device))
    tune_dir = Path(tune_dir)
    if resume and not (tune_dir / TUNE_CONFIG).exists():
        raise RnnclfError(f"--resume: {tune_dir} holds no tune to continue ({TUNE_CONFIG} is missing)")
    if not resume and storage is None and (tune_dir / STUDY_DB).exists():
        raise RnnclfError(f"{tune_dir}: already holds a tune; continue it with --resume or choose --run-dir")
    resolve_names(config)
    prepared = outcome.read_data(config)  # a bad data file fails here, before the tune folder is made
    name = study_name or tune_dir.name
    tune_dir.mkdir(parents=True, exist_ok=True)
    study = open_study(config, tune_dir, storage, name, 0)
    points = starting_points(config, dimensions)
    new = not study.get_trials(deepcopy=False)
    for point in points if new else []:
        # A new study starts from the configuration the tune was given (the keys the space holds), as
        # fastText's autotune starts from its defaults, and before it the same with adversarial steps
        # where the space holds them (starting_points): the best trial is then never a random start's
        # when the given settings were already good (with a short budget, TPE's first trials are random).
        study.enqueue_trial(point, skip_if_exists=True)
    if resume:
        lost = fail_lost_trials(study)
        if lost:
            observer.message(f"{lost} trial(s) left running by a killed process: recorded as failed")
        again = queue_interrupted(study)
        if again:
            shown = ", ".join(str(number) for number in again)
            observer.message(f"stopped by the interrupt, queued to run again from the start: trial {shown}")
    # --resume without --budget (--trials) continues with the budget (trial count) the tune was given
    # (the printed resume command names them; a user who types `rnnclf tune CONFIG --resume` should not
    # get tune.budget's default, nor lose the trial count).
    if resume and budget is None and BUDGET in study.user_attrs:
        seconds = study.user_attrs[BUDGET]
    elif new or budget is not None:
        study.set_user_attr(BUDGET, seconds)
    if resume and trials is None and TRIALS in study.user_attrs:
        config.tune.trials = study.user_attrs[TRIALS]
    elif new or trials is not None:
        study.set_user_attr(TRIALS, config.tune.trials)
    if seconds is None and config.tune.trials is None:
        raise RnnclfError(NO_LIMIT)
    atomic_write(tune_dir / TUNE_CONFIG, dump(config))  # with the trial count in effect
    spent = float(study.user_attrs.get(SPENT, 0.0))
    deadline = started + seconds - spent if seconds is not None else float("inf")
    if seconds is not None and spent >= seconds:
        raise RnnclfError(
            f"tune: the budget ({seconds:.0f}s) is spent already ({spent:.0f}s used); raise it with --budget"
        )
    observer.message(
        "searching: "
        + "; ".join(dim.shown() for dim in dimensions)
        + (f"\nkept as configured: {', '.join(kept)}" if kept else "")
        + (f"\nfirst trials: {_starts(points)}" if new and points else "")
        + (
            f"\ntrials train in {precision}: this hardware runs it fast (tune.precision: fp32 keeps fp32)"
            if config.tune.precision == "auto" and precision != config.train.precision
            else ""
        )
        + (
            "\ntrials choose thresholds per label: they maximise macro-F1, the tune's metric, on validation"
            if thresholds_follow_metric(config)
            else ""
        )
    )
    latest = rundir.LATEST.read_text(encoding="utf-8") if rundir.LATEST.is_file() else None
    baseline = outcome.fit_baseline(config, prepared, observer)
    del prepared  # the trials prepare their own (from the cache): not held through the tune
    threads = max(1, min(torch.get_num_threads(), cpu_count()) // jobs)
    torch.set_num_threads(threads)
    helpers = _start_workers(config, dimensions, tune_dir, storage, name, deadline, jobs, threads)
    interrupted: Interrupted | None = None
    try:
        work(config, dimensions, tune_dir, storage, name, deadline, 0, stop, observer)
    except Interrupted as err:
        interrupted = err
    finally:
        for helper in helpers:
            if stop.signal is not None and helper.is_alive() and helper.pid is not None:
                os.kill(helper.pid, signal.SIGTERM)
        for helper in helpers:
            helper.join()
        study.set_user_attr(SPENT, spent + time.time() - started)
        observer.close()
    try:
        if interrupted is not None or stop.signal is not None:
            outcome.write_records(study, tune_dir)
            raise interrupted or Interrupted(stop.signal or signal.SIGINT, tune_dir)
        return outcome.summarize(study, config, tune_dir, baseline, seconds, started, optuna)
    except (Interrupted, RnnclfError):
        _put_back(latest)  # each trial's run was runs/LATEST for a while; no best trial: as it was
        raise


def _starts(points: list[dict[str, Any]]) -> str:
    """The starting trials in words: the config given, with what an earlier one changes."""
    given = points[-1]
    said = []
    for point in points[:-1]:
        changed = ", ".join(f"{key} = {value}" for key, value in point.items() if given.get(key) != value)
        said.append(f"the config given with {changed}")
    return "; ".join([*said, "the config given"])


def _put_back(latest: str | None) -> None:
    if latest is not None:
        atomic_write(rundir.LATEST, latest)
    else:
        rundir.LATEST.unlink(missing_ok=True)


def _start_workers(
    config: Config,
    dims: list[Dimension],
    tune_dir: Path,
    storage: str | None,
    name: str,
    deadline: float,
    jobs: int,
    threads: int,
) -> list[Any]:
    """jobs - 1 more worker processes (spawned: a fork would copy torch's thread pools)."""
    context = multiprocessing.get_context("spawn")
    helpers, ready = [], []
    for worker in range(1, jobs):
        event = context.Event()
        ready.append(event)
        helper = context.Process(
            target=_worker_process,
            args=(config.to_dict(), dims, str(tune_dir), storage, name, deadline, worker, threads, event),
            daemon=False,
        )
        helper.start()
        helpers.append(helper)
    # Every worker starts its first trial together: a helper still importing torch would find small
    # studies finished by the main process alone.
    for event, helper in zip(ready, helpers, strict=True):
        while helper.is_alive() and not event.wait(timeout=1.0):
            pass
    return helpers


def read_summary(tune_dir: Path) -> dict[str, Any] | None:
    """tune.json of a finished tune, or None."""
    try:
        return json.loads((tune_dir / "tune.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
