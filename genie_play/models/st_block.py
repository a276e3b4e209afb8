"""The spatial-temporal (ST) transformer that all three Genie components are built on.

One block = attention over the tokens of one frame (spatial), then causal attention over the same
position across frames (temporal), then one FFN (Genie: "no FFN after the spatial layer").
QK-norm keeps attention logits bounded, which keeps bf16 training stable.

Time is encoded only inside the temporal attention, with rotary embeddings (RoPE) of the absolute
frame index. A query at frame m and a key at frame n then interact through m - n alone, so the keys
and values cached for a frame stay valid when the context window slides on: that is what lets
inference compute each frame's temporal keys/values once (`STTransformer.step`) instead of
recomputing the whole context at every MaskGIT step.

Temporal attention is banded: frame i sees frames i-window+1 .. i. For a clip no longer than the
window (training) this is plain causal attention; for a long play session the full forward over the
whole history and the cached step-by-step path compute exactly the same function (tested).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..devices import linear

if TYPE_CHECKING:
    from .play_kernels import FusedBlock, PlayKernels


@dataclass
class STConfig:
    dim: int = 256
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 4.0
    window: int = 16  # frames visible to temporal attention (the model's context length)
    attention: str = "plain"  # "plain" (faster at these short lengths on CPU) or "sdpa"
    rope_base: float = 10000.0


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, impl: str) -> torch.Tensor:
    """Attention over the last two dims. q (..., Lq, hd), k/v (..., Lk, hd), mask (Lq, Lk) bool keep."""
    if impl == "sdpa":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    # At L = 16..65 a plain matmul-softmax-matmul beats SDPA 1.5-3x on this CPU (CPU-NOTES.md),
    # and 3-d bmm over (batch*heads) runs 2.5x faster than 4-d matmul for the many tiny
    # per-position problems of temporal attention.
    lead, lq, hd = q.shape[:-2], q.shape[-2], q.shape[-1]
    q3, k3, v3 = q.reshape(-1, lq, hd), k.reshape(-1, k.shape[-2], hd), v.reshape(-1, v.shape[-2], hd)
    scores = torch.bmm(q3 * (hd**-0.5), k3.transpose(1, 2))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    out = torch.bmm(scores.float().softmax(dim=-1).to(v.dtype), v3)
    return out.view(*lead, lq, hd)


def rope_tables(positions: torch.Tensor, head_dim: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables (L, head_dim) for integer positions (L,); fp32 for exact positions."""
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim))
    angles = positions.to(torch.float32)[:, None] * inv_freq[None, :]  # (L, hd/2)
    angles = torch.cat([angles, angles], dim=-1)  # (L, hd)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x (..., L, hd) by cos/sin (L, hd) (rotate-half convention)."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return (x * cos + rotated * sin).to(x.dtype)


def banded_causal_mask(length: int, window: int, device: torch.device) -> torch.Tensor:
    """(L, L) bool: frame i may attend to frame j iff i - window < j <= i."""
    i = torch.arange(length, device=device)[:, None]
    j = torch.arange(length, device=device)[None, :]
    return (j <= i) & (j > i - window)


