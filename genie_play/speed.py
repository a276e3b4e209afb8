"""Play speed on this machine: FLOPs of a frame from the config, the CPU's matmul rate at the model's
shapes, timed play and the full-recompute baseline. Used by `genie-play info --bench` and
benchmarks/bench_play.py; measurements go to docs/performance.md.
"""
from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np
import torch

from .devices import cpu_has_bf16
from .models import maskgit
from .models.maskgit import mask_counts


def st_block_flops(cfg, tokens: int, context: int) -> float:
    """Multiply-add FLOPs (x2) of one cached step of `tokens` tokens per frame against `context` frames."""
    d = cfg.dim
    matmuls = tokens * (3 * d * d + d * d) * 2 + tokens * int(cfg.mlp_ratio * d) * d * 2  # spatial, temporal, FFN
    attn = 2 * tokens * tokens * d + 2 * tokens * (context + 1) * d
    return 2.0 * cfg.depth * (matmuls + attn)


def matmul_rate(shapes: list[tuple[int, int, int]], dtype: torch.dtype, seconds: float = 0.3) -> float:
    """GFLOP/s of torch.matmul (M, K) x (K, N) over `shapes` run one after the other, as a layer
    sequence would (best of several rounds, FLOP-weighted): the rate this CPU reaches at a model's
    own shapes, to compare a model's achieved rate with."""
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


def frame_flops(config, steps: int) -> dict[str, float]:
    """FLOPs of one played frame, counted from the config: the dynamics' `steps` MaskGIT rounds plus
    the pass that records the final tokens' keys/values (the head only on still-masked tokens, as
    play computes it), the decoder once, and the encoder once per prompt."""
    d, t = config.dynamics, config.tokenizer
    n = d.tokens_per_frame + (d.action_mode == "token")
    masked = [d.tokens_per_frame] + mask_counts(d.tokens_per_frame, steps)[:-1]  # before each round
    dynamics = (steps + 1) * st_block_flops(d.st, n, d.st.window - 1) + 2.0 * d.st.dim * d.vocab * sum(masked)
    tn, patch = t.tokens_per_frame, t.patch * t.patch * 3
    decode = st_block_flops(t.decoder, tn, t.decoder.window - 1) + 2.0 * tn * (t.vq.code_dim + patch) * t.decoder.dim
    encode = st_block_flops(t.encoder, tn, 0) + 2.0 * tn * ((patch + t.vq.code_dim) * t.encoder.dim + t.vq.code_dim * t.vq.num_codes)
    return {"dynamics": dynamics, "decode": decode, "encode": encode}


def model_shapes(config) -> list[tuple[int, int, int]]:
    """(M, K, N) of the dynamics' matmuls in one MaskGIT round: M = tokens per frame."""
    d = config.dynamics
    m, w, hidden = d.tokens_per_frame, d.st.dim, int(d.st.dim * d.st.mlp_ratio)
    layer = [(m, w, 3 * w), (m, w, w), (m, w, 3 * w), (m, w, w), (m, w, hidden), (m, hidden, w)]
    return layer * d.st.depth + [(m, w, d.vocab)]


def _prompt(world):
    h, w = world.frame_size
    return np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)


def time_play(world, steps: int, frames: int) -> dict[str, float]:
    """Median ms per frame of World.step at `steps` MaskGIT steps with a full context window
    (filled at 1 step: the context's content does not change the cost), and encode per prompt."""
    world.sampling = {"steps": 1}
    world.seed(0)
    world.reset(_prompt(world))
    world.reset(_prompt(world))  # the second prompt: no first-call warm-up in the encode time
    encode = world.last_timings["encode"]
    for i in range(world.config.dynamics.st.window + 1):
        world.step(i % world.num_actions)
    world.sampling = {"steps": steps}
    world.step(0)  # warm-up at this step count
    total, dyn, dec = [], [], []
    for i in range(frames):
        t0 = time.perf_counter()
        world.step(i % world.num_actions)
        total.append((time.perf_counter() - t0) * 1e3)
        dyn.append(world.last_timings["dynamics"])
        dec.append(world.last_timings["decode"])
    med = statistics.median
    return {"encode": encode, "dynamics": med(dyn), "decode": med(dec), "total": med(total), "fps": 1e3 / med(total)}


def time_full_recompute(world, steps: int, frames: int) -> float:
    """ms per frame of the baseline other open implementations use: every MaskGIT round runs the
    dynamics over the whole context window (logits for every token of every frame), with the
    plain sampler; then the decoder over its window."""
    d, window = world.config.dynamics, world.config.dynamics.st.window
    gen = torch.Generator().manual_seed(0)
    history = torch.randint(0, d.vocab, (1, window - 1, d.tokens_per_frame), generator=gen, device=world.device)
    acts = world.action_codes[torch.arange(window - 1) % world.num_actions][None]  # (1, W-1, A)
    times = []
    with torch.inference_mode():
        for _ in range(frames):
            t0 = time.perf_counter()
            logits_fn = lambda tok: world.dynamics(torch.cat([history, tok[:, None]], 1), acts)[:, -1]  # noqa: E731
            masked = torch.full((1, d.tokens_per_frame), d.mask_id, device=world.device)
            tokens = maskgit.decode(logits_fn, masked, d.mask_id, steps=steps, generator=gen)
            world.tokenizer.decode(torch.cat([history, tokens[:, None]], 1)[:, -world.config.tokenizer.decoder.window:])
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def bench_world(path: str, steps: int = 25, precision: str = "auto", frames: int = 8) -> dict[str, Any]:
    """The ~10-second play benchmark of `genie-play info --bench` for one world."""
    from .world import World

    world = World.load(path, device="cpu", precision=precision)
    flops = frame_flops(world.config, steps)
    play = time_play(world, steps, frames)
    # int8 is compared with the fastest float path this CPU has: its bf16 (else fp32) matmul rate,
    # and a full recompute in that precision (the training-time forward has no int8 kernels).
    baseline = world
    if world.precision == "int8":
        baseline = World.load(path, device="cpu", precision="bf16" if cpu_has_bf16() else "fp32")
    dtype = torch.float32 if baseline.dynamics.head.weight.dtype == torch.float32 else torch.bfloat16
    peak = matmul_rate(model_shapes(world.config), dtype)
    sweep = {s: time_play(world, s, 3)["fps"] for s in sorted({1, 8, steps})}
    full = time_full_recompute(baseline, steps, 1)
    return {
        "device": world.device_description, "plan": world.plan.summary(), "attention": world.plan.attention, "linears": world.plan.linears,
        "rounds": world.plan.rounds, "threads": torch.get_num_threads(), "steps": steps,
        "context_frames": world.config.dynamics.st.window, **{f"{k}_ms": v for k, v in play.items() if k != "fps"},
        "fps": play["fps"], "gflop_per_frame": {k: v / 1e9 for k, v in flops.items()},
        "dynamics_gflops": flops["dynamics"] / play["dynamics"] / 1e6, "matmul_gflops": peak,
        "matmul_dtype": "fp32" if dtype == torch.float32 else "bf16", "full_recompute_ms": full,
        "full_recompute_device": baseline.device_description, "fps_by_steps": sweep,
    }
