#!/usr/bin/env python3
"""GPU check, a few minutes on one CUDA device: correctness against the CPU on the same weights, then
the time of one IMDB training epoch on the GPU (fp32 and bf16) of the shipped IMDB config's recurrent
model (rnnclf.models.classifier.Classifier from its `model:` section; add-ons such as `linear:` are not
part of it).

    python bench/gpu_check.py --data ../shared/data/imdb    # train.csv.gz and test.csv.gz inside

Correctness: for every cell x direction x pooling x depth, the logits of a padded batch of documents of
very different lengths on CUDA (cuDNN) match the CPU's within 1e-4, and so do the gradients of one step.
The cells and poolings are read from the config schema (rnnclf.schema.ModelConfig), so a pooling or
cell added there is checked here without editing this file.

Without a GPU, `--dry-run` runs the same comparisons with the second copy on the CPU too (CPU against
CPU: it shows that every variant builds, runs forward and backward, and that the loop covers the
schema's choices; it says nothing about CUDA) and skips the epoch timing:

    python bench/gpu_check.py --dry-run
"""

from __future__ import annotations

import argparse
import itertools
import time
import typing
from pathlib import Path

import torch

from rnnclf.batching import collate, training_batches
from rnnclf.config import ModelConfig, load
from rnnclf.models.addons import PerMember
from rnnclf.models.classifier import Classifier
from rnnclf.models.language_model import LanguageModel
from rnnclf.prepare import prepare
from rnnclf.training.optimization import make_optimizer, make_schedule, train_step

HERE = Path(__file__).resolve().parent


def choices(key: str) -> tuple[str, ...]:
    """Every value the schema accepts for model.`key` (a Literal field such as cell or pooling)."""
    values = typing.get_args(ModelConfig.model_fields[key].annotation)
    if not values:
        raise SystemExit(f"model.{key} is no longer a list of choices in rnnclf.schema: update this check")
    return values


CELLS, POOLINGS = choices("cell"), choices("pooling")


