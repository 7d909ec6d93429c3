#!/usr/bin/env python3
"""Language-model pretraining at a GPU's size, within a time budget: the IMDB recipe of
configs/imdb-pretrained-gpu.yaml (3-layer bi-LSTM, 1,150 units), with the same classifier trained from
random weights beside it, so the figure says what pretraining adds at this size.

    python bench/gpu_pretrain.py --data gpu_data/imdb --out /tmp/gpu --lm-seconds 210 --classifier-seconds 80

The number of epochs of each stage is chosen from a timing of a few steps on the device so that the
stage fits its budget (at most the config's epochs); the chosen numbers are printed. Test accuracy is
scored once, at the end of each classifier run (best.pt chosen on validation).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from lm_speed import classifier_stepper, lm_stepper  # bench/lm_speed.py: the same steps, timed on CPU

from rnnclf.batching import training_batches
from rnnclf.config import load
from rnnclf.models.classifier import Classifier
from rnnclf.models.language_model import LanguageModel
from rnnclf.prepare import prepare
from rnnclf.pretraining.loop import LM_FILE, pretrain, windows
from rnnclf.reporter import Reporter
from rnnclf.training.loop import train

HERE = Path(__file__).resolve().parent


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def seconds_per_step(step, batches: list[torch.Tensor], warmup: int = 3, timed: int = 10) -> float:
    for indices in batches[:warmup]:
        step(indices)
    synchronize()
    started = time.perf_counter()
    for indices in batches[warmup : warmup + timed]:
        step(indices)
    synchronize()
    return (time.perf_counter() - started) / timed


def calibrate(config, data) -> tuple[float, float]:
    """(seconds per language-model epoch, seconds per classifier epoch), estimated from a few steps."""
    device, precision, vocab = (
        torch.device(config.train.device),
        config.train.precision,
        int(data.ids.max()) + 1,
    )
    pieces = windows(data, config.pretrain.window)
    lm = LanguageModel(vocab, config.model).to(device)
    lm_step = lm_stepper(lm, pieces, config.pretrain.samples, precision, device)
    batches = training_batches(pieces.lengths, config.pretrain.batch_size, torch.Generator().manual_seed(0))
    lm_epoch = seconds_per_step(lm_step, batches) * len(batches)
    classifier = Classifier(vocab, 2, config.model).to(device)
    classifier_step = classifier_stepper(classifier, data, precision, device)
    batches = training_batches(data.lengths, config.train.batch_size, torch.Generator().manual_seed(0))
    return lm_epoch, seconds_per_step(classifier_step, batches) * len(batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(HERE.parent / "configs/imdb-pretrained-gpu.yaml"))
    parser.add_argument("--data", required=True, help="folder with train.csv.gz and test.csv.gz")
    parser.add_argument("--out", required=True)
    parser.add_argument("--lm-seconds", type=float, default=210)
    parser.add_argument("--classifier-seconds", type=float, default=80)
    parser.add_argument("--set", nargs="*", default=[], help="config overrides (a CPU smoke test)")
    args = parser.parse_args()
    data, out = Path(args.data).resolve(), Path(args.out)
    overrides = [
        f"data.train={data / 'train.csv.gz'}",
        f"data.test={data / 'test.csv.gz'}",
        "train.baseline=false",
        *args.set,
    ]
    config = load(args.config, overrides)
    device = torch.cuda.get_device_name() if config.train.device == "cuda" else config.train.device
    print(f"device: {device}, torch {torch.__version__}", flush=True)
    started = time.perf_counter()
    prepared = prepare(config)
    seconds = time.perf_counter() - started
    print(f"data: {len(prepared.train)} train / {len(prepared.valid)} valid ({seconds:.1f}s)")
    lm_epoch, classifier_epoch = calibrate(config, prepared.train)
    lm_epochs = max(1, min(config.pretrain.epochs, int(args.lm_seconds / lm_epoch)))
    classifier_epochs = max(1, min(config.train.epochs, int(args.classifier_seconds / classifier_epoch)))
    print(
        f"estimated: language-model epoch {lm_epoch:.1f}s -> {lm_epochs} epochs; "
        f"classifier epoch {classifier_epoch:.1f}s -> {classifier_epochs} epochs",
        flush=True,
    )
    results: dict[str, object] = {
        "lm_epoch_estimate_s": lm_epoch,
        "classifier_epoch_estimate_s": classifier_epoch,
    }
    reporter = Reporter()
    lm_config = load(args.config, [*overrides, f"pretrain.epochs={lm_epochs}"])
    results["language_model"] = pretrain(lm_config, out / "lm", reporter)
    results["lm_history"] = [
        json.loads(line) for line in (out / "lm" / "metrics.jsonl").read_text().splitlines()
    ]
    for name, extra in (
        ("from_language_model", [f"model.init_from={out / 'lm' / LM_FILE}"]),
        ("from_scratch", []),
    ):
        run_config = load(
            args.config, [*overrides, "pretrain.epochs=0", f"train.epochs={classifier_epochs}", *extra]
        )
        metrics = train(run_config, out / name, reporter)
        results[name] = {
            "valid_accuracy": metrics["valid"]["accuracy"],
            "test_accuracy": metrics["test"]["accuracy"],
            "train_seconds": metrics.get("train_seconds"),
            "epochs_run": metrics.get("epochs_run"),
        }
        print(f"{name}: {json.dumps(results[name])}", flush=True)
    (out / "gpu_pretrain.json").write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
