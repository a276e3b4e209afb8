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

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class STConfig:
    dim: int = 256  # width of every token vector
    depth: int = 4  # ST blocks (spatial attention, temporal attention, feed-forward) stacked
    heads: int = 4  # attention heads per attention layer (dim must divide by heads)
    mlp_ratio: float = 4.0  # feed-forward hidden width as a multiple of dim
    window: int = 16  # frames visible to temporal attention (the model's context length)
    attention: str = "plain"  # "plain" (faster at these short lengths on CPU) or "sdpa"
    rope_base: float = 10000.0  # base of the rotary position embedding of temporal attention


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, impl: str) -> torch.Tensor:
    """Attention over the last two dims. q (..., Lq, hd), k/v (..., Lk, hd), mask (Lq, Lk) bool keep."""
    if impl == "sdpa":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    # At these short lengths a plain matmul-softmax-matmul beats SDPA on the CPU, and 3-d bmm over
    # (batch*heads) beats 4-d matmul for the many tiny per-position problems (docs/performance.md).
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


def cached_temporal_attention(qk: torch.Tensor, v: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, ctx_k: torch.Tensor,
                              ctx_v: torch.Tensor, need_output: bool) -> torch.Tensor | None:
    """A new frame's temporal attention against its context: qk (R, 2, H, hd) its normalised q and k
    in fp32 (overwritten), v (R, H, hd); cos/sin (hd,) from `ContextKV.rope`. Writes the RoPE'd key
    and the value into the context's last slot (ctx_k/ctx_v (R, H, L+1, hd) fp32), then, with
    need_output, returns q's attention over the slots (R, H*hd) fp32 (else None)."""
    r, _, h, hd = qk.shape
    turned = qk.view(r, 2, h, 2, hd // 2).flip(3).view(r, 2, h, hd).mul_(sin)  # rotate-half as the halves swapped
    qk.mul_(cos)
    torch.add(qk[:, 1], turned[:, 1], out=ctx_k[:, :, -1])
    ctx_v[:, :, -1] = v
    if not need_output:
        return None
    length = ctx_k.shape[2]
    att = torch.bmm(torch.add(qk[:, 0], turned[:, 0]).view(r * h, 1, hd), ctx_k.view(r * h, length, hd).transpose(1, 2))
    return torch.bmm(att.softmax(dim=-1), ctx_v.view(r * h, length, hd)).view(r, h * hd)


def banded_causal_mask(length: int, window: int, device: torch.device) -> torch.Tensor:
    """(L, L) bool: frame i may attend to frame j iff i - window < j <= i."""
    i = torch.arange(length, device=device)
    return (i[None] <= i[:, None]) & (i[None] > i[:, None] - window)


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

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, T, N, D); cos/sin (T, hd) for the frames' positions; mask (T, T) temporal."""
        b, t, n, d = x.shape
        xs = x.reshape(b * t, n, d)  # (B*T, N, D): attention among the N tokens of each frame (no mask)
        q, k, v = self.spatial.project(self.norm_s(xs))
        x = (xs + self.spatial.merge(attend(q, k, v, None, self.cfg.attention))).view(b, t, n, d)
        xt = x.transpose(1, 2).reshape(b * n, t, d)  # (B*N, T, D): one sequence per position
        q, k, v = self.temporal.project(self.norm_t(xt))
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        xt = xt + self.temporal.merge(attend(q, k, v, mask, self.cfg.attention))
        xt = xt + self.ffn(self.norm_f(xt))
        return xt.view(b, n, t, d).transpose(1, 2)

    # -- the cached step: one new frame against its context's keys/values -------------------------
    def qk_gains(self) -> tuple[torch.Tensor, torch.Tensor, float]:
        """Spatial and temporal q/k RMS gains, each (2, 1, hd) fp32, with the attention scale
        folded into q's gain where that is exact (a power of two: 1/8 at hd 64), and the scale
        still to apply (1.0 when folded)."""
        scale = self.spatial.head_dim**-0.5
        fold = math.log2(scale).is_integer()  # x*r*(w*s) == (x*r*w)*s bit for bit only then
        spatial, temporal = (torch.stack([a.q_norm.weight.float() * (scale if fold else 1.0), a.k_norm.weight.float()])[:, None, :]
                             for a in (self.spatial, self.temporal))
        return spatial, temporal, 1.0 if fold else scale

    def step(self, x: torch.Tensor, ctx_k: torch.Tensor, ctx_v: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
             gains: tuple, need_output: bool = True) -> torch.Tensor | None:
        """`forward` for one new frame: x (B, N, D); ctx_k/ctx_v (B*N, H, L+1, hd) fp32 with the
        context in slots :L and a scratch slot at L that this call overwrites with the frame's
        key/value; cos (hd,), sin (hd,) with the rotate-half sign folded in; gains: `qk_gains()`.
        Returns y (B, N, D), or None without need_output (only the keys/values were wanted).
        Computes what `forward` computes for the frame, in fewer operations: in fp32 the frames
        equal those of the full forward over the window to float rounding (tests/test_models.py)."""
        b, n, d = x.shape
        heads, hd, (gain_s, gain_t, scale), dtype = self.cfg.heads, d // self.cfg.heads, gains, ctx_k.dtype
        # linears by .forward (no nn.Module.__call__ overhead: ~19 per round, 26 rounds per frame);
        # residual adds and SiLU in place on fresh outputs (the same values)
        qkv = self.spatial.qkv.forward(F.layer_norm(x, (d,), self.norm_s.weight, self.norm_s.bias, self.norm_s.eps))
        qkv = qkv.view(b, n, 3, heads, hd)
        qk = self._qk(qkv[:, :, :2], gain_s, scale).to(dtype)  # (B, N, 2, H, hd)
        q, k = (qk[:, :, i].transpose(1, 2).reshape(b * heads, n, hd) for i in (0, 1))  # views when B = 1
        v = qkv[:, :, 2].to(dtype).transpose(1, 2).reshape(b * heads, n, hd)
        att = torch.bmm(q, k.transpose(1, 2)).float().softmax(dim=-1).to(dtype)  # (B*H, N, N)
        y = torch.bmm(att, v).view(b, heads, n, hd).transpose(1, 2).reshape(b * n, d)
        x = self.spatial.out.forward(y.to(x.dtype)).add_(x.reshape(b * n, d))  # (B*N, D): the temporal batch
        qkv = self.temporal.qkv.forward(F.layer_norm(x, (d,), self.norm_t.weight, self.norm_t.bias, self.norm_t.eps))
        qkv = qkv.view(b * n, 3, heads, hd)
        y = cached_temporal_attention(self._qk(qkv[:, :2], gain_t, scale), qkv[:, 2], cos, sin, ctx_k, ctx_v, need_output)
        if not need_output:
            return None
        x = self.temporal.out.forward(y.to(x.dtype)).add_(x)
        lin1, _, lin2 = self.ffn  # Linear, SiLU, Linear
        h = F.silu(lin1.forward(F.layer_norm(x, (d,), self.norm_f.weight, self.norm_f.bias, self.norm_f.eps)), inplace=True)
        return lin2.forward(h).add_(x).view(b, n, d)

    def _qk(self, qk: torch.Tensor, gain: torch.Tensor, scale: float) -> torch.Tensor:
        """QK-norm of q and k at once: qk (..., 2, H, hd) -> fp32. The ops of F.rms_norm's CPU
        composite (x*rsqrt(mean x^2 + eps), then *w, in fp32) without its wrappers, once for both."""
        x = qk.float()
        out = x * x.pow(2).mean(-1, keepdim=True).add_(self.spatial.q_norm.eps).rsqrt_() * gain
        if scale != 1.0:
            out[..., 0, :, :] *= scale
        return out


