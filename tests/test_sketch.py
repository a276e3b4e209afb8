"""Sketch mode (E, issue 19): drawing changes exactly the expected pixels; Enter plays the drawing; Esc changes nothing."""
from __future__ import annotations

import numpy as np
import pygame
import pytest
from PIL import Image

from genie_play.player.canvas import Canvas, ColourCounter, line_points
from test_player import SEED, load, make_app, pump, tap  # noqa: F401 -- make_app is a fixture

RED, BLUE = (200, 30, 30), (20, 40, 220)


def mouse(kind: int, pos, button: int = 1) -> None:
    attrs = {"pos": pos}
    if kind == pygame.MOUSEMOTION:
        attrs.update(rel=(0, 0), buttons=(1, 0, 0))
    else:
        attrs["button"] = button
    pygame.event.post(pygame.event.Event(kind, **attrs))


def ctrl(k: int) -> None:
    pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=k, mod=pygame.KMOD_LCTRL, unicode=""))


def open_sketch(app):
    tap(pygame.K_e)
    pump(app, lambda: app.sketch is not None)
    app.tick()  # drawn once: the layout is known
    return app.sketch


def drag(view, points, button: int = 1) -> None:
    mouse(pygame.MOUSEBUTTONDOWN, view.screen_pos(*points[0]), button)
    for p in points[1:]:
        mouse(pygame.MOUSEMOTION, view.screen_pos(*p))
    mouse(pygame.MOUSEBUTTONUP, view.screen_pos(*points[-1]), button)


def test_canvas_operations_change_exactly_the_expected_pixels():
    base = np.zeros((8, 10, 3), np.uint8)
    c = Canvas(base)
    c.line((1, 1), (4, 1), 1, RED)
    want = base.copy()
    want[1, 1:5] = RED
    assert np.array_equal(c.pixels, want)
    c.rect((6, 5), (8, 3), BLUE)  # corners in any order, both included
    want[3:6, 6:9] = BLUE
    assert np.array_equal(c.pixels, want)
    c.line((0, 7), (2, 7), 2, RED)  # size 2 covers [x, x+1] x [y, y+1], clipped at the edge
    want[7:8, 0:4] = RED
    assert np.array_equal(c.pixels, want)
    c.fill((0, 0), BLUE)  # the black region, 4-connected
    want[np.all(want == 0, axis=2)] = BLUE
    assert np.array_equal(c.pixels, want)
    assert c.undo() and c.undo() and not np.array_equal(c.pixels, want)
    assert c.redo() and c.redo() and np.array_equal(c.pixels, want) and not c.redo()
    assert list(line_points(0, 0, 3, 1)) == [(0, 0), (1, 0), (2, 1), (3, 1)]


def test_palette_is_the_most_common_distinct_colours():
    counter = ColourCounter()
    frame = np.zeros((10, 10, 3), np.uint8)
    frame[:] = (100, 150, 250)  # sky
    frame[7:] = (40, 160, 40)  # ground
    frame[0, 0] = (101, 151, 251)  # almost the sky: not a colour of its own
    frame[5, 5] = (250, 250, 0)
    counter.add(frame)
    palette = counter.palette()
    assert palette[:2] == [(100, 150, 250), (40, 160, 40)] and (250, 250, 0) in palette and len(palette) == 3


