#!/usr/bin/env python3
"""Accuracy with a time budget: `rnnclf train CONFIG` for several seeds, each in a fresh process with a
cold preprocessing cache, timing the whole command (preprocessing included) and reading the test
accuracy of the best epoch from metrics.json. Prints each run, then the median and the spread.

    python bench/accuracy.py configs/trec.yaml --seeds 1 2 3
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="extra --set KEY=VALUE")
    args = parser.parse_args()
    gnu_time = ["/usr/bin/time", "-v"] if Path("/usr/bin/time").exists() else []
    accuracies, seconds = [], []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as folder:
            command = [
                *gnu_time,
                sys.executable,
                "-m",
                "rnnclf",
                "train",
                args.config,
                "--quiet",
                "--run-dir",
                f"{folder}/run",
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
            metrics = json.loads(Path(f"{folder}/run/metrics.json").read_text())
        accuracy = metrics["test"]["accuracy"]
        accuracies.append(accuracy)
        seconds.append(elapsed)
        rss = peak_rss_mib(result.stderr)
        print(
            f"seed {seed}: test accuracy {accuracy:.4f}, valid {metrics['valid']['accuracy']:.4f}, "
            f"best epoch {metrics['best_epoch']}/{metrics['epochs_run']}, wall {elapsed:.0f} s"
            + (f", peak RSS {rss:,.0f} MiB" if rss else ""),
            flush=True,
        )
    print(
        f"{args.config}: test accuracy median {statistics.median(accuracies):.4f} "
        f"(min {min(accuracies):.4f}, max {max(accuracies):.4f}), "
        f"wall median {statistics.median(seconds):.0f} s "
        f"(max {max(seconds):.0f} s)"
    )


if __name__ == "__main__":
    main()
