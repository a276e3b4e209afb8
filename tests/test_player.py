"""The pygame player, driven tick by tick with SDL's dummy video driver and posted events."""
from __future__ import annotations

import os

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # before pygame is imported
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pygame  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from genie_play.player.app import App, PlayOptions  # noqa: E402
from genie_play.player.hud import hud_lines  # noqa: E402

SEED, STEPS = 7, 3  # few MaskGIT steps: the tests are about the player, not image quality
REPO = Path(__file__).resolve().parents[1]


class SpyWorld:
    """A real World that records the actions it is stepped with and can hold a step at a gate."""

    def __init__(self, world):
        self._world = world
        self.actions: list[int] = []
        self.gate = threading.Event()
        self.gate.set()
        self.stepping = threading.Event()

    def step(self, action):
        self.stepping.set()
        self.gate.wait(30)
        self.actions.append(int(action))
        return self._world.step(action)

    def __getattr__(self, name):
        return getattr(self._world, name)

    def __setattr__(self, name, value):
        if name in ("_world", "actions", "gate", "stepping"):
            object.__setattr__(self, name, value)
        else:
            setattr(self._world, name, value)


def load(path):
    from genie_play import World

    world = World.load(path, device="cpu", precision="fp32")
    world.sampling = {"steps": STEPS}
    return world


@pytest.fixture
def make_app(tiny_world_path, prompt_path, tmp_path):
    apps = []

    def make(**overrides):
        spy = SpyWorld(load(tiny_world_path))
        options = PlayOptions(world_name="tiny", seed=SEED, config_dir=tmp_path / "config",
                              record_dir=tmp_path / "out", **overrides)
        app = App(lambda: spy, [prompt_path], options).start()
        pump(app, app.settled)
        apps.append(app)
        return app, spy

    yield make
    for app in apps:
        app.close()


