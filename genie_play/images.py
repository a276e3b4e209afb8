"""Prompt images: anything Pillow opens -> RGB uint8 at the world's frame size. All checks live here.

`load_image(source, (H, W))` accepts a path, a PIL.Image or a numpy array and returns an
`np.ndarray (H, W, 3) uint8`. Every way a prompt can be unusable (missing, a directory, unreadable,
empty, not an image, truncated, a decompression bomb, an odd array) ends in a one-line
`BadImageError` naming the file and what to do; nothing else escapes.

Geometry: the image is centre-cropped to the target aspect ratio, then resized with Lanczos. A crop
keeps the picture's proportions (a squashed CoinRun frame is off-distribution for the model, a
cropped one is not), and the centre is where the subject usually is. Extreme strips (10000x10)
therefore shrink to their central square before resizing; tiny images (1x1) are simply upscaled.

Colour: EXIF orientation is applied; CMYK, YCbCr, palette, 1-bit and grey images become RGB;
16-bit and 32-bit grey is scaled to 8 bits (65535 -> 255), not clipped; images with transparency
(RGBA, LA, PA, palette or grey with a transparent colour) are composited onto a neutral mid-grey
background (`TRANSPARENT_BACKGROUND`) *before* resizing, so hidden colours under transparent pixels
never bleed in. Animated GIF/WebP/PNG use their first frame.
"""
from __future__ import annotations

import logging
import math
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .errors import BadImageError

log = logging.getLogger(__name__)

TRANSPARENT_BACKGROUND = (128, 128, 128)  # neutral mid-grey under transparent pixels
SUPPORTED = "PNG, JPEG, GIF, WebP or BMP"

def _err(name: str, what: str, fix: str = f"use a {SUPPORTED} image") -> BadImageError:
    return BadImageError(f"{name}: {what}; {fix}")


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return (text[0][:120] if text else type(err).__name__) or type(err).__name__


def _sniff(head: bytes) -> str | None:
    low = head.lstrip().lower()
    if low.startswith((b"<!doctype html", b"<html", b"<head", b"<!--")):
        return "is an HTML page (a failed download?), not an image"
    if head.startswith(b"PK\x03\x04"):
        return "is a zip archive, not an image"
    return None


