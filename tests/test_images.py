"""Prompt image loading: every bad file is a one-line BadImageError, every odd valid one loads right."""
from __future__ import annotations

import io
import os
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile

from genie_play.errors import BadImageError
from genie_play.images import TRANSPARENT_BACKGROUND, load_image

SIZE = (16, 24)  # (H, W): not square, so aspect handling is exercised


def refused(source, *needles: str, size=SIZE) -> str:
    with pytest.raises(BadImageError) as info:
        load_image(source, size)
    message = str(info.value)
    assert "\n" not in message and message.strip() == message
    for needle in needles:
        assert needle in message, message
    return message


def loads(source, size=SIZE) -> np.ndarray:
    out = load_image(source, size)
    assert out.shape == (*size, 3) and out.dtype == np.uint8 and out.flags.c_contiguous
    return out


def near(pixel, colour, tol=12) -> bool:
    return bool(np.all(np.abs(np.asarray(pixel, int) - np.asarray(colour, int)) <= tol))


def save(img: Image.Image, path, **kwargs):
    img.save(path, **kwargs)
    return path


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


# -------------------------------------------------------------------------------------- bad files


def test_loader_never_allows_truncated_images():
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # nothing in genie-play may flip this global


def test_missing_directory_empty(tmp_path):
    name = str(tmp_path / "nope.png")
    assert name in refused(name, "no such file")
    refused(tmp_path, "directory")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    refused(empty, "empty (0 bytes)")
    refused("", "no image")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads everything")
def test_unreadable(tmp_path):
    path = save(Image.new("RGB", (4, 4)), tmp_path / "secret.png")
    path.chmod(0)
    try:
        refused(path, "permission")
    finally:
        path.chmod(0o644)


def test_unreadable_simulated(tmp_path, monkeypatch):
    """The same as above, also when the tests run as root: the open itself is refused."""
    import genie_play.images

    path = save(Image.new("RGB", (4, 4)), tmp_path / "secret.png")

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(genie_play.images, "open", denied, raising=False)
    refused(path, "permission denied")


def test_not_images(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("hello, I am a text file with an image name\n")
    refused(text, "not an image")
    html = tmp_path / "download.jpg"
    html.write_text("<!DOCTYPE html>\n<html><head><title>404</title></head></html>")
    refused(html, "HTML")


@pytest.mark.parametrize("fmt,fraction", [("PNG", 0.5), ("PNG", 0.9), ("JPEG", 0.5), ("JPEG", 0.95), ("GIF", 0.5), ("WEBP", 0.6)])
def test_truncated(tmp_path, fmt, fraction):
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    raw = buf.getvalue()
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(raw[: int(len(raw) * fraction)])
    refused(path)


def test_decompression_bomb_header(tmp_path):
    # A real bomb: a 50000 x 50000 PNG header with a tiny image stream (Pillow would allocate 2.5 GB).
    ihdr = struct.pack(">IIBBBBB", 50_000, 50_000, 8, 0, 0, 0, 0)
    raw = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + png_chunk(b"IEND", b"")
    path = tmp_path / "bomb.png"
    path.write_bytes(raw)
    refused(path, "decompression-bomb")


@pytest.mark.parametrize("side", [40, 100])  # 1600 px: Pillow warns (treated as error); 10000 px: Pillow refuses
def test_decompression_bomb_limit(tmp_path, monkeypatch, side):
    path = save(Image.new("RGB", (side, side), (9, 9, 9)), tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    refused(path, "decompression-bomb")
    refused(Image.new("RGB", (side, side)), "decompression-bomb")


@pytest.mark.parametrize(
    "source,needle",
    [
        (np.zeros((4, 4, 2), np.uint8), "not an image"),
        (np.zeros((4,), np.uint8), "not an image"),
        (np.zeros((0, 4, 3), np.uint8), "empty"),
        (np.zeros((4, 4, 3), np.int64), "dtype"),
        (np.full((4, 4, 3), 2.0), "[0, 1]"),
        (np.full((4, 4, 3), np.nan, np.float32), "NaN"),
        (12345, "not an image"),
        (b"\x89PNG", "not an image"),
    ],
)
def test_bad_arrays_and_types(source, needle):
    refused(source, needle)


# ------------------------------------------------------------------------------- odd valid inputs


def test_tiny_and_extreme_aspect(tmp_path):
    out = loads(save(Image.new("RGB", (1, 1), (10, 200, 30)), tmp_path / "dot.png"))
    assert (out == [10, 200, 30]).all()
    strip = np.zeros((10, 10000, 3), np.uint8)
    strip[:, 4995:5005] = [255, 0, 0]  # the central 10x10 square is red, the rest black
    out = loads(save(Image.fromarray(strip), tmp_path / "strip.png"), size=(8, 8))
    assert near(out[4, 4], (255, 0, 0))
    loads(save(Image.new("RGB", (10, 10000), (5, 5, 5)), tmp_path / "tall.png"))


def test_centre_crop_keeps_the_middle(tmp_path):
    img = np.zeros((40, 120, 3), np.uint8)
    img[:, :40] = [255, 0, 0]
    img[:, 40:80] = [0, 255, 0]
    img[:, 80:] = [0, 0, 255]
    out = loads(img, size=(16, 16))  # square target: only the green middle third survives
    assert near(out[8, 1], (0, 255, 0), 40) and near(out[8, 14], (0, 255, 0), 40)


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path):
    arr = np.full((8, 8), 128 * 257, np.uint16)
    arr[:, 4:] = 65535
    path = save(Image.fromarray(arr), tmp_path / "g16.png")
    assert Image.open(path).mode.startswith("I")
    out = loads(path, size=(8, 8))
    assert near(out[4, 0], (128, 128, 128), 2) and near(out[4, 7], (255, 255, 255), 2)


def test_cmyk_jpeg_stays_red(tmp_path):
    path = save(Image.new("RGB", (32, 32), (255, 0, 0)).convert("CMYK"), tmp_path / "cmyk.jpg", quality=95)
    assert Image.open(path).mode == "CMYK"
    assert near(loads(path)[8, 8], (255, 0, 0), 20)


def test_palette_png_with_transparency(tmp_path):
    img = Image.new("P", (8, 8), 0)
    img.putpalette([0, 255, 0] + [255, 0, 0] * 255)  # index 0 green but transparent, others red
    img.paste(1, (4, 0, 8, 8))
    path = save(img, tmp_path / "p.png", transparency=0)
    out = loads(path, size=(8, 8))
    assert near(out[4, 0], TRANSPARENT_BACKGROUND, 3)  # never the hidden green
    assert near(out[4, 7], (255, 0, 0), 3)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "PA"])
