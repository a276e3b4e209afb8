"""Sketch mode (E in the player): draw a level on a canvas the size of the world's frame, then play it.

The canvas (canvas.Canvas) is shown upscaled beside a tool column: tools, brush sizes, the
world's palette (the most common colours of the frames it decoded) and a hue/lightness field from
which any colour can be picked; a right click picks the colour under the pointer. While the
canvas is open every key and click belongs to it: nothing reaches the world.

Keys: B brush, L line, R rectangle (filled), F fill, X eraser (paints the world's most common
colour), 1-4 brush size, Ctrl+Z undo, Ctrl+Y (or Ctrl+Shift+Z) redo, C clear to a blank canvas,
V the current frame again, P the next bundled prompt, S save a PNG next to the recordings, Enter
play from the drawing, Esc leave without changing anything. `handle_event` says which of these
ended the mode ("play" / "leave"); the player does the rest.
"""
from __future__ import annotations

import colorsys
from collections.abc import Callable, Sequence

import numpy as np
import pygame

from .canvas import Canvas, Colour
from .hud import ACCENT, BG, DIM, ERROR, PANEL_BG, TEXT, array_to_surface, blit_scaled, draw_text, fit_rect

TOOLS = (("brush", "b", "Brush"), ("line", "l", "Line"), ("rect", "r", "Rect"), ("fill", "f", "Fill"),
         ("eraser", "x", "Eraser"))
SIZES = (1, 2, 3, 5)
COLUMN = 170  # width of the tool column
HELP = "Enter play it   Esc leave   Ctrl+Z/Y undo/redo   C blank  V frame  P prompt   S save PNG"
_BASICS: tuple[Colour, ...] = ((0, 0, 0), (255, 255, 255))


def picker_colour(u: float, v: float) -> Colour:
    """The colour at (u, v) in [0, 1]^2 of the picker field: hue across, lightness down."""
    r, g, b = colorsys.hls_to_rgb(min(max(u, 0.0), 1.0), 1.0 - min(max(v, 0.0), 1.0), 1.0)
    return int(round(r * 255)), int(round(g * 255)), int(round(b * 255))


def _picker_surface(width: int, height: int) -> pygame.Surface:
    us, vs = (np.arange(width) + 0.5) / width, (np.arange(height) + 0.5) / height
    field = np.array([[picker_colour(u, v) for u in us] for v in vs], np.uint8)
    return array_to_surface(field)


