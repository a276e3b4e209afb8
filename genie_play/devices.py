"""Device and dtype choice, made once at the entry point and passed down.

`resolve_device("auto")` prefers CUDA, then Apple's MPS, then the CPU. `autocast_dtype(device)`
says which reduced precision to compute in: bf16 on CUDA and on CPUs with native bf16 matmul
(AVX-512 BF16 / AMX), where it runs ~2.3x faster than fp32; None (plain fp32) elsewhere. fp16 is
never chosen on the CPU: it is emulated there and runs ~100x slower.
"""
from __future__ import annotations

import contextlib
import functools
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import BadSettingError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """Turn 'auto' | 'cpu' | 'cuda' | 'cuda:1' | 'mps' into an available torch.device."""
    if isinstance(name, torch.device):
        return name
    name = str(name).lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind = name.split(":")[0]
    if kind not in ("cpu", "cuda", "mps"):
        raise BadSettingError(f"unknown device {name!r}: use one of {', '.join(DEVICE_CHOICES)}")
    if kind == "cuda" and not torch.cuda.is_available():
        raise BadSettingError("--device cuda: no CUDA GPU is visible to PyTorch; use --device auto or cpu")
    if kind == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise BadSettingError("--device mps: Apple MPS is not available here; use --device auto or cpu")
    return torch.device(name)


@functools.lru_cache(maxsize=None)
def _cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo); empty elsewhere, where every test below is
    conservatively False (fp32 and fbgemm are always correct)."""
    try:
        with open("/proc/cpuinfo") as f:
            line = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return frozenset()
    return frozenset(line.partition(":")[2].split())


def cpu_has_bf16() -> bool:
    """True if this CPU has native bf16 dot products (AVX-512 BF16 or AMX)."""
    return bool({"avx512_bf16", "amx_bf16"} & _cpu_flags())


def cpu_has_vnni() -> bool:
    """True if this CPU has VNNI int8 dot products (AVX-512 VNNI or AVX-VNNI), which fbgemm uses."""
    return bool({"avx512_vnni", "avx_vnni"} & _cpu_flags())


def cpu_int8_kernels() -> bool:
    """fbgemm's int8 linears are available (x86 with AVX2 or better): the dynamics' play precision
    when the user says auto. Measured on the bundled world: 1.1-1.35x the frames/s of bf16, held-out
    rollout PSNR within 0.2 dB of fp32 (weights/README.md)."""
    import platform

    return platform.machine().lower() in ("x86_64", "amd64") and "fbgemm" in torch.backends.quantized.supported_engines


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


def autocast(device: torch.device, dtype: torch.dtype | None):
    """A context manager that autocasts to `dtype`, or does nothing when dtype is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def set_threads(num_threads: int | None = None) -> None:
    """Use all physical cores for intra-op work unless the user set OMP_NUM_THREADS."""
    if num_threads:
        torch.set_num_threads(num_threads)
    elif "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, os.cpu_count() or 1))


def describe(device: torch.device, dtype: torch.dtype | None) -> str:
    """Short text for the HUD and logs, e.g. 'cpu bf16'."""
    return f"{device.type} {str(dtype).replace('torch.', '') if dtype else 'fp32'}".replace("bfloat16", "bf16")


# -- inference kernels for nn.Linear (play path only; training never sees them) ---------------------
PRECISIONS = ("auto", "fp32", "bf16", "int8")


class _PackedLinear:
    """An nn.Linear's weight prepared once for inference: oneDNN-prepacked bf16 (the plain bf16
    matmul reorders the weight on every call, which at 64 rows costs as much as the product), int8
    through play_kernels' C linear (activations quantised per row; see c_int8_linear) or fbgemm
    int8 (per-channel weights, activations quantised per call; fp32 in and out). All fuse the
    epilogue (SiLU or the residual add) where the kernel can."""

    def __init__(self, module: nn.Linear, kind: str, rows_per_item: int | None = None, kernels=None) -> None:
        self.kind, self.source, self.stamp = kind, module.weight, (module.weight._version, module.weight.data_ptr())
        self.rows_per_item = rows_per_item
        self.out_features = module.out_features
        self.kernels = kernels if kind == "int8" and kernels is not None and kernels.linear_fits(module.in_features, module.out_features) else None
        weight = module.weight.detach()
        if self.kernels is not None:
            self.packed = self.kernels.pack_linear(weight, module.bias)
        elif kind == "bf16":
            self.bias = None if module.bias is None else module.bias.detach().to(torch.bfloat16)
            self.packed = torch.ops.mkldnn._reorder_linear_weight(weight.to(torch.bfloat16), 64)
        else:
            import warnings

            from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
            from torch.ao.quantization import per_channel_dynamic_qconfig

            twin = nn.Linear(module.in_features, module.out_features, bias=module.bias is not None)
            twin.load_state_dict({k: v.float() for k, v in module.state_dict().items()})
            twin.qconfig = per_channel_dynamic_qconfig
            with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao
                warnings.simplefilter("ignore")
                self.packed = DynamicLinear.from_float(twin)._packed_params._packed_params

    def valid_for(self, module: nn.Linear) -> bool:
        w = module.weight
        return w is self.source and (w._version, w.data_ptr()) == self.stamp

    def __call__(self, x: torch.Tensor, act: bool, residual: torch.Tensor | None) -> torch.Tensor:
        if self.kernels is not None:  # rows are quantised one by one: batches equal single calls
            return self.kernels.linear(x, self.packed, act, residual)
        if self.kind == "bf16":
            if residual is not None and not act:
                return torch.ops.mkldnn._linear_pointwise.binary(x, residual, self.packed, self.bias, "add")
            y = torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "swish" if act else "none", [], "")
        else:  # y is a fresh tensor: the epilogue can work in place (same values, no allocation)
            y = self._int8(x).view(*x.shape[:-1], self.out_features)
            y = F.silu(y, inplace=True) if act else y
            return y if residual is None else y.add_(residual)
        return y if residual is None else residual + y


    def _int8(self, x: torch.Tensor) -> torch.Tensor:
        """fbgemm quantises the activations with one scale per call, so a batch of B items would
        round differently from B single calls. Each item (a leading index of a 3-d input, or
        `rows_per_item` rows of a 2-d one) gets its own call: batched rollouts and the explorer give
        exactly the frames of separate rollouts."""
        rows = x.reshape(-1, x.shape[-1])
        if x.dim() == 3 and x.shape[0] > 1:
            items = x.unbind(0)
        elif self.rows_per_item and rows.shape[0] > self.rows_per_item:
            items = rows.split(self.rows_per_item)
        else:
            return torch.ops.quantized.linear_dynamic(rows, self.packed, True)
        return torch.cat([torch.ops.quantized.linear_dynamic(item, self.packed, True) for item in items])


