#!/usr/bin/env python3
"""GPU check, a few minutes on one CUDA device: correctness against the CPU on the same weights, then
the time of one IMDB training epoch on the GPU (fp32 and bf16) of the shipped IMDB config's recurrent
model (rnnclf.models.classifier.Classifier from its `model:` section; add-ons such as `linear:` are not
part of it).

    python bench/gpu_check.py --data ../shared/data/imdb    # train.csv.gz and test.csv.gz inside

Correctness: for every cell x direction x pooling, the logits of a padded batch of documents of very
different lengths on CUDA (cuDNN) match the CPU's within 1e-4, and so do the gradients of one step.
"""

from __future__ import annotations

import argparse
import itertools
import time
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


def padded_batch(lengths: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ids (B, T) right-padded with 0 to the longest of `lengths`, and the lengths (B,)."""
    generator = torch.Generator().manual_seed(0)
    sizes = torch.tensor(lengths)
    ids = torch.randint(2, 500, (len(sizes), int(sizes.max())), generator=generator)
    return ids.masked_fill(torch.arange(ids.size(1)) >= sizes.unsqueeze(1), 0), sizes


def twins(build, **settings: object) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The same small model (32-d vectors, 48 units, no dropout) on the CPU and on CUDA."""
    config = ModelConfig(embedding_dim=32, hidden_dim=48, dropout=0.0, embedding_dropout=0.0, **settings)
    torch.manual_seed(1)
    cpu, gpu = build(config), build(config)
    gpu.load_state_dict(cpu.state_dict())
    return cpu, gpu.cuda()


def correctness() -> float:
    """Largest |CUDA - CPU| over logits and gradients of all model variants."""
    worst = 0.0
    ids, lengths = padded_batch([3, 70, 1, 25, 140, 9])
    for cell, bidirectional, pooling, layers in itertools.product(
        ("rnn", "gru", "lstm"), (False, True), ("last", "mean", "max", "attention"), (1, 2)
    ):
        cpu, gpu = twins(
            lambda config: Classifier(500, 4, config),
            cell=cell,
            bidirectional=bidirectional,
            pooling=pooling,
            num_layers=layers,
        )
        out_cpu = cpu(ids, lengths)
        out_gpu = gpu(ids.cuda(), lengths.cuda())
        out_cpu.sum().backward()
        out_gpu.sum().backward()
        worst = max(worst, (out_cpu - out_gpu.cpu()).abs().max().item())
        for a, b in zip(cpu.parameters(), gpu.parameters(), strict=True):
            worst = max(worst, (a.grad - b.grad.cpu()).abs().max().item())
        print(
            f"{cell:4s} bi={bidirectional!s:5s} {pooling:9s} layers={layers}: max |diff| so far {worst:.2e}"
        )
    return worst


def language_model_correctness() -> float:
    """Largest |CUDA - CPU| of the language model's full-softmax loss and gradients (uni- and
    bidirectional, one and two layers)."""
    worst = 0.0
    ids, lengths = padded_batch([3, 70, 2, 25, 140, 9])
    for bidirectional, layers in itertools.product((False, True), (1, 2)):
        cpu, gpu = twins(
            lambda config: LanguageModel(500, config), bidirectional=bidirectional, num_layers=layers
        )
        (loss_cpu, _), (loss_gpu, _) = cpu(ids, lengths), gpu(ids.cuda(), lengths.cuda())
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
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: nothing to check")
    # cuDNN may use TF32 for fp32 recurrences by default (~1e-3 off): compare true fp32.
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    worst = max(correctness(), language_model_correctness())
    print(
        f"correctness: max |CUDA - CPU| over logits and gradients = {worst:.2e} "
        f"({'ok' if worst < 1e-4 else 'FAIL'})"
    )
    torch.backends.cudnn.allow_tf32 = True
    for precision in () if args.no_epochs else ("fp32", "bf16"):
        seconds, rate = epoch_time(Path(args.config), Path(args.data), precision)
        print(f"IMDB epoch on CUDA, {precision}: {seconds:.1f} s, {rate:,.0f} words/s")


if __name__ == "__main__":
    main()
