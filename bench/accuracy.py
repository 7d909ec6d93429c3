#!/usr/bin/env python3
"""Accuracy with a time budget: `rnnclf train CONFIG` for several seeds, each in a fresh process with a
cold preprocessing cache, timing the whole command (preprocessing included) and reading the test
accuracy of the best epoch from metrics.json. Prints each run, then the median and the spread.

Two accuracies per run: the saved model's (metrics.json "test": the combined model when add-ons such as
`linear:` or `ensemble:` are on) and the recurrent model's own ("components" -> "recurrent", present
when add-ons are on; without add-ons the saved model is the recurrent model). Also printed when present:
the blend's share chosen on validation, the reporting-only linear baseline's validation accuracy, and
the sizes of best.pt, last.pt and the whole run folder. Multi-label runs (data.multi_label) also print
test micro- and macro-F1 (at the thresholds chosen on validation, as metrics.json records them), each
seed's and their median and spread.

    python bench/accuracy.py configs/trec.yaml --seeds 1 2 3
    rnnclf init-config > /tmp/default.yaml; D=$PWD/../shared/data/imdb   # the default config, on IMDB:
    python bench/accuracy.py /tmp/default.yaml --seeds 1 2 3 --keep /tmp/bench/imdb_default \
        --set data.train=$D/train.csv.gz --set data.test=$D/test.csv.gz
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def peak_rss_mib(stderr: str) -> float | None:
    """Peak resident memory from GNU time's -v report, when it ran under it."""
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr)
    return int(match.group(1)) / 1024 if match else None


def recurrent(metrics: dict, split: str) -> float | None:
    """The recurrent model's own accuracy on `split`: its component's when add-ons are on, else the
    saved model's (which is then the recurrent model)."""
    part = metrics.get("components", {}).get("recurrent", metrics).get(split)
    return part["accuracy"] if part else None


def run_sizes(run: Path) -> str:
    """best.pt, last.pt and the whole run folder, in MB."""
    sizes = {name: (run / name).stat().st_size for name in ("best.pt", "last.pt") if (run / name).exists()}
    sizes["run folder"] = sum(path.stat().st_size for path in run.rglob("*") if path.is_file())
    return ", ".join(f"{name} {size / 1e6:,.1f} MB" for name, size in sizes.items())


def summary(values: list[float]) -> str:
    return f"median {statistics.median(values):.4f} (min {min(values):.4f}, max {max(values):.4f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="extra --set KEY=VALUE")
    parser.add_argument("--keep", help="keep each run folder as KEEP/seedN (for bench/inference_speed.py)")
    args = parser.parse_args()
    gnu_time = ["/usr/bin/time", "-v"] if Path("/usr/bin/time").exists() else []
    accuracies, own, seconds = [], [], []
    micro, macro = [], []  # multi-label runs
    addons = False
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as folder:
            run = Path(args.keep, f"seed{seed}") if args.keep else Path(folder, "run")
            command = [
                *gnu_time,
                sys.executable,
                "-m",
                "rnnclf",
                "train",
                args.config,
                "--quiet",
                "--run-dir",
                str(run),
                "--set",
                f"train.seed={seed}",
            ]
            for item in args.overrides:
                command += ["--set", item]
            started = time.perf_counter()
            result = subprocess.run(
                command,
                capture_output=True,
                text=True,
                env={**__import__("os").environ, "RNNCLF_CACHE": f"{folder}/cache"},
            )
            elapsed = time.perf_counter() - started
            if result.returncode:
                raise SystemExit(result.stderr)
            metrics = json.loads((run / "metrics.json").read_text())
            sizes = run_sizes(run)
        accuracy = metrics["test"]["accuracy"]
        accuracies.append(accuracy)
        seconds.append(elapsed)
        addons = addons or "components" in metrics
        own_test, own_valid = recurrent(metrics, "test"), recurrent(metrics, "valid")
        if own_test is not None:
            own.append(own_test)
        rss = peak_rss_mib(result.stderr)
        extras = []
        if "components" in metrics and own_test is not None and own_valid is not None:
            extras.append(f"recurrent model alone: test {own_test:.4f}, valid {own_valid:.4f}")
        if "blend" in metrics:
            extras.append(f"blend share {metrics['blend'].get('share')} (chosen on validation)")
        baseline = metrics.get("baseline", {}).get("valid")
        if baseline and baseline.get("multi_label"):
            extras.append(f"linear baseline (not saved) valid micro-F1 {baseline['micro_f1']:.4f}")
        elif baseline:
            extras.append(f"linear baseline (not saved) valid {baseline['accuracy']:.4f}")
        if metrics["test"].get("multi_label"):
            test, valid = metrics["test"], metrics["valid"]
            micro.append(test["micro_f1"])
            macro.append(test["macro_f1"])
            values = sorted(set(metrics["thresholds"]["values"].values()))
            extras.insert(
                0,
                f"test micro-F1 {test['micro_f1']:.4f} macro-F1 {test['macro_f1']:.4f}, valid micro-F1 "
                f"{valid['micro_f1']:.4f} macro-F1 {valid['macro_f1']:.4f}, thresholds "
                f"{values[0]:.2f}-{values[-1]:.2f} (chosen on valid)",
            )
        print(
            f"seed {seed}: test accuracy {accuracy:.4f}, valid {metrics['valid']['accuracy']:.4f}, "
            f"best epoch {metrics['best_epoch']}/{metrics['epochs_run']}, wall {elapsed:.0f} s"
            + (f", peak RSS {rss:,.0f} MiB" if rss else "")
            + "".join(f"; {extra}" for extra in extras)
            + f"; {sizes}",
            flush=True,
        )
    saved = "saved model (with add-ons)" if addons else "saved model = recurrent model"
    print(
        f"{args.config}: test accuracy, {saved}: {summary(accuracies)}; "
        f"wall median {statistics.median(seconds):.0f} s (max {max(seconds):.0f} s)"
    )
    if addons and own:
        print(f"{args.config}: test accuracy, recurrent model alone: {summary(own)}")
    if micro:
        print(f"{args.config}: test micro-F1 {summary(micro)}; test macro-F1 {summary(macro)}")


if __name__ == "__main__":
    main()
