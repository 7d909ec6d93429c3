#!/usr/bin/env python3
"""Does adversarial training on the word vectors make one recurrent model better? A measurement before
anything is built into rnnclf (issue 26's one-model targets).

Adversarial training (Goodfellow et al. 2015; for text, Miyato et al. 2017, "Adversarial training
methods for semi-supervised text classification") adds to each step's loss the loss of the same batch
with its word vectors (the embedding's output, (B, T, E)) moved by the small perturbation that raises
the loss most to first order: r = eps * ||x|| * g / ||g||, x the document's word vectors, g the gradient
of the loss with respect to them, norms per document over its (T, E) (padding left alone; before 0.3.0's
release r = eps * g / ||g||, eps an absolute size, which the first two measurements used). Each step costs
about two: the clean forward and backward give g, the perturbed ones add their gradient.

Per seed, on one train/validation split (the tunes': bench/tune_accuracy.py's data section), CONFIG is
trained as it is (`plain`, train.adversarial 0) and with `train.adversarial` at each eps given; nothing
else differs. Each run is scored once on test. (The first measurement, commit 864a6f9, swapped the
training loop's step for a copy with the perturbation, before it was built in, with dense word-vector
steps in every arm.)

    python bench/adversarial.py --corpus trec --set ensemble.members=1 --seeds 3 --eps 0.02 0.05 0.1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

from tune_accuracy import data_section  # beside this script

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("OMP_NUM_THREADS", "2")


def configured(
    config: Path, corpus: str, seed: int, sets: list[str], eps: float, run_dir: Path, out: Path
) -> Any:
    import yaml

    from rnnclf.config import parse_override, validate

    raw = yaml.safe_load(config.read_text(encoding="utf-8"))
    raw["data"] = data_section(corpus, out)  # imdb5000: its 5,000-review file is written once, in OUT
    for item in sets:
        (section, key), value = parse_override(item)
        raw.setdefault(section, {})[key] = value
    raw.setdefault("train", {}).update(seed=seed, device="cpu", adversarial=eps)
    raw["output"] = {"run_dir": str(run_dir), "plots": False}
    return validate(raw, str(config))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", default="trec")
    parser.add_argument("--config", type=Path, default=ROOT / "configs/trec.yaml")
    parser.add_argument("--set", dest="sets", action="append", default=[])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=13)
    parser.add_argument("--eps", type=float, nargs="+", default=[0.02, 0.05, 0.1])
    parser.add_argument("--out", type=Path, default=Path("/tmp/rnnclf-adversarial"))
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    import torch

    from rnnclf.runtime import prepare_cpu
    from rnnclf.training.loop import train

    prepare_cpu()
    torch.set_num_threads(2)
    args.out.mkdir(parents=True, exist_ok=True)
    arms = ["plain"] + [f"eps{eps:g}" for eps in args.eps]
    metric = "macro_f1" if args.corpus == "goemotions" else "accuracy"
    results: dict[str, list[dict[str, float]]] = {arm: [] for arm in arms}
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        row: dict[str, dict[str, float]] = {}
        for arm, eps in zip(arms, [0.0, *args.eps], strict=True):
            where = args.out / f"seed{seed}" / arm
            config = configured(args.config, args.corpus, seed, args.sets, eps, where, args.out)
            metrics = train(config, config.output.run_dir)
            row[arm] = {
                "valid": metrics["valid"][metric],
                "test": metrics["test"][metric],
                "seconds": metrics.get("train_seconds", 0.0),
            }
            if metric != "accuracy":
                row[arm]["test_micro_f1"] = metrics["test"]["micro_f1"]
            results[arm].append(row[arm])
            print(json.dumps({"seed": seed, arm: row[arm]}), flush=True)
    print(f"\n{args.corpus} {args.config.name} {args.sets}, {args.seeds} seeds, {metric}, median (range):")
    for arm, rows in results.items():
        for split in ("valid", "test"):
            values = [row[split] for row in rows]
            print(
                f"  {arm:8s} {split}: {statistics.median(values):.4f} ({min(values):.4f}-{max(values):.4f})"
            )
    settings = {**vars(args), "out": str(args.out), "config": str(args.config)}
    (args.out / "results.json").write_text(
        json.dumps({**settings, "results": results}, indent=1), encoding="utf-8"
    )


if __name__ == "__main__":
    main()
