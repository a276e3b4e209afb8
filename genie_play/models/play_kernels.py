"""C kernels for the CPU play path, compiled from `play_*.c` on first use.

At 64 tokens per frame eager PyTorch spends more time between kernels than in them: a MaskGIT
round's attention is ~30 small operations per layer, each 5-30 us of dispatch and threading
overhead. The library has
- the two attentions (QK-norm, RoPE, cache write, scores, softmax, weighted sum), one call each
  (play_kernels.c);
- an int8 linear with per-row 7-bit activations and fused bias/SiLU/residual (play_linear.c, AVX2
  or AVX-512 VNNI; used instead of fbgemm where devices.c_int8_linear says);
- a whole ST block's play step in one call when all its linears are int8 here (play_block.c);
- MaskGIT's per-round draw (play_sample.c);
- all MaskGIT rounds of a frame and its record pass in one call (play_frame.c, wrapped by
  play_frame.FusedFrame).
They are used where the play path already rounds differently from fp32 (int8 dynamics, bf16
dynamics or decoder), so the exact fp32 path stays on PyTorch's operations and the tests can
compare the two.

The library is built once per machine with the system C compiler (`cc`, or $CC) into the user
cache directory and loaded with ctypes: no Python headers, no torch headers, a second or two of
compiling. Without a compiler, or with GENIE_PLAY_KERNELS=0, `load()` returns None and the play
path keeps its PyTorch operations (`unavailable_reason()` says why).
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

from ..paths import user_cache_dir

HERE = Path(__file__).parent
SOURCES = [HERE / f"play_{name}.c" for name in ("kernels", "linear", "block", "sample", "frame")]  # all include play_vec.h
HEADERS = [HERE / "play_vec.h"]
# fast-math only in the forms that keep NaN/inf semantics: contract a*b+c into FMAs, no errno.
FLAGS = ["-O3", "-march=native", "-fopenmp-simd", "-ffp-contract=fast", "-fno-math-errno", "-shared", "-fPIC"]
MAX_HEAD_DIM, MAX_LENGTH, LANES, LINEAR_COLS = 256, 4096, 16, 16  # as in play_kernels.c / play_linear.c (LANES: the widest)

_reason: str | None = None


class Int8Weights:
    """An nn.Linear's weight for `PlayKernels.linear`: int8 per output channel (symmetric, scale =
    max |w| / 127), packed in play_linear.c's block layout, with the fp32 bias."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, pack) -> None:
        w = weight.detach().float()
        self.out_features, self.in_features = w.shape
        self.scale = (w.abs().amax(1).clamp_min(1e-30) / 127).contiguous()  # (N,)
        q = torch.round(w / self.scale[:, None]).clamp_(-127, 127).to(torch.int8).contiguous()  # (N, K)
        self.offsets = (64 * q.sum(1, dtype=torch.int32)).to(torch.int32).contiguous()  # the activations' +64
        self.packed = torch.empty_like(q)
        pack(q.data_ptr(), self.out_features, self.in_features, self.packed.data_ptr())
        self.bias = None if bias is None else bias.detach().float().contiguous()


