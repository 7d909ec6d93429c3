#!/usr/bin/env python3
"""Data-parallel training speed on CPU: 1 process x T threads against P processes x T/P threads.

Both run the same global batches (the first warmup + --batches batches of epoch 1, global batch 128)
of the lecture's LSTM alone (bench/lecture.py: embedding 128, one unidirectional LSTM layer of 256,
Adam 0.005, vocabulary 20k; no add-ons) on IMDB train, through the training loop's own pieces
(rnnclf.training.distributed's data_parallel (gloo), prepare_once and my_part, rnnclf.training.optimization's
train_step under DistributedDataParallel, and the per-step agreement collective). Each run stops if
its model has other weights than the lecture's.
Words/s counts real tokens of the global batches (padding excluded) per second of wall time, timed on
rank 0 after the warm-up steps; the processes start together, so the slowest one sets the pace.

    python bench/distributed_speed.py --data ../shared/data/imdb/train.csv.gz --batches 20 --repeats 2

An OpenMP process with 2 threads on 2 busy cores slows down far more than 2 one-thread processes do
(its threads wait for each other at every parallel region), so run this on an otherwise idle machine;
the load average is printed before and after.

The data is tokenized once (the first run fills rnnclf's cache); no measurement includes it.
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

from lecture import lecture_config, weight_count  # bench/lecture.py, beside this script; no torch

HERE = Path(__file__).resolve().parent


def worker(data: str, batches: int, warmup: int) -> None:
    """One process of the measurement (alone, or one of torchrun's); rank 0 prints a JSON line."""
    from rnnclf.runtime import prepare_cpu

    prepare_cpu()  # first thing: before torch starts its worker threads
    import torch

    from rnnclf.batching import training_batches
    from rnnclf.models.addons import PerMember
    from rnnclf.models.classifier import Classifier, parameter_count
    from rnnclf.runtime import seed_everything
    from rnnclf.training.distributed import data_parallel, my_part, prepare_once
    from rnnclf.training.optimization import make_optimizer, make_schedule, train_step

    config = lecture_config(data, device="cpu", seed=13)
    settings = config.train
    with data_parallel(settings.device) as processes:
        prepared = prepare_once(config, processes)
        seed_everything(settings.seed)
        model = Classifier(len(prepared.vocab), len(prepared.labels), config.model)
        weights, expected = parameter_count(model), weight_count(len(prepared.vocab), len(prepared.labels))
        if weights != expected:
            sys.exit(f"not the lecture's model: {weights:,} weights, the lecture's LSTM has {expected:,}")
        net = processes.wrap(PerMember(model))  # as in rnnclf.training.loop: DDP wraps what steps run
        optimizer = make_optimizer(model, config, fused=False)  # as rnnclf train under torchrun
        schedule = make_schedule(optimizer, config, 10_000)
        scaler = torch.amp.GradScaler("cpu", enabled=False)
        lengths = prepared.train.lengths
        order = training_batches(lengths, settings.batch_size, torch.Generator().manual_seed(settings.seed))
        order = order[: warmup + batches]
        net.train()
        words, started = 0, 0.0
        for number, indices in enumerate(order):
            if number == warmup:
                processes.barrier()
                started = time.perf_counter()
            batch, scale = my_part(prepared.train, indices, processes, None)
            device, size = processes.device, processes.size
            loss = train_step(
                net, [model], batch, optimizer, schedule, scaler, settings, device, None, scale, size
            )
            processes.agree(loss, None)  # the loop's per-step collective (loss sum, stop signal)
            if number >= warmup:
                words += int(lengths[indices].sum())
        seconds = time.perf_counter() - started
        if processes.primary:
            result = {
                "processes": processes.size,
                "threads": torch.get_num_threads(),
                "weights": weights,
                "batches": batches,
                "words": words,
                "seconds": seconds,
                "words_per_s": words / seconds,
            }
            print("RESULT " + json.dumps(result), flush=True)


def measure(command: list[str], threads: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    output = subprocess.run(command, env=env, capture_output=True, text=True)
    lines = [line for line in output.stdout.splitlines() if line.startswith("RESULT ")]
    if not lines:
        sys.exit(f"failed ({output.returncode}): {' '.join(command)}\n{output.stderr[-3000:]}")
    if output.returncode != 0:  # the measurement is complete; a process died while shutting down
        aborted = "terminate called" in output.stderr
        print(
            f"note: exit status {output.returncode} after the result"
            + (" (abort at exit)" if aborted else "")
        )
    return json.loads(lines[0].removeprefix("RESULT "))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(HERE.parent.parent / "shared/data/imdb/train.csv.gz"))
    parser.add_argument("--batches", type=int, default=20, help="timed global batches")
    parser.add_argument("--warmup", type=int, default=3, help="untimed global batches first")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="threads of the single process (in all)")
    parser.add_argument("--repeats", type=int, default=1, help="alternating measurements of each")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.data, args.batches, args.warmup)
        return
    script = [str(Path(__file__).resolve()), "--worker", "--data", args.data]
    script += ["--batches", str(args.batches), "--warmup", str(args.warmup)]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    many = [*launcher, "--nproc-per-node", str(args.processes), *script]
    runs = {"one": ([sys.executable, *script], args.threads), "many": (many, args.threads // args.processes)}
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")
    rates: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):  # alternating, so a change in the machine's load hits both
        for name, (command, threads) in runs.items():
            result = measure(command, max(1, threads))
            rates[name].append(result["words_per_s"])
            print(
                f"{result['processes']} process(es) x {result['threads']} thread(s): "
                f"{result['words_per_s']:,.0f} words/s ({result['words']:,} words in {result['batches']} "
                f"global batches of 128, {result['seconds']:.1f}s; model {result['weights']:,} weights)"
            )
    alone, together = statistics.median(rates["one"]), statistics.median(rates["many"])
    print(f"median: 1 process {alone:,.0f} words/s, {args.processes} processes {together:,.0f} words/s")
    print(f"ratio {args.processes} processes / 1 process: {together / alone:.2f}x")
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
