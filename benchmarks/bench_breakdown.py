"""Where one frame of play goes: World.step timed in place, part by part.

    python benchmarks/bench_breakdown.py [--world coinrun] [--precision auto] [--frames 10] [--rounds 3]

Wraps the public methods of the World's runtime (engine.runtime.Runtime) with timers (nothing else
changes) and prints, per round of `--frames` frames at a full context and 25 MaskGIT steps, disjoint
parts of a frame: the MaskGIT rounds (all of them in one C call on the C route), the record pass
(the final tokens' keys/values; part of that call on the C route), stacking the contexts, the
decoder, and the rest of World.step.
"""
from __future__ import annotations

import argparse
import collections
import functools
import time

import numpy as np

from genie_play.devices import set_threads
from genie_play.paths import bundled_prompts
from genie_play.world import World


def wrap(obj, name: str, label: str, totals: dict[str, float]) -> None:
    """Replace obj.name by a version that adds its wall time to totals[label]."""
    inner = getattr(obj, name)

    @functools.wraps(inner)
    def timed(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            totals[label] += time.perf_counter() - t0

    setattr(obj, name, timed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", default="coinrun")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--frames", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    set_threads()
    world = World.load(args.world, device="cpu", precision=args.precision)
    totals: dict[str, float] = collections.defaultdict(float)
    for name in ("sample", "record", "context", "decode"):
        wrap(world.runtime, name, name, totals)
    prompt = next((p for p in bundled_prompts() if p.name.startswith("coinrun")), None)
    world.reset(prompt if prompt is not None else np.zeros((*world.frame_size, 3), np.uint8))
    for i in range(world.config.dynamics.st.window):  # fill the context window
        world.step(i % world.num_actions)
    print(f"world: {args.world}  plan: {world.plan.summary()}, {world.sampling['steps']} MaskGIT steps, full context")
    print("| round | ms/frame | MaskGIT rounds | record pass | context stacking | decode | other |")
    print("|---|---|---|---|---|---|---|")
    for r in range(args.rounds):
        totals.clear()
        t0 = time.perf_counter()
        for i in range(args.frames):
            world.step((r + i) % world.num_actions)
        frame = (time.perf_counter() - t0) / args.frames * 1e3
        ms = collections.defaultdict(float, {k: v / args.frames * 1e3 for k, v in totals.items()})
        other = frame - ms["sample"] - ms["record"] - ms["context"] - ms["decode"]
        print(f"| {r + 1} | {frame:.1f} | {ms['sample']:.1f} | {ms['record']:.1f} | {ms['context']:.1f} | {ms['decode']:.1f} | {other:.1f} |")

if __name__ == "__main__":
    main()
