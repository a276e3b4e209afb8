"""`genie-play explore IMAGE --world W --frames 4 --out grid.png|grid.gif`: the action explorer, headless.

From the prompt, every action is held for `--frames` frames in one batch (`World.explore`), exactly
what L shows in the player. A PNG is a contact sheet (one row per action: the prompt frame, then
its frames); a GIF animates the player's grid of tiles (4 per row). Titles carry each action's
index, keys and current label (the user's, else the bundle's).
"""
from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import BadSettingError

COLUMNS = 4
BG = (18, 18, 22)
TEXT = (230, 230, 235)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", metavar="IMAGE", type=Path, help="prompt image")
    parser.add_argument("--world", default=None, metavar="NAME|PATH", help="world name or path (default: coinrun)")
    parser.add_argument("--frames", type=int, default=4, help="frames per action (default: 4)")
    parser.add_argument("--out", type=Path, required=True, help="output file: .png (sheet) or .gif (animated grid)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    parser.add_argument("--steps", type=int, default=None, help="MaskGIT steps per frame")
    parser.add_argument("--temperature", type=float, default=None, help="sampling temperature")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    parser.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32", "int8"))
    parser.add_argument("--scale", type=int, default=4, help="upscaling of each tile (default: 4)")
    parser.add_argument("--fps", type=float, default=4.0, help="GIF frame rate (default: 4)")


def _font(size: int = 12):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def _titled_tile(frame: np.ndarray, title: str, scale: int, font, strip: int) -> "Image.Image":  # noqa: F821
    from PIL import Image, ImageDraw

    h, w = frame.shape[:2]
    tile = Image.new("RGB", (w * scale, h * scale + strip), BG)
    tile.paste(Image.fromarray(frame).resize((w * scale, h * scale), Image.Resampling.NEAREST), (0, 0))
    draw = ImageDraw.Draw(tile)
    while title and draw.textlength(title, font=font) > w * scale - 4:
        title = title[:-1]
    draw.text((2, h * scale + 2), title, fill=TEXT, font=font)
    return tile


def grid_sheet(start: np.ndarray, frames: np.ndarray, titles: Sequence[str], scale: int = 4) -> np.ndarray:
    """PNG layout: one row per action = title strip, then the start frame and its N frames.
    start (H, W, 3), frames (A, N, H, W, 3) uint8 -> (rows, cols, 3) uint8."""
    from PIL import Image, ImageDraw

    a, n, h, w = frames.shape[:4]
    font, strip, gap = _font(), 16, 2
    cell_w, cell_h = w * scale + gap, h * scale + gap
    sheet = Image.new("RGB", ((n + 1) * cell_w + gap, a * (cell_h + strip) + gap), BG)
    draw = ImageDraw.Draw(sheet)
    for row in range(a):
        y = gap + row * (cell_h + strip)
        draw.text((gap + 2, y + 1), titles[row], fill=TEXT, font=font)
        for col, frame in enumerate([start, *frames[row]]):
            big = Image.fromarray(np.asarray(frame, np.uint8)).resize((w * scale, h * scale), Image.Resampling.NEAREST)
            sheet.paste(big, (gap + col * cell_w, y + strip))
    return np.asarray(sheet)


def grid_animation(start: np.ndarray, frames: np.ndarray, titles: Sequence[str], scale: int = 4) -> np.ndarray:
    """GIF layout: N+1 pictures of the tile grid (COLUMNS per row), the start frame first.
    -> (N + 1, rows, cols, 3) uint8."""
    from PIL import Image

    a, n, h, w = frames.shape[:4]
    font, strip, gap = _font(), 16, 4
    rows = (a + COLUMNS - 1) // COLUMNS
    tile_w, tile_h = w * scale, h * scale + strip
    out = []
    for t in range(n + 1):
        canvas = Image.new("RGB", (COLUMNS * (tile_w + gap) + gap, rows * (tile_h + gap) + gap), BG)
        for index in range(a):
            frame = start if t == 0 else frames[index, t - 1]
            tile = _titled_tile(np.asarray(frame, np.uint8), titles[index], scale, font, strip)
            canvas.paste(tile, (gap + (index % COLUMNS) * (tile_w + gap), gap + (index // COLUMNS) * (tile_h + gap)))
        out.append(np.asarray(canvas))
    return np.stack(out)


def action_titles(world_id: str, default_labels: Sequence[str], num_actions: int, name: str = "") -> list[str]:
    """'3 [4/Down] jump' per action, with the user's labels and keys for this world."""
    from ..labels import ActionLabels

    table = ActionLabels.load(world_id, default_labels, num_actions, world_name=name)
    keymap = table.keymap()
    return [f"{a} [{keymap.describe(a, limit=2)}] {table.label(a)}".strip() for a in range(num_actions)]


def run(args: argparse.Namespace) -> int:
    suffix = args.out.suffix.lower()
    if suffix not in (".png", ".gif"):
        raise BadSettingError(f"--out {args.out}: name a .png (sheet) or .gif (animation) file")
    if not 1 <= args.frames <= 64:
        raise BadSettingError(f"--frames {args.frames}: use 1..64")
    if not 1 <= args.scale <= 32:
        raise BadSettingError(f"--scale {args.scale}: use 1..32")
    if not 0 < args.fps <= 100:
        raise BadSettingError(f"--fps {args.fps}: use a number in (0, 100]")
    from ..devices import set_threads
    from ..gif import write_gif, write_png
    from ..world import World

    set_threads()
    world = World.load(args.world, device=args.device, precision=args.precision)
    sampling = {k: v for k, v in (("steps", args.steps), ("temperature", args.temperature)) if v is not None}
    if sampling:
        world.sampling = sampling
    world.seed(args.seed)
    start = world.reset(args.image)
    frames = world.explore(num_frames=args.frames, seed=args.seed)  # (A, N, H, W, 3), one batch
    name = Path(world.path).stem if getattr(world, "path", None) else str(args.world or "world")
    titles = action_titles(world.world_id, world.labels, world.num_actions, name)
    if suffix == ".png":
        path = write_png(args.out, grid_sheet(start, frames, titles, args.scale))
    else:
        path = write_gif(args.out, grid_animation(start, frames, titles, args.scale), fps=args.fps)
    print(f"wrote {path}  ({world.num_actions} actions x {args.frames} frames, seed {args.seed})")
    return 0
