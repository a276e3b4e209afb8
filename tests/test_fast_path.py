"""The play path gives the plain computation's frames: sampler, cached steps, full recompute.

Everything runs in fp32 on the tiny preset, where play must match bit for bit; reduced precision
is only checked to stay close (here and in test_engine.py; its quality is measured by `eval`).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from genie_play import World
from genie_play.models import maskgit
from genie_play.models.dynamics import DynamicsModel
from genie_play.presets import override, preset
from genie_play.models.st_block import ContextKV

from _reference import decode_reference

CFG = preset("tiny")


def _logits_fn(vocab: int, seed: int):
    """A deterministic logits function of the tokens (so both samplers see the same logits)."""

    def fn(tokens: torch.Tensor) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed + int((tokens * torch.arange(tokens.shape[1])).sum()))
        return torch.randn(tokens.shape[0], tokens.shape[1], vocab, generator=g) * 3

    return fn


@pytest.mark.parametrize("steps,temperature,choice", [(1, 1.0, 1.0), (4, 1.0, 1.0), (25, 1.0, 1.0), (8, 0.7, 2.0),
                                                      (8, 0.0, 1.0), (6, 1.0, 0.0), (3, 2.5, 0.5)])
def test_fast_sampler_equals_reference(steps, temperature, choice):
    n, vocab, mask_id = 24, 40, 40
    start = torch.full((3, n), mask_id)
    start[:, :5] = torch.arange(5)  # some known tokens, never resampled
    fn = _logits_fn(vocab, steps)
    options = dict(steps=steps, temperature=temperature, choice_temperature=choice)
    g_ref, g_fast, g_rows = (torch.Generator().manual_seed(7) for _ in range(3))
    ref = decode_reference(fn, start, mask_id, generator=g_ref, **options)
    fast = maskgit.decode(fn, start, mask_id, generator=g_fast, **options)
    rows = maskgit.decode(lambda t, pos: fn(t).gather(1, pos[..., None].expand(-1, -1, vocab)), start, mask_id,
                          generator=g_rows, masked_only=True, **options)
    assert torch.equal(ref, fast) and torch.equal(ref, rows)
    # the generator ends in the same state, so the following frames match too
    assert torch.equal(g_ref.get_state(), g_fast.get_state()) and torch.equal(g_ref.get_state(), g_rows.get_state())


def test_sampler_asks_only_for_masked_positions():
    n, vocab, mask_id = 16, 10, 10
    asked = []

    def fn(tokens, positions):
        asked.append(positions.clone())
        assert (tokens.gather(1, positions) == mask_id).all()
        return torch.zeros(tokens.shape[0], positions.shape[1], vocab)

    maskgit.decode(fn, torch.full((2, n), mask_id), mask_id, steps=5, masked_only=True, generator=torch.Generator())
    sizes = [p.shape[1] for p in asked]
    assert sizes[0] == n and sizes == sorted(sizes, reverse=True) and len(sizes) == 5


@pytest.mark.parametrize("mode", ["add", "token"])
def test_sample_logits_and_record_agree_with_the_cached_step(mode):
    torch.manual_seed(0)
    dyn = DynamicsModel(override(CFG, [f"dynamics.action_mode={mode}"]).dynamics).eval()
    d = dyn.cfg
    tokens = torch.randint(0, d.vocab + 1, (2, d.tokens_per_frame))
    actions = torch.randn(2, d.action_dim)
    empty = (d.st.depth, 2 * (d.tokens_per_frame + (mode == "token")), d.st.heads, d.st.dim // d.st.heads,
             torch.float32, torch.device("cpu"))
    with torch.inference_mode():
        emb = dyn.frame_action(actions, 2)
        ctx = ContextKV([], 0, empty)
        full, kv = dyn.sample_logits(tokens, emb, ctx), ctx.frame_kv()
        pos = torch.tensor([[0, 3, 5], [1, 2, 7]])
        part = dyn.sample_logits(tokens, emb, ContextKV([], 0, empty), pos)
        torch.testing.assert_close(part, full.gather(1, pos[..., None].expand(-1, -1, d.vocab)), rtol=0, atol=1e-6)
        rec = dyn.record(tokens, emb, ContextKV([], 0, empty))
        assert all(torch.equal(a, b) for la, lb in zip(rec.layers, kv.layers) for a, b in zip(la, lb))


@pytest.fixture(scope="module")
def worlds(tiny_world_path):
    return {"fast": World.load(tiny_world_path, device="cpu", precision="fp32")}


def _full_recompute_rollout(world: World, prompt: np.ndarray, actions: list[int], seed: int) -> np.ndarray:
    """The baseline other implementations use: every MaskGIT round runs the dynamics' training-time
    forward over the whole (banded) history, and the decoder decodes the whole history."""
    d, tok = world.config.dynamics, world.tokenizer
    gen = torch.Generator().manual_seed(seed)
    with torch.inference_mode():
        history = tok.encode(torch.from_numpy(prompt)[None, None])  # (1, 1, N)
        codes = world.action_codes[torch.tensor(actions)][None]  # (1, K, A)
        for k in range(len(actions)):
            def logits_fn(tokens: torch.Tensor, k=k) -> torch.Tensor:
                return world.dynamics(torch.cat([history, tokens[:, None]], 1), codes[:, : k + 1])[:, -1]

            masked = torch.full((1, d.tokens_per_frame), d.mask_id)
            new = decode_reference(logits_fn, masked, d.mask_id, steps=world.sampling["steps"],
                                           temperature=world.sampling["temperature"], generator=gen)
            history = torch.cat([history, new[:, None]], 1)
        pixels = tok.decode(history)[0]
    return (pixels.float().clamp(0, 1) * 255.0).round().to(torch.uint8).numpy()


def test_cached_play_equals_full_recompute(worlds, prompt_image):
    world = worlds["fast"]
    world.sampling = {"steps": 8, "temperature": 1.0}
    actions = [2, 2, 7, 1, 0, 4, 4, 3, 6]
    cached = world.rollout(prompt_image, actions, seed=11)
    full = _full_recompute_rollout(world, prompt_image, actions, seed=11)
    assert np.array_equal(cached, full)


def test_bf16_plays_close_to_fp32(tiny_world_path, prompt_image):
    world = World.load(tiny_world_path, device="cpu", precision="bf16")
    fp32 = World.load(tiny_world_path, device="cpu", precision="fp32")
    assert world.precision == "bf16" and "bf16" in world.device_description
    frames = world.rollout(prompt_image, [1, 2, 3, 4, 5, 6, 7], seed=0)
    assert frames.shape == (8, 16, 16, 3) and frames.dtype == np.uint8
    # one cached dynamics step from the same context stays close to fp32's logits
    st = fp32.config.dynamics.st
    empty = (st.depth, fp32.config.dynamics.tokens_per_frame, st.heads, st.dim // st.heads, torch.float32, torch.device("cpu"))
    tokens = torch.randint(0, fp32.config.dynamics.vocab, (1, fp32.config.dynamics.tokens_per_frame))
    with torch.inference_mode():
        a, b = (w.dynamics.sample_logits(tokens, w.dynamics.frame_action(None, 1), ContextKV([], 0, empty)).float()
                for w in (fp32, world))
    assert (a - b).abs().max() < 0.1 * a.abs().max()


def test_play_state_stays_bounded(worlds, prompt_image):
    world = worlds["fast"]
    world.sampling = {"steps": 1}
    world.reset(prompt_image)
    for i in range(40):
        world.step(i % 8)
    state = world.snapshot()
    window = world.config.dynamics.st.window
    assert len(state.dynamics_kv) == window - 1 and len(state.decoder_kv) == world.config.tokenizer.decoder.window - 1
    assert state.dynamics_kv[-1].layers[0][0].shape[2] == 1  # one frame per entry, no growth


def test_frame_flops_counts_the_rounds_and_the_masked_head():
    from genie_play.speed import frame_flops, st_block_flops

    cfg = preset("small")
    one, two = frame_flops(cfg, 1), frame_flops(cfg, 2)
    per_round = st_block_flops(cfg.dynamics.st, 64, cfg.dynamics.st.window - 1)
    head = 2.0 * cfg.dynamics.st.dim * cfg.dynamics.vocab
    assert one["dynamics"] == 2 * per_round + 64 * head  # one round (all 64 masked) + the record pass
    assert two["dynamics"] == 3 * per_round + (64 + maskgit.mask_counts(64, 2)[0]) * head  # 64, then 45 masked
    assert 9e9 < frame_flops(cfg, 25)["dynamics"] < 11e9  # ~0.4 GFLOP per round at 64 tokens


def test_info_bench_reports_speed(tiny_world_path, capsys):
    import json

    from genie_play.cli import main

    assert main(["info", str(tiny_world_path), "--bench", "--steps", "2", "--json", "--precision", "fp32"]) == 0
    bench = json.loads(capsys.readouterr().out)["worlds"][0]["bench"]
    assert bench["fps"] > 0 and bench["steps"] == 2 and bench["full_recompute_ms"] > 0
    assert set(bench["fps_by_steps"]) == {"1", "2", "8"} and bench["matmul_gflops"] > 0
