"""Device and dtype choice, made once at the entry point and passed down.

`resolve_device("auto")` prefers CUDA, then Apple's MPS, then the CPU. `autocast_dtype(device)`
says which reduced precision to compute in: bf16 on CUDA and on CPUs with native bf16 matmul
(AVX-512 BF16 / AMX); None (plain fp32) elsewhere. fp16 is never chosen on the CPU, where it is
emulated (docs/performance.md).
"""
from __future__ import annotations

import functools
import os

import torch

from .errors import BadSettingError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """Turn 'auto' | 'cpu' | 'cuda' | 'cuda:1' | 'mps' into an available torch.device."""
    if isinstance(name, torch.device):
        return name
    name = str(name).lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu")
    kind = name.split(":")[0]
    if kind not in ("cpu", "cuda", "mps"):
        raise BadSettingError(f"unknown device {name!r}: use one of {', '.join(DEVICE_CHOICES)}")
    if kind == "cuda" and not torch.cuda.is_available():
        raise BadSettingError("--device cuda: no CUDA GPU is visible to PyTorch; use --device auto or cpu")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise BadSettingError("--device mps: Apple MPS is not available here; use --device auto or cpu")
    return torch.device(name)


@functools.lru_cache(maxsize=None)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo: x86 "flags", ARM "Features"); empty elsewhere,
    where every test of them is conservatively False."""
    try:
        with open("/proc/cpuinfo") as f:
            line = next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        return frozenset()
    return frozenset(line.partition(":")[2].split())


def cpu_has_bf16() -> bool:
    """True if this CPU has native bf16 dot products (AVX-512 BF16 or AMX)."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype for `device`: 'auto' picks bf16 where it is fast, 'fp32' disables it."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision != "auto":
        raise BadSettingError(f"unknown precision {precision!r}: use auto, bf16 or fp32")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu":
        return torch.bfloat16 if cpu_has_bf16() else None
    return None  # MPS: fp32 is the safe default


def set_threads(num_threads: int | None = None) -> None:
    """Use all physical cores for intra-op work unless the user set OMP_NUM_THREADS."""
    if num_threads:
        torch.set_num_threads(num_threads)
    elif "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, os.cpu_count() or 1))


def describe(device: torch.device, dtype: torch.dtype | None) -> str:
    """Short text for the HUD and logs, e.g. 'cpu bf16'."""
    return f"{device.type} {str(dtype).replace('torch.', '') if dtype else 'fp32'}".replace("bfloat16", "bf16")
