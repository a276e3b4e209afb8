"""A long headless play session: is memory flat after warm-up?

    python benchmarks/bench_long_session.py [--world NAME|PATH | --preset small] [--steps 5000]
                                            [--every 250] [--maskgit-steps N] [--history 512]

Plays the World the way the player's worker does (genie_play/player/worker.py): a snapshot is
kept before every step in a history of at most `--history` entries (Backspace rewinds through it),
and now and then the session rewinds a few frames, resets to the next prompt (clearing the
history), or opens the explorer (every action rolled out from the current frame). Actions are
random, from a fixed seed. Every `--every` steps it prints a row: resident memory now (VmRSS), the
peak so far (VmHWM), the change since the end of warm-up, and what the session has done.

Warm-up ends once the snapshot history has filled and every kind of operation has run at least
once; after that the player holds no more state, so RSS should stay flat. The verdict line says
whether it did (growth under 5% or 20 MB). Random weights (`--preset`) behave like a trained world
here: the memory held depends on the model's shape, not on its weights.
"""
from __future__ import annotations

import argparse
import collections
import resource
import sys
import time

import numpy as np
import torch

from genie_play.devices import set_threads
from genie_play.presets import preset
from genie_play.world import World, build_models


def memory_mb() -> tuple[float, float]:
    """(resident now, peak resident) of this process in MB (Linux /proc; elsewhere peak only)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024
    except (OSError, KeyError, ValueError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 if sys.platform != "darwin" else 1024**2)
        return float("nan"), peak


def make_world(args) -> tuple[World, str]:
    if args.world:
        world = World.load(args.world, device="cpu", precision=args.precision)
        return world, f"world {args.world}"
    torch.manual_seed(0)
    cfg = preset(args.preset)
    m = build_models(cfg)
    world = World(cfg, m["tokenizer"], m["dynamics"], m["lam"].action_codebook().detach(), lam=m["lam"],
                  device="cpu", precision=args.precision)
    return world, f"preset {args.preset} (random weights)"


def prompts_for(world: World) -> list:
    """The bundled prompt images, or random frames when there are none."""
    from genie_play.paths import bundled_prompts

    found = list(bundled_prompts())
    if found:
        return found
    h, w = world.frame_size
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(4)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", help="a world name or .safetensors path (default: --preset with random weights)")
    ap.add_argument("--preset", default="small")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--steps", type=int, default=5000, help="World.step calls in the session")
    ap.add_argument("--every", type=int, default=250, help="steps between table rows")
    ap.add_argument("--maskgit-steps", type=int, default=None, help="MaskGIT steps per frame (default: the world's)")
    ap.add_argument("--history", type=int, default=512, help="snapshots kept for rewinding (the player keeps 512)")
    ap.add_argument("--rewind-prob", type=float, default=0.04, help="chance per step of rewinding 1..10 frames")
    ap.add_argument("--reset-every", type=int, default=700, help="steps between resets to the next prompt")
    ap.add_argument("--explore-every", type=int, default=900, help="steps between explorer openings (0: never)")
    ap.add_argument("--explore-frames", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    set_threads(args.threads or None)

    world, what = make_world(args)
    if args.maskgit_steps:
        world.sampling = {"steps": args.maskgit_steps}
    prompts = prompts_for(world)
    rng = np.random.default_rng(args.seed)
    history: collections.deque = collections.deque(maxlen=args.history)
    counts = collections.Counter()
    rss0, _ = memory_mb()
    print(f"# long session: {what}, {world.device_description}, MaskGIT steps {world.sampling['steps']}, "
          f"history {args.history}, {args.steps} steps; RSS before play {rss0:.0f} MB")
    print(f"{'step':>6} {'elapsed s':>9} {'frames/s':>8} {'RSS MB':>8} {'peak MB':>8} {'vs warm':>8} "
          f"{'history':>7} {'resets':>6} {'rewinds':>7} {'explores':>8}")

    world.seed(args.seed)
    world.reset(prompts[0])
    counts["resets"] += 1
    start = window_start = time.perf_counter()
    window_steps, warm_rss, warm_step, rows = 0, None, None, []
    step = 0
    while step < args.steps:
        if history and rng.random() < args.rewind_prob:  # Backspace, held for a few frames
            for _ in range(int(rng.integers(1, 11))):
                if not history:
                    break
                world.restore(history.pop())
            counts["rewinds"] += 1
        history.append(world.snapshot())  # what the worker keeps before every step
        world.step(int(rng.integers(0, world.num_actions)))
        step += 1
        window_steps += 1
        if args.explore_every and step % args.explore_every == 0:
            world.explore(num_frames=args.explore_frames, seed=step)
            counts["explores"] += 1
        if args.reset_every and step % args.reset_every == 0:
            world.seed(args.seed + step)
            world.reset(prompts[counts["resets"] % len(prompts)])
            history.clear()
            counts["resets"] += 1
        warmed = (len(history) == args.history or step >= 2 * args.history) and counts["rewinds"] > 0 \
            and counts["resets"] > 1 and (counts["explores"] > 0 or not args.explore_every)
        if warm_rss is None and warmed:
            warm_rss, warm_step = memory_mb()[0], step
        if step % args.every == 0 or step == args.steps:
            now = time.perf_counter()
            rss, peak = memory_mb()
            fps = window_steps / max(1e-9, now - window_start)
            delta = f"{rss - warm_rss:+8.1f}" if warm_rss is not None else f"{'warming':>8}"
            print(f"{step:>6} {now - start:>9.1f} {fps:>8.1f} {rss:>8.1f} {peak:>8.1f} {delta} {len(history):>7} "
                  f"{counts['resets']:>6} {counts['rewinds']:>7} {counts['explores']:>8}", flush=True)
            rows.append((step, rss, peak))
            window_start, window_steps = now, 0

    if warm_rss is None:
        print("# verdict: the session never warmed up (run more --steps than about 2 x --history)")
        return 0
    after = [(s, rss, peak) for s, rss, peak in rows if s >= warm_step]
    final_rss, final_peak = rows[-1][1], rows[-1][2]
    top = max(rss for _, rss, _ in after)
    growth = top - warm_rss
    flat = growth < max(20.0, 0.05 * warm_rss)
    print(f"# warm-up ended at step {warm_step} with RSS {warm_rss:.1f} MB; after it: highest RSS {top:.1f} MB "
          f"({growth:+.1f} MB), final RSS {final_rss:.1f} MB, peak {final_peak:.1f} MB")
    print(f"# verdict: memory {'flat' if flat else 'GROWS'} after warm-up (limit: +5% or +20 MB)")
    return 0 if flat else 1


if __name__ == "__main__":
    sys.exit(main())