def pump(app, condition, timeout: float = 60.0) -> None:
    """Tick the app until condition() holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert app.tick(), "the app quit"
        if condition():
            return
    raise AssertionError("timed out waiting for the app")


def key(k: int, down: bool = True, text: str = "") -> None:
    pygame.event.post(pygame.event.Event(pygame.KEYDOWN if down else pygame.KEYUP, key=k, mod=0, unicode=text))


def tap(*keys: int) -> None:
    for k in keys:
        key(k)
        key(k, down=False)


def expected(tiny_world_path, prompt_path, actions) -> np.ndarray:
    return load(tiny_world_path).rollout(prompt_path, actions, seed=SEED)


def test_keys_advance_the_world_by_exactly_the_pressed_actions(make_app, tiny_world_path, prompt_path):
    app, spy = make_app()
    assert app.state.device == "cpu fp32" and app.state.steps == STEPS
    tap(pygame.K_1, pygame.K_4, pygame.K_RIGHT, pygame.K_3)  # "right" is action 0 in the tiny world
    pump(app, lambda: app.settled() and app.state.step == 4)
    assert spy.actions == [0, 3, 0, 2]
    assert np.array_equal(app.frame, expected(tiny_world_path, prompt_path, [0, 3, 0, 2])[-1])
    assert app.state.last_action == 2 and app.state.last_label == "left"
    legend = app._legend()
    assert legend[1] == ("2/Up/W", "jump") and len(legend) == 8


def test_a_tap_during_generation_is_not_lost_and_the_queue_is_bounded(make_app):
    app, spy = make_app(max_queued=3)
    spy.gate.clear()  # the next step blocks inside World.step
    tap(pygame.K_2)
    pump(app, spy.stepping.is_set)
    ticks_before = app.frames_drawn
    tap(pygame.K_5)  # a tap shorter than one frame, while the frame is being generated
    for _ in range(5):
        app.tick()
    assert app.frames_drawn == ticks_before + 5  # the window keeps redrawing meanwhile
    tap(pygame.K_6, pygame.K_7, pygame.K_8)  # 1 running + 3 queued: the last one is refused, visibly
    for _ in range(3):
        app.tick()
    assert "already queued" in app.message and app.worker.pending_steps == 3
    spy.gate.set()
    pump(app, lambda: app.settled() and app.state.step == 4)
    assert spy.actions == [1, 4, 5, 6]


def test_held_key_repeats_and_space_pauses_repeat(make_app):
    app, spy = make_app(repeat_delay=0.0)
    key(pygame.K_3)  # held, no KEYUP
    pump(app, lambda: len(spy.actions) >= 3)
    key(pygame.K_SPACE)
    key(pygame.K_SPACE, down=False)
    pump(app, app.settled)
    count = len(spy.actions)
    for _ in range(10):
        app.tick()
    assert len(spy.actions) == count and app.held.paused
    key(pygame.K_3, down=False)
    assert set(spy.actions) == {2}


def test_a_held_key_keeps_one_step_queued_and_release_lets_at_most_one_more_through(make_app):
    app, spy = make_app(repeat_delay=0.0)
    spy.gate.clear()  # the world is stuck in its first step
    key(pygame.K_3)
    pump(app, spy.stepping.is_set)
    for _ in range(5):
        app.tick()
    assert app.worker.pending_steps == 1  # the next step already waits behind the running one
    key(pygame.K_3, down=False)
    spy.gate.set()
    pump(app, app.settled)
    assert len(spy.actions) == 2  # the running step and the queued one, nothing after the release


def test_backspace_then_the_same_action_reproduces_the_frame(make_app):
    app, spy = make_app()
    tap(pygame.K_1)
    pump(app, lambda: app.settled() and app.state.step == 1)
    first = app.frame.copy()
    tap(pygame.K_2)
    pump(app, lambda: app.settled() and app.state.step == 2)
    second = app.frame.copy()
    tap(pygame.K_BACKSPACE)
    pump(app, lambda: app.settled() and app.state.step == 1)
    assert np.array_equal(app.frame, first)
    tap(pygame.K_2)
    pump(app, lambda: app.settled() and app.state.step == 2)
    assert np.array_equal(app.frame, second)
    tap(pygame.K_r)  # reset: back to the prompt, same seed -> the same frames again
    pump(app, lambda: app.settled() and app.state.step == 0)
    tap(pygame.K_1)
    pump(app, lambda: app.settled() and app.state.step == 1)
    assert np.array_equal(app.frame, first)


def test_gif_recording_has_the_expected_frames_and_png_saves(make_app, tmp_path):
    app, spy = make_app(record_scale=2)
    tap(pygame.K_g)
    pump(app, lambda: app.recorder.active)
    tap(pygame.K_1, pygame.K_2, pygame.K_3)
    pump(app, lambda: app.settled() and app.state.step == 3)
    assert any(text.startswith("REC") for text, _ in hud_lines(app.state))
    tap(pygame.K_g, pygame.K_p)
    pump(app, lambda: not app.recorder.active)
    app.wait_for_files()
    app.tick()
    gif = tmp_path / "out" / "genie_play.gif"
    with Image.open(gif) as im:
        assert im.format == "GIF" and im.n_frames == 4 and im.size[0] == 32  # start + 3 steps, scale 2
    assert (tmp_path / "out" / "genie_play-frame.png").is_file()
    assert "genie_play" in app.message


def test_dropping_a_text_file_shows_an_error_and_play_continues(make_app, tmp_path, prompt_image):
    app, spy = make_app()
    tap(pygame.K_1)
    pump(app, lambda: app.settled() and app.state.step == 1)
    text = tmp_path / "notes.txt"
    text.write_text("not an image\n")
    pygame.event.post(pygame.event.Event(pygame.DROPFILE, file=str(text)))
    pump(app, lambda: app.settled() and "notes.txt" in app.message)
    assert app.running and app.state.step == 1  # the play state is where it was
    tap(pygame.K_2)
    pump(app, lambda: app.settled() and app.state.step == 2)
    other = tmp_path / "other.png"  # a good image becomes the new prompt and joins the O list
    Image.fromarray(prompt_image[::-1]).save(other)
    pygame.event.post(pygame.event.Event(pygame.DROPFILE, file=str(other)))
    pump(app, lambda: app.settled() and app.state.step == 0)
    assert app.prompts.current == str(other) and len(app.prompts.items) == 2


def test_quitting_joins_the_worker_thread(make_app):
    app, spy = make_app()
    spy.gate.clear()
    tap(pygame.K_1)  # quit while a frame is being generated
    pump(app, spy.stepping.is_set)
    pygame.event.post(pygame.event.Event(pygame.QUIT))
    threading.Timer(0.3, spy.gate.set).start()
    assert app.run(max_frames=10_000) == 0
    assert not app.worker.alive and not pygame.display.get_init()


def test_live_sampling_keys_hud_and_a_small_smooth_window(make_app):
    app, spy = make_app(smooth=True)
    tap(pygame.K_EQUALS, pygame.K_RIGHTBRACKET)
    pump(app, lambda: app.settled() and app.state.steps == 4 and app.state.temperature == 1.1)
    assert spy.sampling == {"steps": 4, "temperature": 1.1}
    tap(pygame.K_h)
    app.tick()
    assert not app.hud_visible
    pygame.display.set_mode((200, 150), pygame.RESIZABLE)  # as after the user resizes the window
    tap(pygame.K_h, pygame.K_o)  # HUD back on (too narrow: drawn as a banner); O with one prompt: a message
    pump(app, app.settled)
    assert app.screen.get_size() == (200, 150) and "no other prompt" in app.message


def test_ui_modules_do_not_import_torch():
    code = ("import sys; import genie_play.player.app, genie_play.commands.play, genie_play.commands.labels, "
            "genie_play.labels; assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_no_display_is_a_one_line_error_pointing_to_rollout(tiny_world_path, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER")}
    text = tmp_path / "notes.txt"
    text.write_text("not an image\n")
    proc = subprocess.run([sys.executable, "-m", "genie_play", str(text), "--world", str(tiny_world_path)],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "notes.txt" in proc.stderr  # no image: refused before any window
    proc = subprocess.run([sys.executable, "-m", "genie_play", "--world", str(tiny_world_path)],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no display" in lines[0] and "genie-play rollout" in lines[0]


def test_a_world_that_fails_to_load_ends_the_app_with_its_error(tmp_path):
    from genie_play.errors import WorldNotFoundError

    def factory():
        raise WorldNotFoundError("world 'nope' not found")

    app = App(factory, [], PlayOptions(config_dir=tmp_path / "config", record_dir=tmp_path / "out"))
    with pytest.raises(WorldNotFoundError, match="nope"):
        app.run(max_frames=10_000)
    assert not app.worker.alive


def test_right_plays_the_action_labelled_right_and_the_hud_rate_is_honest(tmp_path, prompt_path):
    """The bundled world's labels: Right is "right" (3), not "jump right"; one tap shows a real rate."""
    from conftest import make_tiny_world

    path = tmp_path / "labelled.safetensors"
    make_tiny_world(path, labels=["idle", "jump right", "jump left", "right", "jump", "step right", "drop", "stay"])
    spy = SpyWorld(load(path))
    app = App(lambda: spy, [prompt_path], PlayOptions(world_name="labelled", seed=SEED, config_dir=tmp_path / "c",
                                                      record_dir=tmp_path / "out")).start()
    try:
        pump(app, app.settled)
        tap(pygame.K_RIGHT, pygame.K_UP, pygame.K_LEFT)
        pump(app, lambda: app.settled() and app.state.step == 3)
        assert spy.actions == [3, 4, 2]
        assert app._legend()[3][0] == "4/Right/D"
        app.tick()
        assert app.state.world_fps is not None and app.state.world_fps > 0
        assert "world -- " not in hud_lines(app.state)[3][0]
    finally:
        app.close()


