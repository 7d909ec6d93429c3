"""What a tune leaves: trials.csv and tune.json (every trial), best.yaml (a complete config that
reproduces the best trial), the best trial's run folder made runs/LATEST with its test score (the test
split scored once, on that trial only), the linear baseline (fitted once per tune), and with matplotlib
Optuna's optimization-history and parameter-importance plots.
"""

from __future__ import annotations

import csv
import io
import json
import time
import warnings
from pathlib import Path
from typing import Any

import yaml

from rnnclf.config import Config, validate
from rnnclf.errors import RnnclfError
from rnnclf.files import atomic_write
from rnnclf.prepare import prepare
from rnnclf.runs import checkpoint, rundir
from rnnclf.tuning.folds import fold_config, write_folds
from rnnclf.tuning.space import applied, trained_with
from rnnclf.tuning.trial import Observer

BEST_YAML = "best.yaml"
TRIALS_CSV = "trials.csv"
TUNE_JSON = "tune.json"
HISTORY_PNG = "optimization_history.png"
IMPORTANCE_PNG = "param_importances.png"


def read_data(config: Config) -> Any:
    """The tune's train and validation data, read and prepared once before the tune writes anything: a
    bad file is one line naming it, with no tune folder left behind (and not one failed trial after
    another). The trials' own preparation of the same text settings then loads it from the cache. The
    test split is read at the end, when the best trial is scored once."""
    raw = config.to_dict()
    raw["data"]["test"] = None
    return prepare(validate(raw, "tune"))


def fit_baseline(config: Config, prepared: Any, observer: Observer) -> dict[str, Any] | None:
    """The linear baseline on the tune's own split (train.baseline: on by default), fitted once on the
    data read_data prepared."""
    from rnnclf.inference.scoring import headline
    from rnnclf.training.baseline import linear_baseline

    if not config.train.baseline:
        return None
    baseline = linear_baseline(prepared)
    if "valid" in baseline:
        name, value = headline(baseline["valid"])
        observer.message(f"linear baseline ({baseline['model']}): valid {name} {value:.4f}")
    return baseline


def records(study: Any) -> list[dict[str, Any]]:
    """Every trial of the study as a plain dict (from the storage, so every worker's trials)."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        attrs = trial.user_attrs
        state = attrs.get("state") or (
            "running" if trial.state.name == "RUNNING" else trial.state.name.lower()
        )
        rows.append(
            {
                "number": trial.number,
                "state": state,
                "value": trial.value if trial.value is not None else attrs.get("value"),
                "values": dict(trial.params),
                "scores": attrs.get("scores", []),
                "fold_values": attrs.get("fold_values", []),  # tune.folds > 1: each fold's score
                "epochs": len(attrs.get("scores", [])),
                "seconds": round(float(attrs.get("seconds", 0.0)), 2),
                "train_seconds": round(float(attrs.get("train_seconds", 0.0)), 2),
                "started_at": attrs.get("started_at"),
                "reason": attrs.get("reason", ""),
                "folder": attrs.get("folder", ""),
                "worker": attrs.get("worker", ""),  # HOST:PID of the process that ran it
                "fitted_from": attrs.get("fitted_from"),  # the trial it ran again with fewer epochs
                "again_from": attrs.get("again_from"),  # the interrupted trial it ran again (--resume)
            }
        )
    return rows


def write_records(study: Any, tune_dir: Path, summary: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """trials.csv (one row per trial, one column per searched key) and tune.json."""
    rows = records(study)
    keys = sorted({key for row in rows for key in row["values"]})
    out = io.StringIO()
    writer = csv.writer(out)
    repeats = ["fitted_from", "again_from"]  # the trial each one runs again (tune.json says the same)
    writer.writerow(["number", "state", "value", "epochs", "seconds", "reason", *keys, "scores", *repeats])
    for row in rows:
        writer.writerow(
            [row["number"], row["state"], row["value"], row["epochs"], row["seconds"], row["reason"],
             *(row["values"].get(key, "") for key in keys), " ".join(f"{s:.4f}" for s in row["scores"]),
             *("" if row[key] is None else row[key] for key in repeats)]
        )  # fmt: skip
    atomic_write(tune_dir / TRIALS_CSV, out.getvalue())
    payload = {**(summary or {}), "trials": rows}
    atomic_write(tune_dir / TUNE_JSON, json.dumps(payload, indent=1, default=str) + "\n")
    return rows


def best_config(config: Config, values: dict[str, Any]) -> dict[str, Any]:
    """The complete config of the best trial: the tune's config with its values, absolute paths, no
    tune section, no run folder (so `rnnclf train best.yaml` works from any folder)."""
    raw = applied(applied(config, trained_with(config)), values).to_dict()
    raw["output"]["run_dir"] = None
    raw.pop("tune")
    return raw


def _score_test(raw: dict[str, Any], folder: Path) -> dict[str, Any] | None:
    """The best trial's best.pt on the test split: the only time a tune looks at the test data. The
    trial's config gets its test split back (config.yaml and best.pt), so eval works on it at once."""
    import torch

    from rnnclf.inference.scoring import evaluate
    from rnnclf.models.addons import build_model

    config = validate(raw, "best.yaml")
    best = folder / rundir.BEST
    state = checkpoint.load(best)
    state["config"] = raw
    checkpoint.save(checkpoint.model_only(state), best)
    rundir.write_config(folder, yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))
    if config.data.test is None:
        return None
    prepared = prepare(config)
    if prepared.vocab.get_itos() != state["vocab"]["itos"] or prepared.labels != list(state["labels"]):
        raise RnnclfError(f"{best}: the vocabulary or labels differ from the trial's data; test not scored")
    model = build_model(len(prepared.vocab), len(prepared.labels), config)
    model.load_state_dict(state["model"])
    model.eval()
    thresholds = state.get("thresholds")
    assert prepared.test is not None
    return evaluate(model, prepared.test, prepared.labels, torch.device("cpu"), "fp32", thresholds=thresholds)


