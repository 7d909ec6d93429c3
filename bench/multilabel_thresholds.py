#!/usr/bin/env python3
"""Both multi-label threshold rules from one training per seed: `rnnclf train CONFIG` for each seed (a
fresh process, cold preprocessing cache, timed), then the saved model (best.pt) scored with each rule of
`train.thresholds`: `global` (one threshold for every label, maximising micro-F1) and `per_label` (each
label's own threshold, maximising its F1), each chosen on the validation split only; the test split is
scored once per rule, at the thresholds chosen on validation. So the two rules compare like against like
(bench/fasttext_multilabel.py does the same for fastText) and cost one training per seed.

Training itself (best epoch) follows the config's own train.thresholds, as `rnnclf train` does. The
per-label row is checked against the run's metrics.json "test" (the same rule, same model: it must agree).
A seed whose run folder already holds a finished run (metrics.json) is scored without training again.

    OMP_NUM_THREADS=1 nice -n 10 python bench/multilabel_thresholds.py configs/goemotions.yaml \\
        --seeds 1 2 3 --keep /tmp/ge/thresholds
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

RULES = ("global", "per_label")


def train(config: str, seed: int, run: Path, overrides: list[str]) -> float:
    """Train one seed into `run` in a fresh process with a cold cache; the wall time in seconds."""
    command = [sys.executable, "-m", "rnnclf", "train", config, "--quiet", "--run-dir", str(run)]
    for item in [f"train.seed={seed}", *overrides]:
        command += ["--set", item]
    cache = run.parent / f"cache-seed{seed}"
    started = time.perf_counter()
    result = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, "RNNCLF_CACHE": str(cache)}
    )
    elapsed = time.perf_counter() - started
    if result.returncode:
        raise SystemExit(result.stderr)
    return elapsed


def score_both_rules(run: Path) -> dict[str, dict]:
    """best.pt's test scores under each rule, thresholds chosen on the validation split."""
    from rnnclf.data import read_configured
    from rnnclf.inference.predict import Predictor
    from rnnclf.prepare import label_matrix
    from rnnclf.reports.multilabel_metrics import choose_thresholds, decide, multilabel_report

    predictor = Predictor.from_checkpoint(run / "best.pt")
    data = predictor.config.data
    splits = {}
    for split in ("valid", "test"):
        examples = read_configured(getattr(data, split), data)
        gold = label_matrix(examples.labels, predictor.labels, examples.source, split)  # (N, L)
        splits[split] = (predictor.probabilities(examples.texts), gold)  # (N, L) each
    scores = {}
    for rule in RULES:
        thresholds = choose_thresholds(*splits["valid"], rule)  # chosen on validation only
        probabilities, gold = splits["test"]
        test = multilabel_report(gold, decide(probabilities, thresholds), predictor.labels, thresholds)
        valid = multilabel_report(
            splits["valid"][1], decide(splits["valid"][0], thresholds), predictor.labels
        )
        scores[rule] = {"test": test, "valid": valid, "thresholds": thresholds}
    return scores


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.4f} ({min(values):.4f}-{max(values):.4f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--keep", required=True, help="run folders go to KEEP/seedN")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="extra --set KEY=VALUE")
    args = parser.parse_args()
    found: dict[str, dict[str, list[float]]] = {rule: {"micro": [], "macro": []} for rule in RULES}
    walls = []
    for seed in args.seeds:
        run = Path(args.keep, f"seed{seed}")
        if (run / "metrics.json").exists():
            wall = None
        else:
            run.parent.mkdir(parents=True, exist_ok=True)
            wall = train(args.config, seed, run, args.overrides)
            walls.append(wall)
        metrics = json.loads((run / "metrics.json").read_text())
        scores = score_both_rules(run)
        recorded = metrics["test"]
        line = [f"seed {seed}: " + (f"trained in {wall:.0f} s" if wall else "scored an existing run")]
        line.append(f"best epoch {metrics['best_epoch']}/{metrics['epochs_run']}")
        for rule in RULES:
            test, values = scores[rule]["test"], sorted(set(scores[rule]["thresholds"]))
            found[rule]["micro"].append(test["micro_f1"])
            found[rule]["macro"].append(test["macro_f1"])
            line.append(
                f"{rule}: test micro-F1 {test['micro_f1']:.4f} macro-F1 {test['macro_f1']:.4f} "
                f"(valid micro {scores[rule]['valid']['micro_f1']:.4f} "
                f"macro {scores[rule]['valid']['macro_f1']:.4f}"
                f", thresholds {values[0]:.2f}-{values[-1]:.2f})"
            )
        if metrics.get("thresholds", {}).get("mode") in RULES:
            mode = metrics["thresholds"]["mode"]
            line.append(
                f"metrics.json test ({mode}): micro-F1 {recorded['micro_f1']:.4f} "
                f"macro-F1 {recorded['macro_f1']:.4f}"
            )
        print("; ".join(line), flush=True)
    for rule in RULES:
        print(
            f"{args.config}, thresholds {rule} (chosen on valid): "
            f"test micro-F1 {spread(found[rule]['micro'])}, "
            f"macro-F1 {spread(found[rule]['macro'])}"
        )
    if walls:
        print(
            f"training wall (whole command): median {statistics.median(walls):.0f} s, max {max(walls):.0f} s"
        )


if __name__ == "__main__":
    main()
