"""Data-parallel training (`torchrun --nproc-per-node N -m rnnclf train CONFIG`): the processes of one
job, each process's share of a global batch, and the check that every process read the same data.

train.batch_size is the global batch: every process builds the same global batches from the seed and
takes its own part of each (batching.shard); DistributedDataParallel averages the gradients, and the
loss is scaled so that the step equals one process's step on the whole batch (up to float order).
With one process (no torchrun) every operation here is a plain local one, so training has one code path.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import nn

from rnnclf.batching import Encoded, collate, shard
from rnnclf.config import Config
from rnnclf.errors import RnnclfError
from rnnclf.prepare import Prepared, prepare
from rnnclf.runtime import choose_device, cpu_count, rng_state, seed_everything, set_rng_state

T = TypeVar("T")
# A process that stops responding without dying (a wedged GPU, a stalled file system) ends the job
# after this many seconds. One that dies ends it at once: torchrun stops the others. The longest
# legitimate wait is the other processes waiting while the first process of a machine tokenizes the
# data on a first run (later runs read the cache).
TIMEOUT_VARIABLE = "RNNCLF_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 1800


@dataclass
class Processes:
    """The processes of one data-parallel job, as seen from one of them.

    size 1 (no torchrun) is this process alone: every method is then a plain local operation, so the
    training loop has one code path and the single-process run does exactly what it did before.
    """

    device: torch.device
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def primary(self) -> bool:
        """Rank 0: the one process that writes files and reports progress."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.size > 1:
            torch.distributed.barrier()

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """Element-wise sum over the processes, in float64 (exact for counts below 2**53)."""
        if self.size == 1:
            return values
        total = values.to(self.device, torch.float64)
        torch.distributed.all_reduce(total)
        return total.cpu()

    def agree(self, loss: float, signal: int | None) -> tuple[float, int | None]:
        """The one collective of a training step: the loss summed over the processes, and the stop
        signal if any process got one, so that all of them stop after the same step and none is left
        waiting in a collective for a process that has gone."""
        if self.size == 1:
            return loss, signal
        mine = torch.tensor([loss, float(signal or 0)], dtype=torch.float64, device=self.device)
        everyone = [torch.empty_like(mine) for _ in range(self.size)]
        torch.distributed.all_gather(everyone, mine)
        table = torch.stack(everyone).cpu()  # (processes, 2), in rank order on every process
        return float(table[:, 0].sum()), int(table[:, 1].max()) or None

    def gather(self, value: T) -> list[T]:
        """Every process's `value` (plain types and tensors), in rank order."""
        if self.size == 1:
            return [value]
        everyone: list[Any] = [None] * self.size
        torch.distributed.all_gather_object(everyone, value)
        return everyone

    def from_primary(self, make: Callable[[], T]) -> T:
        """Rank 0 runs make(); every process gets its result (or raises its RnnclfError). Files are
        read by rank 0 only, so the run folder need not be shared between machines."""
        if self.size == 1:
            return make()
        box: list[Any] = [None]
        if self.primary:
            try:
                box = [(True, make())]
            except RnnclfError as err:
                box = [(False, str(err))]
        torch.distributed.broadcast_object_list(box, src=0)
        succeeded, value = box[0]
        if not succeeded:
            raise RnnclfError(value)
        return value

    def random_state(self) -> dict:
        """rng_state() of this process; with several processes, every process's in "ranks" (each has
        its own dropout stream), so a resumed job continues each stream."""
        if self.size == 1:
            return rng_state()
        state = rng_state(self.device if self.device.type == "cuda" else None)
        state["ranks"] = self.gather(state)
        return state

    def restore_random_state(self, state: dict, seed: int) -> None:
        saved = state.get("ranks", [state])
        if self.rank < len(saved):
            set_rng_state(saved[self.rank], self.device if self.device.type == "cuda" else None)
        else:  # more processes than the checkpoint had: a fresh dropout stream for the new ones
            seed_everything(seed + self.rank)

    def wrap(self, model: nn.Module) -> nn.Module:
        """The module the training steps run: DistributedDataParallel averages the gradients over the
        processes during backward. Checkpoints save the unwrapped model (no 'module.' prefixes)."""
        if self.size == 1:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)


