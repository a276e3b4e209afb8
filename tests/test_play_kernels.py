"""The fused C attention kernels of the int8 play path (models/play_kernels.py).

They must compute what the PyTorch operations of `STBlock.play_step` compute (to float rounding),
keep the key/value cache exactly as those do, give a batch the numbers of its items one by one and
the same numbers at any thread count, and fall back cleanly where they cannot be built.
"""
from __future__ import annotations

import os
import platform
import shutil
import subprocess

import numpy as np
import pytest
import torch

from genie_play.models import play_kernels
from genie_play.models.st_block import ContextKV, STBlock, STConfig, rope_tables
from genie_play.world import World

kernels = play_kernels.load()
needs_kernels = pytest.mark.skipif(kernels is None, reason=f"play kernels unavailable: {play_kernels.unavailable_reason()}")


def _block(dim: int = 64, heads: int = 2) -> STBlock:
    torch.manual_seed(0)
    block = STBlock(STConfig(dim=dim, heads=heads)).requires_grad_(False)
    for norm in (block.spatial.q_norm, block.spatial.k_norm, block.temporal.q_norm, block.temporal.k_norm):
        norm.weight.normal_(1.0, 0.3)  # non-trivial QK-norm gains
    return block


def _rope(position: int, hd: int) -> tuple[torch.Tensor, torch.Tensor]:
    cos, sin = rope_tables(torch.tensor([position]), hd, 10000.0)
    return cos[0], torch.cat([-sin[0, : hd // 2], sin[0, hd // 2 :]])


@needs_kernels
@pytest.mark.parametrize("items,n", [(1, 16), (3, 13)])  # 13: a token count that needs padding
def test_spatial_kernel_matches_torch_ops(items, n):
    block = _block()
    gain, _, scale = block.play_consts()
    qkv = torch.randn(items * n, 3 * 64) * 2
    expected = block._spatial_mix(qkv, items, n, gain, scale, torch.float32)
    got = kernels.spatial(qkv.view(items, n, 3, 2, 32), gain[0, 0], gain[1, 0], block.spatial.q_norm.eps, scale)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    # each frame of the batch gets exactly what it gets alone
    one = kernels.spatial(qkv[n : 2 * n].view(1, n, 3, 2, 32), gain[0, 0], gain[1, 0], block.spatial.q_norm.eps, scale) if items > 1 else None
    if one is not None:
        assert torch.equal(got[n : 2 * n], one)


@needs_kernels
@pytest.mark.parametrize("length", [1, 5, 16, 32])  # 16, 32: the vectorised score path
def test_temporal_kernel_matches_torch_ops_and_keeps_the_cache(length):
    block = _block()
    _, gain, scale = block.play_consts()
    rows, heads, hd = 6, 2, 32
    qkv = torch.randn(rows, 3 * 64) * 2
    ctx_k, ctx_v = torch.randn(rows, heads, length, hd), torch.randn(rows, heads, length, hd)
    cos, sin = _rope(7, hd)
    k_ref, v_ref = ctx_k.clone(), ctx_v.clone()
    expected = block._temporal_mix(qkv, gain, scale, cos, sin, k_ref, v_ref, True)
    k_t = ctx_k.transpose(2, 3).contiguous()
    got = kernels.temporal(qkv.view(rows, 3, heads, hd), gain[0, 0], gain[1, 0], block.spatial.q_norm.eps, scale,
                           cos, sin, ctx_k, k_t, ctx_v, True)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ctx_k, k_ref, rtol=1e-6, atol=1e-6)  # the new key went into the scratch slot
    assert torch.equal(ctx_v, v_ref)
    assert torch.equal(k_t, ctx_k.transpose(2, 3))  # both key layouts hold the same keys
    # without need_output only the cache is written
    ctx_k2, ctx_v2, k_t2 = ctx_k.clone(), ctx_v.clone(), k_t.clone()
    ctx_k2[:, :, -1] = ctx_v2[:, :, -1] = k_t2[..., -1] = 0
    assert kernels.temporal(qkv.view(rows, 3, heads, hd), gain[0, 0], gain[1, 0], block.spatial.q_norm.eps, scale,
                            cos, sin, ctx_k2, k_t2, ctx_v2, False) is None
    assert torch.equal(ctx_k2, ctx_k) and torch.equal(ctx_v2, ctx_v) and torch.equal(k_t2, k_t)


@needs_kernels
def test_kernels_give_the_same_numbers_at_any_thread_count():
    block = _block()
    gain, _, scale = block.play_consts()
    qkv = torch.randn(4 * 16, 3 * 64)
    ctx = torch.randn(64, 2, 16, 32)
    before = torch.get_num_threads()
    outs = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            k, v = ctx.clone(), ctx.clone()
            spatial = kernels.spatial(qkv.view(4, 16, 3, 2, 32), gain[0, 0], gain[1, 0], 1e-6, scale)
            temporal = kernels.temporal(qkv.view(64, 3, 2, 32), gain[0, 0], gain[1, 0], 1e-6, scale, *_rope(3, 32),
                                        k, k.transpose(2, 3).contiguous(), v, True)
            outs.append((spatial, temporal))
    finally:
        torch.set_num_threads(before)
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])