class STTransformer(nn.Module):
    """A stack of ST blocks with a final LayerNorm; full (training) and cached (play) forwards."""

    def __init__(self, cfg: STConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.blocks = nn.ModuleList(STBlock(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.dim)

    def forward(self, x: torch.Tensor, t0: int = 0) -> torch.Tensor:
        """x (B, T, N, D) for frames t0 .. t0+T-1 -> (B, T, N, D)."""
        t = x.shape[1]
        pos = torch.arange(t0, t0 + t, device=x.device)
        cos, sin = rope_tables(pos, self.cfg.dim // self.cfg.heads, self.cfg.rope_base)
        mask = banded_causal_mask(t, self.cfg.window, x.device)
        for block in self.blocks:
            x = block(x, cos, sin, mask)
        return self.norm(x)

    def step(self, x: torch.Tensor, context: "ContextKV", need_output: bool = True) -> torch.Tensor | None:
        """The cached forward of one frame: x (B, N, D) at context.position -> y (B, N, D) before
        the final norm (callers norm only the rows they need), or None without need_output, which
        skips everything after the last layer's temporal keys/values. The frame's keys/values
        stay in the context's scratch slot (`context.frame_kv()` copies them out)."""
        cos, sin = context.rope(self.cfg)
        gains = context.constants(self)
        last = len(self.blocks) - 1
        for i, (block, ck, cv) in enumerate(zip(self.blocks, context.keys, context.values)):
            x = block.step(x, ck, cv, cos, sin, gains[i], need_output or i < last)
        return x


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
    """Per-layer buffers of the context frames' keys/values (`keys`, `values`: (B*N, H, L+1, hd))
    plus one scratch slot at L for the new frame, built once per new frame from the last window-1
    FrameKVs: every MaskGIT round of that frame reads it and overwrites only the scratch slot.
    `stacker` (engine.kernels.Library.stack_context) stacks each layer in one call: the same numbers."""

    def __init__(self, frames: list[FrameKV], position: int, empty_like: tuple | None = None, stacker=None) -> None:
        self.position = position
        self.recorded = False  # the scratch slot holds the final tokens' keys/values
        self._rope: tuple[torch.Tensor, torch.Tensor] | None = None
        self._constants: tuple | None = None
        if frames and stacker is not None:
            stacked = [stacker([f.layers[i] for f in frames]) for i in range(len(frames[0].layers))]
            self.keys, self.values = ([s[j] for s in stacked] for j in range(2))
            return
        if frames:
            self.keys, self.values = ([torch.cat([f.layers[i][j] for f in frames] + [torch.empty_like(frames[0].layers[i][j])], 2)
                                       for i in range(len(frames[0].layers))] for j in (0, 1))
        else:
            assert empty_like is not None, "no context frames: give the shape of one scratch slot"
            depth, rows, heads, head_dim, dtype, device = empty_like
            self.keys, self.values = ([torch.empty(rows, heads, 1, head_dim, dtype=dtype, device=device) for _ in range(depth)]
                                      for _ in range(2))

    def rope(self, cfg: STConfig) -> tuple[torch.Tensor, torch.Tensor]:
        """cos (hd,) and sin (hd,) of the new frame's position, the rotate-half sign folded into sin."""
        if self._rope is None:
            hd = cfg.dim // cfg.heads
            cos, sin = rope_tables(torch.tensor([self.position], device=self.keys[0].device), hd, cfg.rope_base)
            self._rope = cos[0], torch.cat([-sin[0, : hd // 2], sin[0, hd // 2 :]])
        return self._rope

    def constants(self, transformer: STTransformer) -> list:
        """Each block's `qk_gains()`, made once per frame (not once per MaskGIT round)."""
        if self._constants is None or self._constants[0] is not transformer:
            self._constants = (transformer, [block.qk_gains() for block in transformer.blocks])
        return self._constants[1]

    def frame_kv(self) -> FrameKV:
        """Copy of the new frame's keys/values (the scratch slot) as an immutable FrameKV."""
        return FrameKV(tuple((k[:, :, -1:].clone(), v[:, :, -1:].clone()) for k, v in zip(self.keys, self.values)))


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """GPT-style init: normal(0, 0.02) for linears/embeddings, zeros for biases."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, mean=0.0, std=std)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
