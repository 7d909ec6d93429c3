#!/usr/bin/env python3
"""Does one recurrent model learn more from an ensemble's predictions than from the labels alone?

A measurement for issue 26's "one model" target (TREC >= 92.4%, the hand-made 3-member ensemble's
median), before anything is built into rnnclf: per seed, on one train/validation split,

    ensemble   CONFIG as it is (configs/trec.yaml: 3 members), trained with `rnnclf.train`
    single     the same config with one member
    student    the same one-member config, trained on a mix of the labels and the ensemble's softened
               predictions on the training documents (knowledge distillation, Hinton et al. 2015):
               loss = (1 - alpha) * CE(labels) + alpha * T^2 * KL(teacher_T || student_T)

each scored once on test. The student is trained by rnnclf's own loop; this script only swaps the loss
of its steps (it patches rnnclf.training.optimization.loss_of and records which documents each step
holds), so nothing but the targets differs from `single`. The split is the tunes' (bench/tune_accuracy.py:
the data files, valid_fraction 0.1, train.seed).

    python bench/distil.py --seeds 3 --out /tmp/distil        # TREC, configs/trec.yaml, alpha 0.5, T 2
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


def configured(config: Path, seed: int, members: int, run_dir: Path, epochs: int | None = None) -> Any:
    import yaml

    from rnnclf.config import validate

    raw = yaml.safe_load(config.read_text(encoding="utf-8"))
    raw["data"] = data_section("trec", run_dir)  # the tunes' data (split by valid_fraction, train.seed)
    raw.setdefault("ensemble", {})["members"] = members
    raw["train"].update(seed=seed, device="cpu", **({"epochs": epochs} if epochs else {}))
    raw["output"] = {"run_dir": str(run_dir), "plots": False}
    return validate(raw, str(config))


def teacher_probabilities(run_dir: Path, prepared: Any, temperature: float) -> Any:
    """The ensemble's softened class distribution for every training document, (N, C): the mean over its
    members of softmax(logits / T), in eval mode."""
    import torch

    from rnnclf.batching import collate, evaluation_batches
    from rnnclf.config import validate
    from rnnclf.models.addons import PerMember, build_model
    from rnnclf.runs import checkpoint

    state = checkpoint.load(run_dir / "best.pt")
    assert state["vocab"]["itos"] == prepared.vocab.get_itos(), "the teacher's vocabulary differs"
    config = validate(state["config"], "teacher")
    model = build_model(len(prepared.vocab), len(prepared.labels), config)
    model.load_state_dict(state["model"])
    net = PerMember(model).eval()
    train = prepared.train
    out = torch.zeros(len(train), len(prepared.labels))
    with torch.no_grad():
        for indices in evaluation_batches(train.lengths, 256):
            ids, lengths, _ = collate(train, indices)
            logits = net(ids, lengths).float()  # (B, K, C)
            out[indices] = torch.softmax(logits / temperature, dim=-1).mean(dim=1)
    return out


def train_student(config: Any, teacher: Any, alpha: float, temperature: float) -> dict[str, Any]:
    """rnnclf's training loop with each step's loss mixed with the teacher's (see the module docstring)."""
    import torch
    from torch import nn

    import rnnclf.training.loop as loop
    import rnnclf.training.optimization as optimization

    held: dict[str, Any] = {}
    my_part, loss_of = loop.my_part, optimization.loss_of

    def recording(data: Any, indices: Any, processes: Any, weights: Any) -> Any:
        held["indices"] = indices  # collate keeps their order: row b of the logits is indices[b]
        return my_part(data, indices, processes, weights)

    def mixed(logits: Any, gold: Any, weights: Any = None, reduction: str = "mean") -> Any:
        hard = loss_of(logits, gold, weights, reduction)
        target = teacher[held["indices"]]  # (B, C)
        log_student = torch.log_softmax(logits / temperature, dim=-1)
        soft = nn.functional.kl_div(log_student, target, reduction="batchmean") * temperature**2
        return (1 - alpha) * hard + alpha * soft

    loop.my_part, optimization.loss_of = recording, mixed
    try:
        return loop.train(config, config.output.run_dir)
    finally:
        loop.my_part, optimization.loss_of = my_part, loss_of


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", type=Path, default=ROOT / "configs/trec.yaml")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=13)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--temperature", type=float, default=2.0)
    parser.add_argument("--out", type=Path, default=Path("/tmp/rnnclf-distil"))
    parser.add_argument("--epochs", type=int, help="override train.epochs (a quick check of the script)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    import torch

    from rnnclf.prepare import prepare
    from rnnclf.runtime import prepare_cpu
    from rnnclf.training.loop import train

    prepare_cpu()
    torch.set_num_threads(2)
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[dict[str, float]]] = {"ensemble": [], "single": [], "student": []}
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        where = args.out / f"seed{seed}"
        row: dict[str, dict[str, float]] = {}
        for name, members in (("ensemble", 3), ("single", 1)):
            config = configured(args.config, seed, members, where / name, args.epochs)
            metrics = train(config, config.output.run_dir)
            row[name] = {"valid": metrics["valid"]["accuracy"], "test": metrics["test"]["accuracy"]}
        student_config = configured(args.config, seed, 1, where / "student", args.epochs)
        teacher = teacher_probabilities(where / "ensemble", prepare(student_config), args.temperature)
        metrics = train_student(student_config, teacher, args.alpha, args.temperature)
        row["student"] = {"valid": metrics["valid"]["accuracy"], "test": metrics["test"]["accuracy"]}
        for name, scores in row.items():
            results[name].append(scores)
        print(json.dumps({"seed": seed, **row}), flush=True)
    print(
        f"\n{args.config.name}, alpha {args.alpha}, T {args.temperature}, {args.seeds} seeds, median (range):"
    )
    for name, rows in results.items():
        for split in ("valid", "test"):
            values = [row[split] for row in rows]
            low, middle, high = min(values), statistics.median(values), max(values)
            print(f"  {name:8s} {split}: {middle:.4f} ({low:.4f}-{high:.4f})")
    settings = {**vars(args), "out": str(args.out), "config": str(args.config)}
    (args.out / "results.json").write_text(
        json.dumps({**settings, "results": results}, indent=1), encoding="utf-8"
    )


if __name__ == "__main__":
    main()
