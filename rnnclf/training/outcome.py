"""The end of a training run: best.pt scored on valid (and test), and with add-ons each part beside the
whole, so a user always sees what the recurrent model alone does.

A blend's share (rnnclf.models.addons.linear.Blend) is chosen here, on the validation split, from the grid
SHARES, which includes the recurrent model alone (0.0) and the linear model alone (1.0); ties go to the
smaller share. The chosen share is saved into best.pt and last.pt, and metrics.json records the grid.
The test split, when there is one, is scored once, after every choice is made.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from rnnclf.inference.scoring import evaluate, headline, logits_for, report
from rnnclf.models.addons import Blend, Ensemble, members_of, recurrent_part
from rnnclf.models.addons.ensemble import average
from rnnclf.models.addons.linear import blend
from rnnclf.prepare import Prepared
from rnnclf.runs import checkpoint, rundir
from rnnclf.schema import lower_is_better
from rnnclf.training.baseline import advice
from rnnclf.training.distributed import Processes

SHARES = tuple(round(0.1 * step, 1) for step in range(11))  # the linear model's share: 0.0 .. 1.0


def _scores(full: dict[str, Any]) -> dict[str, float]:
    names = (
        "accuracy",
        "macro_f1",
        "loss",
        *(("micro_f1", "multi_label") if full.get("multi_label") else ()),
    )
    return {name: full[name] for name in names}


def choose_share(
    recurrent: torch.Tensor, linear: torch.Tensor, gold: torch.Tensor, labels: list[str], monitor: str
) -> tuple[float, list[dict[str, float]]]:
    """recurrent, linear: validation logits (N, C); gold (N,) -> (best share, the whole grid)."""
    grid = []
    for share in SHARES:
        scores = report(blend(recurrent, linear, share), gold, labels)
        grid.append({"share": share, **{f"valid_{name}": value for name, value in _scores(scores).items()}})
    sign = -1.0 if lower_is_better(monitor) else 1.0
    best = max(grid, key=lambda row: (sign * row[monitor], -row["share"]))
    return best["share"], grid


def component_scores(
    model: nn.Module,
    prepared: Prepared,
    device: torch.device,
    precision: str,
    monitor: str,
    thresholds: list[float] | None = None,
) -> dict[str, Any]:
    """Each part of a model with add-ons, on valid and test: {"components": {name: {split: scores}},
    "blend": {...} or absent}. Names: "recurrent" (the recurrent model alone: one classifier or the
    ensemble's average), "member K" (each ensemble member), "linear" (the blended linear model)."""
    # Each member is scored once; an ensemble's scores are derived from its members' (as its forward).
    ensemble = isinstance(recurrent_part(model), Ensemble)
    parts: dict[str, nn.Module] = (
        {f"member {k}": member for k, member in enumerate(members_of(model), start=1)}
        if ensemble
        else {"recurrent": recurrent_part(model)}
    )
    if isinstance(model, Blend):
        parts["linear"] = model.linear
    splits = {"valid": prepared.valid, "test": prepared.test}
    logits = {
        split: {name: logits_for(part, data, device, precision) for name, part in parts.items()}
        for split, data in splits.items()
        if data is not None
    }  # split -> part -> (N, C)
    for found in logits.values():
        if ensemble:
            members = [found[name] for name in parts if name.startswith("member ")]
            found["recurrent"] = average(torch.stack(members, dim=1), prepared.valid.multi_label)  # (N, C)
    names = ["recurrent", *(name for name in parts if name != "recurrent")]
    components = {
        name: {
            split: _scores(report(found[name], splits[split].labels, prepared.labels, thresholds=thresholds))
            for split, found in logits.items()
        }
        for name in names
    }
    result: dict[str, Any] = {"components": components}
    if isinstance(model, Blend):
        valid = logits["valid"]
        share, grid = choose_share(
            valid["recurrent"], valid["linear"], prepared.valid.labels, prepared.labels, monitor
        )
        result["blend"] = {"share": share, "chosen_on": "valid", "monitor": monitor, "grid": grid}
    return result


def _rewrite(path: Path, share: float | None = None, thresholds: list[float] | None = None) -> None:
    """Write a chosen blend share into a checkpoint's weights (both copies when weights are averaged),
    or chosen multi-label thresholds beside them (key "thresholds", one float per label)."""
    state = checkpoint.load(path)
    if share is not None:
        for key in ("model", "training_model"):
            if key in state:
                state[key] = {**state[key], "share": torch.tensor(share)}
    if thresholds is not None:
        state["thresholds"] = list(thresholds)
    checkpoint.save(
        {k: v for k, v in state.items() if k not in ("kind", "format_version", "rnnclf_version")}, path
    )


def finish(
    model: nn.Module,
    prepared: Prepared,
    run_dir: Path,
    settings: Any,
    processes: Processes,
    weights: torch.Tensor | None = None,
) -> dict[str, Any]:
    """Load best.pt's weights into `model`, choose a blend's share, score every part and the whole.
    Returns the metrics (written to metrics.json by the caller)."""
    device, precision, labels = processes.device, settings.precision, prepared.labels
    best = processes.from_primary(
        lambda: checkpoint.model_only(checkpoint.load(run_dir / rundir.BEST, map_location="cpu"))
    )
    model.load_state_dict(best["model"])
    metrics: dict[str, Any] = {"best_epoch": best["epoch"], "labels": labels}
    thresholds = None
    if prepared.valid.multi_label:
        # Multi-label: thresholds chosen on validation data with best.pt's weights, saved beside them;
        # the test split is scored once, at these thresholds.
        valid = evaluate(
            model, prepared.valid, labels, device, precision, weights, processes, settings.thresholds
        )
        thresholds = valid["thresholds"]
        metrics["thresholds"] = {
            "mode": settings.thresholds,
            "chosen_on": "valid",
            "values": dict(zip(labels, thresholds, strict=True)),
        }
        if processes.primary:
            for name in (rundir.BEST, rundir.LAST):
                _rewrite(run_dir / name, thresholds=thresholds)
    if isinstance(model, (Blend, Ensemble)):
        # One process scores the parts (they are reports, not training) and tells the others.
        parts = processes.from_primary(
            lambda: component_scores(model, prepared, device, precision, settings.monitor, thresholds)
        )
        metrics.update(parts)
        if "blend" in parts:
            model.share.fill_(parts["blend"]["share"])
            if processes.primary:
                for name in (rundir.BEST, rundir.LAST):
                    _rewrite(run_dir / name, share=parts["blend"]["share"])
    metrics["valid"] = evaluate(
        model, prepared.valid, labels, device, precision, weights, processes, thresholds
    )
    if prepared.test is not None:
        metrics["test"] = evaluate(
            model, prepared.test, labels, device, precision, weights, processes, thresholds
        )
    return metrics


def summary_lines(metrics: dict[str, Any], cell: str, model_path: Path) -> list[str]:
    """What the end of `rnnclf train` prints: each part's scores, the baseline's (with advice when it
    beats the recurrent model), then the saved model's."""

    def scores(entry: dict[str, Any]) -> str:
        name, value = headline(entry["valid"])
        shown = f"valid {name} {value:.4f}"
        if "test" in entry:
            shown += f", test {name} {headline(entry['test'])[1]:.4f}"
        return shown

    lines = []
    components = metrics.get("components", {})
    recurrent = components.get("recurrent", metrics)
    kind = f"{cell}, ensemble average" if "member 1" in components else cell
    lines.append(f"recurrent model ({kind}): {scores(recurrent)}")
    lines += [f"  {name}: {scores(entry)}" for name, entry in components.items() if name.startswith("member")]
    if "linear" in components:
        lines.append(f"linear model: {scores(components['linear'])}")
    if "blend" in metrics:
        lines.append(
            f"blend: linear share {metrics['blend']['share']:.1f}, chosen on validation from "
            f"{SHARES[0]:.1f} (recurrent alone) to {SHARES[-1]:.1f} (linear alone): {scores(metrics)}"
        )
    baseline = metrics.get("baseline")
    if baseline and "valid" in baseline:
        name, value = headline(baseline["valid"])
        lines.append(f"linear baseline ({baseline['model']}; not saved): valid {name} {value:.4f}")
    elif baseline:
        lines.append(f"linear baseline skipped: {baseline['skipped']}")
    if (line := advice(recurrent["valid"], baseline, blended="blend" in metrics)) is not None:
        lines.append(line)
    name, value = headline(metrics["valid"])
    final = f"best epoch {metrics['best_epoch']}: valid {name} {value:.4f}"
    if "test" in metrics:
        test = metrics["test"]
        final += f", test {name} {headline(test)[1]:.4f} macro-F1 {test['macro_f1']:.4f}"
    if "thresholds" in metrics:
        values = sorted(set(metrics["thresholds"]["values"].values()))
        shown = f"{values[0]:.2f}" if len(values) == 1 else f"{values[0]:.2f}-{values[-1]:.2f}"
        final += f", threshold {shown} (chosen on valid)"
    lines.append(f"{final} ({metrics['train_seconds']:.0f}s); model: {model_path}")
    return lines
