"""The torch route's int8 (x86 CPUs without the C kernels): ST blocks on fbgemm's int8 linears.

`FbgemmBlock.step` computes what `STBlock.step` computes (models/st_block.py) with the six linears
on fbgemm's dynamic int8 (weights int8 per output channel, activations quantised per call) and the
rest in fewer PyTorch operations than the exact step: QK-norm as x / |x|, the spatial attention in
one scaled_dot_product_attention, and with `only` the rows no one reads skipped after the temporal
attention. They are called like the C route's `CBlock.step` and `Library.linear` and hold copies of
the weights. fbgemm quantises a call's activations with one scale, so each batch item is computed
alone: a batch gives exactly its items' numbers.
"""
from __future__ import annotations

import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models.st_block import cached_temporal_attention

_linear = torch.ops.quantized.linear_dynamic


def pack(linear: nn.Linear):
    """fbgemm's packed int8 weights of `linear` (per output channel, symmetric), with its fp32 bias."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
    from torch.ao.quantization import per_channel_dynamic_qconfig

    twin = nn.Linear(linear.in_features, linear.out_features, bias=linear.bias is not None)
    twin.load_state_dict({k: v.detach().float() for k, v in linear.state_dict().items()})
    twin.qconfig = per_channel_dynamic_qconfig
    with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao
        warnings.simplefilter("ignore")
        return DynamicLinear.from_float(twin)._packed_params._packed_params


def _norm(norm: nn.LayerNorm) -> tuple:
    """torch.layer_norm's arguments after the input, copied."""
    bias = None if norm.bias is None else norm.bias.detach().float().clone()
    return norm.normalized_shape, norm.weight.detach().float().clone(), bias, norm.eps


class FbgemmLinear:
    """x (B, M, K) -> (B, M, N) fp32: `linear` on fbgemm int8, after `norm` if given."""

    def __init__(self, linear: nn.Linear, norm: nn.LayerNorm | None = None) -> None:
        self.packed, self.norm = pack(linear), None if norm is None else _norm(norm)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        items = [_linear(item if self.norm is None else torch.layer_norm(item, *self.norm), self.packed, True)
                 for item in x.float()]
        return items[0][None] if len(items) == 1 else torch.stack(items)


class FbgemmBlock:
    """One ST block's cached step on fbgemm int8 (the weights copied from `block`, an STBlock)."""

    def __init__(self, block) -> None:
        linears = [block.spatial.qkv, block.spatial.out, block.temporal.qkv, block.temporal.out, block.ffn[0], block.ffn[2]]
        self.weights = [pack(m) for m in linears]
        self.norms = [_norm(n) for n in (block.norm_s, block.norm_t, block.norm_f)]
        self.heads, hd = block.cfg.heads, block.cfg.dim // block.cfg.heads
        # x * rsqrt(mean(x^2) + eps) * w = x / (|x| + ~sqrt(hd * eps)) * w * sqrt(hd); times the attention
        # scale hd^-0.5 for q: q's gain is w alone
        self.eps = (hd * block.spatial.q_norm.eps) ** 0.5
        spatial, temporal = (torch.stack([a.q_norm.weight.detach().float(), a.k_norm.weight.detach().float() * hd**0.5])
                             for a in (block.spatial, block.temporal))
        self.gains = spatial[:, None, None].clone(), temporal[:, None].clone()  # q's and k's: (2, 1, 1, hd), (2, 1, hd)

    def step(self, x: torch.Tensor, ctx_k: torch.Tensor, ctx_v: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
             need_output: bool, only: torch.Tensor | None = None) -> torch.Tensor | None:
        """x (B, N, D) -> (B, N, D), or with only (B, M) those rows alone (B, M, D), or None without
        need_output (only the keys/values made). ctx_k / ctx_v (B*N, H, L+1, hd): the context, the
        frame's keys/values written into the last slot; cos/sin: ContextKV.rope's."""
        b, n, _ = x.shape
        items = [self._item(x[i], *(c if b == 1 else c[i * n:(i + 1) * n] for c in (ctx_k, ctx_v)), cos, sin, need_output,
                            None if only is None else only[i]) for i in range(b)]
        return None if not need_output else items[0][None] if b == 1 else torch.stack(items)

    def _qk(self, qk: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
        return qk.div(torch.linalg.vector_norm(qk, dim=-1, keepdim=True).add_(self.eps)).mul_(gain)

    def _item(self, x: torch.Tensor, ctx_k: torch.Tensor, ctx_v: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
              need_output: bool, only: torch.Tensor | None) -> torch.Tensor | None:
        n, d = x.shape
        h, w = self.heads, self.weights
        hd = d // h
        # spatial attention, q k v as (1, H, N, hd) views (SDPA's fused CPU kernel takes 4-d inputs)
        qkv = _linear(torch.layer_norm(x, *self.norms[0]), w[0], True).view(n, 3, h, hd).permute(1, 2, 0, 3)
        q, k = self._qk(qkv[:2], self.gains[0]).split(1)
        y = F.scaled_dot_product_attention(q, k, qkv[2:], scale=1.0)
        x = _linear(y.transpose(1, 2).reshape(n, d), w[1], True).add_(x)
        # temporal attention of each position against its context
        qkv = _linear(torch.layer_norm(x, *self.norms[1]), w[2], True).view(n, 3, h, hd)
        y = cached_temporal_attention(self._qk(qkv[:, :2], self.gains[1]), qkv[:, 2], cos, sin, ctx_k, ctx_v, need_output)
        if y is None:
            return None
        if only is not None:  # the rest is row by row
            y, x = y.index_select(0, only), x.index_select(0, only)
        x = _linear(y, w[3], True).add_(x)
        return _linear(F.silu(_linear(torch.layer_norm(x, *self.norms[2]), w[4], True), inplace=True), w[5], True).add_(x)
