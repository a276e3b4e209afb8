"""Gamepads (issue 19): injected SDL joystick/controller events step the bound actions; odd axes fire nothing."""
from __future__ import annotations

import pygame
import pytest

from genie_play.cli import main as cli_main
from genie_play.errors import BadSettingError
from genie_play.labels import ActionLabels
from genie_play.player.gamepad import Gamepads, _Pad
from test_player import make_app, pump, tap  # noqa: F401 -- make_app is a fixture


def post(kind: int, **attrs) -> None:
    pygame.event.post(pygame.event.Event(kind, **attrs))


def hat(x: int, y: int, instance: int = 0) -> pygame.event.Event:
    return pygame.event.Event(pygame.JOYHATMOTION, instance_id=instance, joy=instance, hat=0, value=(x, y))


def axis(n: int, value: float, instance: int = 0) -> pygame.event.Event:
    return pygame.event.Event(pygame.JOYAXISMOTION, instance_id=instance, joy=instance, axis=n, value=value)


def test_raw_events_become_named_presses_and_releases():
    pads = Gamepads()
    assert pads.handle(hat(1, 0)) == [("pad:dpad_right", True)]
    assert pads.handle(hat(1, 1)) == [("pad:dpad_up", True)]
    assert pads.handle(hat(0, 0)) == [("pad:dpad_right", False), ("pad:dpad_up", False)]
    assert pads.handle(axis(0, -0.9)) == [("pad:lstick_left", True)]
    assert pads.handle(axis(0, -0.4)) == []  # hysteresis: still held above the release point
    assert pads.handle(axis(0, 0.1)) == [("pad:lstick_left", False)]
    assert pads.handle(axis(1, 0.7)) == [("pad:lstick_down", True)]  # SDL's y grows downwards
    assert pads.handle(pygame.event.Event(pygame.JOYBUTTONDOWN, instance_id=0, joy=0, button=0)) == [("pad:south", True)]
    assert pads.handle(pygame.event.Event(pygame.JOYBUTTONUP, instance_id=0, joy=0, button=0)) == [("pad:south", False)]
    assert pads.handle(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_a, mod=0)) is None  # not a pad's


def test_a_trigger_resting_at_minus_one_fires_nothing_and_a_pressed_one_fires_once():
    pads = Gamepads()
    for _ in range(5):
        assert pads.handle(axis(2, -1.0)) == [] and pads.handle(axis(5, -1.0)) == []
    assert pads.handle(axis(2, 1.0)) == [("pad:axis2", True)]
    assert pads.handle(axis(2, -1.0)) == [("pad:axis2", False)]
    trigger = pygame.event.Event(pygame.CONTROLLERAXISMOTION, instance_id=1, axis=pygame.CONTROLLER_AXIS_TRIGGERLEFT,
                                 value=0)
    assert pads.handle(trigger) == []
    trigger.value = 32767
    assert pads.handle(trigger) == [("pad:lt", True)]


def test_a_stick_that_rests_off_centre_is_measured_from_its_rest():
    pads = Gamepads()
    pads.pads[3] = _Pad("odd pad", rest={0: -1.0, 1: 0.2})
    assert pads.handle(axis(0, -1.0, instance=3)) == []  # resting far off centre: positive side only
    assert pads.handle(axis(1, 0.6, instance=3)) == []  # 0.4 from its rest: not past half way
    assert pads.handle(axis(1, 0.8, instance=3)) == [("pad:lstick_down", True)]


def test_controller_events_use_the_standard_layout_and_raw_twins_are_ignored():
    pads = Gamepads()
    pads.pads[4] = _Pad("known pad", controller=True)
    down = pygame.event.Event(pygame.CONTROLLERBUTTONDOWN, instance_id=4, button=pygame.CONTROLLER_BUTTON_DPAD_RIGHT)
    assert pads.handle(down) == [("pad:dpad_right", True)]
    assert pads.handle(hat(1, 0, instance=4)) == []  # SDL's JOY* copy of the same press: not twice
    stick = pygame.event.Event(pygame.CONTROLLERAXISMOTION, instance_id=4, axis=pygame.CONTROLLER_AXIS_LEFTX,
                               value=-30000)
    assert pads.handle(stick) == [("pad:lstick_left", True)]
    removed = pygame.event.Event(pygame.CONTROLLERDEVICEREMOVED, instance_id=4)
    assert sorted(pads.handle(removed)) == [("pad:dpad_right", False), ("pad:lstick_left", False)]
    assert not pads.connected and "disconnected" in pads.messages[-1]