def _plots(study: Any, tune_dir: Path, optuna: Any) -> list[str]:
    """Optuna's matplotlib views of the study; nothing (and no error) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from optuna.visualization import matplotlib as views
    except ImportError:
        return []
    written = []
    for file, draw in (
        (HISTORY_PNG, views.plot_optimization_history),
        (IMPORTANCE_PNG, views.plot_param_importances),
    ):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "experimental" and "importances will be equal" notices
                axes = draw(study)
                axes.figure.tight_layout()
                axes.figure.savefig(tune_dir / file, dpi=100)
            plt.close(axes.figure)
            written.append(str(tune_dir / file))
        except Exception:  # importances need two complete trials with differing values: skip the picture
            plt.close("all")
    return written


def folder_size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def summarize(
    study: Any,
    config: Config,
    tune_dir: Path,
    baseline: dict[str, Any] | None,
    budget: float | None,
    started: float,
    optuna: Any,
) -> dict[str, Any]:
    """The end of a tune: the best trial chosen on validation, best.yaml, its run folder kept (and
    runs/LATEST), the test scored once, files and plots. Returns what the CLI shows."""
    ended = time.time()  # the trials are over: what follows is the test scoring, files and plots
    rows = records(study)
    complete = [row for row in rows if row["state"] == "complete"]
    if not complete:
        epochs = [
            s for trial in study.get_trials(deepcopy=False) for s in trial.user_attrs.get("epoch_seconds", [])
        ]
        write_records(study, tune_dir)
        if epochs:
            raise RnnclfError(
                f"tune: the budget ({budget:.0f}s) is too short for one trial: one epoch took "
                f"{min(epochs):.0f}s; give --budget several times that"
                if budget is not None
                else "tune: no trial completed; see trials.csv for each trial's reason"
            )
        reasons = sorted({row["reason"] for row in rows if row["reason"]})
        raise RnnclfError("tune: no trial completed" + (f" ({reasons[0]})" if reasons else ""))
    best = study.best_trial
    folder = Path(best.user_attrs["folder"])
    for row in rows:  # the best trial alone keeps a checkpoint (trials still running elsewhere: theirs)
        if row["folder"] and row["number"] != best.number and row["state"] != "running":
            (Path(row["folder"]) / rundir.BEST).unlink(missing_ok=True)
    raw = best_config(config, best.params)
    atomic_write(tune_dir / BEST_YAML, yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))
    test = None
    here = (folder / rundir.BEST).exists()  # workers on several machines: the best may have run elsewhere
    if here:
        model_raw = raw
        if config.tune.folds > 1:  # the kept model was trained on the first fold: scored with its data
            first = write_folds(config, tune_dir)[0]
            model_raw = fold_config(validate(raw, "best.yaml"), first).to_dict()
            model_raw["data"]["test"] = raw["data"]["test"]
        test = _score_test(model_raw, folder)
        metrics = rundir.read_metrics(folder) or {}
        if test is not None:
            metrics["test"] = test
        if baseline is not None:
            metrics["baseline"] = baseline
        rundir.write_metrics(folder, metrics)
        rundir.LATEST.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(rundir.LATEST, str(folder.resolve()))
    summary = {
        "metric": config.tuned_on(),
        "best": {
            "number": best.number,
            "values": best.params,
            "valid": best.value,
            "folder": str(folder),
            "here": here,
            "worker": best.user_attrs.get("worker"),
        },
        "baseline_valid": baseline.get("valid") if baseline else None,
        "test": test,
        "trial_count": len(rows),
        "states": {
            state: sum(row["state"] == state for row in rows)
            for state in ("complete", "pruned", "failed", "incomplete")
        },
        "budget_seconds": budget,
        "seconds": time.time() - started,
        "started_at": started,
        "trials_ended_at": ended,
        "best_yaml": str(tune_dir / BEST_YAML),
    }
    write_records(study, tune_dir, summary)
    summary["plots"] = _plots(study, tune_dir, optuna)
    summary["seconds"] = time.time() - started
    summary["size_bytes"] = folder_size(tune_dir)
    summary["tune_dir"] = str(tune_dir)
    return summary
