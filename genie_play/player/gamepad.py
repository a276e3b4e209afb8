"""Gamepads for the player: SDL events -> presses and releases of named pad inputs ("pad:south").

The player treats a pad input exactly like a key: its name is looked up in the world's key map
(keymap.PAD_INPUTS, bound with `genie-play labels WORLD --bind 3=pad:dpad_right`), and the pad's
player controls (start, back, shoulders) are in keymap.CONTROL_KEYS.

Two event families reach here. A pad SDL knows (its game-controller mapping database covers most
pads) is opened as a game controller and sends CONTROLLER* events with a standard layout. Any other
joystick sends raw JOY* events, read with the common XInput layout: hat 0 is the D-pad, axes 0/1
the left stick, buttons 0-7 south, east, west, north, LB, RB, back, start; further axes are inputs
"pad:axisN" on their positive side. SDL also sends JOY* events for a game controller: those are
ignored, so nothing fires twice.

Axes fire past half way (0.5) and release below 0.3, so a stick resting near the centre never
chatters. Sticks are measured from their resting position (read when the pad is plugged in); an
axis that rests far from the centre (a trigger reporting -1) is only ever pressed by its positive
side, so an idle trigger fires nothing. Unplugging a pad releases everything it held; play goes on.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pygame

PRESS_AT, RELEASE_AT = 0.5, 0.3
_RAW_BUTTONS = ("south", "east", "west", "north", "lb", "rb", "back", "start", "guide", "lstick_click",
                "rstick_click")
_STICK_AXES = {0: ("lstick", "x"), 1: ("lstick", "y")}  # raw joysticks: only the left stick is known


def _controller_tables() -> tuple[dict[int, str], dict[int, tuple[str, str]]]:
    """SDL game-controller button -> input name, and axis -> (stick or trigger, "x"|"y"|"trigger")."""
    buttons = {
        pygame.CONTROLLER_BUTTON_A: "south", pygame.CONTROLLER_BUTTON_B: "east",
        pygame.CONTROLLER_BUTTON_X: "west", pygame.CONTROLLER_BUTTON_Y: "north",
        pygame.CONTROLLER_BUTTON_BACK: "back", pygame.CONTROLLER_BUTTON_GUIDE: "guide",
        pygame.CONTROLLER_BUTTON_START: "start", pygame.CONTROLLER_BUTTON_LEFTSTICK: "lstick_click",
        pygame.CONTROLLER_BUTTON_RIGHTSTICK: "rstick_click", pygame.CONTROLLER_BUTTON_LEFTSHOULDER: "lb",
        pygame.CONTROLLER_BUTTON_RIGHTSHOULDER: "rb", pygame.CONTROLLER_BUTTON_DPAD_UP: "dpad_up",
        pygame.CONTROLLER_BUTTON_DPAD_DOWN: "dpad_down", pygame.CONTROLLER_BUTTON_DPAD_LEFT: "dpad_left",
        pygame.CONTROLLER_BUTTON_DPAD_RIGHT: "dpad_right",
    }
    axes = {
        pygame.CONTROLLER_AXIS_LEFTX: ("lstick", "x"), pygame.CONTROLLER_AXIS_LEFTY: ("lstick", "y"),
        pygame.CONTROLLER_AXIS_RIGHTX: ("rstick", "x"), pygame.CONTROLLER_AXIS_RIGHTY: ("rstick", "y"),
        pygame.CONTROLLER_AXIS_TRIGGERLEFT: ("lt", "trigger"), pygame.CONTROLLER_AXIS_TRIGGERRIGHT: ("rt", "trigger"),
    }
    return buttons, axes


@dataclass
class _Pad:
    name: str
    device: object = None  # the open pygame Joystick or Controller (kept so SDL keeps sending events)
    controller: bool = False
    rest: dict[int, float] = field(default_factory=dict)  # raw axis -> value at rest


class Gamepads:
    """Open pads (hot-plugged) and the pad inputs they hold. `handle(event)` returns the input
    changes an event makes, as (name, pressed) pairs, or None when the event is not a pad's."""

    def __init__(self) -> None:
        self.pads: dict[int, _Pad] = {}  # SDL instance id -> pad
        self._held: dict[tuple[int, str], bool] = {}  # (instance id, input name) -> pressed
        self._buttons, self._axes = _controller_tables()
        self.messages: list[str] = []  # "gamepad connected: ..." for the player to show
        self.available = False

    def start(self) -> None:
        """Start SDL's joystick and game-controller support; without it pads are simply absent."""
        try:
            pygame.joystick.init()
            from pygame._sdl2 import controller

            controller.init()
            self.available = True
        except (pygame.error, ImportError, AttributeError):
            self.available = False

    @property
    def connected(self) -> bool:
        return bool(self.pads)

    # ---- hot-plug --------------------------------------------------------------------------------
    def _open(self, device_index: int) -> None:
        try:
            from pygame._sdl2 import controller

            if controller.is_controller(device_index):
                device = controller.Controller(device_index)
                stick = device.as_joystick()
                pad = _Pad(device.name or stick.get_name(), device, True)
            else:
                stick = device = pygame.joystick.Joystick(device_index)
                pad = _Pad(stick.get_name(), device, False)
            pad.rest = {a: float(stick.get_axis(a)) for a in range(stick.get_numaxes())}
            instance = stick.get_instance_id()
        except (pygame.error, ImportError, AttributeError, IndexError) as err:
            self.messages.append(f"a gamepad was plugged in but could not be opened ({err})")
            return
        if instance not in self.pads:
            self.pads[instance] = pad
            self.messages.append(f"gamepad connected: {pad.name}")

    def _close(self, instance: int) -> list[tuple[str, bool]]:
        pad = self.pads.pop(instance)
        released = [(f"pad:{name}", False) for (who, name), down in self._held.items() if who == instance and down]
        self._held = {k: v for k, v in self._held.items() if k[0] != instance}
        if pad is not None:
            self.messages.append(f"gamepad disconnected: {pad.name}; play goes on")
        return released

    # ---- events ------------------------------------------------------------------------------------
    def handle(self, event: pygame.event.Event) -> list[tuple[str, bool]] | None:
        kind = event.type
        if kind in (pygame.JOYDEVICEADDED, pygame.CONTROLLERDEVICEADDED):
            if kind == pygame.JOYDEVICEADDED:  # SDL sends both for a controller; open it once
                self._open(event.device_index)
            return []
        if kind in (pygame.JOYDEVICEREMOVED, pygame.CONTROLLERDEVICEREMOVED):
            return self._close(event.instance_id)
        if kind in (pygame.CONTROLLERBUTTONDOWN, pygame.CONTROLLERBUTTONUP):
            name = self._buttons.get(event.button)
            return [] if name is None else self._set(event.instance_id, name, kind == pygame.CONTROLLERBUTTONDOWN)
        if kind == pygame.CONTROLLERAXISMOTION:
            part, direction = self._axes.get(event.axis, (None, None))
            if part is None:
                return []
            value = event.value / 32767.0  # SDL: sticks -32768..32767, triggers 0..32767
            if direction == "trigger":
                return self._axis(event.instance_id, part, value)
            return self._stick(event.instance_id, part, direction, value)
        if kind not in (pygame.JOYBUTTONDOWN, pygame.JOYBUTTONUP, pygame.JOYAXISMOTION, pygame.JOYHATMOTION):
            return None
        instance = getattr(event, "instance_id", getattr(event, "joy", 0))
        pad = self.pads.get(instance)
        if pad is not None and pad.controller:
            return []  # its CONTROLLER* twin is the one that counts
        if kind in (pygame.JOYBUTTONDOWN, pygame.JOYBUTTONUP):
            if not 0 <= event.button < len(_RAW_BUTTONS):
                return []
            return self._set(instance, _RAW_BUTTONS[event.button], kind == pygame.JOYBUTTONDOWN)
        if kind == pygame.JOYHATMOTION:
            if event.hat != 0:
                return []
            x, y = event.value
            return (self._set(instance, "dpad_left", x < 0) + self._set(instance, "dpad_right", x > 0)
                    + self._set(instance, "dpad_up", y > 0) + self._set(instance, "dpad_down", y < 0))
        rest = pad.rest.get(event.axis, 0.0) if pad is not None else 0.0
        if event.axis in _STICK_AXES and abs(rest) < PRESS_AT:
            part, direction = _STICK_AXES[event.axis]
            return self._stick(instance, part, direction, float(event.value) - rest)
        # any other axis, or a stick axis resting far off centre: its positive side only
        return self._axis(instance, f"axis{event.axis}" if event.axis < 16 else "", float(event.value))

    def _stick(self, instance: int, part: str, direction: str, value: float) -> list[tuple[str, bool]]:
        low, high = ("left", "right") if direction == "x" else ("up", "down")  # SDL: y grows downwards
        return self._axis(instance, f"{part}_{low}", -value) + self._axis(instance, f"{part}_{high}", value)

    def _axis(self, instance: int, name: str, value: float) -> list[tuple[str, bool]]:
        if not name:
            return []
        down = self._held.get((instance, name), False)
        if not down and value >= PRESS_AT:
            return self._set(instance, name, True)
        if down and value < RELEASE_AT:
            return self._set(instance, name, False)
        return []

    def _set(self, instance: int, name: str, pressed: bool) -> list[tuple[str, bool]]:
        if self._held.get((instance, name), False) == pressed:
            return []
        self._held[(instance, name)] = pressed
        return [(f"pad:{name}", pressed)]

    def release_all(self) -> list[tuple[str, bool]]:
        """Forget every held input (e.g. when another view takes the pad); returns the releases."""
        released = [(f"pad:{name}", False) for (_, name), down in self._held.items() if down]
        self._held.clear()
        return released
