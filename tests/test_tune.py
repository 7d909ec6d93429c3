"""`rnnclf tune` on tiny data with tiny spaces and budgets: the space is checked before any training,
trials are ordinary training runs, failures and interruptions are recorded, the outputs reproduce the
best trial, and several workers (processes, SQLite, PostgreSQL) share one study without losing or
repeating a trial."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_cli import cli, ok, user_error

from rnnclf.config import load
from rnnclf.errors import RnnclfError
from rnnclf.training.stopping import Interrupted, StopFlag
from rnnclf.tuning import space as space_module
from rnnclf.tuning.trial import SCHEDULE, Observer, TrialRecord

pytest.importorskip("optuna")

# Two epochs, two small dimensions: each trial takes a second or two.
SPACE = {"train.lr": {"low": 0.01, "high": 0.05, "log": True}, "model.hidden_dim": [8, 16]}


def configure(config: Path, space: dict[str, Any] | None = SPACE, **tune: Any) -> Path:
    raw = yaml.safe_load(config.read_text(encoding="utf-8"))
    raw["train"]["epochs"] = 2
    raw["tune"] = {"space": space, **tune}
    config.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return config


class Collected(Observer):
    def __init__(self) -> None:
        self.records: list[TrialRecord] = []
        self.lines: list[str] = []

    def message(self, text: str) -> None:
        self.lines.append(text)

    def trial_ended(self, record: TrialRecord) -> None:
        self.records.append(record)


def run_tune(config: Path, folder: Path, **options: Any) -> tuple[dict[str, Any], Collected]:
    from rnnclf.tuning.study import tune

    observer = Collected()
    summary = tune(load(config), folder, observer=observer, **options)
    return summary, observer


# --- the space, checked before any training


@pytest.mark.parametrize(
    ("space", "fragments"),
    [
        ({"model.hiden_dim": [8, 16]}, ["tune.space.model.hiden_dim", "unknown key"]),
        ({"train.lr": [0.5, 0.1]}, ["tune.space.train.lr", "low 0.5 > high 0.1"]),
        ({"model.dropout": [0.1, 1.5]}, ["model.dropout", "tune.space.model.dropout"]),
        ({"model.pooling": []}, ["tune.space.model.pooling", "empty choice list"]),
        ({"model.pooling": ["max", "median"]}, ["model.pooling", "median"]),
        ({"data.train": ["a.csv", "b.csv"]}, ["tune.space.data.train", "cannot be searched"]),
        ({"train.lr": {"low": 0.0, "high": 1.0, "log": True}}, ["tune.space.train.lr", "log range"]),
    ],
)
def test_a_bad_space_is_one_line_naming_the_key_before_any_training(
    tiny_config: Path, space: dict[str, Any], fragments: list[str]
) -> None:
    configure(tiny_config, space)
    user_error(cli("tune", tiny_config, "--trials", "1", "--run-dir", "tuned"), *fragments)
    assert not Path("tuned").exists()  # nothing half-written


def test_a_precision_no_trial_can_train_in_is_one_line_before_any_training(
    tiny_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rnnclf.runtime

    monkeypatch.setattr(rnnclf.runtime, "bf16_runs", lambda device: False)
    configure(tiny_config, precision="bf16")
    user_error(cli("tune", tiny_config, "--trials", "2", "--run-dir", "tuned"), "train.precision = bf16")
    assert not Path("tuned").exists()


@pytest.mark.parametrize("baseline", [True, False])
def test_a_bad_data_file_is_one_line_before_the_tune_folder_is_made(
    tiny_config: Path, baseline: bool
) -> None:
    configure(tiny_config)
    raw = yaml.safe_load(tiny_config.read_text(encoding="utf-8"))
    raw["data"]["label_column"] = "labels"  # train.csv's column is "label"
    raw["train"]["baseline"] = baseline  # without the baseline too: not one failed trial after another
    tiny_config.write_text(yaml.safe_dump(raw), encoding="utf-8")
    user_error(cli("tune", tiny_config, "--trials", "2", "--run-dir", "tuned"), "train.csv", "'labels'")
    assert not Path("tuned").exists()  # nothing half-written: a fixed config then tunes without --resume


def test_a_bad_budget_and_a_missing_optuna_are_one_line(
    tiny_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(tiny_config)
    user_error(cli("tune", tiny_config, "--budget", "ten minutes"), "--budget ten minutes", "10m")
    user_error(cli("tune", tiny_config, "--set", "tune.budget=-5"), "tune.budget")
    monkeypatch.setitem(sys.modules, "optuna", None)
    user_error(cli("tune", tiny_config, "--trials", "1"), "optuna", "rnnclf[tune]")


def test_the_default_space_keeps_the_keys_the_user_set(tiny_config: Path) -> None:
    config = load(configure(tiny_config, None))  # tiny.yaml sets lr, batch size, hidden and embedding size
    dimensions, kept = space_module.search_space(config)
    searched = {dim.key for dim in dimensions}
    assert {"train.lr", "train.batch_size", "model.hidden_dim", "model.embedding_dim"} <= set(kept)
    assert not searched & set(kept)
    assert {"model.num_layers", "model.dropout", "text.max_length", "train.weight_decay"} <= searched
    assert "model.cell" not in searched and "ensemble.members" not in searched  # unless the space names them
    # A config with every key at its default (what init-config prints) searches the whole default space.
    everything, none_kept = space_module.search_space(load(_default_config(tiny_config)))
    assert {dim.key for dim in everything} == set(space_module.DEFAULT_SPACE) and none_kept == []


def test_multi_label_data_also_searches_thresholds_and_label_weights(tiny_config: Path) -> None:
    raw = yaml.safe_load(_default_config(tiny_config).read_text(encoding="utf-8"))
    raw["data"]["multi_label"] = True
    single = {dim.key for dim in space_module.search_space(load(_default_config(tiny_config)))[0]}
    assert "train.thresholds" not in single and "train.class_weights" not in single
    multi = tiny_config.parent / "multi.yaml"
    multi.write_text(yaml.safe_dump(raw), encoding="utf-8")
    dimensions, _ = space_module.search_space(load(multi))
    by_key = {dim.key: dim for dim in dimensions}
    assert by_key["train.thresholds"].choices == ("global", "per_label")
    assert by_key["train.class_weights"].choices == ("none", "auto")
    # A user who chose per-label thresholds keeps them.
    raw["train"]["thresholds"] = "per_label"
    multi.write_text(yaml.safe_dump(raw), encoding="utf-8")
    dimensions, kept = space_module.search_space(load(multi))
    assert "train.thresholds" in kept and "train.thresholds" not in {dim.key for dim in dimensions}
    # Chosen on macro-F1, the tune sets per-label thresholds (they maximise it on validation) and does
    # not search them; a user's own thresholds stay, and on micro-F1 both are searched (above).
    raw["train"]["thresholds"] = "global"
    raw["tune"] = {"metric": "valid_macro_f1"}
    multi.write_text(yaml.safe_dump(raw), encoding="utf-8")
    config = load(multi)
    assert "train.thresholds" not in {dim.key for dim in space_module.search_space(config)[0]}
    assert space_module.trained_with(config)["train.thresholds"] == "per_label"
    raw["train"]["thresholds"] = 0.3
    multi.write_text(yaml.safe_dump(raw), encoding="utf-8")
    config = load(multi)
    assert "train.thresholds" in space_module.search_space(config)[1]
    assert "train.thresholds" not in space_module.trained_with(config)


def _default_config(tiny_config: Path) -> Path:
    from rnnclf.config import default_yaml

    raw = yaml.safe_load(default_yaml())
    raw["data"]["train"] = str(tiny_config.parent / "train.csv")
    path = tiny_config.parent / "default.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def test_ranges_and_choices_parse_by_the_schema_type(tiny_config: Path) -> None:
    assert space_module.Dimension("train.optimizer", choices=("adamw",)).shown() == "train.optimizer = adamw"
    assert (
        space_module.Dimension("model.cell", choices=("lstm", "gru")).shown()
        == "model.cell in ['lstm', 'gru']"
    )
    space = {
        "model.num_layers": [1, 3],
        "train.warmup": [0, 0.2],
        "model.hidden_dim": {"choices": [8, 32]},
        "train.lr": [0.001, 0.1],
    }
    config = load(configure(tiny_config, space))
    dims = {dim.key: dim for dim in space_module.search_space(config)[0]}
    assert dims["model.num_layers"].integer and (
        dims["model.num_layers"].low,
        dims["model.num_layers"].high,
    ) == (1, 3)
    assert not dims["train.warmup"].integer and dims["train.warmup"].high == 0.2
    assert dims["model.hidden_dim"].choices == (8, 32)


# --- a tune end to end


@pytest.mark.slow
def test_a_tune_reports_trials_and_leaves_a_reproducible_best(tiny_config: Path, tmp_path: Path) -> None:
    configure(tiny_config, trials=3, budget="5m")
    result = ok(cli("tune", tiny_config, "--quiet", "--run-dir", "tuned"))
    folder = Path("tuned")
    summary = json.loads((folder / "tune.json").read_text(encoding="utf-8"))
    trials = summary["trials"]
    assert [trial["number"] for trial in trials] == [0, 1, 2]
    assert all(trial["state"] == "complete" and len(trial["scores"]) == 2 for trial in trials)
    assert {trial["worker"] for trial in trials} == {f"{socket.gethostname()}:{os.getpid()}"}
    assert (folder / "trials.csv").read_text(encoding="utf-8").count("\n") == 4  # header + 3 trials
    for line in (
        "best trial",
        "linear baseline: valid accuracy",
        "on test (scored once)",
        "reads optimistic",
    ):
        assert line in result.stdout
    # --quiet: one line per trial, then the summary.
    trial_lines = [line.split(":")[0] for line in result.stdout.splitlines() if line.startswith("trial ")]
    assert trial_lines == ["trial 0 complete", "trial 1 complete", "trial 2 complete"]
    best = summary["best"]
    assert best["valid"] == max(trial["value"] for trial in trials)
    # Only the best trial keeps a checkpoint; it is runs/LATEST, with its test score, and eval works on it.
    kept = sorted(path.parent.name for path in folder.glob("trials/*/*.pt"))
    assert kept == [f"{best['number']:04d}"]
    assert Path((Path("runs") / "LATEST").read_text(encoding="utf-8")) == Path(best["folder"]).resolve()
    assert (
        json.loads((Path(best["folder"]) / "metrics.json").read_text())["test"]["accuracy"]
        == summary["test"]["accuracy"]
    )
    evaluated = json.loads(ok(cli("eval", "--json")).stdout)
    assert evaluated["accuracy"] == pytest.approx(summary["test"]["accuracy"])
    # best.yaml: complete, absolute paths, no tune section; retrained from another folder it gives the
    # trial's validation score.
    raw = yaml.safe_load((folder / "best.yaml").read_text(encoding="utf-8"))
    assert (
        "tune" not in raw
        and Path(raw["data"]["train"]).is_absolute()
        and Path(raw["data"]["test"]).is_absolute()
    )
    assert raw["model"]["hidden_dim"] == best["values"]["model.hidden_dim"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.chdir(elsewhere)
    ok(cli("train", (tmp_path / folder / "best.yaml").resolve(), "--quiet", "--run-dir", "again"))
    again = json.loads(Path("again/metrics.json").read_text(encoding="utf-8"))
    assert again["valid"]["accuracy"] == best["valid"]
    assert again["test"]["accuracy"] == summary["test"]["accuracy"]


def test_the_starting_point_is_the_config_where_the_space_holds_it() -> None:
    from rnnclf.config import Config
    from rnnclf.tuning.space import Dimension, starting_point

    config = Config()
    config.train.lr, config.model.hidden_dim, config.text.max_length = 0.02, 16, 100
    config.model.dropout = 0.25
    dimensions = [
        Dimension("train.lr", low=0.01, high=0.05, log=True),
        Dimension("model.hidden_dim", choices=(8, 16)),
        Dimension("text.max_length", choices=(64, 128)),  # 100 is not a choice: left to the sampler
        Dimension("model.dropout", low=0.0, high=0.6, step=0.2),  # 0.25 is off the grid: left too
        Dimension("model.num_layers", low=1, high=3, integer=True),
    ]
    expected = {"train.lr": 0.02, "model.hidden_dim": 16, "model.num_layers": 1}
    assert starting_point(config, dimensions) == expected


def test_the_first_trial_is_the_config_given_with_adversarial_steps_then_the_config_given() -> None:
    from rnnclf.config import Config
    from rnnclf.tuning.space import Dimension, search_space, starting_point, starting_points

    config = Config()
    dimensions, _ = search_space(config)  # the default space
    first, second = starting_points(config, dimensions)
    assert second == starting_point(config, dimensions)
    assert second["train.adversarial"] == 0.0 and second["train.lr"] == config.train.lr
    assert first == {**second, "train.adversarial": 0.02}
    # Adversarial steps the user set stay as set: the space does not hold the key, no second trial.
    config.train.adversarial = 0.1
    dimensions, kept = search_space(config)
    assert "train.adversarial" in kept
    assert starting_points(config, dimensions) == [starting_point(config, dimensions)]
    # Multi-label data chosen on macro-F1: the first trial also weights rare labels' positives up.
    multi = Config()
    multi.data.multi_label, multi.tune.metric = True, "valid_macro_f1"
    dimensions, _ = search_space(multi)
    first, second = starting_points(multi, dimensions)
    assert second["train.class_weights"] == "none"
    assert first == {**second, "train.adversarial": 0.02, "train.class_weights": "auto"}
    multi.tune.metric = "valid_micro_f1"  # on micro-F1, frequent labels weigh most: as given
    dimensions, _ = search_space(multi)
    first, second = starting_points(multi, dimensions)
    assert first == {**second, "train.adversarial": 0.02}
    # A space that cannot hold 0.02, or does not search the key: only the config given.
    lr = Dimension("train.lr", low=1e-4, high=1e-2, log=True)
    assert len(starting_points(Config(), [lr, Dimension("train.adversarial", choices=(0.0, 0.1))])) == 1
    assert len(starting_points(Config(), [lr])) == 1
    # A range holds it; a config whose own value is 0.02 needs no second trial.
    assert len(starting_points(Config(), [lr, Dimension("train.adversarial", low=0.0, high=0.2)])) == 2
    config = Config()
    config.train.adversarial = 0.02
    assert len(starting_points(config, [lr, Dimension("train.adversarial", low=0.0, high=0.2)])) == 1


def test_resume_without_budget_continues_with_the_budget_the_tune_was_given(
    tiny_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tune started with --budget 90 and stopped after 30 s: `--resume` alone continues with 60 s (not
    with tune.budget's 10 minutes); `--resume --budget 120` with 90 s; tune.json keeps the latest."""
    from rnnclf.tuning import study as study_module

    given: list[float] = []

    def spending(config: Any, dims: Any, tune_dir: Path, storage: Any, name: str, deadline: float,
                 *rest: Any) -> None:  # fmt: skip
        given.append(round(deadline - time.time()))
        clock[0] += 30.0  # the trials' time: the tune counts it as spent
        raise Interrupted(signal.SIGINT, tune_dir)

    clock = [1_000_000.0]
    monkeypatch.setattr(study_module, "work", spending)
    monkeypatch.setattr(study_module.time, "time", lambda: clock[0])
    configure(tiny_config, None, trials=2, budget="10m")
    for options in ({"budget": "90"}, {"resume": True}, {"resume": True, "budget": "120"}):
        with pytest.raises(Interrupted):
            study_module.tune(load(tiny_config), Path("stopped"), observer=Collected(), **options)
    assert given == [90, 60, 60]  # 90 - 30; then 120 - 60 spent