def test_alpha_modes_composite_on_grey(mode):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., :3] = [255, 255, 255]
    rgba[:, 4:, 3] = 255  # right half opaque white, left half fully transparent white
    img = Image.fromarray(rgba, "RGBA")
    if mode != "RGBA":
        img = img.convert(mode)
    out = loads(img, size=(8, 8))
    assert near(out[4, 0], TRANSPARENT_BACKGROUND, 3) and near(out[4, 7], (255, 255, 255), 3)


@pytest.mark.parametrize("mode", ["L", "1", "I", "F", "YCbCr", "RGBX", "HSV"])
def test_other_modes(mode):
    img = Image.new("RGB", (12, 12), (255, 255, 255))
    if mode in ("I", "F"):
        img = img.convert("L").convert(mode)
    elif mode == "HSV":
        img = img.convert(mode)
    else:
        img = img.convert(mode)
    assert near(loads(img)[3, 3], (255, 255, 255), 3)


def test_arrays():
    grey = loads(np.full((5, 7), 200, np.uint8))
    assert (grey == 200).all()
    assert (loads(np.full((5, 7, 1), 9, np.uint8)) == 9).all()
    assert (loads(np.ones((5, 7, 3), np.float32)) == 255).all()
    assert (loads(np.zeros((5, 7), bool)) == 0).all()
    rgba = np.zeros((5, 7, 4), np.uint8)
    assert near(loads(rgba)[0, 0], TRANSPARENT_BACKGROUND, 1)
    same = np.random.default_rng(0).integers(0, 256, (*SIZE, 3), dtype=np.uint8)
    assert np.array_equal(loads(same), same)  # already the right size: untouched


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_animated_uses_first_frame(tmp_path, fmt):
    frames = [Image.new("RGB", (16, 16), c) for c in [(255, 0, 0), (0, 0, 255), (0, 255, 0)]]
    path = tmp_path / f"anim.{fmt.lower()}"
    frames[0].save(path, format=fmt, save_all=True, append_images=frames[1:], duration=100, loop=0, lossless=True)
    assert Image.open(path).n_frames == 3
    assert near(loads(path)[5, 5], (255, 0, 0), 10)


