"""Rollouts -> animated GIF / PNG files, written atomically, with an optional caption strip.

`write_gif` writes exactly T frames. Pillow's own animated-GIF writer merges consecutive identical
frames into one longer frame (a held "no-op" action would lose frames), so the file is assembled
here from Pillow's per-frame GIF encoder (`GifImagePlugin.getheader` / `getdata`): each frame gets
its own adaptive 256-colour palette and full-frame image data. Files appear at their final path only
once complete (temp file in the same folder, fsync, os.replace): a killed process leaves no partial
GIF, and an earlier file at that path survives any failure.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import numpy as np

from .fileio import atomic_path

DEFAULT_FPS = 10.0
MIN_FRAME_MS = 20  # browsers play GIF delays under 20 ms as 100 ms; GIF stores 10 ms units


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0 or 0 in frames.shape[1:3]:
        raise ValueError(f"frames must be (T, H, W, 3) with T >= 1, got {frames.shape}")
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {frames.dtype}")
    if frames.shape[1] > 65535 or frames.shape[2] > 65535:
        raise ValueError("GIF frames are limited to 65535 pixels per side")
    return frames


def _upscale(frame: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour upscale of (H, W, 3) by an integer factor: pixels stay crisp."""
    if scale == 1:
        return frame
    return np.repeat(np.repeat(frame, scale, axis=0), scale, axis=1)


def _caption_font(width: int):
    from PIL import ImageFont

    size = max(10, min(24, width // 16))
    try:
        return ImageFont.load_default(size=size)  # FreeType build of Pillow's default font
    except (TypeError, OSError, ImportError):  # Pillow without FreeType: the bitmap default
        return ImageFont.load_default()


def _fit_text(draw, text: str, font, max_width: float) -> str:
    """`text`, shortened with '..' until it fits `max_width` pixels."""
    if draw.textlength(text, font=font) <= max_width:
        return text
    while text and draw.textlength(text + "..", font=font) > max_width:
        text = text[:-1]
    return text + ".." if text else ""


def _with_caption(frame: np.ndarray, caption: str, font, strip_h: int) -> np.ndarray:
    """(H, W, 3) -> (H + strip_h, W, 3): the frame above a black strip with white text."""
    from PIL import Image, ImageDraw

    h, w, _ = frame.shape
    canvas = Image.new("RGB", (w, h + strip_h), (0, 0, 0))
    canvas.paste(Image.fromarray(frame), (0, 0))
    draw = ImageDraw.Draw(canvas)
    pad = max(2, strip_h // 6)
    text = _fit_text(draw, caption.replace("\n", " "), font, w - 2 * pad)
    draw.text((pad, h + strip_h / 2), text, fill=(255, 255, 255), font=font, anchor="lm")
    return np.asarray(canvas)


def _caption_strip_height(font) -> int:
    from PIL import Image, ImageDraw

    left, top, right, bottom = ImageDraw.Draw(Image.new("RGB", (1, 1))).textbbox((0, 0), "Ag|", font=font)
    return int(bottom - top) + 2 * max(2, int(bottom - top) // 3)


def render_frames(frames: np.ndarray, scale: int = 1, captions: Sequence[str] | None = None) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T, H*scale [+ caption strip], W*scale, 3) uint8, as they will be written."""
    frames = _check_frames(frames)
    if not isinstance(scale, (int, np.integer)) or scale < 1:
        raise ValueError(f"scale must be an integer >= 1, got {scale!r}")
    if captions is not None and len(captions) != len(frames):
        raise ValueError(f"got {len(captions)} captions for {len(frames)} frames")
    out = [_upscale(f, int(scale)) for f in frames]
    if captions is not None:
        font = _caption_font(out[0].shape[1])
        strip_h = _caption_strip_height(font)
        out = [_with_caption(f, str(c), font, strip_h) for f, c in zip(out, captions)]
    return np.stack(out)


def _durations(count: int, fps: float | None, durations_ms: Sequence[int] | None) -> list[int]:
    if durations_ms is not None:
        if len(durations_ms) != count:
            raise ValueError(f"got {len(durations_ms)} durations for {count} frames")
        ms = [int(d) for d in durations_ms]
    else:
        fps = DEFAULT_FPS if fps is None else float(fps)
        if not fps > 0 or fps != fps:
            raise ValueError(f"fps must be positive, got {fps}")
        ms = [int(round(1000.0 / fps))] * count
    # GIF delays are whole centiseconds; round to them (not down) and keep players' minimum.
    return [max(MIN_FRAME_MS, 10 * int(round(d / 10))) for d in ms]


def encode_gif(frames: np.ndarray, durations_ms: Sequence[int], loop: int = 0) -> bytes:
    """(T, H, W, 3) uint8 -> the bytes of an animated GIF with exactly T frames."""
    from PIL import GifImagePlugin, Image

    frames = _check_frames(frames)
    buf = io.BytesIO()
    paletted = [Image.fromarray(f).quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
                for f in frames]
    header, _ = GifImagePlugin.getheader(paletted[0], None, {"loop": loop, "duration": durations_ms[0]})
    for chunk in header:
        buf.write(chunk)
    for im, duration in zip(paletted, durations_ms):
        # disposal 1 = keep: every frame covers the whole canvas, so nothing shows through anyway
        for chunk in GifImagePlugin.getdata(im, (0, 0), duration=duration, disposal=1, include_color_table=True):
            buf.write(chunk)
    buf.write(b";")  # GIF trailer
    return buf.getvalue()


def _write_bytes_atomic(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()


def write_gif(
    path: str | Path,
    frames: np.ndarray,
    fps: float | None = DEFAULT_FPS,
    durations_ms: Sequence[int] | None = None,
    scale: int = 1,
    captions: Sequence[str] | None = None,
) -> Path:
    """Write (T, H, W, 3) uint8 frames as a looping animated GIF of exactly T frames, atomically.

    `durations_ms` (one per frame) overrides `fps`. `scale` upscales by nearest neighbour;
    `captions` (one per frame) adds a text strip under each frame in Pillow's default font.
    An unwritable folder or a full disk raises OutputError; the final path is never left partial.
    """
    rendered = render_frames(frames, scale, captions)
    data = encode_gif(rendered, _durations(len(rendered), fps, durations_ms))
    path = Path(path).expanduser()
    _write_bytes_atomic(path, data)
    return path


def write_png(path: str | Path, frame: np.ndarray, scale: int = 1, caption: str | None = None) -> Path:
    """Write one (H, W, 3) uint8 frame as a PNG (nearest-neighbour `scale`, optional caption), atomically."""
    from PIL import Image

    frame = np.asarray(frame)
    rendered = render_frames(frame[None], scale, None if caption is None else [caption])[0]
    buf = io.BytesIO()
    Image.fromarray(rendered).save(buf, format="PNG")
    path = Path(path).expanduser()
    _write_bytes_atomic(path, buf.getvalue())
    return path