def _open_path(path: Path, out_size: tuple[int, int]):
    """Open and fully decode an image file (first frame), turning every failure into BadImageError."""
    from PIL import Image, UnidentifiedImageError

    name = str(path)
    if not path.exists():
        raise _err(name, "no such file", "check the path")
    if path.is_dir():
        raise _err(name, "is a directory, not an image", "pass an image file")
    if not path.is_file():
        raise _err(name, "is not a regular file", "pass an image file")
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except PermissionError:
        raise _err(name, "cannot be read (permission denied)", "check the file's permissions") from None
    except OSError as err:
        raise _err(name, f"cannot be read ({err.strerror or err})", "check the file") from None
    if not head:
        raise _err(name, "is empty (0 bytes)")
    img = None
    try:
        # Treat "bigger than MAX_IMAGE_PIXELS" (a warning in Pillow) as the error it is for us: a
        # prompt that large is a decompression bomb or a mistake, and decoding it could exhaust RAM.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # Pillow's "Corrupt EXIF data" chatter
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
            _check_bomb(name, img)
            img.seek(0)  # first frame of an animation
            _draft_for_speed(img, *out_size)
            img.load()  # decode now: truncated files fail here (LOAD_TRUNCATED_IMAGES stays False)
        return img
    except BaseException as err:
        if img is not None:
            img.close()
        if isinstance(err, BadImageError) or not isinstance(err, Exception):  # ours, or Ctrl-C & co.
            raise
        if isinstance(err, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
            raise _err(name, "is too large to decode safely (Pillow's decompression-bomb limit)", "use a smaller image") from None
        if isinstance(err, UnidentifiedImageError):
            raise _err(name, _sniff(head) or "is not an image Pillow can read") from None
        if isinstance(err, MemoryError):
            raise _err(name, "is too large to decode in memory", "use a smaller image") from None
        if isinstance(err, PermissionError):
            raise _err(name, "cannot be read (permission denied)", "check the file's permissions") from None
        # Pillow raises OSError, SyntaxError, ValueError, EOFError, struct.error, ... for bad data
        raise _err(name, f"is truncated or corrupted ({_first_line(err)})", "re-save or re-download it") from None


def _check_bomb(name: str, img) -> None:
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    w, h = img.size
    if limit is not None and w * h > limit:
        raise _err(name, f"is {w}x{h} pixels, over Pillow's decompression-bomb limit", "use a smaller image")
    if w <= 0 or h <= 0:
        raise _err(name, f"has an empty size {w}x{h}")


def _from_array(arr: np.ndarray, name: str):
    """(H,W) | (H,W,1|3|4) uint8/bool, or float in [0,1] -> PIL image."""
    from PIL import Image

    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
        raise _err(name, f"array of shape {arr.shape} is not an image", "pass (H,W,3), (H,W,4) or (H,W)")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise _err(name, f"array of shape {arr.shape} is empty", "pass a non-empty image")
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise _err(name, "float array holds NaN or infinity", "pass finite values in [0, 1]")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise _err(name, f"float array values span [{lo:.3g}, {hi:.3g}], not [0, 1]", "scale it to [0, 1] or pass uint8")
        arr = np.round(np.clip(arr, 0.0, 1.0) * 255.0).astype(np.uint8)
    elif arr.dtype != np.uint8:
        raise _err(name, f"array dtype {arr.dtype} is not supported", "pass uint8, or float in [0, 1]")
    return Image.fromarray(np.ascontiguousarray(arr))  # uint8 (H,W) -> L, (H,W,3) -> RGB, (H,W,4) -> RGBA


def _high_bit_to_l(img):
    """I;16*, I and F grey images -> 8-bit L, scaling 16 bits to 8 (Pillow's convert would clip)."""
    from PIL import Image

    arr = np.asarray(img)
    if img.mode == "F":
        arr = arr.astype(np.float64)
        arr = np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)
        hi = float(arr.max()) if arr.size else 0.0
        scaled = arr * 255.0 if hi <= 1.0 else arr  # [0,1] floats, else treat as 8-bit levels
    else:
        arr = arr.astype(np.int64)
        hi = int(arr.max()) if arr.size else 0
        if hi <= 255:
            scaled = arr.astype(np.float64)  # 8-bit data stored wide
        elif hi <= 65535:
            scaled = arr / 257.0  # 16-bit: 65535 -> 255 exactly
        else:
            scaled = arr * (255.0 / hi)  # 32-bit data: stretch the used range
    return Image.fromarray(np.clip(np.round(scaled), 0, 255).astype(np.uint8))  # (H, W) uint8 -> L


def _to_rgb(img, name: str):
    """Any Pillow mode -> RGB, compositing transparency onto TRANSPARENT_BACKGROUND."""
    from PIL import Image

    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        transparency = img.info.get("transparency")
        img = _high_bit_to_l(img)
        if transparency is not None:
            log.debug("%s: ignoring the transparent colour of a high-bit-depth grey image", name)
    if img.mode == "P" or img.mode == "L" or img.mode == "1" or img.mode == "RGB":
        if "transparency" in img.info:  # a palette or single-colour transparency
            img = img.convert("RGBA")
        elif img.mode != "RGB":
            img = img.convert("RGB")
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        log.debug("%s: composited transparency onto grey %s", name, TRANSPARENT_BACKGROUND)
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*TRANSPARENT_BACKGROUND, 255))
        img = Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode != "RGB":  # CMYK, YCbCr, LAB, HSV, ...
        try:
            img = img.convert("RGB")
        except Exception as err:
            raise _err(name, f"colour mode {img.mode} cannot be converted to RGB ({_first_line(err)})", "save it as an RGB image") from None
    return img


def _exif_transpose(img, name: str):
    from PIL import ImageOps

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # corrupt EXIF: we just skip orientation
            return ImageOps.exif_transpose(img)
    except Exception as err:  # broken EXIF must not stop a picture that decodes fine
        log.debug("%s: ignoring unreadable EXIF orientation (%s)", name, _first_line(err))
        return img


