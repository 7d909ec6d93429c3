"""One place that decides device, precision, seeding, random state and CPU float/thread settings."""

from __future__ import annotations

import contextlib
import os
import random

import torch

from rnnclf.errors import RnnclfError

_cpu_ready = False
_cpu_bf16: bool | None = None  # bf16_runs' answer for the CPU, once known


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
    """Refuse, in one line, a precision this device cannot train in (before anything is written)."""
    if precision == "fp16" and device.type != "cuda":
        raise RnnclfError("train.precision = fp16: fp16 needs a CUDA device; on CPU use auto, bf16 or fp32")
    if precision == "bf16" and not bf16_runs(device):
        where = "this CPU has no bf16 LSTM kernel (it needs AVX-512 BF16 or AMX)"
        if device.type == "cuda":
            where = "this GPU does not support bf16"
        raise RnnclfError(
            f"train.precision = bf16: {where}; use auto (bf16 where it runs fast, else fp32) or fp32"
        )


def bf16_runs(device: torch.device) -> bool:
    """Whether an LSTM runs under bf16 autocast here at all. On CPUs without AVX-512 BF16 or AMX
    (many laptops; AMD before Zen 4) oneDNN has no bf16 LSTM primitive: the forward pass raises
    "could not create a primitive descriptor" (torch 2.13). Tried once per process on a tiny LSTM."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    global _cpu_bf16
    if _cpu_bf16 is None:
        try:
            lstm = torch.nn.LSTM(4, 4, batch_first=True)
            x = torch.zeros(1, 2, 4, requires_grad=True)  # (B, T, C)
            with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
                states = lstm(x)[0]
            states.float().sum().backward()
            _cpu_bf16 = True
        except RuntimeError:
            _cpu_bf16 = False
    return _cpu_bf16


def fast_bf16(device: torch.device) -> bool:
    """Whether bf16 autocast runs fast on this device: a CUDA GPU with bf16 units (Ampere and later; older
    ones emulate it, which torch's is_bf16_supported counts by default), or a CPU with AMX tiles (there
    LSTM training measured ~1.8x fp32's speed). Other CPUs emulate bf16, slower than fp32, or lack it."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)  # torch's own check; private, so guarded
    try:
        return bool(amx is not None and amx())
    except Exception:  # a check that cannot run means: not known to be fast
        return False


def resolved_precision(precision: str, device: torch.device) -> str:
    """The precision a forward pass runs in: auto -> bf16 where it runs fast (fast_bf16), else fp32;
    bf16 where no bf16 LSTM kernel exists, fp16 off CUDA -> fp32 (scoring a model trained elsewhere:
    its weights are fp32, so fp32 only drops the rounding). Training refuses those before it starts."""
    if precision == "auto":
        return "bf16" if fast_bf16(device) else "fp32"
    if (precision == "bf16" and not bf16_runs(device)) or (precision == "fp16" and device.type != "cuda"):
        return "fp32"
    return precision


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """Mixed precision for the forward pass; fp32 is a no-op context."""
    precision = resolved_precision(precision, device)
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
