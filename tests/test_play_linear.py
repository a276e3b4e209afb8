"""The int8 C linear of the play path (models/play_linear.c through play_kernels.PlayKernels.linear).

It must compute x W^T + b to int8 precision (7-bit activations per row, 8-bit weights per output
channel), fuse SiLU and the residual add, give every row the numbers it gets alone (so batched
rollouts equal single ones) at any thread count, pass non-finite inputs through as a float product
would, and say which sizes it cannot take.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from genie_play.devices import linear, pack_linears
from genie_play.models import play_kernels

kernels = play_kernels.load()
needs_linear = pytest.mark.skipif(kernels is None or not kernels.linear_available, reason="no int8 C linear on this CPU/toolchain")


def _layer(k: int = 64, n: int = 48, seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(k, n).requires_grad_(False)


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@needs_linear
@pytest.mark.parametrize("k,n", [(64, 48), (256, 768), (1024, 256)])
def test_int8_linear_is_close_to_the_float_product(k, n):
    layer = _layer(k, n)
    w = kernels.pack_linear(layer.weight, layer.bias)
    x = torch.randn(37, k) * torch.rand(37, 1) * 4  # rows of different scales; 37: a partial row block
    expected = layer(x)
    got = kernels.linear(x, w)
    assert got.shape == expected.shape and got.dtype == torch.float32
    assert _relative(got, expected) < 0.03  # measured ~0.015 (fbgemm's per-call scheme: ~0.019)
    residual = torch.randn(37, n)
    fused = kernels.linear(x, w, act=True, residual=residual)
    assert _relative(fused, F.silu(got) + residual) < 1e-5  # the epilogue is SiLU then + residual
    assert _relative(fused, F.silu(expected) + residual) < 0.03


@needs_linear
def test_each_row_gets_the_numbers_it_gets_alone_at_any_thread_count():
    layer = _layer(128, 96)
    w = kernels.pack_linear(layer.weight, layer.bias)
    x = torch.randn(3, 20, 128)
    x[1] *= 100.0  # a batch item of another scale must not change the others' rounding
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        alone = torch.stack([kernels.linear(item, w) for item in x])
        torch.set_num_threads(2)
        together = kernels.linear(x, w)
    finally:
        torch.set_num_threads(threads)
    assert together.shape == (3, 20, 96)
    assert torch.equal(alone, together)


@needs_linear
def test_zero_and_non_finite_rows():
    layer = _layer(64, 32)
    w = kernels.pack_linear(layer.weight, layer.bias)
    x = torch.randn(4, 64)
    x[0] = 0.0
    x[2, 5] = float("nan")
    x[3, 7] = float("inf")
    y = kernels.linear(x, w)
    assert torch.allclose(y[0], layer.bias)  # a zero row gives the bias exactly
    assert torch.isfinite(y[1]).all()
    assert torch.isnan(y[2]).all() and torch.isnan(y[3]).all()  # no silent finite garbage


@needs_linear
def test_sizes_it_cannot_take_stay_on_fbgemm():
    assert kernels.linear_fits(64, 48) and not kernels.linear_fits(64, 40) and not kernels.linear_fits(24, 48)
    with pytest.raises(ValueError, match="no int8 linear"):
        kernels.pack_linear(torch.randn(40, 64), None)
    model = nn.Sequential(_layer(64, 48), _layer(64, 40, seed=1))
    assert pack_linears(model, "int8", kernels=kernels) == 2
    x = torch.randn(5, 64)
    for layer in model:
        packed = layer.__dict__["_packed"]
        assert (packed.kernels is not None) == (layer.out_features == 48)
        assert _relative(linear(layer, x), layer(x)) < 0.05