@needs_kernels
def test_kernels_refuse_tensors_they_cannot_read():
    block = _block()
    gain, _, scale = block.play_consts()
    qkv = torch.randn(1, 16, 3, 2, 32)
    with pytest.raises(ValueError, match="contiguous fp32"):
        kernels.spatial(qkv.to(torch.bfloat16), gain[0, 0], gain[1, 0], 1e-6, scale)
    with pytest.raises(ValueError, match="contiguous fp32"):
        kernels.spatial(qkv.transpose(1, 2), gain[0, 0], gain[1, 0], 1e-6, scale)
    assert not play_kernels.supports_head_dim(24) and play_kernels.supports_head_dim(64)


def _uses_kernels(transformer) -> bool:
    return all(block.__dict__.get("_kernels") is not None for block in transformer.blocks)


@needs_kernels
@pytest.mark.parametrize("precision", ["int8", "bf16"])
def test_reduced_precision_worlds_use_the_kernels_and_stay_close_to_the_torch_ops(tiny_world_path, prompt_image, precision):
    fused = World.load(tiny_world_path, device="cpu", precision=precision)
    plain = World.load(tiny_world_path, device="cpu", precision=precision, kernels=False)
    assert _uses_kernels(fused.dynamics.transformer) and fused.attention_path == "fused C kernels"
    assert _uses_kernels(fused.tokenizer.decoder)  # bf16 decoder, or an int8 world's decoder (fp32 without native bf16)
    assert not _uses_kernels(plain.dynamics.transformer) and not _uses_kernels(plain.tokenizer.decoder)
    exact = World.load(tiny_world_path, device="cpu", precision="fp32")  # the exact path keeps the torch ops
    assert not _uses_kernels(exact.dynamics.transformer) and not _uses_kernels(exact.tokenizer.decoder)
    plain.reset(prompt_image)
    for a in (1, 4, 6):
        plain.step(a)
    state = plain.snapshot()
    fused.reset(prompt_image)
    fused.restore(state)  # the same context for both
    d = plain.config.dynamics
    tokens = torch.randint(0, d.vocab, (1, d.tokens_per_frame))
    tokens[0, ::2] = d.mask_id
    logits = []
    for world in (plain, fused):
        ctx = world._context(state.dynamics_kv, state.position + 1, 1, world.dynamics.transformer)
        with torch.inference_mode():
            logits.append(world.dynamics.sample_logits(tokens, world.dynamics.frame_action(world.action_codes[2:3], 1), ctx))
    # bf16 linears round the kernels' fp32 outputs; int8 quantises per row in the C linear (where the
    # CPU has no VNNI) and per frame in fbgemm, about 1.5% of a product's size apart
    tolerance = 3e-2 if precision == "int8" else 2e-2
    assert (logits[0].float() - logits[1].float()).abs().mean() < tolerance * logits[0].float().abs().mean() + 1e-4
    frames, reference = fused.rollout(prompt_image, [1, 2, 3, 4], seed=0), plain.rollout(prompt_image, [1, 2, 3, 4], seed=0)
    assert frames.shape == (5, 16, 16, 3)
    assert np.abs(frames[:2].astype(int) - reference[:2]).mean() < 8  # prompt and first frame decode alike