def test_exif_orientation_is_applied(tmp_path):
    img = np.zeros((10, 20, 3), np.uint8)  # stored 20 wide, 10 tall
    img[:, :10] = [255, 0, 0]  # left half red
    img[:, 10:] = [0, 0, 255]  # right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display": shown 10 wide, 20 tall, red on top
    path = save(Image.fromarray(img), tmp_path / "rotated.jpg", exif=exif, quality=95)
    out = loads(path, size=(20, 10))
    assert near(out[3, 5], (255, 0, 0), 40) and near(out[16, 5], (0, 0, 255), 40)


def test_large_jpeg_is_fast_and_right(tmp_path):
    path = save(Image.new("RGB", (3000, 2000), (0, 200, 0)), tmp_path / "photo.jpg")
    assert near(loads(path, size=(64, 64))[32, 32], (0, 200, 0), 6)


def test_pil_image_input_and_file_closed(tmp_path):
    path = save(Image.new("RGB", (9, 9), (1, 2, 3)), tmp_path / "a.png")
    with Image.open(path) as img:
        assert (loads(img) == [1, 2, 3]).all()


# ------------------------------------------------------------------------------------ properties

MAGIC = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"BM", b"II*\x00"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prefix=st.sampled_from(MAGIC), body=st.binary(min_size=0, max_size=300))
def test_random_bytes_only_ever_raise_bad_image(tmp_path, prefix, body):
    path = tmp_path / "random.img"
    path.write_bytes(prefix + body)
    try:
        out = load_image(path, (8, 8))
    except BadImageError as err:
        assert "\n" not in str(err)
    else:  # astronomically unlikely, but a valid image is fine
        assert out.shape == (8, 8, 3) and out.dtype == np.uint8


FORMATS = {
    "PNG": ["RGB", "RGBA", "L", "LA", "P", "1", "I;16"],
    "JPEG": ["RGB", "L", "CMYK"],
    "GIF": ["P", "L"],
    "BMP": ["RGB", "L", "P", "1"],
    "WEBP": ["RGB", "RGBA"],
    "TIFF": ["RGB", "CMYK", "L", "I;16"],
}
COMBOS = [(fmt, mode) for fmt, modes in FORMATS.items() for mode in modes]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    combo=st.sampled_from(COMBOS),
    width=st.integers(1, 40),
    height=st.integers(1, 40),
    out_h=st.integers(1, 32),
    out_w=st.integers(1, 32),
    seed=st.integers(0, 2**16),
)
def test_random_valid_images_always_load(tmp_path, combo, width, height, out_h, out_w, seed):
    fmt, mode = combo
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 256, (height, width, 4), dtype=np.uint8), "RGBA")
    if mode == "I;16":
        img = Image.fromarray(rng.integers(0, 65536, (height, width), dtype=np.uint16))
    elif mode != "RGBA":
        img = img.convert("RGB").convert(mode) if mode not in ("LA",) else img.convert(mode)
    path = tmp_path / f"valid.{fmt.lower()}"
    img.save(path, format=fmt)
    loads(path, size=(out_h, out_w))


def _valid_files() -> list[bytes]:
    rng = np.random.default_rng(1)
    img = Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8))
    out = []
    for fmt in ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF"):
        buf = io.BytesIO()
        img.save(buf, format=fmt)
        out.append(buf.getvalue())
    return out


VALID_FILES = _valid_files()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    index=st.integers(0, len(VALID_FILES) - 1),
    flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), max_size=8),
    keep=st.floats(0, 1),
)
def test_corrupted_valid_files_only_ever_raise_bad_image(tmp_path, index, flips, keep):
    data = bytearray(VALID_FILES[index])
    for where, value in flips:
        data[int(where * len(data))] = value
    path = tmp_path / "mutant.img"
    path.write_bytes(bytes(data[: max(1, int(len(data) * keep))]))
    try:
        out = load_image(path, (8, 8))
    except BadImageError as err:
        assert "\n" not in str(err)
    else:
        assert out.shape == (8, 8, 3) and out.dtype == np.uint8


def test_equal_aspect_ratios_load_despite_float_rounding(tmp_path):
    """17 / (17 / 7) is 7.000000000000001 in floats: the crop must not reach outside the image."""
    path = tmp_path / "wide.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (7, 17, 3), dtype=np.uint8)).save(path)
    assert load_image(path, size=(7, 17)).shape == (7, 17, 3)