def padded_batch(lengths: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ids (B, T) right-padded with 0 to the longest of `lengths`, and the lengths (B,)."""
    generator = torch.Generator().manual_seed(0)
    sizes = torch.tensor(lengths)
    ids = torch.randint(2, 500, (len(sizes), int(sizes.max())), generator=generator)
    return ids.masked_fill(torch.arange(ids.size(1)) >= sizes.unsqueeze(1), 0), sizes


def twins(build, device: torch.device, **settings: object) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The same small model (32-d vectors, 48 units, no dropout) on the CPU and on `device`."""
    config = ModelConfig(embedding_dim=32, hidden_dim=48, dropout=0.0, embedding_dropout=0.0, **settings)
    torch.manual_seed(1)
    cpu, gpu = build(config), build(config)
    gpu.load_state_dict(cpu.state_dict())
    return cpu, gpu.to(device)


def correctness(device: torch.device) -> float:
    """Largest |device - CPU| over logits and gradients of all model variants."""
    worst, count = 0.0, 0
    ids, lengths = padded_batch([3, 70, 1, 25, 140, 9])
    for cell, bidirectional, pooling, layers in itertools.product(CELLS, (False, True), POOLINGS, (1, 2)):
        cpu, gpu = twins(
            lambda config: Classifier(500, 4, config),
            device,
            cell=cell,
            bidirectional=bidirectional,
            pooling=pooling,
            num_layers=layers,
        )
        out_cpu = cpu(ids, lengths)
        out_gpu = gpu(ids.to(device), lengths.to(device))
        out_cpu.sum().backward()
        out_gpu.sum().backward()
        worst = max(worst, (out_cpu - out_gpu.cpu()).abs().max().item())
        for a, b in zip(cpu.parameters(), gpu.parameters(), strict=True):
            worst = max(worst, (a.grad - b.grad.cpu()).abs().max().item())
        count += 1
        print(
            f"{cell:4s} bi={bidirectional!s:5s} {pooling:9s} layers={layers}: max |diff| so far {worst:.2e}"
        )
    print(
        f"classifier variants checked: {count} ({len(CELLS)} cells x 2 directions x poolings "
        f"{', '.join(POOLINGS)} x 2 depths)"
    )
    return worst


def language_model_correctness(device: torch.device) -> float:
    """Largest |device - CPU| of the language model's full-softmax loss and gradients (uni- and
    bidirectional, one and two layers)."""
    worst = 0.0
    ids, lengths = padded_batch([3, 70, 2, 25, 140, 9])
    for bidirectional, layers in itertools.product((False, True), (1, 2)):
        cpu, gpu = twins(
            lambda config: LanguageModel(500, config), device, bidirectional=bidirectional, num_layers=layers
        )
        (loss_cpu, _), (loss_gpu, _) = cpu(ids, lengths), gpu(ids.to(device), lengths.to(device))
        loss_cpu.backward()
        loss_gpu.backward()
        # The loss is a sum over ~500 words: compare per word.
        worst = max(worst, abs(loss_cpu.item() - loss_gpu.item()) / int(lengths.sum()))
        for a, b in zip(cpu.parameters(), gpu.parameters(), strict=True):
            worst = max(worst, (a.grad - b.grad.cpu()).abs().max().item())
        print(f"language model bi={bidirectional!s:5s} layers={layers}: max |diff| so far {worst:.2e}")
    return worst


def epoch_time(config_path: Path, data: Path, precision: str) -> tuple[float, float]:
    """(seconds, words/s) for one full training epoch of the config's recurrent model on CUDA."""
    overrides = [
        f"data.train={data / 'train.csv.gz'}",
        "data.test=null",
        f"train.precision={precision}",
        "train.device=cuda",
    ]
    config = load(config_path, overrides)
    prepared = prepare(config)
    device = torch.device("cuda")
    model = Classifier(len(prepared.vocab), len(prepared.labels), config.model).to(device)
    net = PerMember(model)  # what training steps run, as in rnnclf.training.loop: logits (B, 1, C)
    optimizer = make_optimizer(model, config)
    batches = training_batches(
        prepared.train.lengths, config.train.batch_size, torch.Generator().manual_seed(0)
    )
    schedule = make_schedule(optimizer, config, len(batches))
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")
    torch.cuda.synchronize()
    started, words = time.perf_counter(), 0
    for indices in batches:
        batch = collate(prepared.train, indices)
        train_step(net, [model], batch, optimizer, schedule, scaler, config.train, device)
        words += int(batch[1].sum())
    torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    return seconds, words / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(HERE.parent.parent / "shared/data/imdb"))
    parser.add_argument("--config", default=str(HERE.parent / "configs/imdb.yaml"))
    parser.add_argument("--no-epochs", action="store_true", help="correctness only, no epoch timing")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="no GPU needed: CPU against CPU, no epoch timing (no CUDA result)",
    )
    args = parser.parse_args()
    if args.dry_run:
        device, name = torch.device("cpu"), "CPU"
        print(f"dry run on the CPU (torch {torch.__version__}): CPU against CPU, no CUDA result")
    elif not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: nothing to check (--dry-run runs the CPU side)")
    else:
        device, name = torch.device("cuda"), "CUDA"
        print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    # cuDNN may use TF32 for fp32 recurrences by default (~1e-3 off): compare true fp32.
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    worst = max(correctness(device), language_model_correctness(device))
    print(
        f"correctness: max |{name} - CPU| over logits and gradients = {worst:.2e} "
        f"({'ok' if worst < 1e-4 else 'FAIL'})"
    )
    torch.backends.cudnn.allow_tf32 = True
    for precision in () if args.no_epochs or args.dry_run else ("fp32", "bf16"):
        seconds, rate = epoch_time(Path(args.config), Path(args.data), precision)
        print(f"IMDB epoch on CUDA, {precision}: {seconds:.1f} s, {rate:,.0f} words/s")


if __name__ == "__main__":
    main()