def _crop_box(width: int, height: int, out_h: int, out_w: int) -> tuple[float, float, float, float]:
    """The centred box of the target aspect ratio inside a width x height image (fractional)."""
    target = out_w / out_h
    # min/max: at equal aspect ratios float rounding can make the crop a hair larger than the image
    # (17 / (17 / 7) = 7.000000000000001), which Pillow refuses as a negative box offset.
    if width / height > target:  # too wide: crop the sides
        crop_w = min(float(width), height * target)
        left = max(0.0, (width - crop_w) / 2)
        return (left, 0.0, left + crop_w, float(height))
    crop_h = min(float(height), width / target)  # too tall: crop top and bottom
    top = max(0.0, (height - crop_h) / 2)
    return (0.0, top, float(width), top + crop_h)


def _draft_for_speed(img, out_h: int, out_w: int) -> None:
    """Let the JPEG decoder skip detail we will throw away (decodes at 1/2, 1/4 or 1/8 size).

    Asks for at least twice the target on the short side of either orientation (EXIF rotation is
    applied later), so the centre crop is still >= 2x the target before the Lanczos resize.
    """
    if getattr(img, "format", None) != "JPEG":
        return
    w, h = img.size
    need = 2 * max(out_h, out_w)
    factor = need / max(1, min(w, h))
    if factor >= 1:
        return
    try:
        img.draft(img.mode, (math.ceil(w * factor), math.ceil(h * factor)))
    except Exception:  # only an optimisation
        pass


def load_image(source: Any, size: tuple[int, int]) -> np.ndarray:
    """Load a prompt as RGB uint8 at `size` = (H, W): returns np.ndarray (H, W, 3) uint8.

    `source`: a path (str / os.PathLike), a PIL.Image, or an np.ndarray shaped (H,W,3), (H,W),
    (H,W,4) or (H,W,1), of uint8 (or bool), or float in [0, 1]. Centre crop to the aspect ratio of
    `size`, then Lanczos resize (see the module docstring for why and for colour handling).
    Raises BadImageError with a one-line message for every unusable input.
    """
    from PIL import Image

    out_h, out_w = int(size[0]), int(size[1])
    opened = None  # an image we opened from a file, closed at the end (animations keep the file open)
    if out_h <= 0 or out_w <= 0:
        raise ValueError(f"size must be positive (H, W), got {size}")

    if isinstance(source, (str, os.PathLike)):
        name = str(source)
        if name == "":
            raise _err("(empty path)", "no image file given", "pass the path of an image")
        img = opened = _open_path(Path(source).expanduser(), (out_h, out_w))
    elif isinstance(source, Image.Image):
        name = getattr(source, "filename", "") or "image"
        try:
            _check_bomb(name, source)
            source.load()
        except BadImageError:
            raise
        except Exception as err:
            raise _err(name, f"is truncated or corrupted ({_first_line(err)})", "re-save or re-download it") from None
        img = source
    elif isinstance(source, np.ndarray):
        name = "image array"
        img = _from_array(source, name)
    else:
        raise _err(repr(source)[:60], f"a {type(source).__name__} is not an image", "pass a file path, a PIL image or a numpy array")

    try:
        img = _exif_transpose(img, name)
        img = _to_rgb(img, name)
        box = _crop_box(img.width, img.height, out_h, out_w)
        img = img.resize((out_w, out_h), Image.Resampling.LANCZOS, box=box, reducing_gap=3.0)
        out = np.asarray(img, dtype=np.uint8)
    except BadImageError:
        raise
    except MemoryError:
        raise _err(name, "is too large to process in memory", "use a smaller image") from None
    except Exception as err:  # a decoder that only fails on conversion (e.g. lazy tiles)
        raise _err(name, f"cannot be converted ({_first_line(err)})", "re-save it as PNG or JPEG") from None
    finally:
        if opened is not None:
            opened.close()
    if out.shape != (out_h, out_w, 3):  # defensive: never hand the model a wrong shape
        raise _err(name, f"converted to shape {out.shape}, expected {(out_h, out_w, 3)}", "re-save it as an RGB PNG")
    return np.ascontiguousarray(out)
