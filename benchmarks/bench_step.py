"""Per-frame play cost of a world at 25 MaskGIT steps: cached temporal KV vs full recompute.

    python benchmarks/bench_step.py [--world PATH | --preset small] [--steps 25] [--frames 20]

Prints one table: ms per frame split into encode (per prompt) / dynamics / decode, for the cached
path (what World.step does) and for the full-recompute baseline that other open implementations
use (every MaskGIT step runs the dynamics over the whole context window), at a full context.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from genie_play.devices import set_threads
from genie_play.models import maskgit
from genie_play.models.presets import preset
from genie_play.world import World, build_models


def make_world(args) -> World:
    if args.world:
        return World.load(args.world, device="cpu", precision=args.precision)
    torch.manual_seed(0)
    cfg = preset(args.preset)
    m = build_models(cfg)
    return World(cfg, m["tokenizer"], m["dynamics"], m["lam"].action_codebook().detach(), lam=m["lam"],
                 device="cpu", precision=args.precision)


def full_recompute_frame(world: World, history: torch.Tensor, actions: torch.Tensor, action: int, steps: int) -> None:
    """The baseline: every MaskGIT step recomputes the dynamics over the whole window."""
    d = world.config.dynamics
    codes = world.action_codes[action][None, None]
    acts = torch.cat([actions, codes], dim=1)  # (1, W-1, A)

    def logits_fn(tokens: torch.Tensor) -> torch.Tensor:
        seq = torch.cat([history, tokens[:, None]], dim=1)  # (1, W, N)
        return world.dynamics(seq, acts)[:, -1]

    masked = torch.full((1, d.tokens_per_frame), d.mask_id, dtype=torch.long)
    tokens = maskgit.decode(logits_fn, masked, d.mask_id, steps=steps, generator=world._generator)
    world.tokenizer.decode(torch.cat([history, tokens[:, None]], dim=1)[:, -world.config.tokenizer.decoder.window:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world")
    ap.add_argument("--preset", default="small")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    set_threads(args.threads or None)
    world = make_world(args)
    world.sampling = {"steps": args.steps}
    window = world.config.dynamics.st.window
    h, w = world.frame_size
    prompt = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    encode = []
    for _ in range(3):
        world.reset(prompt)
        encode.append(world.last_timings["encode"])
    for a in range(window):  # fill the context window
        world.step(a % world.num_actions)
    dyn, dec, total = [], [], []
    for i in range(args.frames):
        t0 = time.perf_counter()
        world.step(i % world.num_actions)
        total.append((time.perf_counter() - t0) * 1e3)
        dyn.append(world.last_timings["dynamics"])
        dec.append(world.last_timings["decode"])
    # baseline at the same full context
    d = world.config.dynamics
    history = torch.randint(0, d.vocab, (1, window - 1, d.tokens_per_frame))
    actions = world.action_codes[torch.arange(window - 2) % world.num_actions][None]
    full = []
    with torch.inference_mode():
        for i in range(max(3, args.frames // 4)):
            t0 = time.perf_counter()
            full_recompute_frame(world, history, actions, i % world.num_actions, args.steps)
            full.append((time.perf_counter() - t0) * 1e3)
    med = statistics.median
    print(f"world: {world.path or args.preset}  device: {world.device_description}  threads: {torch.get_num_threads()}  "
          f"MaskGIT steps: {args.steps}  context: {window} frames  tokens/frame: {d.tokens_per_frame}")
    print(f"| path | encode (per prompt) ms | dynamics ms | decode ms | total ms/frame | frames/s |")
    print(f"|---|---|---|---|---|---|")
    print(f"| cached (World.step) | {med(encode):.1f} | {med(dyn):.1f} | {med(dec):.1f} | {med(total):.1f} | {1000 / med(total):.1f} |")
    print(f"| full recompute | {med(encode):.1f} | - | - | {med(full):.1f} | {1000 / med(full):.1f} |")
    print(f"cached is {med(full) / med(total):.1f}x faster than full recompute")


if __name__ == "__main__":
    main()