def test_stroke_rectangle_fill_and_undo_in_the_window(make_app):  # noqa: F811
    app, spy = make_app()
    view = open_sketch(app)
    start = view.canvas.pixels.copy()
    assert start.shape == (16, 16, 3) and np.array_equal(start, app.frame)  # painting over the current frame
    view.colour = RED
    tap(pygame.K_1)  # brush size 1
    drag(view, [(2, 2), (5, 2), (5, 4)])
    pump(app, lambda: not pygame.event.peek())
    want = start.copy()
    want[2, 2:6] = RED
    want[2:5, 5] = RED
    assert np.array_equal(view.canvas.pixels, want)
    tap(pygame.K_r)  # rectangle tool
    view.colour = BLUE
    drag(view, [(10, 12), (13, 14)])
    app.tick()
    want[12:15, 10:14] = BLUE
    assert np.array_equal(view.canvas.pixels, want)
    tap(pygame.K_c, pygame.K_f)  # blank canvas, then fill a region of it
    app.tick()
    blank = view.canvas.pixels.copy()
    assert (blank == blank[0, 0]).all()
    view.colour = RED
    mouse(pygame.MOUSEBUTTONDOWN, view.screen_pos(3, 3))
    mouse(pygame.MOUSEBUTTONUP, view.screen_pos(3, 3))
    app.tick()
    assert (view.canvas.pixels == RED).all()
    ctrl(pygame.K_z)
    ctrl(pygame.K_z)  # undo the fill and the clear: the rectangle and the stroke are back
    app.tick()
    assert np.array_equal(view.canvas.pixels, want)
    ctrl(pygame.K_y)
    app.tick()
    assert np.array_equal(view.canvas.pixels, blank)
    mouse(pygame.MOUSEBUTTONDOWN, (5000, 5000))  # outside the canvas (and the window): nothing happens
    app.tick()
    assert view.canvas.pixels.shape == (16, 16, 3) and spy.actions == []  # keys never reached the world


def test_enter_plays_the_drawing_as_the_prompt(make_app, tiny_world_path):  # noqa: F811
    app, spy = make_app()
    tap(pygame.K_1)
    pump(app, lambda: app.settled() and app.state.step == 1)
    view = open_sketch(app)
    view.colour = BLUE
    tap(pygame.K_r)
    drag(view, [(0, 10), (15, 15)])  # a platform
    app.tick()
    drawing = view.canvas.pixels.copy()
    tap(pygame.K_RETURN)
    pump(app, lambda: app.sketch is None and app.settled() and app.state.step == 0)
    world = load(tiny_world_path)
    world.seed(SEED)
    assert np.array_equal(app.frame, world.reset(drawing))  # the world's first frame is reset(drawing)
    assert app.state.prompt == "sketch 1"
    tap(pygame.K_3)  # and it plays
    pump(app, lambda: app.settled() and app.state.step == 1)
    assert spy.actions == [0, 2]


def test_esc_leaves_without_changing_anything(make_app):  # noqa: F811
    app, spy = make_app()
    tap(pygame.K_2)
    pump(app, lambda: app.settled() and app.state.step == 1)
    before = app.frame.copy()
    view = open_sketch(app)
    tap(pygame.K_c, pygame.K_4, pygame.K_RIGHT, pygame.K_s)  # world keys do nothing here; S saves a PNG
    drag(view, [(1, 1), (9, 9)])
    tap(pygame.K_ESCAPE)
    pump(app, lambda: app.sketch is None)
    for _ in range(5):
        app.tick()
    assert app.running and app.settled() and app.state.step == 1 and np.array_equal(app.frame, before)
    assert spy.actions == [1]
    app.wait_for_files()
    app.tick()
    saved = app.options.record_dir / "genie_play-sketch.png"
    with Image.open(saved) as im:
        assert im.size == (16, 16)  # the frame's size, ready for `genie-play rollout`


def test_saving_into_an_unwritable_folder_says_so_in_one_line(make_app, tmp_path, monkeypatch):  # noqa: F811
    from genie_play.player import session

    spare = tmp_path / "spare"
    monkeypatch.setattr(session, "default_fallback_dir", lambda: spare)
    (tmp_path / "out").write_text("a file where the folder should be")
    app, spy = make_app()
    open_sketch(app)
    tap(pygame.K_s)
    app.tick()
    app.wait_for_files()
    app.tick()
    assert "not writable" in app.message and str(spare / "genie_play-sketch.png") in app.message
    assert (tmp_path / "out").read_text().startswith("a file") and app.sketch is not None


@pytest.mark.parametrize("start", ["blank", "prompt"])
def test_the_canvas_can_start_blank_or_from_a_bundled_prompt(make_app, start):  # noqa: F811
    app, spy = make_app()
    view = open_sketch(app)
    tap(pygame.K_c if start == "blank" else pygame.K_p)
    app.tick()
    pixels = view.canvas.pixels
    assert pixels.shape == (16, 16, 3)
    if start == "blank":
        assert (pixels == view.background).all()
    else:
        assert not np.array_equal(pixels, app.frame) and "prompt" in view.message
