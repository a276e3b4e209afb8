"""The play engine (genie_play/engine): the plan, the two routes and the C kernels.

The C route must stay close to the exact fp32 route, give every batch row and every thread count
the same numbers, and run one MaskGIT frame per C call with exactly the tokens of its per-block
loop. The int8 C linear must compute exact integer sums (AVX2, AVX-512 VNNI and AMX identical),
and the library must build for every vector width. Without the C kernels int8 runs on fbgemm.
"""
from __future__ import annotations

import dataclasses
import os
import platform
import shutil
import subprocess

import numpy as np
import pytest
import torch
import torch.nn as nn

from genie_play import World
from genie_play.engine import build, make_plan
from genie_play.engine.kernels import Int8Weights, Library
from genie_play.engine.plan import cpu_int8_kernels, library
from genie_play.engine.fbgemm import FbgemmBlock, FbgemmLinear
from genie_play.models.maskgit import torch_pick
from genie_play.presets import preset
from genie_play.models.st_block import ContextKV, FrameKV, STBlock, STConfig

lib = library()
needs_c = pytest.mark.skipif(lib is None or not lib.linear_available, reason=f"no C int8 kernels here: {build.unavailable_reason()}")
x86_cc = pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64") or not shutil.which("cc"), reason="needs cc on x86")


