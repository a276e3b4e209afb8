"""The int8 C linear of the play path (models/play_linear.c through play_kernels.PlayKernels.linear).

It must compute x W^T + b to int8 precision (7-bit activations per row, 8-bit weights per output
channel), fuse SiLU and the residual add, give every row the numbers it gets alone (so batched
rollouts equal single ones) at any thread count, pass non-finite inputs through as a float product
would, and say which sizes it cannot take.
"""
from __future__ import annotations

import ctypes
import platform
import shutil

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from genie_play.devices import c_int8_linear, linear, pack_linears
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
def test_int8_linear_sums_are_exact_integer_arithmetic():
    """Both products (AVX2 pairs, AVX-512 VNNI) must give the exact int32 sums of the 7-bit
    activations times the int8 weights: compared with the same quantisation done in float64."""
    layer = _layer(256, 96, seed=3)
    w = kernels.pack_linear(layer.weight, None)
    x = torch.randn(9, 256) * torch.rand(9, 1) * 3
    x[4] = 0.0  # a zero row: scale 0, output 0
    amax = x.abs().amax(1, keepdim=True)
    q = torch.round(x.double() * 63 / amax.double().clamp_min(1e-30))  # round half to even, as the C code
    wq = torch.round(layer.weight.double() / w.scale.double()[:, None]).clamp(-127, 127)
    expected = (q @ wq.T) * (amax.double() / 63) * w.scale.double()[None]
    got = kernels.linear(x, w).double()
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-6), float((got - expected).abs().max())


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


def _pass(world, x, fused: bool, threads: int):
    """One cached transformer pass of the world's dynamics on x (B, N, D) after a short session,
    with the blocks as one C call each (fused) or as their separate calls; returns y and the cache."""
    transformer = world.dynamics.transformer
    saved = {b: b.__dict__.pop("_fused") for b in transformer.blocks} if not fused else {}
    state = world._state
    frames = tuple(f.repeat_batch(x.shape[0]) for f in state.dynamics_kv)
    context = world._context(frames, state.position + 1, x.shape[0], transformer)
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        with torch.inference_mode():
            y = transformer.run(x, context)
    finally:
        torch.set_num_threads(previous)
        for block, whole in saved.items():
            block.__dict__["_fused"] = whole
    return y, [(k.clone(), v.clone()) for k, v in context.buffers]


@needs_linear
@pytest.mark.skipif(not c_int8_linear(kernels), reason="int8 play runs on fbgemm on this CPU (no fused blocks)")
def test_a_fused_block_computes_what_its_separate_calls_compute(tiny_world_path, prompt_image):
    from genie_play.world import World

    world = World.load(tiny_world_path, device="cpu", precision="int8")
    assert world.linear_path.startswith("C int8")
    assert all(block.__dict__.get("_fused") is not None for block in world.dynamics.transformer.blocks)
    if world.dtype == torch.float32:  # no native bf16: the decoder runs int8 as fused blocks too
        assert all(block.__dict__.get("_fused") is not None for block in world.tokenizer.decoder.blocks)
    world.reset(prompt_image)
    for action in (1, 5, 2):
        world.step(action)
    d = world.config.dynamics
    x = torch.randn(3, d.tokens_per_frame, d.st.dim)
    y_fused, cache_fused = _pass(world, x, True, 2)
    y_calls, cache_calls = _pass(world, x, False, 2)
    assert _relative(y_fused, y_calls) < 1e-5  # only the LayerNorm's summation order differs
    for (kf, vf), (kc, vc) in zip(cache_fused, cache_calls):
        assert _relative(kf, kc) < 1e-5 and _relative(vf, vc) < 1e-5
    y_one, _ = _pass(world, x, True, 1)
    assert torch.equal(y_one, y_fused)  # any thread count, the same numbers
    y_item, _ = _pass(world, x[1:2], True, 2)
    assert torch.equal(y_item[0], y_fused[1])  # a batch item is computed as it would be alone
    with torch.no_grad():  # changed weights: the fused step steps aside (the linears fall back to PyTorch)
        world.dynamics.transformer.blocks[0].norm_s.weight.mul_(2.0)
    assert not world.dynamics.transformer.blocks[0].__dict__["_fused"].current()


@pytest.mark.skipif(kernels is None, reason="play kernels unavailable")
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_the_c_maskgit_pick_draws_what_torch_pick_draws(temperature):
    from genie_play.models.maskgit import torch_pick

    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 40, 64, generator=gen) * 3
    positions = torch.stack([torch.randperm(50, generator=gen)[:40].sort().values for _ in range(2)])
    u, g = torch.rand(50, generator=gen), torch.rand(1, 50, generator=gen)
    for uu, gg in ((u, g), (None, g), (u, None)):
        expected, expected_logp = torch_pick(logits, uu, positions, temperature, gg, 0.6)
        got, got_logp = kernels.maskgit_pick(logits, uu, positions, temperature, gg, 0.6)
        assert got.dtype == torch.long and got.shape == expected.shape
        assert (got == expected).float().mean() > 0.97  # only draws within rounding of a CDF step may differ
        same = got == expected
        assert torch.allclose(got_logp[same], expected_logp[same], atol=1e-4)
    # the draws follow softmax(logits / temperature): 4,000 draws of one row over 16 tokens
    row = torch.randn(1, 1, 16, generator=gen)
    draws = torch.stack([kernels.maskgit_pick(row, torch.rand(1, generator=gen), torch.zeros(1, 1, dtype=torch.long),
                                              temperature, None, 0.0)[0][0, 0] for _ in range(4000)])
    freq = torch.bincount(draws, minlength=16).float() / 4000
    assert (freq - (row[0, 0] / temperature).softmax(-1)).abs().max() < 0.03


@needs_linear
@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64") or not shutil.which("cc"), reason="needs cc on x86")
def test_the_avx2_product_gives_the_native_products_numbers(tmp_path, monkeypatch):
    """A CPU with AVX-512 never runs the AVX2 product, so it is built here for Haswell and compared:
    quantisation (a max), the integer sums and the elementwise epilogue are exact, so AVX2, VNNI and
    AMX must give identical outputs, bit for bit."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    flags = [("-march=haswell" if f == "-march=native" else f) for f in play_kernels.FLAGS] + ["-fopenmp"]
    path = play_kernels._build("cc", flags)
    avx2 = play_kernels.PlayKernels(ctypes.CDLL(str(path)), path)
    assert not avx2.linear_vnni and avx2.linear_available
    for k, n, rows in ((256, 768, 64), (768, 256, 37), (64, 48, 5)):
        layer = _layer(k, n, seed=k)
        x, residual = torch.randn(rows, k) * 2, torch.randn(rows, n)
        native = kernels.linear(x, kernels.pack_linear(layer.weight, layer.bias), act=True, residual=residual)
        assert torch.equal(avx2.linear(x, avx2.pack_linear(layer.weight, layer.bias), act=True, residual=residual), native)