def test_without_a_compiler_the_play_path_keeps_torch_ops(monkeypatch, tiny_world_path, prompt_image, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # nothing cached: it must try to build
    for env, reason in ((("GENIE_PLAY_KERNELS", "0"), "disabled"), (("CC", "/bin/false"), "could not build")):
        play_kernels.load.cache_clear()
        with monkeypatch.context() as m:
            m.setenv(*env)
            assert play_kernels.load() is None
            assert reason in play_kernels.unavailable_reason()
            world = World.load(tiny_world_path, device="cpu", precision="int8")
            assert world.dynamics.transformer.blocks[0].__dict__.get("_kernels") is None
            assert world.rollout(prompt_image, [1, 2], seed=0).shape == (3, 16, 16, 3)
    play_kernels.load.cache_clear()
    assert not list(tmp_path.rglob("*.so.tmp*")) and not list(tmp_path.rglob("tmp*.so"))  # no half-written library left


@needs_kernels
def test_the_kernels_join_torchs_openmp_threads_even_after_pygame_brought_its_own_runtime():
    """pygame's wheel vendors a second GNU OpenMP (libgomp-<hash>.so): with pygame imported first, as
    in the player, the kernels must still be the multi-threaded build bound to torch's runtime (they
    fell back to one thread there, and the player ran at half the benchmark's speed)."""
    import subprocess
    import sys

    if "OpenMP" not in torch.__config__.parallel_info():
        pytest.skip("torch does not run on OpenMP here")
    code = ("import ctypes, pygame, torch\n"
            "from genie_play.models import play_kernels as pk\n"
            "k = pk.load(); lib = ctypes.CDLL(str(k.path)); lib.gp_openmp_symbol.restype = ctypes.c_void_p\n"
            "print(pk._object_path(lib.gp_openmp_symbol())); print(pk._torch_libgomp())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYGAME_HIDE_SUPPORT_PROMPT": "1"})
    assert out.returncode == 0, out.stderr
    used, torchs = out.stdout.split()[-2:]
    if torchs == "None":
        pytest.skip("no single libgomp.so.1 beside torch here")
    assert used == torchs


@pytest.mark.skipif(not shutil.which("cc") or platform.machine().lower() not in ("x86_64", "amd64"), reason="needs cc on x86")
@pytest.mark.parametrize("flags", [["-march=x86-64"], ["-march=haswell", "-fopenmp"], ["-march=icelake-server"],
                                   ["-march=sapphirerapids", "-fopenmp"]])
def test_the_kernels_compile_for_every_vector_width_with_and_without_openmp(flags):
    """The machine that runs the tests compiles only its own variant; the others (4, 8 and 16 float
    lanes; AVX2, VNNI and AMX products; the single-threaded fallback build) must compile too."""
    if flags[0] == "-march=sapphirerapids" and subprocess.run(["cc", "-march=sapphirerapids", "-E", "-x", "c", "/dev/null"],
                                                              capture_output=True).returncode != 0:
        pytest.skip("this compiler does not know Sapphire Rapids")
    sources = [str(s) for s in play_kernels.SOURCES]
    build = [f for f in play_kernels.FLAGS if not f.startswith("-march") and f not in ("-shared", "-fPIC")]
    warnings = ["-Wall", "-Wextra", "-Werror", "-Wno-unknown-pragmas"]  # omp pragmas are ignored without -fopenmp
    result = subprocess.run(["cc", "-fsyntax-only", *warnings, *build, *flags, *sources], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


@needs_kernels
@pytest.mark.parametrize("frames", [1, 5, 15])
def test_the_c_context_stack_is_torchs_stack(frames):
    from genie_play.models.st_block import FrameKV

    torch.manual_seed(frames)
    history = [FrameKV(tuple((torch.randn(6, 2, 1, 16), torch.randn(6, 2, 1, 16)) for _ in range(3))) for _ in range(frames)]
    plain, fast = ContextKV(history, 7), ContextKV(history, 7, stacker=kernels)
    for (k0, v0), (k1, v1), kt0, kt1 in zip(plain.buffers, fast.buffers, plain.keys_transposed(), fast.keys_transposed()):
        assert k1.shape == k0.shape == (6, 2, frames + 1, 16) and kt1.shape == (6, 2, 16, frames + 1)
        assert torch.equal(k1[:, :, :frames], k0[:, :, :frames]) and torch.equal(v1[:, :, :frames], v0[:, :, :frames])
        assert torch.equal(kt1[..., :frames], kt0[..., :frames])
    odd = [FrameKV(tuple((k.transpose(0, 1).contiguous().transpose(0, 1), v) for k, v in f.layers)) for f in history]
    assert kernels.stack_context(list(odd[0].layers[:1]) * 2) is None  # not contiguous: ContextKV stacks with torch
    assert torch.equal(ContextKV(odd, 7, stacker=kernels).buffers[0][0][:, :, :frames], plain.buffers[0][0][:, :, :frames])