def _layer(k: int = 64, n: int = 48, seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(k, n).requires_grad_(False)


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def _c_world(path, **changes) -> World:
    plan = make_plan(preset("tiny"), "cpu", "int8")
    assert plan.route == "c" and plan.frame_kernel
    return World.load(path, plan=dataclasses.replace(plan, **changes))


def test_the_plan_is_made_once_and_printed(tiny_world_path):
    fp32 = World.load(tiny_world_path, device="cpu", precision="fp32")
    assert fp32.plan.route == "torch" and fp32.plan.precision == "fp32" and "exact fp32" in fp32.plan.summary()
    with pytest.raises(dataclasses.FrozenInstanceError):
        fp32.plan.route = "c"
    off = World.load(tiny_world_path, device="cpu", precision="int8", kernels=False)
    assert off.plan.route == "torch" and off.plan.linears == "fbgemm int8" and "C kernels off" in off.plan.why


@needs_c
@pytest.mark.parametrize("k,n", [(64, 48), (256, 768), (1024, 256)])
def test_int8_linear_is_close_to_the_float_product(k, n):
    layer = _layer(k, n)
    x = torch.randn(37, k) * torch.rand(37, 1) * 4  # rows of different scales; 37: a partial row block
    got = lib.linear(x, Int8Weights(layer))
    assert got.shape == (37, n) and got.dtype == torch.float32
    assert _relative(got, layer(x)) < 0.03  # measured ~0.015 (fbgemm's per-call scheme: ~0.019)


@needs_c
def test_int8_linear_sums_are_exact_integer_arithmetic():
    layer = _layer(256, 96, seed=3)
    layer.bias = None
    w = Int8Weights(layer)
    x = torch.randn(9, 256) * torch.rand(9, 1) * 3
    x[4] = 0.0  # a zero row: scale 0, output 0
    amax = x.abs().amax(1, keepdim=True)
    q = torch.round(x.double() * 63 / amax.double().clamp_min(1e-30))  # round half to even, as the C code
    wq = torch.round(layer.weight.double() / w.scale.double()[:, None]).clamp(-127, 127)
    expected = (q @ wq.T) * (amax.double() / 63) * w.scale.double()[None]
    assert torch.allclose(lib.linear(x, w).double(), expected, rtol=1e-5, atol=1e-6)


@needs_c
def test_each_row_gets_the_numbers_it_gets_alone_at_any_thread_count_and_on_amx():
    layer = _layer(128, 96)
    w = Int8Weights(layer)
    x = torch.randn(3, 20, 128)
    x[1] *= 100.0  # a batch item of another scale must not change the others' rounding
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        alone = torch.stack([lib.linear(item, w) for item in x])
        torch.set_num_threads(2)
        together = lib.linear(x, w)
        lib.use_amx(False)
        vnni = lib.linear(x, w)
    finally:
        torch.set_num_threads(threads)
        lib.use_amx(True)
    assert torch.equal(alone, together) and torch.equal(together, vnni)


@needs_c
def test_zero_and_non_finite_rows():
    layer = _layer(64, 32)
    x = torch.randn(4, 64)
    x[0], x[2, 5], x[3, 7] = 0.0, float("nan"), float("inf")
    y = lib.linear(x, Int8Weights(layer))
    assert torch.allclose(y[0], layer.bias) and torch.isfinite(y[1]).all()
    assert torch.isnan(y[2]).all() and torch.isnan(y[3]).all()  # no silent finite garbage


@needs_c
@x86_cc
def test_the_avx2_product_gives_the_native_products_numbers(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    avx2 = build.load(tuple("-march=haswell" if f == "-march=native" else f for f in build.FLAGS))
    avx2 = Library(avx2)
    assert avx2.linear_available and avx2.isa == "AVX2"
    for k, n, rows in ((256, 768, 64), (768, 256, 37), (64, 48, 5)):
        layer = _layer(k, n, seed=k)
        x = torch.randn(rows, k) * 2
        assert torch.equal(avx2.linear(x, Int8Weights(layer)), lib.linear(x, Int8Weights(layer)))


@needs_c
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_the_c_maskgit_pick_draws_what_torch_pick_draws(temperature):
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 40, 64, generator=gen) * 3
    positions = torch.stack([torch.randperm(50, generator=gen)[:40].sort().values for _ in range(2)])
    u, g = torch.rand(50, generator=gen), torch.rand(1, 50, generator=gen)
    for uu, gg in ((u, g), (None, g), (u, None)):
        expected, expected_logp = torch_pick(logits, uu, positions, temperature, gg, 0.6)
        got, got_logp = lib.pick(logits, uu, positions, temperature, gg, 0.6)
        same = got == expected
        assert same.float().mean() > 0.97  # only draws within rounding of a CDF step may differ
        assert torch.allclose(got_logp[same], expected_logp[same], atol=1e-4)


@needs_c
@pytest.mark.parametrize("frames", [1, 5, 15])
def test_the_c_context_stack_is_torchs_stack(frames):
    torch.manual_seed(frames)
    history = [FrameKV(tuple((torch.randn(6, 2, 1, 16), torch.randn(6, 2, 1, 16)) for _ in range(3))) for _ in range(frames)]
    plain, fast = ContextKV(history, 7), ContextKV(history, 7, stacker=lib.stack_context)
    for k0, v0, k1, v1 in zip(plain.keys, plain.values, fast.keys, fast.values):
        assert k1.shape == k0.shape == v1.shape == (6, 2, frames + 1, 16)
        assert torch.equal(k1[:, :, :frames], k0[:, :, :frames]) and torch.equal(v1[:, :, :frames], v0[:, :, :frames])


@needs_c
@pytest.mark.parametrize("sampling", [{}, {"steps": 2}, {"steps": 1}, {"temperature": 0.0}, {"temperature": 2.0, "steps": 7}])
def test_the_frame_kernel_gives_the_per_block_loops_frames(tiny_world_path, prompt_image, sampling):
    frames = []
    for world in (_c_world(tiny_world_path), _c_world(tiny_world_path, frame_kernel=False)):
        world.sampling = {"steps": 25, "temperature": 1.0, **sampling}
        frames.append(world.rollout(prompt_image, [1, 5, 5, 2, 7, 0, 3, 3], seed=3))
    assert np.array_equal(frames[0], frames[1])


@needs_c
def test_the_c_route_is_the_same_at_any_thread_count_and_batch(tiny_world_path, prompt_image):
    world = _c_world(tiny_world_path)
    threads, out = torch.get_num_threads(), []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            out.append(world.rollout(prompt_image, [2, 4, 6], seed=3))
    finally:
        torch.set_num_threads(threads)
    assert np.array_equal(*out)
    world.seed(1)
    world.reset(prompt_image)
    world.step(2)
    grid = world.explore(2, seed=11)  # all 8 actions as one batch of the frame kernel
    for action in (0, 6):
        world.seed(1)
        world.reset(prompt_image)
        world.step(2)
        world.seed(11)
        assert np.array_equal(grid[action], np.stack([world.step(action) for _ in range(2)]))


@needs_c
def test_the_c_route_follows_changed_weights(tiny_world_path, prompt_image):
    world = _c_world(tiny_world_path)
    before = world.rollout(prompt_image, [1, 2], seed=0)
    with torch.no_grad():
        world.dynamics.tok_emb.weight.mul_(-1.0)
    after = world.rollout(prompt_image, [1, 2], seed=0)
    fresh = World(world.config, world.tokenizer, world.dynamics, world.action_codes, plan=world.plan).rollout(prompt_image, [1, 2], seed=0)
    assert np.array_equal(after, fresh) and not np.array_equal(before[1:], after[1:])


@pytest.mark.parametrize("kernels", [True, False])
def test_int8_worlds_play_close_to_fp32_and_batches_equal_single_rollouts(tiny_world_path, prompt_image, kernels):
    if not cpu_int8_kernels():
        pytest.skip("no fbgemm int8 kernels on this CPU")
    world = World.load(tiny_world_path, device="cpu", kernels=kernels)  # precision auto
    assert world.precision == "int8" and "int8" in world.device_description
    fp32 = World.load(tiny_world_path, device="cpu", precision="fp32")
    frames, reference = world.rollout(prompt_image, [1, 2, 3, 4], seed=0), fp32.rollout(prompt_image, [1, 2, 3, 4], seed=0)
    assert np.abs(frames[:2].astype(int) - reference[:2]).mean() < 8  # prompt and first frame decode alike
    world.seed(0)
    world.reset(prompt_image)
    world.step(3)
    grid = world.explore(3, seed=5)
    start = world.snapshot()
    for a in range(world.num_actions):
        world.restore(start)
        world.seed(5)
        assert np.array_equal(np.stack([world.step(a) for _ in range(3)]), grid[a]), a
    prompts = np.stack([prompt_image, prompt_image[::-1].copy()])
    batch = world.rollout_batch(prompts, np.array([[1, 2, 3], [4, 5, 6]]), seed=2)
    assert np.array_equal(batch[1], world.rollout(prompts[1], [4, 5, 6], seed=2))


@pytest.mark.skipif(not cpu_int8_kernels(), reason="no fbgemm int8 kernels on this CPU")
def test_fbgemm_linear_quantises_each_item_alone():
    layer, norm = _layer(64, 32), nn.LayerNorm(64)
    fb = FbgemmLinear(layer, norm)
    x = torch.randn(3, 5, 64)
    x[1] *= 50
    with torch.inference_mode():
        assert torch.equal(fb(x)[1], fb(x[1:2])[0])
        assert _relative(fb(x[:1])[0], layer(norm(x[0]))) < 0.03


@pytest.mark.skipif(not cpu_int8_kernels(), reason="no fbgemm int8 kernels on this CPU")
@pytest.mark.parametrize("heads", [4, 2])
def test_the_fbgemm_block_computes_the_models_cached_step(heads):
    """FbgemmBlock.step is STBlock.step with int8 products and its own QK-norm, RoPE and attention ops."""
    torch.manual_seed(0)
    block = STBlock(STConfig(dim=64, heads=heads, mlp_ratio=2.0)).eval()
    for p in block.parameters():  # norms' gains away from 1, so a misplaced gain shows
        p.data.add_(torch.randn_like(p) * 0.1)
    b, n, length, hd = 2, 6, 5, 64 // heads
    x = torch.randn(b, n, 64)
    context = (torch.randn(b * n, heads, length, hd), torch.randn(b * n, heads, length, hd))
    ctx = ContextKV([], 7, (1, b * n, heads, hd, torch.float32, torch.device("cpu")))
    cos, sin = ctx.rope(block.cfg)
    exact_k, exact_v = (t.clone() for t in context)
    fast_k, fast_v = (t.clone() for t in context)
    fast = FbgemmBlock(block)
    with torch.inference_mode():
        y = block.step(x, exact_k, exact_v, cos, sin, block.qk_gains())
        y_fast = fast.step(x, fast_k, fast_v, cos, sin, True)
        assert _relative(y_fast - x, y - x) < 0.05  # the block's update, without the residual's x
        assert _relative(fast_k[:, :, -1], exact_k[:, :, -1]) < 0.04 and _relative(fast_v[:, :, -1], exact_v[:, :, -1]) < 0.04
        assert torch.equal(fast_k[:, :, :-1], exact_k[:, :, :-1])  # only the frame's slot is written
        one_k, one_v = (t[n:].clone() for t in context)
        assert torch.equal(fast.step(x[1:], one_k, one_v, cos, sin, True)[0], y_fast[1])  # batch items alone
        only = torch.tensor([[0, 2, 5], [1, 3, 4]])  # the rows whose output is wanted (a MaskGIT round's masked ones)
        wanted = y_fast.gather(1, only[..., None].expand(-1, -1, 64))
        assert _relative(fast.step(x, fast_k, fast_v, cos, sin, True, only), wanted) < 0.03
        assert fast.step(x, fast_k, fast_v, cos, sin, False) is None


def test_without_a_compiler_int8_plays_on_fbgemm(monkeypatch, tiny_world_path, prompt_image, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # nothing cached: it must try to build
    for env, reason in ((("GENIE_PLAY_KERNELS", "0"), "disabled"), (("CC", "/bin/false"), "could not build")):
        build.load.cache_clear()
        with monkeypatch.context() as m:
            m.setenv(*env)
            assert build.load() is None and reason in build.unavailable_reason()
            world = World.load(tiny_world_path, device="cpu", precision="int8")
            assert world.plan.route == "torch" and reason in world.plan.why
            assert world.rollout(prompt_image, [1, 2], seed=0).shape == (3, 16, 16, 3)
    build.load.cache_clear()
    assert not list(tmp_path.rglob("*.tmp")) and not list(tmp_path.rglob("tmp*.so"))  # no half-written library left


@needs_c
def test_the_kernels_join_torchs_openmp_threads_even_after_pygame_brought_its_own_runtime():
    """pygame's wheel vendors a second GNU OpenMP (libgomp-<hash>.so): with pygame imported first, as
    in the player, the kernels must still be the multi-threaded build bound to torch's runtime."""
    import sys

    if "OpenMP" not in torch.__config__.parallel_info():
        pytest.skip("torch does not run on OpenMP here")
    code = ("import pygame, torch\n"
            "from genie_play.engine import build\n"
            "lib, runtime = build.load(), build._torch_libgomp()\n"
            "print(runtime is not None and build._joins(lib, runtime)); print(runtime)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYGAME_HIDE_SUPPORT_PROMPT": "1"})
    assert out.returncode == 0, out.stderr
    joined, torchs = out.stdout.split()[-2:]
    if torchs == "None":
        pytest.skip("no single libgomp.so.1 beside torch here")
    assert joined == "True"


@x86_cc
@pytest.mark.parametrize("flags", [["-march=x86-64"], ["-march=haswell", "-fopenmp"], ["-march=icelake-server"],
                                   ["-march=sapphirerapids", "-fopenmp"]])
def test_the_kernels_compile_for_every_vector_width_with_and_without_openmp(flags):
    if flags[0] == "-march=sapphirerapids" and subprocess.run(["cc", "-march=sapphirerapids", "-E", "-x", "c", "/dev/null"],
                                                              capture_output=True).returncode != 0:
        pytest.skip("this compiler does not know Sapphire Rapids")
    options = [f for f in build.FLAGS if not f.startswith("-march") and f not in ("-shared", "-fPIC")]
    warnings = ["-Wall", "-Wextra", "-Werror", "-Wno-unknown-pragmas"]  # omp pragmas are ignored without -fopenmp
    result = subprocess.run(["cc", "-fsyntax-only", *warnings, *options, *flags, *map(str, build.SOURCES)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