class RMSNorm(nn.Module):
    """RMS norm whose gain follows the input dtype, so bf16 inputs take the fused kernel."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.weight.to(x.dtype), self.eps)


class Attention(nn.Module):
    """Multi-head self-attention with fused QKV and QK-norm (RMS norm per head)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        assert dim % heads == 0, "dim must be divisible by heads"
        self.heads, self.head_dim = heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)
        self.q_norm = RMSNorm(self.head_dim)
        self.k_norm = RMSNorm(self.head_dim)

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (S, L, D) -> q, k, v each (S, heads, L, head_dim), q and k normalised."""
        s, l, _ = x.shape
        qkv = self.qkv(x).view(s, l, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return self.q_norm(qkv[0]), self.k_norm(qkv[1]), qkv[2]

    def merge(self, y: torch.Tensor) -> torch.Tensor:
        """(S, heads, L, head_dim) -> (S, L, D) through the output projection."""
        s, _, l, _ = y.shape
        return self.out(y.transpose(1, 2).reshape(s, l, self.heads * self.head_dim))


class STBlock(nn.Module):
    def __init__(self, cfg: STConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.norm_s = nn.LayerNorm(cfg.dim)
        self.spatial = Attention(cfg.dim, cfg.heads)
        self.norm_t = nn.LayerNorm(cfg.dim)
        self.temporal = Attention(cfg.dim, cfg.heads)
        self.norm_f = nn.LayerNorm(cfg.dim)
        hidden = int(cfg.dim * cfg.mlp_ratio)
        # SiLU, not GELU: bf16 GELU runs ~50x slower than SiLU on this CPU (no vectorised kernel).
        self.ffn = nn.Sequential(nn.Linear(cfg.dim, hidden), nn.SiLU(), nn.Linear(hidden, cfg.dim))

    def _spatial(self, x: torch.Tensor) -> torch.Tensor:
        """x (S, N, D): attention among the N tokens of each frame (no mask)."""
        q, k, v = self.spatial.project(self.norm_s(x))
        return x + self.spatial.merge(attend(q, k, v, None, self.cfg.attention))

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, T, N, D); cos/sin (T, hd) for the frames' positions; mask (T, T) temporal."""
        b, t, n, d = x.shape
        x = self._spatial(x.reshape(b * t, n, d)).view(b, t, n, d)
        xt = x.transpose(1, 2).reshape(b * n, t, d)  # (B*N, T, D): one sequence per position
        q, k, v = self.temporal.project(self.norm_t(xt))
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        xt = xt + self.temporal.merge(attend(q, k, v, mask, self.cfg.attention))
        xt = xt + self.ffn(self.norm_f(xt))
        return xt.view(b, n, t, d).transpose(1, 2)

    def step(
        self, x: torch.Tensor, ctx_k: torch.Tensor, ctx_v: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reference cached step (the plain path the fast one is tested against).

        x (B, N, D) new frame; ctx_k/ctx_v (B*N, heads, L+1, hd) with the context in slots :L and
        a scratch slot at L that this call overwrites with the new frame's key/value; cos/sin (1, hd)
        for the new frame's position. Returns y (B, N, D) and the new frame's k, v (B*N, heads, 1, hd).
        """
        b, n, d = x.shape
        x = self._spatial(x)
        xt = x.reshape(b * n, 1, d)
        q, k, v = self.temporal.project(self.norm_t(xt))
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        ctx_k[:, :, -1:] = k
        ctx_v[:, :, -1:] = v
        xt = xt + self.temporal.merge(attend(q, ctx_k, ctx_v, None, self.cfg.attention))
        xt = xt + self.ffn(self.norm_f(xt))
        return xt.view(b, n, d), k, v

    # -- the fast play path: same arithmetic as `step` in fp32, a fraction of the operations ---------
    def play_consts(self) -> tuple[torch.Tensor, torch.Tensor, float]:
        """Per-frame constants: spatial and temporal q/k RMS gains stacked as (2, 1, hd) fp32, with
        the attention scale folded into q's gain when that is exact (a power of two: 1/8 at hd 64),
        and the scale still to apply (1.0 when folded)."""
        scale = self.spatial.head_dim**-0.5
        fold = math.log2(scale).is_integer()  # x*r*(w*s) == (x*r*w)*s bit for bit only then
        gains = []
        for att in (self.spatial, self.temporal):
            g = torch.stack([att.q_norm.weight.float() * (scale if fold else 1.0), att.k_norm.weight.float()])
            gains.append(g[:, None, :])
        return gains[0], gains[1], 1.0 if fold else scale

    def _qk(self, qk: torch.Tensor, gain: torch.Tensor, scale: float) -> torch.Tensor:
        """QK-norm of q and k at once: qk (..., 2, H, hd) -> fp32. The ops of F.rms_norm's CPU
        composite (x*rsqrt(mean x^2 + eps), then *w, in fp32) without its wrappers, once for both."""
        x = qk.float()
        out = x * x.pow(2).mean(-1, keepdim=True).add_(self.spatial.q_norm.eps).rsqrt_() * gain
        if scale != 1.0:
            out[..., 0, :, :] *= scale
        return out

    def fuse(self, kernels: "PlayKernels") -> "FusedBlock | None":
        """This block's play step as one C call (play_kernels.FusedBlock), when every linear of it
        runs on the C int8 linear; None otherwise."""
        linears = [self.spatial.qkv, self.spatial.out, self.temporal.qkv, self.temporal.out, self.ffn[0], self.ffn[2]]
        packs = [m.__dict__.get("_packed") for m in linears]
        if any(p is None or getattr(p, "kernels", None) is None for p in packs):
            return None
        from .play_kernels import FusedBlock

        gain_s, gain_t, scale = self.play_consts()
        norms = [(n.weight, n.bias, n.eps) for n in (self.norm_s, self.norm_t, self.norm_f)]
        sources = [m.weight for m in linears] + [p for m in (self.norm_s, self.norm_t, self.norm_f, self.spatial, self.temporal)
                                                 for p in m.parameters() if p.dim() == 1]  # norms, QK gains, biases
        return FusedBlock(kernels, norms, [p.packed for p in packs], (gain_s[0, 0], gain_s[1, 0]), (gain_t[0, 0], gain_t[1, 0]),
                          self.spatial.q_norm.eps, scale, self.cfg.heads, sources)

    def current_fused(self) -> "FusedBlock | None":
        """The block's fused C step (`fuse`), if installed and still built from the current weights."""
        whole = self.__dict__.get("_fused")
        return whole if whole is not None and whole.current() else None

    def play_step(
        self, x: torch.Tensor, ctx_k: torch.Tensor, ctx_v: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
        consts: tuple, need_output: bool = True, ctx_kt: torch.Tensor | None = None,
    ) -> torch.Tensor | None:
        """`step` for play: x (B, N, D); ctx_k/ctx_v (B*N, H, L+1, hd), whose dtype is the one both
        attentions run in (the World keeps fp32: these small batched products run up to 2.5x faster
        in fp32 than in bf16 on the CPU); cos (hd,), sin (hd,) with the rotate-half sign folded in;
        consts: `play_consts()`, plus the block's current fused C step or None (ContextKV.prepared),
        which then runs the whole step. Linears go through devices.linear (prepacked bf16 / int8
        kernels with fused SiLU and residual add when the World prepared them); norms are called functionally (a module call
        costs more than a 64-row LayerNorm). Writes the frame's k/v into the scratch slot; returns
        y (B, N, D), or None without need_output (only the keys/values were wanted). With fused
        kernels installed (`STTransformer.use_kernels`), both attentions are one C call each and
        ctx_kt (B*N, H, hd, L+1), the keys transposed, must be given (and is kept in step)."""
        b, n, d = x.shape
        whole = consts[3] if len(consts) > 3 else None  # the whole step as one C call (current_fused)
        if whole is not None and ctx_kt is not None:
            y = whole.step(x, ctx_k, ctx_kt, ctx_v, cos, sin, need_output)
            return None if y is None else y.view(b, n, d)
        gain_s, gain_t, scale = consts[:3]
        ln_s, ln_t, ln_f = self.norm_s, self.norm_t, self.norm_f
        fused = self.__dict__.get("_kernels")  # play_kernels.PlayKernels when the World installed them
        # spatial attention among the frame's N tokens
        qkv = linear(self.spatial.qkv, F.layer_norm(x, (d,), ln_s.weight, ln_s.bias, ln_s.eps))
        if fused is not None:
            y = fused.spatial(qkv.view(b, n, 3, self.cfg.heads, -1).float(), gain_s[0, 0], gain_s[1, 0], self.spatial.q_norm.eps, scale)
        else:
            y = self._spatial_mix(qkv, b, n, gain_s, scale, ctx_k.dtype)
        x = linear(self.spatial.out, y.to(x.dtype), residual=x.reshape(b * n, d))  # (B*N, D): the temporal batch
        # temporal attention of each position against its cached context
        qkv = linear(self.temporal.qkv, F.layer_norm(x, (d,), ln_t.weight, ln_t.bias, ln_t.eps))
        if fused is not None:
            qkv = qkv.view(b * n, 3, self.cfg.heads, -1).float()
            y = fused.temporal(qkv, gain_t[0, 0], gain_t[1, 0], self.spatial.q_norm.eps, scale, cos, sin, ctx_k, ctx_kt, ctx_v, need_output)
        else:
            y = self._temporal_mix(qkv, gain_t, scale, cos, sin, ctx_k, ctx_v, need_output)
        if not need_output:
            return None
        x = linear(self.temporal.out, y.to(x.dtype), residual=x)
        lin1, _, lin2 = self.ffn  # Linear, SiLU, Linear
        x = linear(lin2, linear(lin1, F.layer_norm(x, (d,), ln_f.weight, ln_f.bias, ln_f.eps), act=True), residual=x)
        return x.view(b, n, d)

    def _spatial_mix(self, qkv: torch.Tensor, b: int, n: int, gain: torch.Tensor, scale: float, att_dtype: torch.dtype) -> torch.Tensor:
        """qkv (B*N, 3D) -> attention output (B*N, D) in att_dtype, with PyTorch operations."""
        h = self.cfg.heads
        hd = qkv.shape[-1] // (3 * h)
        qkv = qkv.view(b, n, 3, h, hd)
        qk = self._qk(qkv[:, :, :2], gain, scale).to(att_dtype)  # (B, N, 2, H, hd)
        q = qk[:, :, 0].transpose(1, 2).reshape(b * h, n, hd)  # views when B = 1
        k = qk[:, :, 1].transpose(1, 2).reshape(b * h, n, hd)
        v = qkv[:, :, 2].to(att_dtype).transpose(1, 2).reshape(b * h, n, hd)
        att = torch.bmm(q, k.transpose(1, 2)).float().softmax(dim=-1).to(att_dtype)  # (B*H, N, N)
        return torch.bmm(att, v).view(b, h, n, hd).transpose(1, 2).reshape(b * n, h * hd)

    def _temporal_mix(
        self, qkv: torch.Tensor, gain: torch.Tensor, scale: float, cos: torch.Tensor, sin: torch.Tensor,
        ctx_k: torch.Tensor, ctx_v: torch.Tensor, need_output: bool,
    ) -> torch.Tensor | None:
        """qkv (R, 3D) -> attention output (R, D) against the cache, with PyTorch operations;
        writes the new frame's key/value into the scratch slot first."""
        r, length, h = qkv.shape[0], ctx_k.shape[2], self.cfg.heads
        hd = qkv.shape[-1] // (3 * h)
        qkv = qkv.view(r, 3, h, hd)
        qk = self._qk(qkv[:, :2], gain, scale)  # (R, 2, H, hd) fp32
        # RoPE, rotate-half as a roll with the sign folded into sin; k goes straight into the cache
        cos_part, sin_part = qk * cos, qk.roll(hd // 2, dims=-1) * sin
        torch.add(cos_part[:, 1], sin_part[:, 1], out=ctx_k[:, :, -1])
        ctx_v[:, :, -1] = qkv[:, 2]
        if not need_output:
            return None
        q = torch.add(cos_part[:, 0], sin_part[:, 0]).to(ctx_k.dtype).view(r * h, 1, hd)
        att = torch.bmm(q, ctx_k.view(r * h, length, hd).transpose(1, 2)).float().softmax(dim=-1)
        return torch.bmm(att.to(ctx_v.dtype), ctx_v.view(r * h, length, hd)).view(r, h * hd)


class STTransformer(nn.Module):
    """A stack of ST blocks with a final LayerNorm; full (training) and cached (play) forwards."""

    def __init__(self, cfg: STConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.blocks = nn.ModuleList(STBlock(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.dim)

    @property
    def head_dim(self) -> int:
        return self.cfg.dim // self.cfg.heads

    def forward(self, x: torch.Tensor, t0: int = 0) -> torch.Tensor:
        """x (B, T, N, D) for frames t0 .. t0+T-1 -> (B, T, N, D)."""
        t = x.shape[1]
        pos = torch.arange(t0, t0 + t, device=x.device)
        cos, sin = rope_tables(pos, self.head_dim, self.cfg.rope_base)
        mask = banded_causal_mask(t, self.cfg.window, x.device)
        for block in self.blocks:
            x = block(x, cos, sin, mask)
        return self.norm(x)

    def step(self, x: torch.Tensor, context: "ContextKV", reference: bool = False) -> tuple[torch.Tensor, "FrameKV"]:
        """x (B, N, D) for the frame at position context.position -> (y (B, N, D), its keys/values).
        reference=True runs the plain per-block `step` (the path the fast one is tested against)."""
        if not reference:
            y = self.run(x, context)
            return self.norm(y), context.frame_kv()
        pos = torch.tensor([context.position], device=x.device)
        cos, sin = rope_tables(pos, self.head_dim, self.cfg.rope_base)
        new_kv = []
        for block, (ck, cv) in zip(self.blocks, context.buffers):
            x, k, v = block.step(x, ck, cv, cos, sin)
            new_kv.append((k, v))
        return self.norm(x), FrameKV(tuple(new_kv))

    def run(self, x: torch.Tensor, context: "ContextKV", need_output: bool = True) -> torch.Tensor | None:
        """The fast cached step: x (B, N, D) -> y (B, N, D) before the final norm (callers norm
        only the rows they need), or None without need_output, which skips everything after the
        last layer's temporal keys/values. The frame's keys/values stay in context's scratch slot
        (`context.frame_kv()` copies them out). Runs the torch.compile'd layers if `compile_play`
        installed them: they see tensors only (no per-frame Python values to recompile on)."""
        cos, sin, consts = context.prepared(self)
        layers = self.__dict__.get("_compiled_layers") or self.play_layers
        keys_t = context.keys_transposed() if self.blocks[0].__dict__.get("_kernels") else [None] * len(self.blocks)
        return layers(x, context.buffers, cos, sin, consts, need_output, keys_t)

    def play_layers(self, x: torch.Tensor, buffers: list, cos: torch.Tensor, sin: torch.Tensor, consts: list,
                    need_output: bool, keys_t: list) -> torch.Tensor | None:
        last = len(self.blocks) - 1
        for i, (block, (ck, cv)) in enumerate(zip(self.blocks, buffers)):
            x = block.play_step(x, ck, cv, cos, sin, consts[i], need_output or i < last, keys_t[i])
        return x

    def use_kernels(self, kernels: "PlayKernels | None") -> None:
        """Run the play path's attentions through fused C kernels (play_kernels.load()), or back
        through PyTorch's operations with None. They compute in fp32 (as the PyTorch path does, from
        bf16 activations too) and need the fp32 key/value cache of the fast engine. Blocks whose
        linears all run on the C int8 linear (devices.pack_for_play first) run as one C call each."""
        for block in self.blocks:
            block.__dict__["_kernels"] = kernels
            fused = block.fuse(kernels) if kernels is not None else None
            block.__dict__.pop("_fused", None)
            if fused is not None:
                block.__dict__["_fused"] = fused

    def compile_play(self, enable: bool = True) -> None:
        """Install (or remove) a torch.compile'd `play_layers`, dynamic in the context length and
        batch so one compilation serves the whole session. Compilation happens on first use."""
        self.__dict__.pop("_compiled_layers", None)
        if enable:
            self.__dict__["_compiled_layers"] = torch.compile(self.play_layers, dynamic=True)


@dataclass(frozen=True)
class FrameKV:
    """One frame's temporal keys/values at every layer: tuple over layers of (k, v) (B*N, H, 1, hd).

    Immutable and shared between snapshots, so a snapshot of the play state costs no copy.
    """

    layers: tuple[tuple[torch.Tensor, torch.Tensor], ...]

    def repeat_batch(self, times: int) -> "FrameKV":
        """Repeat along the batch (B*N rows are batch-major) for batched exploration."""
        return FrameKV(tuple((k.repeat(times, 1, 1, 1), v.repeat(times, 1, 1, 1)) for k, v in self.layers))


class ContextKV:
    """Contiguous per-layer buffers of the context frames' keys/values plus one scratch slot.

    Built once per new frame from the last window-1 FrameKVs; every MaskGIT step of that frame reads
    it and overwrites only the scratch slot, so no step allocates or recomputes context. It also
    holds what the fast path derives once per frame (RoPE row of the position, fused norm gains).
    With `stacker` (the play kernels) the C code stacks each layer and its transposed keys in one
    call (the same numbers: pure copies).
    """

    def __init__(self, frames: list[FrameKV], position: int, empty_like: tuple[int, int, int, int, torch.dtype, torch.device] | None = None,
                 stacker: "PlayKernels | None" = None) -> None:
        self.position = position
        self.recorded = False  # the scratch slot holds the final tokens' keys/values (play_frame.FusedFrame)
        self._prepared: tuple | None = None
        self._keys_t: list[torch.Tensor] | None = None
        buffers = []
        stacked = [stacker.stack_context([f.layers[i] for f in frames]) for i in range(len(frames[0].layers))] if frames and stacker else []
        if stacked and all(s is not None for s in stacked):  # the C kernels stack and transpose in one pass
            self.buffers = [(k, v) for k, _, v in stacked]
            self._keys_t = [kt for _, kt, _ in stacked]
            return
        if frames:
            for layer in range(len(frames[0].layers)):
                ks = [f.layers[layer][0] for f in frames]
                vs = [f.layers[layer][1] for f in frames]
                k, v = ks[0], vs[0]
                ks.append(torch.empty_like(k))
                vs.append(torch.empty_like(v))
                buffers.append((torch.cat(ks, dim=2), torch.cat(vs, dim=2)))
        else:
            assert empty_like is not None, "no context frames: give the shape of one scratch slot"
            depth, rows, heads, head_dim, dtype, device = empty_like
            for _ in range(depth):
                buffers.append(
                    (
                        torch.empty(rows, heads, 1, head_dim, dtype=dtype, device=device),
                        torch.empty(rows, heads, 1, head_dim, dtype=dtype, device=device),
                    )
                )
        self.buffers = buffers

    def prepared(self, transformer: STTransformer) -> tuple:
        """(cos (hd,), signed sin (hd,), per-block constants (play_consts + the fused block or None))
        for the fast path, made once per frame."""
        if self._prepared is None or self._prepared[0] is not transformer:
            device = self.buffers[0][0].device
            cos, sin = rope_tables(torch.tensor([self.position], device=device), transformer.head_dim, transformer.cfg.rope_base)
            half = transformer.head_dim // 2
            sin = torch.cat([-sin[0, :half], sin[0, half:]])  # rotate_half(x)*sin == roll(x)*signed sin
            # per block: QK gains and scale, and the whole-block C step if it still matches the weights
            # (checked here once per frame, not once per MaskGIT round)
            consts = [(*block.play_consts(), block.current_fused()) for block in transformer.blocks]
            self._prepared = (transformer, cos[0], sin, consts)
        return self._prepared[1:]

    def keys_transposed(self) -> list[torch.Tensor]:
        """Per layer, the keys transposed (B*N, H, hd, L+1), made once per frame: the fused
        temporal kernel reads scores along contiguous context slots (play_kernels.c)."""
        if self._keys_t is None:
            self._keys_t = [k.transpose(2, 3).contiguous() for k, _ in self.buffers]
        return self._keys_t

    def frame_kv(self) -> FrameKV:
        """Copy of the new frame's keys/values (the scratch slot) as an immutable FrameKV."""
        return FrameKV(tuple((k[:, :, -1:].clone(), v[:, :, -1:].clone()) for k, v in self.buffers))


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """GPT-style init: normal(0, 0.02) for linears/embeddings, zeros for biases."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, mean=0.0, std=std)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)


def st_block_flops(cfg: STConfig, tokens: int, context: int) -> float:
    """Multiply-add FLOPs (x2) of one cached step of `tokens` tokens per frame against `context` frames."""
    d = cfg.dim
    matmuls = tokens * (3 * d * d + d * d) * 2 + tokens * int(cfg.mlp_ratio * d) * d * 2  # spatial, temporal, FFN
    attn = 2 * tokens * tokens * d + 2 * tokens * (context + 1) * d
    return 2.0 * cfg.depth * (matmuls + attn)

