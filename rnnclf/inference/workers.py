"""Scoring batches on every CPU core: one scoring thread per core, each running torch on one thread.

A bi-LSTM's forward pass is a chain of small per-step matrix products (batch x 128 by 128 x 512); split
over two intra-op threads each product waits on both cores at every step, so the second core mostly
idles. Two Python threads each scoring their own batches with one intra-op thread keep both cores
working (torch releases the GIL inside its kernels): measured on IMDB test, bi-LSTM 128, fp32, 2 cores,
~1.5-2x the documents/s of one thread using both cores, with bit-identical logits (each batch is
computed by the same kernels either way; only which core runs it changes).

    batches (sorted by length)   b0 b1 b2 b3 b4 b5 ...
    thread 0                     b0    b2    b4   ...   (torch.set_num_threads(1) while they run)
    thread 1                        b1    b3    b5 ...
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import torch

from rnnclf.runtime import cpu_count


def scoring_threads(device: torch.device) -> int:
    """How many scoring threads to run: one per core torch may use, on CPU; one elsewhere (a GPU
    queues its work itself)."""
    if device.type != "cpu":
        return 1
    return max(1, min(torch.get_num_threads(), cpu_count()))


def run_parallel(jobs: list[Callable[[], None]], threads: int) -> None:
    """Run the jobs on `threads` threads (job i on thread i % threads), torch at one intra-op thread
    each meanwhile; the first exception raised in any job is raised here once all threads stop."""
    if threads <= 1 or len(jobs) <= 1:
        for job in jobs:
            job()
        return
    errors: list[BaseException] = []

    def work(mine: list[Callable[[], None]]) -> None:
        try:
            for job in mine:
                if errors:  # another thread failed: stop early
                    return
                job()
        except BaseException as err:  # handed to the calling thread below
            errors.append(err)

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # read by each new thread when it starts its first parallel kernel
    try:
        pool = [threading.Thread(target=work, args=(jobs[k::threads],)) for k in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
    finally:
        torch.set_num_threads(before)
    if errors:
        raise errors[0]
