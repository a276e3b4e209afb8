"""Draw `sketch_platformer.png`: a hand-drawn-looking side-scrolling platformer scene (256x256).

An out-of-domain prompt for genie-play: sky, sun, ground, three platforms, a little character and a
coin, in wobbly crayon strokes on paper. Deterministic (fixed seed); needs only Pillow and numpy.
Run: `python assets/prompts/make_sketch.py [out.png]` (default: next to this script).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SIZE = 256
SEED = 4  # any fixed value; changing it redraws every wobble
Point = tuple[float, float]


def wobbly_line(draw: ImageDraw.ImageDraw, rng: np.random.Generator, a: Point, b: Point,
                colour: tuple[int, int, int], width: int = 3, passes: int = 2) -> None:
    """A line drawn by an unsteady hand: a few passes, each bending smoothly off the straight path."""
    n = max(4, int(np.hypot(b[0] - a[0], b[1] - a[1]) / 6))
    t = np.linspace(0.0, 1.0, n)  # (n,)
    for _ in range(passes):
        # Low-frequency wobble (two sine terms with random phase) plus a little jitter per point.
        bend = sum(rng.uniform(0.6, 1.6) * np.sin(np.pi * k * t + rng.uniform(0, 2 * np.pi)) for k in (1, 3))
        bend += rng.normal(0, 0.35, n)
        dx, dy = b[0] - a[0], b[1] - a[1]
        norm = np.hypot(dx, dy) or 1.0
        xs = a[0] + dx * t - dy / norm * bend
        ys = a[1] + dy * t + dx / norm * bend
        draw.line(list(zip(xs, ys)), fill=colour, width=width, joint="curve")


def wobbly_poly(draw: ImageDraw.ImageDraw, rng: np.random.Generator, pts: list[Point],
                colour: tuple[int, int, int], width: int = 3) -> None:
    for a, b in zip(pts, pts[1:] + pts[:1]):
        wobbly_line(draw, rng, a, b, colour, width)


def crayon_fill(draw: ImageDraw.ImageDraw, rng: np.random.Generator, box: tuple[float, float, float, float],
                colour: tuple[int, int, int], spacing: float = 3.0, slant: float = 0.6) -> None:
    """Fill a box with slanted, slightly uneven hatch strokes that leave paper showing between them."""
    x0, y0, x1, y1 = box
    for x in np.arange(x0 - (y1 - y0) * slant, x1, spacing):
        shade = tuple(int(np.clip(c + rng.integers(-18, 19), 0, 255)) for c in colour)
        top, bot = (x + (y1 - y0) * slant, y0), (x, y1)
        # Clip the stroke to the box by sliding its ends along the stroke direction.
        (ax, ay), (bx, by) = top, bot
        if ax > x1:
            ay += (ax - x1) / slant; ax = x1
        if bx < x0:
            by -= (x0 - bx) / slant; bx = x0
        if ay < by:
            draw.line([(ax, ay + rng.uniform(0, 2)), (bx, by - rng.uniform(0, 2))], fill=shade, width=2)


def circle_pts(cx: float, cy: float, r: float, n: int = 12) -> list[Point]:
    return [(cx + r * np.cos(a), cy + r * np.sin(a)) for a in np.linspace(0, 2 * np.pi, n, endpoint=False)]


def draw_scene(seed: int = SEED) -> Image.Image:
    rng = np.random.default_rng(seed)
    paper = np.full((SIZE, SIZE, 3), (246, 240, 226), np.float32) + rng.normal(0, 3, (SIZE, SIZE, 1))
    img = Image.fromarray(np.clip(paper, 0, 255).astype(np.uint8))  # (256, 256, 3) off-white paper grain
    d = ImageDraw.Draw(img)
    ink = (45, 40, 50)
    crayon_fill(d, rng, (0, 0, SIZE, 200), (150, 200, 240), spacing=4.0)                  # sky
    d.ellipse((18, 16, 58, 56), fill=(250, 215, 80)); wobbly_poly(d, rng, circle_pts(38, 36, 21), (230, 150, 40))  # sun
    crayon_fill(d, rng, (0, 200, SIZE, SIZE), (150, 100, 60), spacing=2.5)                # ground
    crayon_fill(d, rng, (0, 196, SIZE, 208), (80, 170, 70), spacing=2.0)                  # grass
    wobbly_line(d, rng, (0, 198), (SIZE, 200), ink, width=3)
    for x0, y0, x1 in ((86, 152, 146), (138, 110, 200), (178, 66, 240)):                  # platforms
        crayon_fill(d, rng, (x0, y0, x1, y0 + 14), (190, 120, 70), spacing=2.0)
        wobbly_poly(d, rng, [(x0, y0), (x1, y0), (x1, y0 + 14), (x0, y0 + 14)], ink)
    d.ellipse((200, 38, 218, 56), fill=(250, 205, 40))                                    # coin on top platform
    wobbly_poly(d, rng, circle_pts(209, 47, 10), (170, 120, 20))
    wobbly_line(d, rng, (209, 41), (209, 53), (170, 120, 20), width=2, passes=1)
    # The character: round head, box body, stick limbs, standing on the ground at x ~ 55.
    d.rectangle((46, 160, 64, 182), fill=(220, 70, 60)); wobbly_poly(d, rng, [(46, 160), (64, 160), (64, 182), (46, 182)], ink)
    d.ellipse((45, 140, 65, 160), fill=(250, 220, 190)); wobbly_poly(d, rng, circle_pts(55, 150, 10, 10), ink)
    for a, b in (((50, 182), (47, 197)), ((60, 182), (64, 197)), ((46, 165), (37, 176)), ((64, 165), (74, 156))):
        wobbly_line(d, rng, a, b, ink, width=3)
    d.ellipse((57, 147, 60, 150), fill=ink)                                               # eye, looking right
    return img.filter(ImageFilter.SMOOTH)  # soften pixel-sharp strokes toward a waxy crayon edge


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else Path(__file__).with_name("sketch_platformer.png")
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    draw_scene().save(tmp, format="PNG", optimize=True)
    os.replace(tmp, out)  # atomic: a crash never leaves a half-written prompt
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
