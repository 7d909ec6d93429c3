#!/usr/bin/env python3
"""Where one training step's time goes: forward (with the loss), backward, gradient clipping, optimizer
step, each timed apart on the real batches of a config (the training loop fuses them; this script splits
them to see which part a trial's cost lies in).

    python bench/step_parts.py configs/goemotions.yaml --set data.test=null --set model.hidden_dim=256 \\
        --set model.embedding_dim=300 --set text.min_freq=1 --set train.batch_size=32

The model and optimizer are built as `rnnclf train` builds them (fused Adam, the config's precision);
the first --warmup steps are not timed. Prints milliseconds per step for each part (means over the
timed steps) and the steps in one epoch.

--sparse-embedding is `--set train.sparse_embedding=true`: sparse word-vector gradients (only the rows of
the batch's words) stepped by the row-wise Adam beside fused Adam for the other weights, clipped with
them (rnnclf.training.sparse), as `rnnclf train` does it; the catch-up of the batch's returning rows
(the embedding's forward pre-hook) is timed in the forward part.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--set", action="append", default=[], help="KEY=VALUE, as rnnclf train --set")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--sparse-embedding", action="store_true", help="train.sparse_embedding=true")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    import torch

    torch.set_flush_denormal(True)
    from rnnclf.batching import collate, training_batches
    from rnnclf.config import load
    from rnnclf.inference.scoring import loss_of
    from rnnclf.models.addons import build_model, parameter_count
    from rnnclf.prepare import prepare
    from rnnclf.runtime import autocast, choose_device
    from rnnclf.training.optimization import make_optimizer
    from rnnclf.training.sparse import clip_grad_norm, use_sparse_rows

    config = load(
        args.config, [*args.set, *(["train.sparse_embedding=true"] if args.sparse_embedding else [])]
    )
    settings, device = config.train, choose_device(config.train.device)
    prepared = prepare(config)
    model = build_model(len(prepared.vocab), len(prepared.labels), config).to(device)
    if settings.sparse_embedding:
        use_sparse_rows([model.embedding])  # backward gives (rows, E) for the batch's words, not (V, E)
    optimizer = make_optimizer(model, config)

    def now() -> float:  # CUDA runs asynchronously: a part ends when its kernels have
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()

    batches = training_batches(prepared.train.lengths, settings.batch_size, torch.Generator().manual_seed(0))
    parts = {"forward": 0.0, "backward": 0.0, "clip": 0.0, "step": 0.0}
    timed = 0
    for number, indices in enumerate(batches[: args.warmup + args.steps]):
        ids, lengths, targets = collate(prepared.train, indices)
        ids, targets = ids.to(device), targets.to(device)
        moments = [now()]
        with autocast(settings.precision, device):
            logits = model(ids, lengths)  # (B, C)
        loss = loss_of(logits.float(), targets, None)
        moments.append(now())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        moments.append(now())
        if settings.clip_grad_norm is not None:
            clip_grad_norm(model.parameters(), settings.clip_grad_norm)
        moments.append(now())
        optimizer.step()
        moments.append(now())
        if number >= args.warmup:
            timed += 1
            for name, (start, end) in zip(parts, itertools.pairwise(moments), strict=True):
                parts[name] += end - start
    shown = ", ".join(f"{name} {seconds / timed * 1000:.2f}" for name, seconds in parts.items())
    total = sum(parts.values()) / timed * 1000
    print(
        f"{'sparse word vectors, ' if args.sparse_embedding else ''}"
        f"vocabulary {len(prepared.vocab):,}, {parameter_count(model):,} weights, precision "
        f"{settings.precision}, batch {settings.batch_size}: ms per step {shown} (total {total:.2f}); "
        f"{len(batches):,} steps an epoch"
    )


if __name__ == "__main__":
    main()
