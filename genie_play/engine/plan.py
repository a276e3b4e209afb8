"""The play plan: how this machine computes a frame of a world, decided once, when the world loads.

The two routes ("torch" and "c") are described in README.md in this folder. `make_plan` is the
only place that chooses; the World holds the resulting `Plan`, `genie-play info` and the player's
HUD print it, and tests and benchmarks pass their own (dataclasses.replace).
"""
from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass

import torch

from ..devices import autocast_dtype, resolve_device
from ..errors import BadSettingError
from . import build
from .kernels import Library, supports_head_dim

PRECISIONS = ("auto", "fp32", "bf16", "int8")


@dataclass(frozen=True)
class Plan:
    """How frames are computed. route: "torch" | "c"; precision: fp32 | bf16 | fp16 | int8 (int8:
    the dynamics' and decoder's linears; everything else in fp32); frame_kernel: the dynamics' MaskGIT
    rounds in one C call per frame (else one per block, round by round); amx: the C int8 products on
    AMX tiles (else on `isa`, the library's AVX-512 VNNI or AVX2 product); threads: torch's intra-op
    threads when planned; why: the reason for the route."""

    device: str
    precision: str
    route: str
    frame_kernel: bool = False
    amx: bool = False
    isa: str = ""
    threads: int = 1
    why: str = ""

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the models' weights and activations (the key/value cache is always fp32)."""
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision, torch.float32)

    @property
    def linears(self) -> str:
        if self.route == "c":
            return f"C int8 ({'AMX' if self.amx else self.isa})"
        return "fbgemm int8" if self.precision == "int8" else f"PyTorch {self.precision}"

    @property
    def attention(self) -> str:
        return "C kernels" if self.route == "c" else "PyTorch operations"

    @property
    def rounds(self) -> str:
        if self.route == "c":
            return "one C call per frame" if self.frame_kernel else "one C call per block, round by round"
        return "round by round"

    def short(self) -> str:
        """A few words for the player's HUD, e.g. "C int8 (AMX), one C call per frame"."""
        return f"{self.linears}, {self.rounds}" if self.route == "c" else f"{self.linears}, PyTorch ops"

    def summary(self) -> str:
        """One line for `genie-play info`, the HUD and benchmark tables."""
        return (f"{self.device} {self.precision}: linears {self.linears}, attention {self.attention}, MaskGIT {self.rounds}, "
                f"{self.threads} thread{'s' * (self.threads != 1)} ({self.why})")


def library() -> Library | None:
    """The C kernels' library for this machine (built on first use), or None (build.unavailable_reason)."""
    lib = build.load()
    return None if lib is None else _library(lib)


@functools.lru_cache(maxsize=None)
def _library(lib) -> Library:  # one per loaded library: its AMX switch is process-wide
    return Library(lib, amx=os.environ.get("GENIE_PLAY_AMX", "1") != "0")


def make_plan(config, device: str | torch.device = "auto", precision: str = "auto", kernels: bool = True) -> Plan:
    """The plan for a world of `config` (presets.WorldConfig) on `device` at `precision` (auto: int8
    on x86 CPUs, else bf16 where the device computes it fast, else fp32). kernels=False keeps the
    PyTorch route. The C route needs an x86 CPU, int8, a loadable library with an int8 product, and
    head dims and widths it supports; GENIE_PLAY_AMX=0 keeps AMX off."""
    if precision not in PRECISIONS:
        raise BadSettingError(f"unknown precision {precision!r}: use {'/'.join(PRECISIONS)}")
    dev = resolve_device(device)
    if precision == "int8" and dev.type != "cpu":
        raise BadSettingError(f"precision int8 runs on the CPU only; use auto on {dev.type}")
    if precision == "auto":
        precision = "int8" if dev.type == "cpu" and cpu_int8_kernels() else _float_name(autocast_dtype(dev, "auto"))
    elif precision == "bf16":
        precision = _float_name(autocast_dtype(dev, "bf16"))
    threads, name = torch.get_num_threads(), str(dev)
    if precision != "int8":
        why = "exact fp32" if precision == "fp32" else f"{precision} is this device's fast dtype"
        return Plan(name, precision, "torch", threads=threads, why=why)
    lib = library() if kernels else None
    why = ("C kernels off" if not kernels else f"C kernels unavailable: {build.unavailable_reason()}" if lib is None
           else _unsupported(lib, config))
    if why:
        return Plan(name, "int8", "torch", threads=threads, why=why)
    d = config.dynamics
    frame_kernel = d.action_mode == "add" and d.vocab % 16 == 0
    why = "int8 C kernels" + ("" if frame_kernel else " (no frame kernel for token actions or this vocabulary)")
    return Plan(name, "int8", "c", frame_kernel=frame_kernel, amx=lib.has_amx, isa=lib.isa, threads=threads, why=why)


def _unsupported(lib: Library, config) -> str:
    """Why the C kernels cannot run this world's transformers ('' if they can)."""
    if not lib.linear_available:
        return "the C int8 product needs AVX2"
    for name, st in (("dynamics", config.dynamics.st), ("decoder", config.tokenizer.decoder)):
        if not supports_head_dim(st.dim // st.heads) or st.dim % 16 or int(st.dim * st.mlp_ratio) % 16:
            return f"the C kernels do not fit the {name}'s widths"
    return ""


def _float_name(dtype: torch.dtype | None) -> str:
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "fp32")


def cpu_int8_kernels() -> bool:
    """fbgemm's int8 linears are available (x86 with AVX2 or better)."""
    return platform.machine().lower() in ("x86_64", "amd64") and "fbgemm" in torch.backends.quantized.supported_engines
