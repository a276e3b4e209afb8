"""The player's settings (PlayOptions) and its window (open_window). No torch."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")  # before pygame is imported: no banner
import pygame  # noqa: E402

from ..errors import GenieError  # noqa: E402

NO_DISPLAY = ("no display for the player window ({why}): play headless with `genie-play rollout IMAGE "
              "--actions 0,3,3,7 --out run.gif`, or run the player under an X server (`xvfb-run genie-play ...`)")


@dataclass
class PlayOptions:
    world_name: str = "world"
    seed: int = 0
    steps: int | None = None  # MaskGIT steps (None: the world's default)
    temperature: float | None = None
    fps_cap: float | None = None  # most generated frames per second while a key is held
    scale: int = 8  # initial window scale of the frame
    smooth: bool = False  # smooth instead of nearest-neighbour upscaling
    record_dir: Path | None = None  # recordings, PNGs and sketches; None: the user's pictures folder
    record_format: str = "gif"  # what G records ("gif" | "mp4"); Shift+G records the other one
    record_fps: float | None = None  # None: the real timing of the frames
    record_scale: int = 4
    captions: bool = True  # action labels under the GIF frames
    explore_frames: int = 4
    config_dir: Path | None = None  # labels folder root (tests); None: the user config dir
    max_queued: int = 8  # key presses that may wait while a frame is generated
    repeat_delay: float = 0.3  # seconds a key is held before it repeats
    coast: int | None = None  # frames played with no action after the last key is released (None:
    # session.DEFAULT_COAST_FRAMES if the world learned "no action" (World.learned_no_action), else 0)
    redraw_hz: int = 60
    busy_hz: float = 4.0  # redraws while a frame is being generated, unless something happens
    message_seconds: float = 6.0


def open_window(size: tuple[int, int], title: str) -> pygame.Surface:
    """Open the resizable window, or raise a one-line GenieError when there is no display."""
    if (sys.platform.startswith("linux") and not os.environ.get("SDL_VIDEODRIVER")
            and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY")):
        raise GenieError(NO_DISPLAY.format(why="DISPLAY is not set"))
    try:
        pygame.display.init()
        pygame.font.init()
        screen = pygame.display.set_mode(size, pygame.RESIZABLE)
    except pygame.error as err:
        raise GenieError(NO_DISPLAY.format(why=str(err).splitlines()[0] if str(err) else "SDL error")) from err
    pygame.display.set_caption(title)
    return screen