def test_resume_alone_keeps_the_trial_count_and_budget_where_the_config_sets_neither(
    tiny_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`tune.budget: null` and no trial count in the config; the tune started with `--budget 90 --trials
    5`: `--resume` alone continues with both (it failed "no budget and no trial count" before)."""
    from rnnclf.tuning import study as study_module

    given: list[tuple[int, int | None]] = []

    def spending(config: Any, dims: Any, tune_dir: Path, storage: Any, name: str, deadline: float,
                 *rest: Any) -> None:  # fmt: skip
        given.append((round(deadline - time.time()), config.tune.trials))
        clock[0] += 30.0
        raise Interrupted(signal.SIGINT, tune_dir)

    clock = [1_000_000.0]
    monkeypatch.setattr(study_module, "work", spending)
    monkeypatch.setattr(study_module.time, "time", lambda: clock[0])
    configure(tiny_config, None, trials=None, budget=None)
    for options in ({"budget": "90", "trials": 5}, {"resume": True}, {"resume": True, "trials": 7}):
        with pytest.raises(Interrupted):
            study_module.tune(load(tiny_config), Path("stopped"), observer=Collected(), **options)
    assert given == [(90, 5), (60, 5), (30, 7)]
    kept = yaml.safe_load((Path("stopped") / study_module.TUNE_CONFIG).read_text(encoding="utf-8"))
    assert kept["tune"]["trials"] == 7  # the tune folder's config says the count in effect
    # A new tune with neither is still one line, and leaves no folder behind.
    with pytest.raises(RnnclfError, match="no budget and no trial count"):
        study_module.tune(load(tiny_config), Path("neither"), observer=Collected())
    assert not Path("neither").exists()


def test_a_new_study_queues_the_config_given_with_adversarial_steps_then_as_given(
    tiny_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """tune()'s wiring: the default space's starting trials wait in the study's queue, in order, before
    any trial runs, and the command says so; a resumed study queues nothing again."""
    from rnnclf.tuning import study as study_module

    queued: list[dict[str, Any]] = []

    def looking(config: Any, dims: Any, tune_dir: Path, storage: Any, name: str, *rest: Any) -> None:
        study = study_module.open_study(config, tune_dir, storage, name, 0)
        queued[:] = [trial.system_attrs["fixed_params"] for trial in study.get_trials(deepcopy=False)]

    monkeypatch.setattr(study_module, "work", looking)
    configure(tiny_config, None, trials=2, budget=None)
    observer = Collected()
    with pytest.raises(RnnclfError, match="no trial completed"):
        study_module.tune(load(tiny_config), Path("queued"), observer=observer)
    first, second = queued
    said = "first trials: the config given with train.adversarial = 0.02; the config given"
    assert any(said in line for line in observer.lines)
    assert second["train.adversarial"] == 0.0 and first == {**second, "train.adversarial": 0.02}
    with pytest.raises(RnnclfError, match="no trial completed"):
        run_tune(tiny_config, Path("queued"), resume=True)
    assert len(queued) == 2  # the same two, not queued again


@pytest.mark.slow
def test_the_first_trial_is_the_configuration_given(tiny_config: Path) -> None:
    configure(tiny_config, trials=2, budget=None)
    raw = yaml.safe_load(tiny_config.read_text(encoding="utf-8"))
    raw["train"]["lr"], raw["model"]["hidden_dim"] = 0.02, 16
    tiny_config.write_text(yaml.safe_dump(raw), encoding="utf-8")
    run_tune(tiny_config, Path("given"))
    trials = json.loads(Path("given", "tune.json").read_text())["trials"]
    assert trials[0]["values"] == {"train.lr": 0.02, "model.hidden_dim": 16}
    assert trials[1]["values"] != trials[0]["values"]  # then the sampler's


def test_the_median_pruner_judges_from_the_third_trial_and_the_second_epoch() -> None:
    """Two complete trials (the first is the config given) set the bar; a trial is judged from its second
    epoch on (never on its first alone), against their median at the same epoch."""
    import optuna

    from rnnclf.tuning.study import _pruner

    study = optuna.create_study(direction="maximize", pruner=_pruner(optuna, "median", 10))

    def trial_reporting(scores: list[float]) -> Any:
        trial = study.ask()
        trial.set_user_attr(SCHEDULE, 10)
        for epoch, score in enumerate(scores, start=1):
            trial.report(score, epoch)
        return trial

    first = trial_reporting([0.5, 0.6, 0.7])
    assert not trial_reporting([0.1, 0.1, 0.1]).should_prune()  # nothing complete yet: no bar
    study.tell(first, 0.7)
    study.tell(trial_reporting([0.4, 0.5, 0.6]), 0.6)
    assert not trial_reporting([0.1]).should_prune()  # the first epoch alone: too early to judge
    assert trial_reporting([0.1, 0.1]).should_prune()  # below the median of the two at epoch 2
    assert not trial_reporting([0.1, 0.1, 0.66]).should_prune()  # its best so far is above it at epoch 3


class _Study:
    def __init__(self, complete: int, waiting: int) -> None:
        self.complete, self.waiting = complete, waiting

    def get_trials(self, deepcopy: bool, states: tuple[Any, ...]) -> list[int]:
        import optuna

        return list(range(self.waiting if states == (optuna.trial.TrialState.WAITING,) else self.complete))


class _Trial:
    """What TrialReporter asks of an Optuna trial (never prunes): `complete` trials in its study, and
    `waiting` in its queue."""

    def __init__(self, complete: int, waiting: int = 0) -> None:
        self.study = _Study(complete, waiting)
        self.reported: list[tuple[float, int]] = []

    def report(self, value: float, step: int) -> None:
        self.reported.append((value, step))

    def should_prune(self) -> bool:
        return False


@pytest.mark.parametrize(
    ("epoch_seconds", "time_left", "complete", "waiting", "folds_after", "shorter", "stopped"),
    [
        (10.0, 100.0, 1, 0, 0, None, False),  # 8 epochs left at 10 s: 80 s fits in 100 s
        (20.0, 100.0, 1, 0, 0, None, True),  # 160 s does not
        (20.0, 100.0, 0, 0, 0, None, False),  # no complete trial yet, it cannot run again shorter: goes on
        (20.0, 100.0, 0, 0, 0, False, False),  # the same: no shorter schedule fits
        (20.0, 100.0, 0, 0, 0, True, True),  # none complete, but a shorter schedule fits: stopped
        (10.0, 100.0, 1, 0, 1, None, True),  # a fold still to come: 8 + 10 epochs
        (20.0, 100.0, 0, 1, 0, None, True),  # none complete, but a trial waits (the config given): stopped
    ],
)
def test_a_trial_that_cannot_finish_in_the_budget_left_stops_at_its_epoch_boundary(
    monkeypatch: pytest.MonkeyPatch,
    epoch_seconds: float,
    time_left: float,
    complete: int,
    waiting: int,
    folds_after: int,
    shorter: bool | None,
    stopped: bool,
) -> None:
    from rnnclf.tuning import trial as trial_module

    now = 1_000_000.0
    monkeypatch.setattr(trial_module.time, "time", lambda: now)
    record = TrialRecord(3, {})
    stop = trial_module.TrialStop(StopFlag())
    trial = _Trial(complete, waiting)
    asked: list[tuple[float, float]] = []

    def fits(left: float, cost: float) -> int | None:
        asked.append((left, cost))
        return 4 if shorter else None  # the epochs that fit, or none

    reporter = trial_module.TrialReporter(
        trial, record, "valid_accuracy", now + time_left, stop, Observer(), True, folds_after,
        None if shorter is None else fits,
    )  # fmt: skip
    for epoch in (1, 2):
        reporter.epoch_start(epoch, 10, 5)
        row = {"epoch": epoch, "valid_accuracy": 0.5, "train_loss": 1.0, "seconds": epoch_seconds}
        reporter.epoch_end(row)
        if stop.signal is not None:
            break
    if stopped:
        assert stop.signal == trial_module.CANNOT_FINISH and epoch == 1
        assert reporter.reason.startswith(f"cannot finish its {9 + 10 * folds_after} epochs left")
        assert reporter.epoch_cost == epoch_seconds  # one epoch's seconds: what a fitted rerun plans with
        assert reporter.fit_epochs == (4 if shorter and not complete and not waiting else None)
    else:
        assert stop.signal is None and reporter.reason == ""
    if shorter is not None:  # asked with the time left and one epoch's seconds
        assert asked[0] == (time_left, epoch_seconds)
    # Past the deadline the budget stops it, whatever it could finish.
    reporter.deadline = now - 1
    reporter.epoch_start(3, 10, 5)
    reporter.epoch_end({"epoch": 3, "valid_accuracy": 0.5, "train_loss": 1.0, "seconds": epoch_seconds})
    assert stop.signal == trial_module.OVER_BUDGET


# The last case: none complete and a trial waiting, which does not make the first trial's epoch end early.
@pytest.mark.parametrize(
    ("complete", "waiting", "epoch", "stopped"),
    [(1, 0, 1, True), (0, 0, 1, False), (1, 0, 10, False), (0, 1, 1, False)],
)
def test_past_the_deadline_a_trial_that_cannot_complete_stops_within_its_epoch(
    monkeypatch: pytest.MonkeyPatch, complete: int, waiting: int, epoch: int, stopped: bool
) -> None:
    from rnnclf.tuning import trial as trial_module

    now = 1_000_000.0
    monkeypatch.setattr(trial_module.time, "time", lambda: now)
    stop = trial_module.TrialStop(StopFlag())
    trial = _Trial(complete, waiting)
    reporter = trial_module.TrialReporter(
        trial, TrialRecord(3, {}), "valid_accuracy", now + 5, stop, Observer()
    )
    reporter.epoch_start(epoch, 10, 100)
    reporter.step(1, 1.0, 100.0)
    assert stop.signal is None  # before the deadline
    now += 10
    reporter.step(2, 1.0, 100.0)
    # Stopped at this step only once the study holds a complete trial and not in the last epoch (which
    # may still complete the trial); otherwise the epoch ends whole, as before.
    assert stop.signal == (trial_module.OVER_BUDGET if stopped else None)


@pytest.mark.parametrize(
    ("time_left", "complete", "waiting", "folds_after", "shorter", "stopped_at"),
    [
        (500.0, 1, 0, 0, None, 60),  # 10 epochs of 1,000 steps at 0.1 s: about 1,000 s, not in 500 s
        (1_200.0, 1, 0, 0, None, None),  # fits, though its first 10 steps took 5 s each (warming up)
        (500.0, 0, 0, 0, None, None),  # no complete trial yet, it cannot run again shorter: goes on
        (500.0, 0, 0, 0, False, None),  # the same: no shorter schedule fits
        (500.0, 0, 0, 0, True, 60),  # none complete, but a shorter schedule fits: stopped
        (1_200.0, 1, 0, 1, None, 60),  # a fold still to come: about 2,000 s
        (500.0, 0, 1, 0, None, 60),  # none complete, but a trial waits (the config given): stopped
    ],
)
def test_a_trial_far_too_long_for_the_time_left_stops_after_its_first_steps(
    monkeypatch: pytest.MonkeyPatch,
    time_left: float,
    complete: int,
    waiting: int,
    folds_after: int,
    shorter: bool | None,
    stopped_at: int | None,
) -> None:
    from rnnclf.tuning import trial as trial_module

    clock = [1_000_000.0]
    monkeypatch.setattr(trial_module.time, "time", lambda: clock[0])
    stop = trial_module.TrialStop(StopFlag())
    trial = _Trial(complete, waiting)
    reporter = trial_module.TrialReporter(
        trial, TrialRecord(3, {}), "valid_accuracy", clock[0] + time_left, stop, Observer(), True,
        folds_after, None if shorter is None else (lambda left, cost: 4 if shorter else None),
    )  # fmt: skip
    reporter.epoch_start(1, 10, 1000)
    for done in range(1, 301):
        clock[0] += 5.0 if done <= 10 else 0.1  # the first steps are slow: they are not timed
        reporter.step(done, 1.0, 100.0)
        if stop.signal is not None:
            break
    if stopped_at is None:
        assert stop.signal is None and reporter.reason == ""
    else:
        # Judged once 10 timed steps and 5% of the epoch (50 steps) are behind the 10th step.
        assert stop.signal == trial_module.CANNOT_FINISH and done == stopped_at
        epochs = 10 * (1 + folds_after)
        assert reporter.reason.startswith(f"cannot finish its {epochs} epochs in the ")
        assert (
            f"(about {0.1 * (1000 * epochs - 60):.0f}s at the rate of its first 60 steps)" in reporter.reason
        )
        assert reporter.epoch_cost == pytest.approx(0.1 * 1000)  # 1,000 steps at the timed steps' 0.1 s


def test_no_trial_starts_when_the_time_left_is_shorter_than_the_fastest_epoch_or_quickest_trial() -> None:
    from types import SimpleNamespace

    import optuna

    from rnnclf.tuning.study import too_late

    complete, pruned = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED

    class Trials:
        def __init__(self, *trials: tuple[Any, list[float], float]) -> None:
            self.trials = [
                SimpleNamespace(state=state, user_attrs={"epoch_seconds": list(epochs), "seconds": seconds})
                for state, epochs, seconds in trials
            ]

        def get_trials(self, deepcopy: bool) -> list[Any]:
            return self.trials

    study = Trials((complete, [30.0, 31.0], 63.0), (pruned, [12.0], 14.0), (pruned, [], 2.0))
    assert too_late(study, deadline=100.0, now=90.0) == (
        "no trial started in the last 10s: the fastest epoch took 12s"
    )
    # 40 s left: one epoch fits, but not what the quickest complete trial took (a pruned one does not count)
    assert too_late(study, deadline=100.0, now=60.0) == (
        "no trial started in the last 40s: the quickest complete trial took 63s"
    )
    # A trial waiting in the queue (fitted to the time left, or a starting trial): only the fastest-epoch
    # rule applies.
    assert too_late(study, deadline=100.0, now=60.0, queued=True) == ""
    assert too_late(study, deadline=100.0, now=90.0, queued=True).endswith("the fastest epoch took 12s")
    assert too_late(study, deadline=100.0, now=30.0) == ""  # 70 s left
    assert too_late(Trials(), deadline=100.0, now=99.0) == ""  # nothing seen yet: the first trial starts
    assert too_late(study, deadline=float("inf"), now=1e12) == ""  # no budget (a trial count only)


@pytest.mark.parametrize(
    ("epochs", "left", "epoch_seconds", "fitted"),
    [
        ({"low": 3, "high": 15}, 200.0, 20.0, 8),  # (200 - 10 s to start) / (20 s x 1.15) = 8.3
        ({"low": 3, "high": 15}, 50.0, 20.0, None),  # 1 epoch fits: fewer than the dimension allows
        ({"low": 3, "high": 15, "step": 2}, 200.0, 20.0, 7),  # on the grid 3, 5, 7, ...
        ({"choices": [3, 5, 10]}, 200.0, 20.0, 5),
        ({"low": 3, "high": 15}, 2000.0, 20.0, 11),  # fewer than it had (12), however many fit
        (None, 200.0, 20.0, None),  # train.epochs not searched: nothing to cut
    ],
)
def test_a_trial_that_cannot_finish_is_fitted_to_the_epochs_the_time_left_holds(
    epochs: dict[str, Any] | None, left: float, epoch_seconds: float, fitted: int | None
) -> None:
    from rnnclf.config import validate
    from rnnclf.tuning.space import search_space
    from rnnclf.tuning.trial import fit_to_time

    space = {"train.lr": {"low": 0.001, "high": 0.01, "log": True}}
    if epochs is not None:
        space["train.epochs"] = epochs
    config = validate({"data": {"train": "x.csv"}, "tune": {"space": space}}, "test")
    dimensions, _ = search_space(config)
    values = {"train.lr": 0.003, "train.epochs": 12}
    got = fit_to_time(values, dimensions, left, epoch_seconds)
    assert got == (None if fitted is None else {"train.lr": 0.003, "train.epochs": fitted})


def test_a_trial_stopped_as_unable_to_finish_runs_again_next_with_the_epochs_that_fit(
    tiny_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The study's wiring, with trials that only pretend to train: a trial stopped as unable to finish
    (its epoch cost measured) is queued again with the epochs that fit, and is the next trial; a fitted
    trial that cannot finish either is not queued again."""
    from rnnclf.tuning import study as study_module
    from rnnclf.tuning.space import suggest
    from rnnclf.tuning.trial import FIT_MARGIN, FIT_START_SECONDS, FITTED

    def pretending(base: Any, trial: Any, dims: Any, tune_dir: Path, metric: str, deadline: float,
                   *rest: Any) -> TrialRecord:  # fmt: skip
        values = suggest(trial, dims)
        record = TrialRecord(trial.number, values, fitted_from=trial.user_attrs.get(FITTED))
        if trial.number > 0 and values["train.epochs"] >= 5:
            # 5.5 epochs of this cost fit in the time left (less the margins): 5 are queued. The fitted
            # trial (5 epochs) is stopped too: it is not queued again.
            record.state, record.reason = "incomplete", "cannot finish"
            record.epoch_cost = (deadline - time.time() - FIT_START_SECONDS) / (FIT_MARGIN * 5.5)
        else:
            record.state, record.value = "complete", 0.5
        trial.set_user_attr("state", record.state)
        trial.set_user_attr("reason", record.reason)
        trial.set_user_attr(FITTED, record.fitted_from)
        return record

    monkeypatch.setattr(study_module, "run_trial", pretending)
    monkeypatch.setattr(study_module, "_keep_best_only", lambda study, number: None)
    space = {"train.epochs": [2, 40], "train.lr": {"low": 0.01, "high": 0.05, "log": True}}
    configure(tiny_config, space, trials=12, budget="1h")
    observer = Collected()
    Path("tuned").mkdir()
    dims, _ = space_module.search_space(load(tiny_config))
    study_module.work(load(tiny_config), dims, Path("tuned"), None, "tuned", time.time() + 3600, 0,
                      StopFlag(), observer)  # fmt: skip
    records = {record.number: record for record in observer.records}
    stopped = [r for r in records.values() if r.state == "incomplete" and r.fitted_from is None]
    assert stopped, "no draw had more than 5 epochs: the wiring was not exercised"
    assert len(records) == 12  # tune.trials: a trial queued by the last one waits unrun
    for record in stopped:
        assert record.reason == "cannot finish; queued again with 5 epochs, the most that fit"
        if record.number + 1 in records:
            again = records[record.number + 1]  # the next trial
            assert again.fitted_from == record.number and again.values == {**record.values, "train.epochs": 5}
            assert again.state == "incomplete" and again.reason == "cannot finish"  # not queued again
            assert record.number + 2 not in records or records[record.number + 2].fitted_from is None
    fitted = [r.fitted_from for r in records.values() if r.fitted_from is not None]
    assert fitted == [r.number for r in stopped if r.number + 1 in records]  # once each, nothing else


def _study_in_tuned(tiny_config: Path, space: dict[str, Any], trials: int) -> tuple[Any, Any, Any]:
    """(config, dimensions, a new study in ./tuned) for tests that drive study.work themselves."""
    from rnnclf.tuning import study as study_module

    configure(tiny_config, space, trials=trials)
    config = load(tiny_config)
    dims, _ = space_module.search_space(config)
    Path("tuned").mkdir()
    return config, dims, study_module.open_study(config, Path("tuned"), None, "tuned", 0)


def test_a_first_trial_whose_schedule_cannot_end_in_the_budget_runs_again_with_the_epochs_that_fit(
    tiny_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The config given is the study's first trial and nothing waits behind it; its 10 epochs of 50 s
    cannot end in the 400 s budget. It is stopped after its first steps and runs again with the epochs
    that fit, which complete (before, it ran until the budget ran out and the tune ended with nothing
    complete: "too short for one trial"). Real trials (run_trial, the reporter, the queue); training is a
    stand-in that reports 100 steps of 0.5 s an epoch on a fake clock."""
    from rnnclf.training import loop
    from rnnclf.training.stopping import Interrupted
    from rnnclf.tuning import study as study_module

    clock = [1_000_000.0]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    trained: list[int] = []

    def stand_in(config: Any, folder: Path, reporter: Any, stop: StopFlag) -> dict[str, Any]:
        epochs = config.train.epochs
        trained.append(epochs)
        for epoch in range(1, epochs + 1):
            reporter.epoch_start(epoch, epochs, 100)
            for done in range(1, 101):
                clock[0] += 0.5
                reporter.step(done, 1.0, 100.0)
                if stop.signal is not None:
                    raise Interrupted(stop.signal, folder)
            reporter.epoch_end({"epoch": epoch, "valid_accuracy": 0.5, "train_loss": 1.0, "seconds": 50.0})
            if stop.signal is not None:
                raise Interrupted(stop.signal, folder)
        return {"valid": {"accuracy": 0.5}}

    monkeypatch.setattr(loop, "train", stand_in)
    config, dims, study = _study_in_tuned(
        tiny_config, {"train.epochs": [3, 15], "train.lr": [0.001, 0.01]}, 2
    )
    study.enqueue_trial({"train.epochs": 10, "train.lr": 0.002})  # the config given
    observer = Collected()
    study_module.work(config, dims, Path("tuned"), None, "tuned", clock[0] + 400, 0, StopFlag(), observer)
    first, again = observer.records
    assert first.state == "incomplete" and first.reason.startswith("cannot finish its 10 epochs in the ")
    assert first.reason.endswith("queued again with 6 epochs, the most that fit")  # (390 - 10) / (50 * 1.15)
    assert again.fitted_from == 0 and again.values == {"train.epochs": 6, "train.lr": 0.002}
    assert again.state == "complete" and trained == [10, 6]


def test_the_config_given_starts_after_an_adversarial_first_trial_longer_than_the_time_left(
    tiny_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The study's wiring, with trials that only pretend to train: the quickest-complete rule, which
    keeps the sampler's draws from starting in too little time, does not hold back the config given
    waiting behind a longer adversarial first trial (IMDB's first 5,000 reviews, 20 minutes: 710 s
    taken, 447 s left, the config given 436 s)."""
    import optuna

    from rnnclf.tuning import study as study_module
    from rnnclf.tuning.space import suggest

    deadline = time.time() + 3600

    def pretending(base: Any, trial: Any, dims: Any, *rest: Any) -> TrialRecord:
        record = TrialRecord(trial.number, suggest(trial, dims), state="complete", value=0.5)
        trial.set_user_attr("seconds", 7200.0 if trial.number == 0 else 5000.0)  # more than the time left
        trial.set_user_attr("state", record.state)
        return record

    monkeypatch.setattr(study_module, "run_trial", pretending)
    config, dims, study = _study_in_tuned(
        tiny_config, {"train.adversarial": [0.0, 0.02], "train.lr": [0.001, 0.01]}, 5
    )
    for point in space_module.starting_points(config, dims):
        study.enqueue_trial(point)
    observer = Collected()
    study_module.work(config, dims, Path("tuned"), None, "tuned", deadline, 0, StopFlag(), observer)
    ran = [record.values["train.adversarial"] for record in observer.records]
    assert ran == [0.02, 0.0]  # the starting trials; then no draw: under 3,600 s left, under 5,000 s
    assert observer.lines[-1].endswith("the quickest complete trial took 5000s")
    assert study.get_trials(states=(optuna.trial.TrialState.WAITING,)) == []


def test_no_fitted_rerun_is_queued_while_another_trial_waits() -> None:
    """The adversarial starting trial stopped as unable to finish is not fitted while the config given
    waits behind it: that one runs next, and epochs fitted to the time left now would not fit after it.
    The config given, stopped with nothing waiting, is fitted as any trial."""
    import optuna

    from rnnclf.config import validate
    from rnnclf.tuning.study import _queue_fitted

    config = validate({"data": {"train": "x.csv"}, "tune": {"space": {"train.epochs": [2, 40]}}}, "test")
    dims, _ = space_module.search_space(config)
    study = optuna.create_study()
    waiting = (optuna.trial.TrialState.WAITING,)
    study.enqueue_trial({"train.epochs": 12})  # the adversarial starting trial
    study.enqueue_trial({"train.epochs": 10})  # the config given

    def stopped_then_queued() -> tuple[TrialRecord, list[dict[str, Any]]]:
        trial = study.ask()
        trial.suggest_int("train.epochs", 2, 40)
        record = TrialRecord(trial.number, dict(trial.params), state="incomplete", epoch_cost=10.0)
        _queue_fitted(study, trial, record, dims, time.time() + 3600, 1)
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        return record, [t.system_attrs["fixed_params"] for t in study.get_trials(states=waiting)]

    record, queued = stopped_then_queued()  # the adversarial one: the config given waits
    assert queued == [{"train.epochs": 10}] and "queued again" not in record.reason
    # The config given: nothing waits, so it is fitted (the time allows more: one epoch fewer than its 10).
    record, queued = stopped_then_queued()
    assert queued == [{"train.epochs": 9}] and "queued again with 9 epochs" in record.reason


def test_a_trial_stopped_on_the_promise_of_a_rerun_is_queued_even_when_the_time_left_shrank() -> None:
    """The study's first trial, stopped only because a shorter schedule fitted (nothing complete, nothing
    waiting), is queued with the epochs the reporter found, even where the seconds since then leave too
    few for fit_to_time: else the tune would end with no model."""
    import optuna

    from rnnclf.config import validate
    from rnnclf.tuning.study import _queue_fitted

    config = validate({"data": {"train": "x.csv"}, "tune": {"space": {"train.epochs": [3, 40]}}}, "test")
    dims, _ = space_module.search_space(config)
    study = optuna.create_study()
    waiting = (optuna.trial.TrialState.WAITING,)
    trial = study.ask()
    trial.suggest_int("train.epochs", 3, 40)
    # 10 s an epoch with 30 s left: fit_to_time gives (30 - 10) / 11.5 = 1 epoch, under the space's 3.
    record = TrialRecord(trial.number, dict(trial.params), state="incomplete", epoch_cost=10.0)
    _queue_fitted(study, trial, record, dims, time.time() + 30, 1)
    assert study.get_trials(states=waiting) == []  # no promise: nothing queued
    record.fit_epochs = 3  # what the reporter found when it stopped the trial
    _queue_fitted(study, trial, record, dims, time.time() + 30, 1)
    queued = [t.system_attrs["fixed_params"] for t in study.get_trials(states=waiting)]
    assert queued == [{**trial.params, "train.epochs": 3}] and "queued again with 3 epochs" in record.reason


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_the_median_pruner_compares_trials_at_the_same_share_of_their_schedules(direction: str) -> None:
    """train.epochs is searched and the learning rate decays over each trial's own schedule, so a long
    trial's early epochs score lower than a short trial's last ones: the bar at epoch e of E is the
    complete trials' scores at the last epoch within e/E of their own schedules."""
    import optuna

    from rnnclf.tuning.study import _pruner

    sign = 1.0 if direction == "maximize" else -1.0  # the same scores as losses: smaller is better
    study = optuna.create_study(direction=direction, pruner=_pruner(optuna, "median", 12))

    def trial_reporting(epochs: int, scores: list[float]) -> Any:
        trial = study.ask()
        trial.set_user_attr(SCHEDULE, epochs)
        for epoch, score in enumerate(scores, start=1):
            trial.report(sign * score, epoch)
        return trial

    for _ in range(2):  # two short schedules, complete: 0.8 at the end of epoch 2 of 3
        study.tell(trial_reporting(3, [0.6, 0.8, 0.85]), sign * 0.85)
    # A 12-epoch trial at epoch 2 (1/6 of its schedule) with 0.5: an epoch-matched median (0.8) would stop
    # it; within 1/6 of their schedules the short trials reported nothing yet, so there is no bar.
    assert not trial_reporting(12, [0.4, 0.5]).should_prune()
    # At epoch 4 of 12 (1/3) the bar is their first epoch (1/3 of 3): 0.6.
    assert not trial_reporting(12, [0.4, 0.5, 0.55, 0.62]).should_prune()
    assert trial_reporting(12, [0.4, 0.5, 0.55, 0.58]).should_prune()
    # At epoch 8 of 12 (2/3) the bar is their second epoch: 0.8.
    assert trial_reporting(12, [0.4, 0.5, 0.55, 0.62, 0.7, 0.72, 0.75, 0.78]).should_prune()
    assert not trial_reporting(12, [0.4, 0.5, 0.55, 0.62, 0.7, 0.72, 0.75, 0.81]).should_prune()


def test_one_trial_is_the_configuration_given(tiny_config: Path) -> None:
    """--trials 1 runs one trial, the config itself (the starting point waiting in the queue is not a
    trial run: it used to count, and --trials 1 ran none)."""
    configure(tiny_config, trials=1, budget=None)
    summary, observer = run_tune(tiny_config, Path("one-trial"))
    assert [record.values for record in observer.records] == [{"train.lr": 0.03, "model.hidden_dim": 16}]
    assert summary["trial_count"] == 1 and summary["states"]["complete"] == 1


def test_tune_metric_is_what_trials_are_scored_and_chosen_on(tiny_config: Path) -> None:
    """tune.metric, not train.monitor, scores each trial, sets the direction and picks the best (here the
    loss: smaller is better)."""
    configure(tiny_config, trials=2, budget=None, metric="valid_loss")
    summary, observer = run_tune(tiny_config, Path("by-loss"))
    assert summary["metric"] == "valid_loss"
    for record in observer.records:
        assert record.state == "complete" and record.value == pytest.approx(min(record.scores))
        rows = [json.loads(line) for line in (Path(record.folder) / "metrics.jsonl").read_text().splitlines()]
        assert record.scores == pytest.approx([row["valid_loss"] for row in rows if "valid_loss" in row])
    assert summary["best"]["valid"] == min(record.value for record in observer.records)


@pytest.mark.parametrize(("fast", "setting", "expected"), [(True, "auto", "bf16"), (False, "auto", "fp32"),
                                                          (True, "fp32", "fp32")])  # fmt: skip
def test_trials_train_in_bf16_where_the_hardware_runs_it_fast(
    tiny_config: Path, monkeypatch: pytest.MonkeyPatch, fast: bool, setting: str, expected: str
) -> None:
    """tune.precision auto: bf16 for every trial where it is fast (a CPU with AMX, a CUDA GPU with bf16),
    the config's precision elsewhere or when tune.precision says so; best.yaml keeps the trials' one.
    Where this CPU cannot train an LSTM in bf16 at all, the bf16 case checks the choice without training."""
    import rnnclf.runtime

    monkeypatch.setattr(rnnclf.runtime, "fast_bf16", lambda device: fast)
    configure(tiny_config, trials=1, budget=None, precision=setting)
    chosen = space_module.trained_with(load(tiny_config))["train.precision"]
    assert chosen == expected
    if expected == "bf16" and not rnnclf.runtime.bf16_runs(rnnclf.runtime.choose_device("cpu")):
        pytest.skip("this CPU has no bf16 LSTM kernel: the choice is checked, no bf16 trial can train here")
    summary, observer = run_tune(tiny_config, Path(f"precision-{fast}-{setting}"))
    trial = yaml.safe_load((Path(observer.records[0].folder) / "config.yaml").read_text())
    best = yaml.safe_load(Path(summary["best_yaml"]).read_text())
    assert trial["train"]["precision"] == best["train"]["precision"] == expected
    said = [line for line in observer.lines if "trials train in bf16" in line]
    assert len(said) == (setting == "auto" and fast)


@pytest.mark.slow
def test_the_same_seed_gives_the_same_trials(tiny_config: Path) -> None:
    configure(tiny_config, trials=3, budget=None)
    run_tune(tiny_config, Path("one"))
    run_tune(tiny_config, Path("two"))
    trials = [json.loads(Path(name, "tune.json").read_text())["trials"] for name in ("one", "two")]
    assert [(t["values"], t["scores"]) for t in trials[0]] == [(t["values"], t["scores"]) for t in trials[1]]
    assert len({json.dumps(t["values"]) for t in trials[0]}) == 3  # the sampler did vary them
    other = load(tiny_config)
    other.tune.seed = 1
    from rnnclf.tuning.study import tune

    tune(other, Path("three"), observer=Collected())
    third = json.loads(Path("three", "tune.json").read_text())["trials"]
    assert [t["values"] for t in third] != [t["values"] for t in trials[0]]


@pytest.mark.slow
def test_trials_whose_text_settings_agree_share_the_preprocessing(
    tiny_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rnnclf.prepare as prepare_module

    built: list[tuple[int, int]] = []
    original = prepare_module._prepare

    def counting(config: Any, *args: Any) -> Any:
        built.append((config.text.min_freq, config.data.test is not None))
        return original(config, *args)

    monkeypatch.setattr(prepare_module, "_prepare", counting)
    monkeypatch.setenv("RNNCLF_CACHE", str(Path("cache").resolve()))  # empty: nothing cached before
    configure(tiny_config, {**SPACE, "text.min_freq": {"choices": [1, 2]}}, trials=4, budget=None)
    summary, observer = run_tune(tiny_config, Path("tuned"))
    distinct = {record.values["text.min_freq"] for record in observer.records}
    # One preparation per distinct text setting of the trials (the baseline's min_freq 1 is among
    # them), plus one with the test split for the best trial's single test scoring.
    assert sorted(built) == sorted({(value, False) for value in distinct | {1}} | {(1, True)}) or sorted(
        built
    ) == sorted(
        {(value, False) for value in distinct | {1}} | {(summary["best"]["values"]["text.min_freq"], True)}
    )
    assert len(observer.records) == 4


# --- failures, budget, interruption


@pytest.mark.slow
def test_a_failed_trial_is_recorded_with_its_reason_and_the_study_goes_on(
    tiny_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rnnclf.models.addons as addons
    import rnnclf.training.loop as loop

    def refusing(vocab: int, labels: int, config: Any) -> Any:
        if config.model.hidden_dim == 8:
            raise ValueError("hidden size 8 refused by this model")
        return original_build(vocab, labels, config)

    def diverging(*args: Any, **kwargs: Any) -> float:
        loss = original_step(*args, **kwargs)
        return float("nan") if loop_settings["lr"] > 0.04 else loss

    original_build, original_step = addons.build_model, loop.train_step
    loop_settings: dict[str, float] = {}
    monkeypatch.setattr(loop, "build_model", refusing)
    monkeypatch.setattr(loop, "train_step", lambda *a, **k: diverging(*a, **k))
    original_train = loop._train

    def remember(config: Any, *args: Any) -> Any:
        loop_settings["lr"] = config.train.lr
        return original_train(config, *args)

    monkeypatch.setattr(loop, "_train", remember)
    space = {"model.hidden_dim": {"choices": [8, 16]}, "train.lr": {"choices": [0.02, 0.05]}}
    configure(tiny_config, space, trials=6, budget=None)
    summary, observer = run_tune(tiny_config, Path("tuned"))
    states = {
        (r.values["model.hidden_dim"], r.values["train.lr"]): (r.state, r.reason) for r in observer.records
    }
    assert len(observer.records) == 6
    for (hidden, lr), (state, reason) in states.items():
        if hidden == 8:
            assert state == "failed" and reason == "ValueError: hidden size 8 refused by this model"
        elif lr > 0.04:
            assert state == "failed" and "not finite" in reason
        else:
            assert state in ("complete", "pruned")
    assert summary["best"]["values"] == {"model.hidden_dim": 16, "train.lr": 0.02}


@pytest.mark.slow
def test_a_budget_too_short_for_one_trial_says_how_long_an_epoch_took(tiny_config: Path) -> None:
    configure(tiny_config, {"train.epochs": [400]}, budget=1)
    raw = yaml.safe_load(tiny_config.read_text(encoding="utf-8"))
    raw["train"]["patience"] = None  # no early stop: the budget ends the trial
    tiny_config.write_text(yaml.safe_dump(raw), encoding="utf-8")
    line = user_error(cli("tune", tiny_config, "--quiet", "--run-dir", "tuned"), "too short for one trial")
    assert "one epoch took" in line
    assert not Path("runs/LATEST").exists()  # no best trial: runs/LATEST as it was
    trials = json.loads(Path("tuned/tune.json").read_text())["trials"]
    # The running trial stopped at the first epoch boundary after the deadline, recorded as incomplete.
    assert [(t["state"], t["reason"]) for t in trials] == [("incomplete", "the budget ran out")]
    assert 1 <= trials[0]["epochs"] < 400


@pytest.mark.slow
def test_an_interrupted_tune_saves_the_study_and_resumes_with_the_budget_left(tiny_config: Path) -> None:
    from rnnclf.tuning.study import tune

    configure(tiny_config, trials=3, budget="10m")
    stop = StopFlag()

    class StopAfterFirstEpochOfTrialOne(Collected):
        def epoch(self, number: int, epoch: int, score: float) -> None:
            if number == 1:
                stop.set(signal.SIGINT)

    observer = StopAfterFirstEpochOfTrialOne()
    with pytest.raises(Interrupted):
        tune(load(tiny_config), Path("tuned"), observer=observer, stop=stop)
    trials = json.loads(Path("tuned/tune.json").read_text())["trials"]
    assert [(t["number"], t["state"]) for t in trials] == [(0, "complete"), (1, "incomplete")]
    assert "interrupted by signal" in trials[1]["reason"]
    summary, resumed = run_tune(tiny_config, Path("tuned"), resume=True)
    # The interrupted trial 1 run again from its start (it was not judged, so it does not count towards
    # the 3), then one more: trials 0, 2 and 3 count.
    assert [r.number for r in resumed.records] == [2, 3]
    assert resumed.records[0].values == trials[1]["values"]
    assert any("queued to run again from the start: trial 1" in line for line in resumed.lines)
    trials = json.loads(Path("tuned/tune.json").read_text())["trials"]
    assert trials[2]["again_from"] == 1 and trials[2]["state"] in ("complete", "pruned")
    assert resumed.records[0].again_from == 1
    rows = list(csv.DictReader(Path("tuned/trials.csv").read_text(encoding="utf-8").splitlines()))
    assert [(row["again_from"], row["fitted_from"]) for row in rows][:3] == [("", ""), ("", ""), ("1", "")]
    assert summary["trial_count"] == 4 and len(rows) == 4
    with pytest.raises(RnnclfError, match="already holds a tune"):
        run_tune(tiny_config, Path("tuned"))


def test_a_quiet_trial_line_names_the_trial_it_runs_again(capsys: pytest.CaptureFixture[str]) -> None:
    # With --quiet the resume line and the budget note are not printed: the trial's own line says it.
    from rnnclf.cli.tune import LiveTable
    from rnnclf.tuning.trial import TrialRecord

    table = LiveTable(quiet=True)
    table.trial_ended(TrialRecord(2, {"train.lr": 0.01}, state="complete", value=0.5, again_from=1))
    table.trial_ended(TrialRecord(3, {"train.epochs": 2}, state="pruned", value=0.4, fitted_from=0))
    table.trial_ended(TrialRecord(4, {"train.epochs": 3}, state="complete", value=0.6))
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("trial 2 complete (again from trial 1): best 0.5000")
    assert lines[1].startswith("trial 3 pruned (trial 0 with the epochs that fit): best 0.4000")
    assert lines[2].startswith("trial 4 complete: best 0.6000")
    # A --jobs helper's line (the plain Observer) says the same.
    Observer().trial_ended(TrialRecord(5, {}, state="complete", value=0.5, again_from=1))
    assert capsys.readouterr().out.startswith("trial 5 (again from trial 1): complete")


@pytest.mark.parametrize(
    ("complete", "said"), [(3, "the best of 3 validation scores"), (1, "one trial's validation score")]
)
def test_the_summary_says_how_many_validation_scores_the_best_was_chosen_from(
    capsys: pytest.CaptureFixture[str], complete: int, said: str
) -> None:
    from rnnclf.cli.render import tune_summary

    best = {"number": 0, "valid": 0.9, "values": {}, "folder": "t/trials/0000"}
    tune_summary({"metric": "valid_accuracy", "best": best, "states": {"complete": complete, "pruned": 1},
                  "trial_count": complete + 1, "seconds": 60.0, "best_yaml": "t/best.yaml", "tune_dir": "t",
                  "size_bytes": 1000})  # fmt: skip
    assert f"note: {said} reads optimistic; the test score is the honest estimate" in capsys.readouterr().out


def _tune_process(config: Path, *options: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "rnnclf", "tune", str(config), "--quiet", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def _wait_for(path: Path, process: subprocess.Popen, seconds: float = 120) -> None:
    limit = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < limit, f"{path} never appeared"
        time.sleep(0.1)


@pytest.mark.slow
def test_sigterm_prints_the_resume_command_and_kill_9_loses_only_the_running_trial(tiny_config: Path) -> None:
    # 12 epochs that early stopping never cuts short: trial 1 is still running when the signal lands
    # (with 4 epochs, on a quiet machine, it sometimes finished between its first epoch and the signal).
    configure(tiny_config, {**SPACE, "train.epochs": [12]}, trials=4, budget="10m")
    raw = yaml.safe_load(tiny_config.read_text(encoding="utf-8"))
    raw["train"]["patience"] = 100
    tiny_config.write_text(yaml.safe_dump(raw), encoding="utf-8")
    process = _tune_process(tiny_config, "--run-dir", "tuned")
    _wait_for(Path("tuned/trials/0001/metrics.jsonl"), process)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, err
    assert "Resume with: rnnclf tune" in err and "--run-dir tuned --resume" in err
    assert "stopping the running trial after this step and saving the study" in err  # no last.pt here
    # Resumed, then killed with -9 inside trial 2: trial 2 is lost (failed on the next resume), no other.
    process = _tune_process(tiny_config, "--run-dir", "tuned", "--resume")
    _wait_for(Path("tuned/trials/0002/metrics.jsonl"), process)
    process.kill()
    process.communicate()
    process = _tune_process(tiny_config, "--run-dir", "tuned", "--resume")
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    trials = json.loads(Path("tuned/tune.json").read_text())["trials"]
    states = [(t["number"], t["state"]) for t in trials]
    assert states[:3] == [(0, "complete"), (1, "incomplete"), (2, "failed")], states
    assert trials[2]["reason"] == "lost: its process was killed"
    # Trial 2 ran the interrupted trial 1 again and was lost; trial 1 does not count towards the 4, the
    # lost one does (kill -9 loses the running trial): trials 0, 2, 3 and 4.
    assert trials[2]["again_from"] == 1 and len(trials) == 5, states
    assert all(state in ("complete", "pruned") for _, state in states[3:]), states


# --- several workers on one study

# Trials long enough (6 epochs, ~1 s each here) that a worker starting a few seconds after the other
# still finds trials to run.
WORKERS_SPACE = {**SPACE, "model.embedding_dim": [8, 16], "train.epochs": {"choices": [6]}}


def _check_every_trial_once(tune_dirs: list[Path], trials: list[dict[str, Any]], count: int) -> None:
    numbers = [trial["number"] for trial in trials]
    assert sorted(numbers) == list(range(len(numbers))) and len(numbers) >= count  # none lost or repeated
    assert all(trial["state"] in ("complete", "pruned") for trial in trials), trials
    folders = [path for folder in tune_dirs for path in folder.glob("trials/*")]
    assert sorted(path.name for path in folders) == [f"{n:04d}" for n in sorted(numbers)]  # each run once


@pytest.mark.slow
def test_two_workers_share_one_sqlite_study(tiny_config: Path) -> None:
    configure(tiny_config, WORKERS_SPACE, trials=8, budget="10m")
    process = _tune_process(tiny_config, "--run-dir", "tuned", "--jobs", "2")
    _, err = process.communicate(timeout=400)
    assert process.returncode == 0, err
    trials = json.loads(Path("tuned/tune.json").read_text())["trials"]
    _check_every_trial_once([Path("tuned")], trials, 8)
    workers = {trial_worker for trial_worker in _workers(Path("tuned"))}
    assert len(workers) == 2  # both processes ran trials
    assert _journal_mode(Path("tuned/study.db")) == "wal"  # readers and the writer do not block each other


def _journal_mode(database: Path) -> str:
    import sqlite3

    connection = sqlite3.connect(database)
    try:
        return connection.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        connection.close()


def test_the_sampler_is_named_not_left_to_optunas_defaults(tmp_path: Path) -> None:
    # Optuna 5 made multivariate TPE with the constant liar its default; before, one density per key:
    # the same tune.seed drew other trials. The tune names them, so its trials do not follow a default.
    from rnnclf.config import Config
    from rnnclf.tuning.study import open_study

    sampler = open_study(Config(), tmp_path, None, "sampler", 0).sampler
    assert (sampler._multivariate, sampler._constant_liar, sampler._n_startup_trials) == (True, True, 10)


def test_the_study_file_is_written_in_wal_mode(tmp_path: Path) -> None:
    from rnnclf.config import Config
    from rnnclf.tuning.study import open_study

    study = open_study(Config(), tmp_path, None, "wal", 0)
    study.enqueue_trial({})
    assert len(study.get_trials()) == 1
    assert _journal_mode(tmp_path / "study.db") == "wal"


def _workers(folder: Path) -> list[str]:
    import optuna

    study = optuna.load_study(study_name=folder.name, storage=f"sqlite:///{(folder / 'study.db').resolve()}")
    return [trial.user_attrs["worker"] for trial in study.get_trials()]


def _pg_ctl() -> str | None:
    found = shutil.which("pg_ctl")
    if found:
        return found
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return str(versions[-1]) if versions else None


@pytest.fixture
def postgres() -> Any:
    """A PostgreSQL server of its own, in a temporary folder on a free port; its URL."""
    pg_ctl = _pg_ctl()
    if pg_ctl is None:
        pytest.skip("PostgreSQL is not installed here (no pg_ctl on PATH or in /usr/lib/postgresql)")
    pytest.importorskip("psycopg2")
    bin_dir = Path(pg_ctl).parent
    # Under /tmp itself, not pytest's folders: those are private to their owner, and the server runs as
    # the postgres user when the tests run as root (it refuses to run as root).
    folder = Path(tempfile.mkdtemp(prefix="rnnclf-postgres-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = folder / "data"

    def run(*args: str) -> subprocess.CompletedProcess:
        done = subprocess.run([*as_user, *args], capture_output=True, text=True, cwd=folder)
        assert done.returncode == 0, done.stdout + done.stderr
        return done

    run(str(bin_dir / "initdb"), "-D", str(data), "-U", "tune", "--auth=trust")
    run(pg_ctl, "-D", str(data), "-l", str(folder / "log"), "-w", "-o",
        f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", "start")  # fmt: skip
    try:
        yield f"postgresql://tune@127.0.0.1:{port}/postgres"
    finally:
        run(pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_two_workers_on_two_machines_share_a_postgresql_study(tiny_config: Path, postgres: str) -> None:
    configure(tiny_config, WORKERS_SPACE, trials=8, budget="10m")
    # Two separate commands, as on two machines: each its own folder, one study by name.
    processes = [
        _tune_process(tiny_config, "--run-dir", name, "--storage", postgres, "--study", "shared")
        for name in ("machine-a", "machine-b")
    ]
    for process in processes:
        _, err = process.communicate(timeout=400)
        assert process.returncode == 0, err
    import optuna

    from rnnclf.tuning.study import storage_url

    study = optuna.load_study(study_name="shared", storage=storage_url(Path("."), postgres))
    trials = [{"number": t.number, "state": t.user_attrs.get("state")} for t in study.get_trials()]
    _check_every_trial_once([Path("machine-a"), Path("machine-b")], trials, 8)
    assert len({t.user_attrs["worker"] for t in study.get_trials()}) == 2


def test_runs_lists_a_tune_folder_with_its_best_trial(tiny_run: Path) -> None:
    from rnnclf.runs.info import list_runs

    folder = Path("runs/tune-tiny-20260101-000000")
    (folder / "trials").mkdir(parents=True)
    shutil.copytree(tiny_run, folder / "trials" / "0003")
    summary = {"metric": "valid_accuracy", "best": {"number": 3, "values": {"train.lr": 0.01}, "valid": 0.91,
               "folder": str(folder / "trials" / "0003")}, "trial_count": 7, "trials": []}  # fmt: skip
    (folder / "tune.json").write_text(json.dumps(summary), encoding="utf-8")
    rows = {row["name"]: row for row in list_runs("runs")}
    row = rows[folder.name]
    assert row["status"] == "tune: 7 trials" and row["best_valid"] == 0.91 and "trial 3" in row["model"]


@pytest.mark.slow
def test_a_multi_label_config_tunes_on_micro_f1_with_thresholds_chosen_per_trial(tmp_path: Path) -> None:
    from conftest import write_csv
    from test_multilabel_cli import CONFIG, documents

    folder = tmp_path / "ml"
    write_csv(folder / "train.csv", documents(150, 1))
    write_csv(folder / "test.csv", documents(30, 2))
    raw = yaml.safe_load(CONFIG)
    raw["train"].pop("monitor")  # auto: micro-F1 for multi-label data
    raw["train"]["epochs"] = 2
    raw["tune"] = {"space": {"train.lr": [0.02, 0.05]}, "trials": 2, "budget": None}
    config = folder / "ml.yaml"
    config.write_text(yaml.safe_dump(raw), encoding="utf-8")
    summary, observer = run_tune(config, Path("tuned"))
    assert summary["metric"] == "valid_micro_f1" and len(observer.records) == 2
    best = Path(summary["best"]["folder"])
    metrics = json.loads((best / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["thresholds"]["chosen_on"] == "valid"
    assert summary["best"]["valid"] == metrics["valid"]["micro_f1"]
    assert summary["test"]["multi_label"] and 0.0 <= summary["test"]["micro_f1"] <= 1.0


@pytest.mark.slow
def test_folds_score_each_trial_as_the_mean_over_folds_of_the_training_file(tiny_config: Path) -> None:
    from rnnclf.tuning.folds import write_folds

    configure(tiny_config, trials=2, budget=None, folds=3)
    summary, observer = run_tune(tiny_config, Path("tuned"))
    for record in observer.records:
        assert len(record.fold_values) == 3 and record.state == "complete"
        assert record.value == pytest.approx(sum(record.fold_values) / 3)
        folds = Path(record.folder) / "folds"
        assert sorted(path.name for path in folds.iterdir()) == ["1", "2"]
        assert not list(folds.glob("*/*.pt"))  # only the first fold's model may be kept
    assert summary["best"]["valid"] == max(record.value for record in observer.records)
    written = json.loads(Path("tuned/tune.json").read_text(encoding="utf-8"))["trials"]
    assert [row["fold_values"] for row in written] == [record.fold_values for record in observer.records]
    # The folds cover the 90 training documents once each as validation, stratified by class.
    pairs = write_folds(load(tiny_config), Path("tuned"))
    held_out = [Path(valid).read_text(encoding="utf-8").splitlines() for _, valid in pairs]
    assert sorted(len(lines) for lines in held_out) == [30, 30, 30]
    from collections import Counter

    from conftest import make_documents

    rows = Counter(
        (json.loads(line)["text"], json.loads(line)["label"]) for lines in held_out for line in lines
    )
    assert rows == Counter(make_documents(90, seed=1))  # every training document held out exactly once
    for lines in held_out:
        labels = [json.loads(line)["label"] for line in lines]
        assert {labels.count(name) for name in set(labels)} == {10}
    assert summary["test"] is not None and 0.0 <= summary["test"]["accuracy"] <= 1.0


def test_the_summary_shows_the_tunes_metric_beside_the_headline_score(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from rnnclf.cli.render import tune_summary

    scores = {"multi_label": True, "micro_f1": 0.52, "macro_f1": 0.41}
    summary = {
        "metric": "valid_macro_f1",
        "best": {"number": 2, "valid": 0.45, "values": {"train.lr": 0.002}, "folder": str(tmp_path / "t2")},
        "states": {"complete": 3},
        "trial_count": 3,
        "seconds": 900.0,
        "baseline_valid": scores,
        "test": {**scores, "micro_f1": 0.53, "macro_f1": 0.43},
        "best_yaml": str(tmp_path / "best.yaml"),
        "tune_dir": str(tmp_path),
        "size_bytes": 1000,
        "plots": [],
    }
    tune_summary(summary)
    out = capsys.readouterr().out
    assert "linear baseline: valid micro-F1 0.5200, macro-F1 0.4100" in out
    assert "best trial on test (scored once): micro-F1 0.5300, macro-F1 0.4300" in out
    # Chosen on micro-F1 (the headline), it is said once.
    tune_summary({**summary, "metric": "valid_micro_f1"})
    out = capsys.readouterr().out
    assert "best trial on test (scored once): micro-F1 0.5300\n" in out


def test_resume_queues_each_interrupted_trial_again_once(tmp_path: Path) -> None:
    import optuna

    from rnnclf.tuning.study import queue_interrupted
    from rnnclf.tuning.trial import AGAIN, FITTED, INTERRUPTED

    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'study.db'}", study_name="again")
    state = optuna.trial.TrialState
    attributes = [
        (state.PRUNED, {"reason": f"{INTERRUPTED} 2"}),  # Ctrl-C: queued again
        (state.PRUNED, {"reason": "the budget ran out"}),  # judged by the tune: not
        (state.PRUNED, {"reason": ""}),  # pruned: not
        (state.FAIL, {"reason": "lost: its process was killed"}),  # kill -9: lost, as documented
        (state.PRUNED, {"reason": f"{INTERRUPTED} 15", FITTED: 0}),  # a fitted trial stays fitted once only
    ]
    for number, (end, attrs) in enumerate(attributes):
        trial = study.ask({"train.lr": optuna.distributions.FloatDistribution(1e-4, 1e-1)})
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        study.tell(trial, state=end)
        assert trial.number == number
    assert queue_interrupted(study) == [0, 4]
    waiting = study.get_trials(states=(state.WAITING,))
    assert [trial.user_attrs[AGAIN] for trial in waiting] == [0, 4]
    assert [trial.user_attrs.get(FITTED) for trial in waiting] == [None, 0]
    lrs = [trial.params["train.lr"] for trial in study.get_trials()[:5]]
    assert [trial.system_attrs["fixed_params"]["train.lr"] for trial in waiting] == [lrs[0], lrs[4]]
    assert queue_interrupted(study) == []  # once: a second --resume does not queue them again

    # Towards tune.trials the interrupted ones do not count (each runs again), the queued ones neither
    # until they begin: `--trials 4` stopped in its fourth trial still ends with four.
    from rnnclf.tuning.study import _counted

    assert _counted(study) == 3
