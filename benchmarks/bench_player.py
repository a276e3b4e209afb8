"""Frames per second in the real player against the same world alone (issue 7).

    python benchmarks/bench_player.py [--world coinrun] [--seconds 12] [--rounds 2]

The player (genie_play.player.App, off screen with SDL's dummy driver) is driven as a user drives
it: one action key held down, frames generated back to back. Rows, timed in turn for `--rounds`
rounds (this VM's speed drifts, so the ratios in one run are what to read):
- the world alone, stepping on a background thread while the main thread sleeps (the ceiling);
- the player as shipped (redraws at 60 Hz while idle, at `busy_hz` = 4 while a frame is being
  generated, woken at once by each new frame);
- the player redrawing at 60 Hz throughout (busy_hz = 60: what it did before), whose UI thread
  preempts the world's threads on a 2-core machine.
Each row prints frames/s and the world's own median dynamics/decode ms per frame.

Every row loads its world on the thread that runs it, and the main thread runs no torch at all, as
in `genie-play`: once one thread has run an OpenMP parallel region, GNU OpenMP counts its idle
threads too and a region started from any other thread spins only briefly before sleeping
(measured here: a 64x256x1024 matmul on a background thread 587 us instead of ~400 us).
"""
from __future__ import annotations

import argparse
import os
import statistics
import threading
import time

os.environ["SDL_VIDEODRIVER"] = "dummy"  # before pygame is imported
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

import pygame  # noqa: E402

from genie_play.paths import bundled_prompts  # noqa: E402
from genie_play.player.app import App, PlayOptions  # noqa: E402
from genie_play.world import World  # noqa: E402


def world_alone(name: str, prompt, seconds: float) -> dict:
    """World.step in a loop on a background thread (as the player's worker runs it)."""
    out: dict = {}

    def run() -> None:
        world = World.load(name)
        world.reset(prompt)
        timings, t0, frames = [], time.monotonic(), 0
        while time.monotonic() - t0 < seconds:
            world.step(3)
            timings.append(world.last_timings)
            frames += 1
        out.update(fps=frames / (time.monotonic() - t0), timings=timings, device=world.device_description)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return out


def player(name: str, prompt_path, seconds: float, busy_hz: float) -> dict:
    """The App with key 3 held for `seconds`; frames/s and the world's timings of those frames."""
    app = App(lambda: World.load(name), [prompt_path], PlayOptions(world_name=name, seed=0, busy_hz=busy_hz)).start()
    timings: list = []
    on_result = app._on_result

    def record(result, now):
        if result.kind == "frame" and result.cause == "step":
            timings.append(result.timings)
        return on_result(result, now)

    app._on_result = record
    try:
        while not app.settled():
            app.tick()
        pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_3, mod=0, unicode="3"))
        t0, start = time.monotonic(), app.state.step
        while time.monotonic() - t0 < seconds:
            app.tick()
        fps = (app.state.step - start) / (time.monotonic() - t0)
    finally:
        app.close()
    return {"fps": fps, "timings": timings}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", default="coinrun")
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    prompt_path = next(p for p in bundled_prompts() if p.name.startswith("coinrun"))
    rows = {"world alone (background thread)": lambda: world_alone(args.world, prompt_path, args.seconds),
            "player (busy_hz 4, the default)": lambda: player(args.world, prompt_path, args.seconds, 4.0),
            "player redrawing at 60 Hz throughout": lambda: player(args.world, prompt_path, args.seconds, 60.0)}
    results: dict[str, list] = {name: [] for name in rows}
    for _ in range(args.rounds):
        for name, run in rows.items():
            results[name].append(run())
    device = results["world alone (background thread)"][0]["device"]
    print(f"world: {args.world} ({device}), 25 MaskGIT steps, one key held, "
          f"{args.seconds:.0f} s per row and round, {args.rounds} rounds")
    print("| row | frames/s per round | dynamics ms (median) | decode ms (median) |")
    print("|---|---|---|---|")
    for name, runs in results.items():
        timings = [t for r in runs for t in r["timings"] if t]
        dyn = statistics.median(t["dynamics"] for t in timings) if timings else float("nan")
        dec = statistics.median(t["decode"] for t in timings) if timings else float("nan")
        rates = " / ".join(f"{r['fps']:.1f}" for r in runs)
        print(f"| {name} | {rates} | {dyn:.0f} | {dec:.1f} |")


if __name__ == "__main__":
    main()
