"""Screenshot and short GIF of the real player, rendered off screen (SDL's dummy video driver).

    python docs/make_screenshot.py [--world coinrun] [--prompt PATH]  -> docs/player.png, docs/player.gif

The player runs exactly as `genie-play` does (same App, same world, same HUD); key presses are
posted as pygame events, and the window's surface is saved when every frame they asked for is
shown. No X server needed.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ["SDL_VIDEODRIVER"] = "dummy"  # before pygame is imported
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

import pygame  # noqa: E402

DOCS = Path(__file__).resolve().parent
# (key, frames held): the bundled world's Right, Up (a tap: the world coasts until it lands), Left
PLAY = [("RIGHT", 6), ("UP", 1), ("LEFT", 4)]


def pump(app, condition, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not app.tick():
            sys.exit("the player quit")
        if condition():
            return
    sys.exit("timed out waiting for the player")


def tap(key: int) -> None:
    for kind in (pygame.KEYDOWN, pygame.KEYUP):
        pygame.event.post(pygame.event.Event(kind, key=key, mod=0, unicode=""))


def main() -> None:
    from genie_play import World
    from genie_play.paths import bundled_prompts
    from genie_play.player.app import App, PlayOptions

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", default="coinrun")
    ap.add_argument("--prompt", help="prompt image (default: the first bundled CoinRun prompt)")
    args = ap.parse_args()
    prompt = args.prompt or next(p for p in bundled_prompts() if p.name.startswith("coinrun"))
    with tempfile.TemporaryDirectory() as tmp:
        options = PlayOptions(world_name=args.world, seed=0, record_dir=Path(tmp), record_fps=4)
        app = App(lambda: World.load(args.world), [prompt], options).start()
        try:
            pump(app, app.settled)
            tap(pygame.K_g)  # start recording
            for name, frames in PLAY:
                key, first = getattr(pygame, f"K_{name}"), app.state.step
                pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=key, mod=0, unicode=""))
                pump(app, lambda: app.state.step >= first + frames)
                pygame.event.post(pygame.event.Event(pygame.KEYUP, key=key, mod=0, unicode=""))
                pump(app, app.settled)  # the frame queued behind the last one, then the coasting
            for _ in range(3):  # let the HUD show the last frame's timing
                app.tick()
            pygame.image.save(app.screen, str(DOCS / "player.png"))
            tap(pygame.K_g)  # stop: the GIF is written
            pump(app, lambda: app.settled() and not app.recorder.active)
            app.wait_for_files()
        finally:
            app.close()
        gif = max(Path(tmp).glob("*.gif"), key=lambda p: p.stat().st_mtime)
        shutil.copyfile(gif, DOCS / "player.gif")
    print(f"wrote {DOCS / 'player.png'} and {DOCS / 'player.gif'}")


if __name__ == "__main__":
    main()
