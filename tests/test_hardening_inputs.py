"""Bad prompts dropped on the player, odd files, bad actions and settings (issue 8): each is refused
with a one-line message and the play state (frame, position, RNG) is exactly what it was."""
from __future__ import annotations

import io
import os
import struct
import zlib

import numpy as np
import pygame
import pytest
from PIL import Image

from genie_play import World
from genie_play.cli import main as cli_main
from genie_play.errors import BadActionError, BadBundleError, BadImageError, BadSettingError
from genie_play.images import load_image
from genie_play.player import hud
from test_player import expected, make_app, pump, tap  # noqa: F401 -- make_app is a fixture


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encoded(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def bad_files(folder) -> dict[str, str]:
    """name -> a word the one-line error must contain. Made fresh by the test, all tiny."""
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    png, jpeg = encoded(noise, "PNG"), encoded(noise, "JPEG")
    bomb_header = struct.pack(">IIBBBBB", 50_000, 50_000, 8, 0, 0, 0, 0)
    files = {
        "empty.png": b"",
        "cut.png": png[: len(png) // 2],
        "cut.jpg": jpeg[: len(jpeg) // 2],
        "notes.png": b"hello, a text file with an image name\n",
        "page.jpg": b"<!DOCTYPE html><html><body>404</body></html>",
        "bomb.png": b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", bomb_header)
                    + png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + png_chunk(b"IEND", b""),
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    (folder / "folder.png").mkdir()
    os.mkfifo(folder / "pipe.png")  # opening a FIFO would block the worker forever
    words = {"empty.png": "empty", "cut.png": "truncated", "cut.jpg": "truncated", "notes.png": "not an image",
             "page.jpg": "HTML", "bomb.png": "decompression-bomb", "folder.png": "directory",
             "pipe.png": "not a regular file", "missing.png": "no such file"}
    return {str(folder / name): word for name, word in words.items()}


def odd_good_files(folder) -> list[str]:
    """Valid images in awkward formats: each must become the prompt."""
    red = Image.new("RGB", (24, 24), (220, 30, 30))
    grey16 = Image.fromarray(np.full((20, 20), 40000, np.uint16))
    palette = Image.new("P", (8, 8), 0)
    palette.putpalette([0, 255, 0] + [255, 0, 0] * 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    frames = [Image.new("RGB", (16, 16), c) for c in [(255, 0, 0), (0, 0, 255)]]
    made = {
        "dot.png": lambda p: Image.new("RGB", (1, 1), (9, 200, 9)).save(p),
        "strip.png": lambda p: Image.new("RGB", (10000, 10), (5, 5, 250)).save(p),
        "grey16.png": lambda p: grey16.save(p),
        "cmyk.jpg": lambda p: red.convert("CMYK").save(p),
        "palette.png": lambda p: palette.save(p, transparency=0),
        "anim.gif": lambda p: frames[0].save(p, save_all=True, append_images=frames[1:], duration=100),
        "anim.webp": lambda p: frames[0].save(p, save_all=True, append_images=frames[1:], duration=100, lossless=True),
        "rotated.jpg": lambda p: Image.new("RGB", (30, 10), (0, 128, 255)).save(p, exif=exif),
    }
    paths = []
    for name, make in made.items():
        make(folder / name)
        paths.append(str(folder / name))
    return paths


def drop(path: str) -> None:
    pygame.event.post(pygame.event.Event(pygame.DROPFILE, file=path))


def test_every_bad_drop_is_one_line_and_play_continues_exactly(make_app, tmp_path, tiny_world_path, prompt_path):  # noqa: F811
    app, spy = make_app()
    tap(pygame.K_1)
    pump(app, lambda: app.settled() and app.state.step == 1)
    frame, prompts = app.frame.copy(), list(app.prompts.items)
    for path, word in bad_files(tmp_path).items():
        drop(path)
        pump(app, lambda: app.settled() and path in app.message, timeout=30)
        assert word in app.message and "\n" not in app.message, app.message
        assert app.running and app.state.step == 1 and np.array_equal(app.frame, frame)
    assert app.prompts.items == prompts  # no bad file joined the O list
    tap(pygame.K_2)  # the world, RNG included, is where it was: the frame of an undisturbed rollout
    pump(app, lambda: app.settled() and app.state.step == 2)
    assert np.array_equal(app.frame, expected(tiny_world_path, prompt_path, [0, 1])[-1])


def test_odd_but_valid_drops_become_the_prompt(make_app, tmp_path):  # noqa: F811
    app, spy = make_app()
    for path in odd_good_files(tmp_path):
        drop(path)
        pump(app, lambda: app.settled() and app.prompts.current == path, timeout=30)
        assert app.state.step == 0 and app.frame.shape == (16, 16, 3)
        tap(pygame.K_3)
        pump(app, lambda: app.settled() and app.state.step == 1)


def test_fifo_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "pipe.png")
    with pytest.raises(BadImageError, match="not a regular file"):
        load_image(tmp_path / "pipe.png", (8, 8))
    os.mkfifo(tmp_path / "pipe.safetensors")
    with pytest.raises(BadBundleError, match="not a regular file"):
        World.load(tmp_path / "pipe.safetensors", device="cpu")


# ----- actions and settings --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def world(tiny_world_path):
    return World.load(tiny_world_path, device="cpu", precision="fp32")


BAD_ACTIONS = [-2, 8, 2**40, -(2**63), "3", 3.0, 1.5, None, True, np.int64(8), np.uint8(255), [3]]


@pytest.mark.parametrize("bad", BAD_ACTIONS, ids=repr)
def test_bad_action_leaves_frame_position_and_rng_unchanged(world, prompt_image, bad):
    world.sampling = {"steps": 3, "temperature": 1.0}
    world.seed(11)
    world.reset(prompt_image)
    world.step(2)
    frame, position = world.frame.copy(), world.position
    with pytest.raises(BadActionError) as info:
        world.step(bad)
    assert "\n" not in str(info.value) and "[0, 8)" in str(info.value)
    assert world.position == position and np.array_equal(world.frame, frame)
    after = world.step(5)
    world.seed(11)  # the same play without the refused call
    world.reset(prompt_image)
    world.step(2)
    assert np.array_equal(world.step(5), after)


def test_bad_action_inside_a_rollout_is_refused_before_anything_runs(world, prompt_image):
    world.seed(3)
    world.reset(prompt_image)
    world.step(1)
    snap_frame, position = world.frame.copy(), world.position
    with pytest.raises(BadActionError):
        world.rollout(prompt_image, [0, 1, 8], seed=0)
    assert world.position == position and np.array_equal(world.frame, snap_frame)


@pytest.mark.parametrize("setting", [
    {"steps": 0}, {"steps": 10**6}, {"steps": -5}, {"steps": 2.5}, {"steps": True}, {"steps": "25"},
    {"steps": None}, {"temperature": -1.0}, {"temperature": float("nan")}, {"temperature": float("inf")},
    {"temperature": "1.0"}, {"temperature": None},
    {"steps": 5, "temperature": float("nan")},  # a good value beside a bad one: neither is applied
    {"temperature": 0.5, "steps": 0}, {"speed": 2},
], ids=repr)
def test_bad_sampling_settings_change_nothing(world, setting):
    world.sampling = {"steps": 7, "temperature": 0.9}
    with pytest.raises(BadSettingError) as info:
        world.sampling = setting
    assert "\n" not in str(info.value)
    assert world.sampling == {"steps": 7, "temperature": 0.9}


@pytest.mark.parametrize("frames", [0, -1, 65, 10**6])
def test_bad_explore_length_changes_nothing(world, prompt_image, frames):
    world.reset(prompt_image)
    position = world.position
    with pytest.raises(BadSettingError):
        world.explore(num_frames=frames)
    assert world.position == position


def test_bad_settings_from_the_player_worker_are_shown_and_play_goes_on(make_app):  # noqa: F811
    app, spy = make_app()
    before = dict(spy.sampling)
    for kwargs in ({"steps": 0}, {"steps": 10**6}, {"temperature": -1.0}, {"temperature": float("nan")}):
        app.message = ""
        app.worker.set_sampling(**kwargs)
        pump(app, lambda: app.settled() and app.message)
        assert "must be" in app.message and app._message_colour == hud.ERROR, app.message
        assert spy.sampling == before and app.state.steps == before["steps"] and "\n" not in app.message
    tap(pygame.K_1)
    pump(app, lambda: app.settled() and app.state.step == 1)


@pytest.mark.parametrize("args,needle", [
    (["--steps", "0"], "--steps 0"), (["--steps", "1000000"], "--steps 1000000"),
    (["--temperature", "-1"], "--temperature -1"), (["--temperature", "nan"], "--temperature nan"),
])
def test_play_refuses_bad_settings_before_any_window(tiny_world_path, capsys, args, needle):
    assert cli_main(["play", "--world", str(tiny_world_path), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err