class PlayKernels:
    """The compiled library's entry points (attentions, int8 linear, MaskGIT pick; FusedBlock uses
    the block step), on contiguous fp32 CPU tensors."""

    def __init__(self, lib: ctypes.CDLL, path: Path) -> None:
        self.path = path
        p, i, f = ctypes.c_void_p, ctypes.c_int, ctypes.c_float
        self._spatial = lib.gp_spatial_attention
        self._spatial.argtypes = [p, i, i, i, i, p, p, f, f, p, p, i]
        self._spatial.restype = None
        self._spatial_scratch = lib.gp_spatial_scratch_floats
        self._spatial_scratch.argtypes = [i, i]
        self._block_step = lib.gp_block_step
        self._block_step.argtypes = [p, p, i, i, p, p, p, i, p, p, i, p, p, p, i]
        self._block_step.restype = None
        self._block_work = lib.gp_block_work_floats
        self._block_work.argtypes = [p, i, i, i]
        self._block_work.restype = ctypes.c_long
        self._block_bytes = lib.gp_block_bytes
        self._block_bytes.argtypes = [p, i]
        self._block_bytes.restype = ctypes.c_long
        self._pick = lib.gp_maskgit_pick
        self._pick.argtypes = [p, i, i, p, p, f, p, f, p, p, i]
        self._pick.restype = None
        self.lib = lib  # play_frame.FusedFrame binds its own entry points
        self._stack = lib.gp_stack_context
        self._stack.argtypes = [p, p, i, ctypes.c_long, i, p, p, p, i]
        self._stack.restype = None
        self._temporal = lib.gp_temporal_attention
        self._temporal.argtypes = [p, i, i, i, p, p, f, f, p, p, p, p, p, i, i, p, i]
        self._temporal.restype = None
        self.linear_available = bool(lib.gp_linear_available())
        self.linear_vnni = bool(lib.gp_linear_vnni())  # the product on AVX-512 VNNI (else AVX2)
        lib.gp_linear_use_amx.argtypes = [i]
        self._use_amx = lib.gp_linear_use_amx
        self.linear_amx = self.use_amx(os.environ.get("GENIE_PLAY_AMX", "1") != "0")
        self._pack = lib.gp_linear_pack
        self._pack.argtypes = [p, i, i, p]
        self._linear = lib.gp_linear
        self._linear.argtypes = [p, i, i, i, p, p, p, p, i, p, p, p, p, p, p, f, i]

    def use_amx(self, on: bool) -> bool:
        """Run the int8 products' 32-row blocks on AMX tiles (where the CPU and kernel allow it), or
        on AVX-512 VNNI only (False; GENIE_PLAY_AMX=0 at load). Returns whether AMX is in use.
        The sums are exact integers either way, so the numbers do not change."""
        self.linear_amx = bool(self._use_amx(int(on)))
        return self.linear_amx

    def maskgit_pick(self, logits: torch.Tensor, u: torch.Tensor | None, positions: torch.Tensor, temperature: float,
                     g: torch.Tensor | None, noise_scale: float) -> tuple[torch.Tensor, torch.Tensor]:
        """maskgit.torch_pick in one C call (play_sample.c), for vocabularies that are a multiple
        of LANES (else torch_pick): the same draws up to float rounding at the CDF's steps."""
        b, m, v = logits.shape
        if v % LANES or logits.device.type != "cpu":
            from .maskgit import torch_pick

            return torch_pick(logits, u, positions, temperature, g, noise_scale)
        logits = logits.float().contiguous()
        positions = positions.contiguous()
        u = None if u is None else u.float().contiguous()
        g = None if g is None else g.float().contiguous()
        sampled, logp = torch.empty(b, m, dtype=torch.long), torch.empty(b, m)
        self._pick(logits.data_ptr(), b * m, v, positions.data_ptr(), None if u is None else u.data_ptr(), temperature,
                   None if g is None else g.data_ptr(), noise_scale, sampled.data_ptr(), logp.data_ptr(), torch.get_num_threads())
        return sampled, logp

    def linear_fits(self, in_features: int, out_features: int) -> bool:
        """The int8 linear runs here (AVX2 or AVX-512 VNNI) for these sizes (play_linear.c's blocks)."""
        return self.linear_available and in_features % LANES == 0 and out_features % LINEAR_COLS == 0

    def pack_linear(self, weight: torch.Tensor, bias: torch.Tensor | None) -> Int8Weights:
        if not self.linear_fits(weight.shape[1], weight.shape[0]):
            raise ValueError(f"play kernels: no int8 linear for {tuple(weight.shape)} here")
        return Int8Weights(weight, bias, self._pack)

    def linear(self, x: torch.Tensor, w: Int8Weights, act: bool = False, residual: torch.Tensor | None = None,
               norm: tuple | None = None) -> torch.Tensor:
        """x (..., K) fp32 -> (..., N) fp32: residual + silu?(norm?(x) W^T + b), with x quantised per
        row to 7 bits (so every row, and every batch item, is independent of the others). norm:
        (weight, bias or None, eps) of a LayerNorm applied to x first, in C (fp32 tensors)."""
        rows = x.reshape(-1, w.in_features)
        if rows.dtype != torch.float32 or not rows.is_contiguous():
            rows = rows.float().contiguous()
        m = rows.shape[0]
        y = torch.empty(m, w.out_features)
        if residual is not None:
            residual = residual.reshape(m, w.out_features).float().contiguous()  # views when it already is
        norm_w, norm_b, eps = norm if norm is not None else (None, None, 0.0)
        norm_w, norm_b = (None if t is None else t.detach().float().contiguous() for t in (norm_w, norm_b))  # views when fp32
        scratch, a_scale = torch.empty(m * w.in_features, dtype=torch.uint8), torch.empty(m)
        self._linear(
            rows.data_ptr(), m, w.in_features, w.out_features, w.packed.data_ptr(), w.scale.data_ptr(), w.offsets.data_ptr(),
            None if w.bias is None else w.bias.data_ptr(), int(act), None if residual is None else residual.data_ptr(),
            y.data_ptr(), scratch.data_ptr(), a_scale.data_ptr(), None if norm_w is None else norm_w.data_ptr(),
            None if norm_b is None else norm_b.data_ptr(), eps, torch.get_num_threads(),
        )
        return y.view(*x.shape[:-1], w.out_features)

    def spatial(self, qkv: torch.Tensor, gain_q: torch.Tensor, gain_k: torch.Tensor, eps: float, scale: float) -> torch.Tensor:
        """qkv (B, N, 3, H, hd) -> (B*N, H*hd): softmax(q k^T) v per frame and head, q and k
        RMS-normalised with gain_q * scale and gain_k (hd,)."""
        b, n, _, h, hd = qkv.shape
        _check(qkv, gain_q, gain_k)
        out, threads = torch.empty(b * n, h * hd), torch.get_num_threads()
        scratch = torch.empty(threads * self._spatial_scratch(n, hd))
        self._spatial(qkv.data_ptr(), b, n, h, hd, gain_q.data_ptr(), gain_k.data_ptr(), eps, scale, out.data_ptr(), scratch.data_ptr(), threads)
        return out

    def stack_context(self, frames: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """One layer's context from its frames' (k, v), each (R, H, 1, hd) contiguous fp32 on the
        CPU, oldest first -> (ctx_k (R, H, L+1, hd), ctx_kt (R, H, hd, L+1), ctx_v), the last slot
        left for the new frame: ContextKV's stack and transposed keys in one C call. None if a
        frame is not laid out that way (the caller stacks with torch then)."""
        k0 = frames[0][0]
        r, h, _, hd = k0.shape
        for k, v in frames:
            for t in (k, v):
                if t.dtype != torch.float32 or t.device.type != "cpu" or not t.is_contiguous() or t.shape != k0.shape:
                    return None
        length = len(frames) + 1
        ctx_k, ctx_v = torch.empty(r, h, length, hd), torch.empty(r, h, length, hd)
        ctx_kt = torch.empty(r, h, hd, length)
        ks = (ctypes.c_void_p * len(frames))(*(k.data_ptr() for k, _ in frames))
        vs = (ctypes.c_void_p * len(frames))(*(v.data_ptr() for _, v in frames))
        self._stack(ks, vs, len(frames), r * h, hd, ctx_k.data_ptr(), ctx_kt.data_ptr(), ctx_v.data_ptr(), torch.get_num_threads())
        return ctx_k, ctx_kt, ctx_v

    def temporal(
        self, qkv: torch.Tensor, gain_q: torch.Tensor, gain_k: torch.Tensor, eps: float, scale: float,
        cos: torch.Tensor, sin: torch.Tensor, ctx_k: torch.Tensor, ctx_kt: torch.Tensor, ctx_v: torch.Tensor,
        need_output: bool,
    ) -> torch.Tensor | None:
        """qkv (R, 3, H, hd); ctx_k/ctx_v (R, H, L+1, hd) and ctx_kt (R, H, hd, L+1), the same keys
        transposed, with the context in slots :L. Writes the new frame's RoPE'd key (into both key
        buffers) and value into slot L; returns (R, H*hd) attention output, or None without
        need_output. cos (hd,), sin (hd,) with the rotate-half sign folded in."""
        r, _, h, hd = qkv.shape
        length = ctx_k.shape[2]
        _check(qkv, gain_q, gain_k, cos, sin, ctx_k, ctx_kt, ctx_v)
        if length > MAX_LENGTH or ctx_k.shape != (r, h, length, hd) or ctx_v.shape != ctx_k.shape or ctx_kt.shape != (r, h, hd, length):
            raise ValueError(f"play kernels: context {tuple(ctx_k.shape)} does not fit qkv {tuple(qkv.shape)}")
        out = torch.empty(r, h * hd) if need_output else None
        self._temporal(
            qkv.data_ptr(), r, h, hd, gain_q.data_ptr(), gain_k.data_ptr(), eps, scale, cos.data_ptr(), sin.data_ptr(),
            ctx_k.data_ptr(), ctx_kt.data_ptr(), ctx_v.data_ptr(), length, int(need_output), out.data_ptr() if need_output else None,
            torch.get_num_threads(),
        )
        return out


class _Int8Struct(ctypes.Structure):  # gp_int8 in play_vec.h
    _fields_ = [("packed", ctypes.c_void_p), ("scale", ctypes.c_void_p), ("offsets", ctypes.c_void_p),
                ("bias", ctypes.c_void_p), ("k", ctypes.c_int), ("n", ctypes.c_int)]


class _BlockStruct(ctypes.Structure):  # gp_block in play_block.c
    _fields_ = [("norm_w", ctypes.c_void_p * 3), ("norm_b", ctypes.c_void_p * 3), ("norm_eps", ctypes.c_float * 3),
                ("linear", _Int8Struct * 6), ("gain_s", ctypes.c_void_p * 2), ("gain_t", ctypes.c_void_p * 2),
                ("qk_eps", ctypes.c_float), ("scale", ctypes.c_float), ("dim", ctypes.c_int), ("heads", ctypes.c_int),
                ("hidden", ctypes.c_int)]


class FusedBlock:
    """One ST block's play step as one C call (play_block.c): LayerNorms, int8 linears and fused
    attentions, with the second thread woken once per block instead of once per operation.

    Built from copies of the norms and gains and from the linears' Int8Weights; `current()` says
    whether the source parameters are still the ones it was built from."""

    def __init__(self, kernels: "PlayKernels", norms: list, linears: list[Int8Weights], gains_s: torch.Tensor,
                 gains_t: torch.Tensor, qk_eps: float, scale: float, heads: int, sources: list[torch.Tensor]) -> None:
        self.kernels, self.heads, self.dim, self.hidden = kernels, heads, linears[0].in_features, linears[4].out_features
        self.sources = [(t, t._version, t.data_ptr()) for t in sources]
        self.keep = [(w.detach().float().contiguous(), None if b is None else b.detach().float().contiguous(), eps) for w, b, eps in norms]
        self.linears = linears
        self.gains = [g.float().contiguous() for g in (*gains_s, *gains_t)]
        st = _BlockStruct()
        for i, (w, b, eps) in enumerate(self.keep):
            st.norm_w[i], st.norm_b[i], st.norm_eps[i] = w.data_ptr(), None if b is None else b.data_ptr(), eps
        for i, lw in enumerate(linears):
            st.linear[i] = _Int8Struct(lw.packed.data_ptr(), lw.scale.data_ptr(), lw.offsets.data_ptr(),
                                       None if lw.bias is None else lw.bias.data_ptr(), lw.in_features, lw.out_features)
        st.gain_s[0], st.gain_s[1], st.gain_t[0], st.gain_t[1] = (g.data_ptr() for g in self.gains)
        st.qk_eps, st.scale, st.dim, st.heads, st.hidden = qk_eps, scale, self.dim, heads, self.hidden
        self.struct = st
        self._work: dict[tuple[int, int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def current(self) -> bool:
        return all(t._version == version and t.data_ptr() == ptr for t, version, ptr in self.sources)

    def step(self, x: torch.Tensor, ctx_k: torch.Tensor, ctx_kt: torch.Tensor, ctx_v: torch.Tensor, cos: torch.Tensor,
             sin: torch.Tensor, need_output: bool) -> torch.Tensor | None:
        """x (B, N, D) -> (B*N, D), or None without need_output (only the keys/values written)."""
        b, n, d = x.shape
        rows, length, threads = b * n, ctx_k.shape[2], torch.get_num_threads()
        x = x if x.dtype == torch.float32 and x.is_contiguous() else x.float().contiguous()
        _check(ctx_k, ctx_kt, ctx_v, cos, sin)
        if ctx_k.shape != (rows, self.heads, length, d // self.heads) or ctx_kt.shape != (rows, self.heads, d // self.heads, length):
            raise ValueError(f"play kernels: context {tuple(ctx_k.shape)} does not fit x {tuple(x.shape)}")
        key = (rows, n, threads)
        if key not in self._work:  # reused: a fresh ~1 MB buffer per call would be mapped and faulted in each time
            ref = ctypes.byref(self.struct)
            self._work = {key: (torch.empty(self.kernels._block_work(ref, rows, n, threads)),
                                torch.empty(self.kernels._block_bytes(ref, rows), dtype=torch.uint8))}
        work, scratch = self._work[key]
        out = torch.empty(rows, d) if need_output else None
        self.kernels._block_step(
            ctypes.byref(self.struct), x.data_ptr(), b, n, ctx_k.data_ptr(), ctx_kt.data_ptr(), ctx_v.data_ptr(), length,
            cos.data_ptr(), sin.data_ptr(), int(need_output), None if out is None else out.data_ptr(), work.data_ptr(),
            scratch.data_ptr(), threads,
        )
        return out


def _check(*tensors: torch.Tensor) -> None:
    """The C code reads raw pointers: every tensor must be contiguous fp32 on the CPU."""
    for t in tensors:
        if t.dtype != torch.float32 or t.device.type != "cpu" or not t.is_contiguous():
            raise ValueError(f"play kernels need contiguous fp32 CPU tensors, got {t.dtype} {t.device} {tuple(t.stride())}")
    if not supports_head_dim(tensors[0].shape[-1]):
        raise ValueError(f"play kernels need head_dim a multiple of {LANES} up to {MAX_HEAD_DIM}")


def supports_head_dim(head_dim: int) -> bool:
    return head_dim % LANES == 0 and head_dim <= MAX_HEAD_DIM


def unavailable_reason() -> str | None:
    """Why `load()` returned None (None if it did not, or was not called)."""
    return _reason


@functools.lru_cache(maxsize=None)
def load() -> PlayKernels | None:
    """The compiled kernels, building them on first use on this machine; None if that cannot be
    done here (the reason is kept for `unavailable_reason`)."""
    global _reason
    if os.environ.get("GENIE_PLAY_KERNELS", "1") == "0":
        _reason = "disabled by GENIE_PLAY_KERNELS=0"
        return None
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if platform.system() == "Windows" or not compiler:
        _reason = "no C compiler found (set CC to one)"
        return None
    try:
        runtime = _torch_libgomp()
        if runtime:  # share torch's OpenMP threads (same runtime: the loader reuses it)
            try:
                path = _build(compiler, FLAGS + ["-fopenmp"])
                lib = ctypes.CDLL(str(path))
                lib.gp_openmp_symbol.restype = ctypes.c_void_p
                if _object_path(lib.gp_openmp_symbol()) == runtime:
                    return PlayKernels(lib, path)
            except OSError:
                pass  # a compiler without OpenMP: single-threaded kernels below
        path = _build(compiler, FLAGS)
        return PlayKernels(ctypes.CDLL(str(path)), path)
    except (OSError, subprocess.SubprocessError) as err:
        _reason = f"could not build them: {str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__}"
        return None


def _torch_libgomp() -> str | None:
    """The GNU OpenMP runtime torch runs its intra-op threads on (Linux wheels bundle
    libgomp.so.1), when there is exactly one runtime of that name mapped: a library linked with
    -fopenmp is then bound to it by the loader and joins torch's thread pool instead of starting a
    second one (checked again after loading). Copies other wheels vendor under their own names
    (pygame's libgomp-<hash>.so) do not count: nothing binds to them by that name."""
    if "OpenMP" not in torch.__config__.parallel_info():
        return None
    named = {path for path in _loaded_libgomp() if os.path.basename(path).startswith("libgomp.so")}
    return named.pop() if len(named) == 1 else None


def _loaded_libgomp() -> set[str]:
    """Paths of the GNU OpenMP runtimes mapped into this process (Linux)."""
    try:
        with open("/proc/self/maps") as f:
            return {os.path.realpath(line.split()[-1]) for line in f if "libgomp" in line}
    except OSError:
        return set()


class _DlInfo(ctypes.Structure):
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]


def _object_path(address: int | None) -> str | None:
    """The file of the shared object that holds `address` (dladdr), or None."""
    if not address:
        return None
    for name in (None, "libdl.so.2"):  # dladdr is in libc since glibc 2.34, in libdl before
        try:
            dladdr = ctypes.CDLL(name).dladdr
        except (OSError, AttributeError):
            continue
        dladdr.argtypes = [ctypes.c_void_p, ctypes.POINTER(_DlInfo)]
        info = _DlInfo()
        if dladdr(address, ctypes.byref(info)) and info.dli_fname:
            return os.path.realpath(info.dli_fname.decode())
    return None


def _build(compiler: str, flags: list[str]) -> Path:
    """Compile SOURCES for this CPU into the cache (atomically), unless that exact build exists."""
    texts = [f.read_bytes() for f in SOURCES + HEADERS]
    key = hashlib.sha256(b"\0".join([*texts, " ".join(flags).encode(), compiler.encode(), _cpu_id().encode()])).hexdigest()[:16]
    directory = user_cache_dir() / "kernels"
    path = directory / f"play_kernels-{key}.so"
    if path.exists():
        return path
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=directory)
    os.close(fd)
    try:
        result = subprocess.run([compiler, *flags, *map(str, SOURCES), "-o", tmp, "-lm"], capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise OSError(f"{Path(compiler).name} failed: {(result.stderr.strip().splitlines() or ['?'])[-1]}")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _cpu_id() -> str:
    """What -march=native depends on: the machine type and, on Linux, the CPU's feature flags."""
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        pass
    return f"{platform.machine()} {platform.processor()} {flags}"