@contextlib.contextmanager
def data_parallel(device_name: str) -> Iterator[Processes]:
    """The processes of this job, from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK,
    MASTER_ADDR, MASTER_PORT); without it, this process alone.

    Backend: nccl on CUDA (one GPU per process: cuda:LOCAL_RANK), gloo on CPU. Errors raised inside
    name the rank, and a lost peer becomes a one-line RnnclfError instead of a traceback."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        yield Processes(device=choose_device(device_name))
        return
    if not torch.distributed.is_available():
        raise RnnclfError("WORLD_SIZE > 1, but this torch build has no torch.distributed")
    missing = [name for name in ("RANK", "MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
    if missing:
        raise RnnclfError(
            f"WORLD_SIZE={size} but {', '.join(missing)} not set: start data-parallel training with "
            "torchrun --nproc-per-node N -m rnnclf train CONFIG"
        )
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    local_size = int(os.environ.get("LOCAL_WORLD_SIZE", size))
    device = choose_device(device_name)
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise RnnclfError(
                f"rank {rank}: LOCAL_RANK {local_rank} but this machine has {torch.cuda.device_count()} "
                "GPUs; start at most one process per GPU (--nproc-per-node), or set train.device=cpu"
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    elif "OMP_NUM_THREADS" not in os.environ:  # torchrun sets 1; started by hand: share the cores
        torch.set_num_threads(max(1, cpu_count() // local_size))
    backend = "nccl" if device.type == "cuda" else "gloo"
    timeout = float(os.environ.get(TIMEOUT_VARIABLE, DEFAULT_TIMEOUT_S))
    torch.distributed.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout))
    try:
        yield Processes(device, rank, size, local_rank, backend)
    except RnnclfError as err:
        raise RnnclfError(f"rank {rank}: {err}") from None
    except RuntimeError as err:
        if not _lost_peer(err):
            raise
        raise RnnclfError(
            f"rank {rank}: stopped because another process of this job failed or stopped responding "
            f"({_first_sentence(err)}); its own error, if it could print one, is above"
        ) from None
    finally:
        with contextlib.suppress(Exception):
            torch.distributed.destroy_process_group()


def _first_sentence(err: Exception) -> str:
    """'[.../pair.cc:553] Connection closed by peer [127.0.0.1]:23453. This is ...' -> 'Connection closed
    by peer [127.0.0.1]:23453'."""
    text = re.sub(r"^\[[^\]]*\]\s*", "", " ".join(str(err).split()))
    return re.split(r"\.(?:\s|$)", text, maxsplit=1)[0][:200] or type(err).__name__


def _lost_peer(err: RuntimeError) -> bool:
    """A collective failed because another process died or hung (not a bug in this one)."""
    if isinstance(err, torch.distributed.DistError):
        return True
    signs = ("Connection closed by peer", "Connection reset by peer", "Timed out", "timed out", "timeout")
    return any(sign in str(err) for sign in signs)


def my_part(
    data: Encoded, indices: torch.Tensor, processes: Processes, weights: torch.Tensor | None
) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor], float | None]:
    """This process's part of a global batch, collated, and its loss scale for train_step (None: one
    process, the whole batch)."""
    if processes.size == 1:
        return collate(data, indices), None
    mine = shard(indices, processes.rank, processes.size)
    if len(mine) == 0:
        # Fewer documents than processes: DDP needs every process in every step, so this one steps
        # on a stand-in document that counts for nothing.
        return collate(data, indices[:1]), 0.0
    # Every process knows the whole global batch, so its total weight needs no communication.
    # Multi-label weights are per-label positive weights inside each document's loss: documents count 1.
    weighted = weights is not None and not data.multi_label
    total = float(weights[data.labels[indices]].sum()) if weighted else float(len(indices))
    return collate(data, mine), 1.0 / total if total else 0.0


def prepare_once(config: Config, processes: Processes, **options: Any) -> Prepared:
    """prepare(config, **options). With several processes the first one on each machine tokenizes
    (filling the cache) while the others wait, then they read the cache: a machine tokenizes the data
    once."""
    if processes.local_rank != 0:
        processes.barrier()
    prepared = prepare(config, **options)
    if processes.local_rank == 0:
        processes.barrier()
    return prepared


def _fingerprint(prepared: Prepared) -> str:
    """sha256 of what every process must share: vocabulary, labels and every encoded document."""
    parts = [p for p in (prepared.train, prepared.valid, prepared.test) if p is not None]
    sizes = [[len(p), p.ids.numel()] for p in parts]
    digest = hashlib.sha256(json.dumps([prepared.vocab.get_itos(), prepared.labels, sizes]).encode())
    for tensor in (t for p in parts for t in (p.ids, p.offsets, p.labels)):
        tensor = tensor.contiguous()
        size = tensor.numel() * tensor.element_size()
        if size:  # the tensor's memory as a buffer, without a copy (no NumPy needed)
            digest.update((ctypes.c_char * size).from_address(tensor.data_ptr()))
    return digest.hexdigest()


def check_same_data(prepared: Prepared, processes: Processes) -> str:
    """Compare the processes' fingerprints of the prepared data; a clear error when they differ."""
    test = len(prepared.test) if prepared.test is not None else 0
    mine = (
        _fingerprint(prepared),
        f"vocabulary {len(prepared.vocab)}, {len(prepared.labels)} labels, "
        f"{len(prepared.train)}/{len(prepared.valid)}/{test} train/valid/test documents",
    )
    everyone = processes.gather(mine)
    if len({digest for digest, _ in everyone}) > 1:
        listing = "; ".join(
            f"rank {rank}: {described}, sha256 {digest[:12]}"
            for rank, (digest, described) in enumerate(everyone)
        )
        raise RnnclfError(
            f"the prepared data differ between the processes ({listing}); every process must read the "
            "same data files with the same settings and rnnclf version (a stale preprocessing cache? "
            "set RNNCLF_CACHE to an empty folder)"
        )
    return mine[0]
