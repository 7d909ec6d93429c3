"""One place that decides device, precision, seeding, CPU float/thread settings, and the processes of
a data-parallel job (`torchrun --nproc-per-node N -m rnnclf train CONFIG`)."""

from __future__ import annotations

import contextlib
import datetime
import os
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import nn

from rnnclf.errors import RnnclfError

T = TypeVar("T")
# A process that stops responding without dying (a wedged GPU, a stalled file system) ends the job
# after this many seconds. One that dies ends it at once: torchrun stops the others. The longest
# legitimate wait is the other processes waiting while the first process of a machine tokenizes the
# data on a first run (later runs read the cache).
TIMEOUT_VARIABLE = "RNNCLF_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 1800

_cpu_ready = False


def prepare_cpu() -> None:
    """Flush denormal floats to zero, before torch starts its worker threads (they inherit the flag).

    The backward pass through long sequences produces denormals (values below ~1e-38); x86 handles
    them ~100x slower, which made a CPU LSTM epoch ~14x slower here. Set after the thread pool has
    started, only the main thread flushes. Call this first thing, before any tensor work.
    """
    global _cpu_ready
    if _cpu_ready:
        return
    torch.set_flush_denormal(True)
    _cpu_ready = True


def choose_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu; 'cuda' without a GPU is a clear error."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise RnnclfError("train.device = cuda: no CUDA device is available here; use auto or cpu")
    return torch.device(name)


def check_precision(precision: str, device: torch.device) -> None:
    if precision == "fp16" and device.type != "cuda":
        raise RnnclfError("train.precision = fp16: fp16 needs a CUDA device; on CPU use bf16 or fp32")


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """Mixed precision for the forward pass; fp32 is a no-op context."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def rng_state(gpu: torch.device | None = None) -> dict:
    """Random-number state of torch (CPU and CUDA) and Python, as plain types and tensors. `gpu`: that
    GPU's state only (a data-parallel process; asking for all would start a context on every GPU)."""
    state = {"torch": torch.get_rng_state(), "python": _python_state()}
    if gpu is not None:
        state["cuda"] = [torch.cuda.get_rng_state(gpu)]
    elif torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _python_state() -> list:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def set_rng_state(state: dict, gpu: torch.device | None = None) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and gpu is not None:
        torch.cuda.set_rng_state(state["cuda"][0], gpu)
    elif "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


# --- data-parallel processes ------------------------------------------------------------------------------


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
