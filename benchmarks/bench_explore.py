"""The action explorer's batch of 8 against 8 sequential rollouts (issue 6), in one run.

    python benchmarks/bench_explore.py [--world coinrun | --preset small] [--frames 4] [--steps 25]

Prints ms for one rollout, for 8 sequential rollouts and for the batched explore, the ratio of the
batch to one rollout, and whether the frames are identical.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from genie_play.devices import set_threads
from bench_play import make_world  # same folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", default="coinrun", help="world name or path (default: the bundled coinrun)")
    ap.add_argument("--preset", help="use random weights of this preset instead of a world (e.g. small)")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    args.engine = "fast"
    set_threads()
    world = make_world(args, args.precision)
    world.sampling = {"steps": args.steps}
    h, w = world.frame_size
    prompt = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    one, seq, batch, same = [], [], [], True
    for r in range(args.repeats):
        t0 = time.perf_counter()
        singles = [world.rollout(prompt, [a] * args.frames, seed=r)[1:] for a in range(world.num_actions)]
        seq.append((time.perf_counter() - t0) * 1e3)
        t0 = time.perf_counter()
        world.rollout(prompt, [0] * args.frames, seed=r)
        one.append((time.perf_counter() - t0) * 1e3)
        world.seed(r)
        world.reset(prompt)
        t0 = time.perf_counter()
        grid = world.explore(args.frames)
        batch.append((time.perf_counter() - t0) * 1e3)
        same &= all(np.array_equal(grid[a], singles[a]) for a in range(world.num_actions))
    med = statistics.median
    print(f"world: {args.preset or world.path}  device: {world.device_description}  frames per action: {args.frames}  "
          f"MaskGIT steps: {args.steps}")
    print("| what | ms (median) | x one rollout |")
    print("|---|---|---|")
    print(f"| one rollout | {med(one):.0f} | 1.0 |")
    print(f"| 8 sequential rollouts | {med(seq):.0f} | {med(seq) / med(one):.1f} |")
    print(f"| batched explore (8 actions) | {med(batch):.0f} | {med(batch) / med(one):.1f} |")
    print(f"identical frames: {same}")


if __name__ == "__main__":
    main()