def test_a_world_that_learned_no_action_plays_on_with_none_after_the_last_key_is_released(tmp_path, tiny_world_path,
                                                                                          prompt_path):
    """Coasting: a tapped jump can land. Six frames of NO_ACTION by default for such a world, none
    while a key is held, and a new press starts the count again."""
    from genie_play.world import NO_ACTION

    spy = SpyWorld(load(tiny_world_path))
    spy.card = {"action_drop": 0.3}  # what `train export` writes for a run with loss.action_drop
    app = App(lambda: spy, [prompt_path], PlayOptions(world_name="tiny", seed=SEED, config_dir=tmp_path / "c",
                                                      record_dir=tmp_path / "out")).start()
    try:
        pump(app, app.settled)
        tap(pygame.K_4)
        pump(app, lambda: app.settled() and app.state.step == 7)
        for _ in range(10):
            app.tick()
        assert spy.actions == [3] + [NO_ACTION] * 6
        assert np.array_equal(app.frame, expected(tiny_world_path, prompt_path, spy.actions)[-1])
        assert app.state.last_label == "no action" and "last: no action" in " ".join(t for t, _ in hud_lines(app.state))
        key(pygame.K_2)  # held: the world waits for the repeat, it does not coast
        pump(app, lambda: app.settled() and app.state.step == 8)
        for _ in range(5):
            app.tick()
        assert spy.actions[7:] == [1]
        key(pygame.K_2, down=False)
        pump(app, lambda: app.settled() and app.state.step == 14)
        assert spy.actions[7:] == [1] + [NO_ACTION] * 6
    finally:
        app.close()


def test_coast_frames_can_be_chosen_a_rewind_stops_them_and_worlds_without_no_action_do_not_coast(make_app):
    from genie_play.world import NO_ACTION

    app, spy = make_app(coast=5)  # the tiny world never learned "no action": coasting only when asked
    tap(pygame.K_4)
    pump(app, lambda: app.state.step == 1)
    spy.gate.clear()  # the first coasting frame is held inside World.step
    spy.stepping.clear()
    pump(app, spy.stepping.is_set)
    tap(pygame.K_BACKSPACE)  # a rewind while coasting
    spy.gate.set()
    pump(app, app.settled)
    for _ in range(10):
        app.tick()
    coasted = len(spy.actions) - 1  # the running coast frame and at most one queued behind it
    assert spy.actions == [3] + [NO_ACTION] * coasted and 1 <= coasted <= 2 and app.state.step == coasted
    plain, spy2 = make_app()
    tap(pygame.K_4)
    pump(plain, lambda: plain.settled() and plain.state.step == 1)
    for _ in range(10):
        plain.tick()
    assert spy2.actions == [3]
