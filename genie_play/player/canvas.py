"""The sketch canvas as plain data (numpy, no pygame, no torch), and the world's palette.

A `Canvas` is exactly the world's frame size, so a drawing can never be larger than a frame. Every
operation (a brush stroke, a line, a filled rectangle, a flood fill, clear, loading a picture)
is one undo step; undo/redo keep whole copies (a 64x64 frame is 12 KB; at most `history` steps).
Pixel rules, so tests can predict every pixel: a brush of size s covers the square
[x - (s-1)//2, x + s//2] x [y - (s-1)//2, y + s//2] around each point of the Bresenham line
between its ends; a rectangle covers both corners inclusively; fill is 4-connected over pixels of
exactly the start pixel's colour.

`ColourCounter` counts the colours of the frames the world decoded during play (each frame once);
`palette()` turns the counts into the most common distinct colours, the sketch's palette: a
drawing in those colours uses colours the world knows.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

Colour = tuple[int, int, int]


def line_points(x0: int, y0: int, x1: int, y1: int) -> Iterator[tuple[int, int]]:
    """The pixels of a straight line from (x0, y0) to (x1, y1), both ends included (Bresenham)."""
    dx, dy = abs(x1 - x0), -abs(y1 - y0)
    sx, sy = (1 if x1 >= x0 else -1), (1 if y1 >= y0 else -1)
    err = dx + dy
    while True:
        yield x0, y0
        if x0 == x1 and y0 == y1:
            return
        e2 = 2 * err
        if e2 >= dy:
            err += dy
            x0 += sx
        if e2 <= dx:
            err += dx
            y0 += sy


class Canvas:
    """An (H, W, 3) uint8 drawing with undo/redo. Points are (x, y) in frame pixels; points
    outside the frame are clipped, never an error."""

    def __init__(self, pixels: np.ndarray, history: int = 100):
        self.pixels = np.array(pixels, dtype=np.uint8, copy=True)
        if self.pixels.ndim != 3 or self.pixels.shape[2] != 3:
            raise ValueError(f"a canvas is (H, W, 3), got {self.pixels.shape}")
        self.history = history
        self._undo: list[np.ndarray] = []
        self._redo: list[np.ndarray] = []
        self._open: np.ndarray | None = None  # the pixels before the stroke being drawn

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return self.pixels.shape[1], self.pixels.shape[0]

    def contains(self, x: int, y: int) -> bool:
        return 0 <= x < self.pixels.shape[1] and 0 <= y < self.pixels.shape[0]

    # ---- undo --------------------------------------------------------------------------------------
    def begin(self) -> None:
        """Start one undoable operation (a stroke may call `dab` many times before `end`)."""
        if self._open is None:
            self._open = self.pixels.copy()

    def end(self) -> None:
        """Finish the operation; it becomes one undo step if it changed anything."""
        before, self._open = self._open, None
        if before is not None and not np.array_equal(before, self.pixels):
            self._undo = (self._undo + [before])[-self.history:]
            self._redo.clear()

    def undo(self) -> bool:
        self.end()
        if not self._undo:
            return False
        self._redo.append(self.pixels)
        self.pixels = self._undo.pop()
        return True

    def redo(self) -> bool:
        if not self._redo:
            return False
        self._undo.append(self.pixels)
        self.pixels = self._redo.pop()
        return True

    # ---- drawing -----------------------------------------------------------------------------------
    def _square(self, x: int, y: int, size: int, colour: Colour) -> None:
        lo = (size - 1) // 2
        x0, y0 = max(0, x - lo), max(0, y - lo)
        x1, y1 = min(self.pixels.shape[1], x - lo + size), min(self.pixels.shape[0], y - lo + size)
        if x0 < x1 and y0 < y1:
            self.pixels[y0:y1, x0:x1] = colour

    def dab(self, start: tuple[int, int], end: tuple[int, int], size: int, colour: Colour) -> None:
        """Brush from start to end (part of the open operation; call begin/end around a stroke)."""
        self.begin()
        for x, y in line_points(*start, *end):
            self._square(x, y, size, colour)

    def line(self, start: tuple[int, int], end: tuple[int, int], size: int, colour: Colour) -> None:
        self.begin()
        self.dab(start, end, size, colour)
        self.end()

    def rect(self, corner: tuple[int, int], other: tuple[int, int], colour: Colour) -> None:
        """A filled rectangle with both corners included (platforms are rectangles)."""
        self.begin()
        h, w = self.pixels.shape[:2]
        x0, x1 = sorted((corner[0], other[0]))
        y0, y1 = sorted((corner[1], other[1]))
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w - 1, x1), min(h - 1, y1)
        if x0 <= x1 and y0 <= y1:
            self.pixels[y0:y1 + 1, x0:x1 + 1] = colour
        self.end()

    def fill(self, point: tuple[int, int], colour: Colour) -> None:
        """Flood fill the 4-connected region of exactly the colour at point."""
        x, y = point
        if not self.contains(x, y):
            return
        target = self.pixels[y, x].copy()
        same = np.all(self.pixels == target, axis=2)
        region = np.zeros_like(same)
        stack = [(x, y)]
        h, w = same.shape
        while stack:
            cx, cy = stack.pop()
            if not (0 <= cx < w and 0 <= cy < h) or region[cy, cx] or not same[cy, cx]:
                continue
            region[cy, cx] = True
            stack += [(cx + 1, cy), (cx - 1, cy), (cx, cy + 1), (cx, cy - 1)]
        self.begin()
        self.pixels[region] = colour
        self.end()

    def replace(self, pixels: np.ndarray) -> None:
        """Put a whole picture (blank, the current frame, a prompt) on the canvas, undoably."""
        pixels = np.asarray(pixels, dtype=np.uint8)
        if pixels.shape != self.pixels.shape:
            raise ValueError(f"picture is {pixels.shape}, the canvas {self.pixels.shape}")
        self.begin()
        self.pixels[...] = pixels
        self.end()

    def clear(self, colour: Colour) -> None:
        self.replace(np.broadcast_to(np.asarray(colour, np.uint8), self.pixels.shape))


class ColourCounter:
    """Counts of the colours of decoded frames, in 4-bit-per-channel bins (with each bin's mean)."""

    def __init__(self) -> None:
        self.counts = np.zeros(4096, np.int64)
        self.sums = np.zeros((4096, 3), np.float64)
        self.frames = 0

    def add(self, frame: np.ndarray) -> None:
        pixels = np.asarray(frame, dtype=np.uint8).reshape(-1, 3)
        bins = (pixels[:, 0] >> 4).astype(np.int64) << 8 | (pixels[:, 1] >> 4).astype(np.int64) << 4 | (pixels[:, 2] >> 4)
        self.counts += np.bincount(bins, minlength=4096)
        for c in range(3):
            self.sums[:, c] += np.bincount(bins, weights=pixels[:, c], minlength=4096)
        self.frames += 1

    def palette(self, size: int = 12, min_distance: float = 48.0) -> list[Colour]:
        """The most common colours, most common first, each at least min_distance (RGB) from the
        ones before it. Empty before any frame was counted."""
        chosen: list[np.ndarray] = []
        for index in np.argsort(-self.counts, kind="stable"):
            if self.counts[index] == 0 or len(chosen) == size:
                break
            colour = self.sums[index] / self.counts[index]
            if all(np.linalg.norm(colour - c) >= min_distance for c in chosen):
                chosen.append(colour)
        return [tuple(int(round(v)) for v in c) for c in chosen]
