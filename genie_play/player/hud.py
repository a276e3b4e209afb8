"""The HUD: the legend (key + label per action), the status lines, messages, and drawing helpers.

`hud_lines()` builds the text as plain data (testable without a window); `draw_panel()` paints it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pygame

BG = (18, 18, 22)
PANEL_BG = (28, 28, 34)
TEXT = (225, 225, 230)
DIM = (140, 140, 150)
ACCENT = (255, 200, 90)
REC = (235, 60, 60)
ERROR = (255, 110, 110)
OK = (140, 220, 140)
PANEL_WIDTH = 300


@dataclass
class HudState:
    """Everything the panel shows, as plain values."""

    world_name: str = ""
    device: str = ""
    plan: str = ""  # engine.Plan.short(): how frames are computed
    legend: list[tuple[str, str]] = field(default_factory=list)  # (keys, label) per action
    step: int = 0
    last_action: int | None = None
    last_label: str = ""
    world_fps: float | None = None  # frames/s the world makes (from its time per frame); None: none made yet
    world_ms: float | None = None  # ms per generated frame
    shown_fps: float | None = None  # new frames reaching the screen per second; None: fewer than 2 lately
    timings: dict = field(default_factory=dict)  # ms: encode / dynamics / decode
    steps: int | None = None  # MaskGIT steps
    temperature: float | None = None
    seed: int = 0
    prompt: str = ""
    queued: int = 0
    recording: bool = False
    rec_frames: int = 0
    rec_format: str = "gif"
    repeat_paused: bool = False
    preparing: bool = True


def action_text(action: int, label: str) -> str:
    """"3 jump" for an action and its label; just the label ("no action") for NO_ACTION (-1)."""
    return label if action < 0 else f"{action} {label}".strip()


def hud_lines(s: HudState) -> list[tuple[str, tuple[int, int, int]]]:
    """Status text of the panel, one (text, colour) per line."""
    lines: list[tuple[str, tuple[int, int, int]]] = []
    lines.append((f"{s.world_name or 'world'}  [{s.device or '...'}]", ACCENT))
    lines.append((f"prompt: {s.prompt}", DIM))
    last = "-" if s.last_action is None else action_text(s.last_action, s.last_label)
    lines.append((f"step {s.step}   last: {last}", TEXT))
    lines.append((rate_line(s), TEXT))
    t = s.timings
    if t:
        split = " / ".join(f"{t.get(k, 0.0):.0f}" for k in ("encode", "dynamics", "decode"))
        lines.append((f"enc/dyn/dec {split} ms", DIM))
    if s.plan:
        lines.append((f"engine: {s.plan}", DIM))
    steps = "?" if s.steps is None else str(s.steps)
    temp = "?" if s.temperature is None else f"{s.temperature:.2f}"
    lines.append((f"MaskGIT steps {steps} (-/=)  temp {temp} ([/])", TEXT))
    lines.append((f"seed {s.seed}   queued {s.queued}" + ("   repeat PAUSED" if s.repeat_paused else ""), DIM))
    if s.recording:
        lines.append((f"REC {s.rec_format.upper()}  {s.rec_frames} frames  (G stops)", REC))
    return lines


def rate_line(s: HudState) -> str:
    """The world's frame rate (from its time per frame, so tapping keys never reads 0) and,
    separately, how many new frames reached the screen per second."""
    if s.world_fps is None:
        world = "world -- fps"
    else:
        world = f"world {s.world_fps:.1f} fps ({s.world_ms:.0f} ms)"
    shown = "--" if s.shown_fps is None else f"{s.shown_fps:.1f}"
    return f"{world}   shown {shown}/s"


CONTROLS_HELP = [
    "Bksp back  R reset  Space pause repeat",
    "G record GIF (Shift+G: MP4)  P save PNG",
    "O next prompt  E sketch a level",
    "L explore actions  H hide HUD  Esc quit",
]


def array_to_surface(frame: np.ndarray) -> pygame.Surface:
    """(H, W, 3) uint8 -> a pygame Surface (copied, so the array may change later)."""
    frame = np.ascontiguousarray(frame, dtype=np.uint8)
    h, w = frame.shape[:2]
    return pygame.image.frombuffer(frame.tobytes(), (w, h), "RGB")


def fit_rect(src_size: tuple[int, int], area: pygame.Rect) -> pygame.Rect:
    """The largest rect of src's aspect ratio centred in area (integer scale when it fits)."""
    sw, sh = src_size
    scale = min(area.width / sw, area.height / sh)
    if scale >= 1 and int(scale) >= 0.85 * scale:  # whole-pixel scale when it costs little space
        scale = int(scale)
    w, h = max(1, int(sw * scale)), max(1, int(sh * scale))
    return pygame.Rect(area.x + (area.width - w) // 2, area.y + (area.height - h) // 2, w, h)


def blit_scaled(target: pygame.Surface, src: pygame.Surface, rect: pygame.Rect, smooth: bool) -> None:
    """Upscale src into rect: nearest neighbour (crisp pixels) or smooth (bilinear)."""
    if smooth:
        scaled = pygame.transform.smoothscale(src, rect.size)  # src is 24-bit RGB (array_to_surface)
    else:
        scaled = pygame.transform.scale(src, rect.size)
    target.blit(scaled, rect.topleft)


def draw_text(target: pygame.Surface, font: pygame.font.Font, text: str, pos: tuple[int, int],
              colour=TEXT, max_width: int | None = None) -> int:
    """Draw one line (clipped with '...' to max_width); returns the line height."""
    if max_width is not None and font.size(text)[0] > max_width:
        while text and font.size(text + "...")[0] > max_width:
            text = text[:-1]
        text += "..."
    target.blit(font.render(text, True, colour), pos)
    return font.get_linesize()


def draw_panel(target: pygame.Surface, rect: pygame.Rect, font: pygame.font.Font, state: HudState,
               message: str = "", message_colour=TEXT) -> None:
    """The side panel: status, legend (key + label per action), controls, the latest message."""
    pygame.draw.rect(target, PANEL_BG, rect)
    x, y, width = rect.x + 10, rect.y + 8, rect.width - 20
    for text, colour in hud_lines(state):
        y += draw_text(target, font, text, (x, y), colour, width)
    y += 6
    y += draw_text(target, font, "keys   action", (x, y), DIM, width)
    keys_width = min(width // 2, max([font.size(keys)[0] for keys, _ in state.legend] + [60]))
    for index, (keys, label) in enumerate(state.legend):
        colour = ACCENT if index == state.last_action else TEXT
        draw_text(target, font, keys, (x, y), colour, keys_width)
        y += draw_text(target, font, f"{index}  {label}", (x + keys_width + 6, y), colour, width - keys_width - 6)
    y += 6
    for text in CONTROLS_HELP:
        y += draw_text(target, font, text, (x, y), DIM, width)
    if message:
        y += 6
        for part in wrap(font, message, width)[:4]:
            y += draw_text(target, font, part, (x, y), message_colour, width)


def wrap(font: pygame.font.Font, text: str, width: int) -> list[str]:
    """Greedy word wrap to a pixel width (long paths are cut by draw_text)."""
    lines, line = [], ""
    for word in text.split():
        trial = f"{line} {word}".strip()
        if line and font.size(trial)[0] > width:
            lines.append(line)
            line = word
        else:
            line = trial
    return lines + ([line] if line else [])


def draw_banner(target: pygame.Surface, rect: pygame.Rect, font: pygame.font.Font, text: str,
                colour=TEXT) -> None:
    """A message strip across the bottom of rect (used when the HUD is hidden or for notices)."""
    lines = wrap(font, text, rect.width - 16)[:3]
    height = font.get_linesize() * len(lines) + 8
    strip = pygame.Surface((rect.width, height), pygame.SRCALPHA)
    strip.fill((0, 0, 0, 170))
    target.blit(strip, (rect.x, rect.bottom - height))
    y = rect.bottom - height + 4
    for line in lines:
        y += draw_text(target, font, line, (rect.x + 8, y), colour, rect.width - 16)


def draw_rec_dot(target: pygame.Surface, rect: pygame.Rect, font: pygame.font.Font, blink_on: bool) -> None:
    """The REC indicator in the frame's corner (also visible with the HUD hidden)."""
    if blink_on:
        pygame.draw.circle(target, REC, (rect.x + 14, rect.y + 14), 7)
    draw_text(target, font, "REC", (rect.x + 26, rect.y + 6), REC)