def test_pad_events_step_the_bound_actions_and_controls_work(make_app):  # noqa: F811
    app, spy = make_app()  # the tiny world: right, jump, left, stay, ...
    for event in (hat(1, 0), hat(0, 0), axis(0, -1.0), axis(0, 0.0)):
        pygame.event.post(event)
    post(pygame.JOYBUTTONDOWN, instance_id=0, joy=0, button=0)  # south: jump (the Up action)
    post(pygame.JOYBUTTONUP, instance_id=0, joy=0, button=0)
    pump(app, lambda: app.settled() and app.state.step == 3)
    assert spy.actions == [0, 2, 1]
    for _ in range(3):
        pygame.event.post(axis(2, -1.0))  # a trigger at rest
        pygame.event.post(axis(5, -1.0))
    for _ in range(10):
        app.tick()
    pump(app, app.settled)
    assert spy.actions == [0, 2, 1]  # nothing fired by itself
    post(pygame.JOYBUTTONDOWN, instance_id=0, joy=0, button=7)  # start: pause repeat
    for _ in range(2):
        app.tick()
    assert app.held.paused
    post(pygame.JOYBUTTONDOWN, instance_id=0, joy=0, button=6)  # back: reset to the prompt
    pump(app, lambda: app.settled() and app.state.step == 0)


def test_unplugging_a_pad_mid_game_releases_its_inputs_and_play_goes_on(make_app):  # noqa: F811
    app, spy = make_app(repeat_delay=0.0)
    app.pads.pads[0] = _Pad("test pad")
    assert "D-Right" in app._legend()[0][0]  # the legend shows pad buttons while one is connected
    pygame.event.post(hat(1, 0))  # held right ...
    pump(app, lambda: len(spy.actions) >= 2)
    post(pygame.JOYDEVICEREMOVED, instance_id=0)  # ... and the pad is pulled out
    pump(app, app.settled)
    count = len(spy.actions)
    for _ in range(10):
        app.tick()
    assert len(spy.actions) == count and app.running and "disconnected" in app.message
    assert "D-Right" not in app._legend()[0][0]
    tap(pygame.K_3)  # the keyboard still plays
    pump(app, lambda: app.settled() and len(spy.actions) == count + 1)


def test_a_pad_that_cannot_be_opened_is_reported_and_play_goes_on(make_app):  # noqa: F811
    app, spy = make_app()
    post(pygame.JOYDEVICEADDED, device_index=7)  # no such device under the dummy driver
    for _ in range(3):
        app.tick()
    assert app.running and "could not be opened" in app.message


def test_pad_bindings_live_in_the_key_map_with_the_same_checks(tmp_path, monkeypatch, capsys, tiny_world_path):
    table = ActionLabels("a" * 64, ["right", "jump", "left", "stay", "", "", "", ""], config_dir=tmp_path)
    with pytest.raises(BadSettingError, match="already bound to action 0"):
        table.bind(3, "pad:dpad_right")
    with pytest.raises(BadSettingError, match="pause"):
        table.bind(3, "pad:start")
    with pytest.raises(BadSettingError, match="pad:south"):
        table.bind(3, "pad:banana")
    table.bind(3, "pad:Y")  # aliases: the north button
    assert table.keymap().action_for("pad:north") == 3
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert cli_main(["labels", str(tiny_world_path), "--unbind", "0=pad:dpad_right", "--bind", "3=pad:dpad_right"]) == 0
    assert "D-Right" in capsys.readouterr().out
    assert cli_main(["labels", str(tiny_world_path), "--bind", "2=pad:dpad_right"]) == 2
    assert "already bound to action 3" in capsys.readouterr().err