def pack_linears(module: nn.Module, kind: str, rows_per_item: int | None = None, kernels=None) -> int:
    """Give every nn.Linear in `module` a `_PackedLinear` ("bf16" or "int8") that `linear` uses,
    or remove them ("plain"). int8 linears run on `kernels` (a play_kernels.PlayKernels) where it
    fits them, else on fbgemm. Parameters and state_dict are untouched. Returns how many."""
    count = 0
    for m in module.modules():
        if isinstance(m, nn.Linear):
            m.__dict__.pop("_packed", None)
            if kind != "plain":
                m.__dict__["_packed"] = _PackedLinear(m, kind, rows_per_item, kernels)
                count += 1
    return count


def linear(module: nn.Linear, x: torch.Tensor, act: bool = False, residual: torch.Tensor | None = None,
           norm: nn.LayerNorm | None = None) -> torch.Tensor:
    """residual + silu?(module(norm?(x))) through the module's packed kernel when it has a current
    one (the C int8 linear applies the LayerNorm itself), else exactly the plain ops (so fp32
    results equal the training-time modules bit for bit)."""
    packed = module.__dict__.get("_packed")
    current = packed is not None and packed.valid_for(module)
    if norm is not None:
        if current and packed.kernels is not None:
            return packed.kernels.linear(x, packed.packed, act, residual, norm=(norm.weight, norm.bias, norm.eps))
        x = F.layer_norm(x, (x.shape[-1],), norm.weight, norm.bias, norm.eps)
    if current:
        return packed(x, act, residual)
    y = F.linear(x, module.weight, module.bias)
    if act:
        y = F.silu(y)
    return y if residual is None else residual + y


def c_int8_linear(kernels) -> bool:
    """Whether int8 linears should run on play_kernels' C linear (`kernels`, a PlayKernels or None)
    rather than fbgemm: where it has an AVX-512 VNNI product (on a Xeon with AVX-512 VNNI: 1.3-1.5x
    fbgemm per 64-row product, called from Python; benchmarks/bench_play.py), or where the CPU has
    no VNNI at all (an AVX2 EPYC: 1.1-1.9x per product, 1.07-1.19x per frame). Not where only
    fbgemm would use the CPU's VNNI (e.g. AVX-VNNI without AVX-512): that pairing is unmeasured."""
    return kernels is not None and kernels.linear_available and (kernels.linear_vnni or not cpu_has_vnni())


def pack_for_play(module: nn.Module, int8: bool = False, rows_per_item: int | None = None, kernels=None) -> None:
    """int8 kernels for `module`'s linears, or oneDNN bf16 ones when its weights are bf16 and the
    CPU runs bf16 natively; nothing otherwise (fp32 stays on the plain, bit-exact ops). The int8
    ones run on play_kernels' C linear (rows quantised one by one) where `c_int8_linear(kernels)`,
    else on fbgemm (activations quantised per item of `rows_per_item` rows)."""
    if int8:
        pack_linears(module, "int8", rows_per_item, kernels if c_int8_linear(kernels) else None)
    elif next(module.parameters()).dtype == torch.bfloat16 and fast_bf16_kernels():
        pack_linears(module, "bf16")


def fast_bf16_kernels() -> bool:
    """oneDNN's prepacked bf16 linear is available (and the CPU runs bf16 natively)."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise") and cpu_has_bf16()


def matmul_rate(shapes: list[tuple[int, int, int]], dtype: torch.dtype, seconds: float = 0.3) -> float:
    """GFLOP/s of torch.matmul (M, K) x (K, N) over `shapes` run one after the other, as a layer
    sequence would (best of several rounds, FLOP-weighted): the rate this CPU reaches at a model's
    own shapes, to compare a model's achieved rate with."""
    import time

    pairs = [(torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)) for m, k, n in shapes]
    flops = sum(2.0 * m * k * n for m, k, n in shapes)
    with torch.inference_mode():
        for a, b in pairs:  # warm up (oneDNN primitive creation)
            torch.matmul(a, b)
        best, deadline = float("inf"), time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            for a, b in pairs:
                torch.matmul(a, b)
            best = min(best, time.perf_counter() - t0)
    return flops / best / 1e9