class SketchView:
    """State, input and drawing of sketch mode. `load_prompt()` returns the next bundled prompt at
    the frame size (or raises a GenieError); `save(pixels)` writes a PNG off the UI thread."""

    def __init__(self, frame: np.ndarray, palette: Sequence[Colour], load_prompt: Callable[[], np.ndarray],
                 save: Callable[[np.ndarray], None]):
        self.frame = np.array(frame, dtype=np.uint8, copy=True)
        self.canvas = Canvas(self.frame)  # start by painting over what the world shows
        self.palette: list[Colour] = list(dict.fromkeys([*palette, *_BASICS]))
        self.background: Colour = self.palette[0]  # the world's most common colour: blank and eraser
        self.colour: Colour = self.palette[1] if len(self.palette) > 1 else self.palette[0]
        self.tool, self.size = "brush", 2
        self._load_prompt, self._save = load_prompt, save
        self.message, self.message_colour = "sketch: draw, then Enter to play it", ACCENT
        self._drag: tuple[int, int] | None = None  # where the left button went down (canvas pixels)
        self._last: tuple[int, int] | None = None  # the pointer's last canvas pixel while dragging
        self._hits: list[tuple[pygame.Rect, Callable[[], None]]] = []
        self._picker: tuple[pygame.Rect, pygame.Surface] | None = None

    # ---- layout ----------------------------------------------------------------------------------
    def layout(self, area: pygame.Rect, line: int = 18) -> pygame.Rect:
        """The screen rect of the canvas in `area` (the tool column is to its right)."""
        top = area.y + 2 * line + 8
        room = pygame.Rect(area.x + 8, top, max(16, area.width - COLUMN - 24), max(16, area.bottom - top - line - 12))
        return fit_rect(self.canvas.size, room)

    def _area(self) -> pygame.Rect:
        return pygame.display.get_surface().get_rect()

    def canvas_point(self, pos: tuple[int, int], clip: bool = False) -> tuple[int, int] | None:
        """Screen position -> canvas pixel (None outside the canvas unless clip)."""
        rect = self.layout(self._area())
        w, h = self.canvas.size
        x, y = (pos[0] - rect.x) * w // rect.width, (pos[1] - rect.y) * h // rect.height
        if clip:
            return min(max(x, 0), w - 1), min(max(y, 0), h - 1)
        return (x, y) if self.canvas.contains(x, y) else None

    def screen_pos(self, x: int, y: int) -> tuple[int, int]:
        """The screen position of the centre of canvas pixel (x, y) (for scripts and tests)."""
        rect = self.layout(self._area())
        w, h = self.canvas.size
        return rect.x + int((x + 0.5) * rect.width / w), rect.y + int((y + 0.5) * rect.height / h)

    # ---- input -----------------------------------------------------------------------------------
    def _say(self, text: str, colour=TEXT) -> None:
        self.message, self.message_colour = text, colour

    def handle_event(self, event: pygame.event.Event) -> str | None:
        """Handle one event. Returns "play" (Enter: play the drawing), "leave" (Esc) or None."""
        if event.type == pygame.KEYDOWN:
            return self._key(event)
        if event.type == pygame.MOUSEBUTTONDOWN:
            self._press(event.pos, getattr(event, "button", 1))
        elif event.type == pygame.MOUSEMOTION and self._drag is not None:
            self._move(event.pos)
        elif event.type == pygame.MOUSEBUTTONUP and getattr(event, "button", 1) == 1:
            self._release(event.pos)
        return None

    def _key(self, event: pygame.event.Event) -> str | None:
        key = pygame.key.name(event.key).lower()
        mod = getattr(event, "mod", 0)
        if mod & pygame.KMOD_CTRL:
            if key == "z" and not mod & pygame.KMOD_SHIFT:
                self._say("undone" if self.canvas.undo() else "nothing to undo", DIM)
            elif key in ("y", "z"):
                self._say("redone" if self.canvas.redo() else "nothing to redo", DIM)
            return None
        if key in ("return", "enter"):
            self._finish_drag(None)
            return "play"
        if key == "escape":
            return "leave"
        tools = {k: name for name, k, _ in TOOLS}
        if key in tools:
            self.tool = tools[key]
        elif key in ("1", "2", "3", "4"):
            self.size = SIZES[int(key) - 1]
        elif key == "c":
            self.canvas.clear(self.background)
            self._say("blank canvas (Ctrl+Z brings the picture back)", DIM)
        elif key == "v":
            self.canvas.replace(self.frame)
            self._say("the current frame", DIM)
        elif key == "p":
            self._next_prompt()
        elif key == "s":
            self._save(self.canvas.pixels.copy())
            self._say("saving the drawing as a PNG...", DIM)
        return None

    def _next_prompt(self) -> None:
        try:
            self.canvas.replace(self._load_prompt())
            self._say("a bundled prompt (P for the next one)", DIM)
        except Exception as err:  # noqa: BLE001 -- a bad prompt file: say so, keep the drawing
            self._say(f"cannot load a prompt: {err}", ERROR)

    def _press(self, pos: tuple[int, int], button: int) -> None:
        point = self.canvas_point(pos)
        if point is None:
            if button == 1:
                self._click_column(pos)
            return
        if button == 3:  # eyedropper
            self.colour = tuple(int(v) for v in self.canvas.pixels[point[1], point[0]])
            self._say(f"colour {self.colour} picked", DIM)
            return
        if button != 1:
            return
        if self.tool == "fill":
            self.canvas.fill(point, self.colour)
            return
        self._drag = self._last = point
        if self.tool in ("brush", "eraser"):
            self.canvas.begin()
            self.canvas.dab(point, point, self.size, self._paint())

    def _paint(self) -> Colour:
        return self.background if self.tool == "eraser" else self.colour

    def _move(self, pos: tuple[int, int]) -> None:
        point = self.canvas_point(pos, clip=True)
        if self.tool in ("brush", "eraser"):
            self.canvas.dab(self._last, point, self.size, self._paint())
        self._last = point

    def _release(self, pos: tuple[int, int]) -> None:
        if self._drag is not None:
            self._finish_drag(self.canvas_point(pos, clip=True))

    def _finish_drag(self, point: tuple[int, int] | None) -> None:
        start, self._drag = self._drag, None
        if start is None:
            return
        point = point or self._last
        if self.tool == "line":
            self.canvas.line(start, point, self.size, self.colour)
        elif self.tool == "rect":
            self.canvas.rect(start, point, self.colour)
        else:
            if point != self._last:
                self.canvas.dab(self._last, point, self.size, self._paint())
            self.canvas.end()
        self._last = None

    def _click_column(self, pos: tuple[int, int]) -> None:
        for rect, action in self._hits:
            if rect.collidepoint(pos):
                action()
                return
        if self._picker is not None and self._picker[0].collidepoint(pos):
            rect = self._picker[0]
            self.colour = picker_colour((pos[0] - rect.x + 0.5) / rect.width, (pos[1] - rect.y + 0.5) / rect.height)

    # ---- drawing ---------------------------------------------------------------------------------
    def draw(self, target: pygame.Surface, area: pygame.Rect, font: pygame.font.Font, smooth: bool = False) -> None:
        target.fill(BG, area)
        line = font.get_linesize()
        x = area.x + 10
        draw_text(target, font, f"sketch mode  {self.canvas.size[0]}x{self.canvas.size[1]}", (x, area.y + 6), ACCENT,
                  area.width - 20)
        draw_text(target, font, HELP, (x, area.y + 6 + line), DIM, area.width - 20)
        rect = self.layout(area)
        pixels = self._preview()
        blit_scaled(target, array_to_surface(pixels), rect, smooth)
        pygame.draw.rect(target, DIM, rect.inflate(2, 2), 1)
        self._draw_column(target, pygame.Rect(rect.right + 16, rect.y, COLUMN, area.bottom - rect.y), font)
        if self.message:
            draw_text(target, font, self.message, (x, area.bottom - line - 4), self.message_colour, area.width - 20)

    def _preview(self) -> np.ndarray:
        """The canvas with the line or rectangle being dragged drawn on a copy."""
        if self._drag is None or self.tool not in ("line", "rect"):
            return self.canvas.pixels
        ghost = Canvas(self.canvas.pixels, history=1)
        if self.tool == "line":
            ghost.line(self._drag, self._last, self.size, self.colour)
        else:
            ghost.rect(self._drag, self._last, self.colour)
        return ghost.pixels

    def _draw_column(self, target: pygame.Surface, col: pygame.Rect, font: pygame.font.Font) -> None:
        pygame.draw.rect(target, PANEL_BG, col)
        self._hits = []
        x, y, line = col.x + 6, col.y + 4, font.get_linesize()

        def button(text: str, selected: bool, action: Callable[[], None], width: int) -> pygame.Rect:
            rect = pygame.Rect(x, y, width, line + 2)
            pygame.draw.rect(target, ACCENT if selected else DIM, rect, 1)
            draw_text(target, font, text, (rect.x + 3, rect.y + 1), ACCENT if selected else TEXT, width - 4)
            self._hits.append((rect, action))
            return rect

        for i, (name, key, title) in enumerate(TOOLS):
            x = col.x + 6 + (i % 2) * 80
            button(f"{key.upper()} {title}", self.tool == name, lambda n=name: setattr(self, "tool", n), 76)
            y += (line + 5) if i % 2 else 0
        y += line + 8
        for i, size in enumerate(SIZES):
            x = col.x + 6 + i * 40
            button(f"{size}px", self.size == size, lambda s=size: setattr(self, "size", s), 36)
        y += line + 10
        x = col.x + 6
        swatch = 24
        for i, colour in enumerate(self.palette):
            rect = pygame.Rect(col.x + 6 + (i % 6) * (swatch + 2), y + (i // 6) * (swatch + 2), swatch, swatch)
            pygame.draw.rect(target, colour, rect)
            if colour == self.colour:
                pygame.draw.rect(target, ACCENT, rect.inflate(4, 4), 2)
            self._hits.append((rect, lambda c=colour: setattr(self, "colour", c)))
        y += ((len(self.palette) + 5) // 6) * (swatch + 2) + 6
        picker = pygame.Rect(col.x + 6, y, 6 * (swatch + 2) - 2, 60)
        if self._picker is None or self._picker[0].size != picker.size:
            self._picker = (picker, _picker_surface(*picker.size))
        self._picker = (picker, self._picker[1])
        target.blit(self._picker[1], picker.topleft)
        y = picker.bottom + 8
        pygame.draw.rect(target, self.colour, pygame.Rect(col.x + 6, y, 40, line))
        draw_text(target, font, "colour", (col.x + 52, y), TEXT)
        draw_text(target, font, "right click: pick", (col.x + 6, y + line + 4), DIM, col.width - 12)
