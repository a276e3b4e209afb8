"""Keys <-> action indices, as plain data (no pygame, no torch).

Keys are named the way `pygame.key.name()` names them ("1", "a", "left", "space", "[1]" for the
keypad), so a binding can be stored in JSON, typed on the command line (`--bind 3=space`) and
matched against a pygame event without a display. The control keys of the player are reserved and
can never be bound to an action; every action keeps at least one key (all of them stay reachable).
"""
from __future__ import annotations

import string
from collections.abc import Sequence

from .errors import BadSettingError

# The player's control keys (name -> command). They are never bound to an action.
CONTROL_KEYS: dict[str, str] = {
    "backspace": "rewind",
    "r": "reset",
    "space": "pause",
    "escape": "quit",
    "g": "record",
    "p": "png",
    "h": "hud",
    "o": "next_prompt",
    "l": "explorer",
    "-": "fewer_steps",
    "=": "more_steps",
    "[": "cooler",
    "]": "hotter",
    "e": "sketch",
    # gamepad buttons that are player controls (names: see PAD_INPUTS)
    "pad:start": "pause",
    "pad:back": "reset",
    "pad:lb": "rewind",
    "pad:rb": "explorer",
}
RESERVED_KEYS = frozenset(CONTROL_KEYS)

# Gamepad inputs, named after SDL's game-controller layout (south = A on an Xbox pad, cross on a
# PlayStation pad). A stick direction or a trigger is an input of its own, pressed past half way.
_PAD_DIRECTIONS = ("left", "right", "up", "down")
PAD_INPUTS = frozenset(
    ["pad:south", "pad:east", "pad:west", "pad:north", "pad:start", "pad:back", "pad:guide", "pad:lb", "pad:rb",
     "pad:lt", "pad:rt", "pad:lstick_click", "pad:rstick_click"]
    + [f"pad:{part}_{d}" for part in ("dpad", "lstick", "rstick") for d in _PAD_DIRECTIONS]
    + [f"pad:axis{n}" for n in range(2, 16)]  # extra axes of pads SDL has no mapping for (positive side)
)
PAD_ALIASES: dict[str, str] = {
    "a": "south", "b": "east", "x": "west", "y": "north", "cross": "south", "circle": "east", "square": "west",
    "triangle": "north", "select": "back", "share": "back", "options": "start", "menu": "start", "home": "guide",
    "l1": "lb", "r1": "rb", "l2": "lt", "r2": "rt", "leftshoulder": "lb", "rightshoulder": "rb",
    "lefttrigger": "lt", "righttrigger": "rt", "l3": "lstick_click", "r3": "rstick_click",
    **{d: f"dpad_{d}" for d in _PAD_DIRECTIONS},
    **{f"{d}stick_{x}": f"{d}stick_{x}" for d in "lr" for x in _PAD_DIRECTIONS},
    **{f"{'left' if d == 'l' else 'right'}_stick_{x}": f"{d}stick_{x}" for d in "lr" for x in _PAD_DIRECTIONS},
}
_PAD_DISPLAY = {"south": "Pad A", "east": "Pad B", "west": "Pad X", "north": "Pad Y", "lb": "LB", "rb": "RB",
                "lt": "LT", "rt": "RT", "start": "Start", "back": "Back", "guide": "Guide",
                "lstick_click": "L3", "rstick_click": "R3"}

# Named (non-character) keys a user may bind, as pygame names them.
NAMED_KEYS = frozenset(
    ["left", "right", "up", "down", "return", "tab", "delete", "insert", "home", "end", "page up", "page down"]
    + [f"f{i}" for i in range(1, 13)]
    + [f"[{c}]" for c in "0123456789+-*/."]
) | RESERVED_KEYS | PAD_INPUTS

# What people type -> the pygame name. Keypad Enter ("enter") and Return act as one key.
KEY_ALIASES: dict[str, str] = {
    "esc": "escape", "enter": "return", "spacebar": "space", "del": "delete", "ins": "insert",
    "pgup": "page up", "pageup": "page up", "pgdn": "page down", "pagedown": "page down",
    "minus": "-", "equals": "=", "plus": "=", "lbracket": "[", "rbracket": "]",
    "bksp": "backspace", "back": "backspace",
}
for _d in ("left", "right", "up", "down"):
    KEY_ALIASES[f"{_d} arrow"] = _d
    KEY_ALIASES[f"arrow{_d}"] = _d
    KEY_ALIASES[f"arrow {_d}"] = _d
for _c in "0123456789":
    KEY_ALIASES[f"kp{_c}"] = f"[{_c}]"
    KEY_ALIASES[f"keypad {_c}"] = f"[{_c}]"
    KEY_ALIASES[f"kp {_c}"] = f"[{_c}]"

# Direction words in a world's default labels -> the arrow and WASD keys that should play them.
# The first word of each list is the direction's own name; the others are verbs that mean it.
_DIRECTION_KEYS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "left": (("left", "west", "back", "backward", "backwards"), ("a",)),
    "right": (("right", "east", "forward", "forwards"), ("d",)),
    "up": (("up", "jump", "climb", "hop", "fly", "north"), ("w",)),
    "down": (("down", "drop", "crouch", "duck", "fall", "sink", "south", "descend"), ("s",)),
}
_POSITIONAL_DIRECTIONS = ("left", "right", "up", "down")  # actions 0-3 when labels say nothing
_ALWAYS_BOUND = ("left", "right", "up")  # never left without an action (Down only when a label says so)
_RESTING_WORDS = frozenset(["idle", "stay", "noop", "no-op", "none", "nothing", "wait", "still", "stop"])

def canonical_key(name: str) -> str:
    """A key name in pygame's spelling, lower case; aliases resolved. Does not validate."""
    text = str(name).strip()
    if text[:4].lower() == "pad:":
        part = "_".join(text[4:].lower().replace("-", " ").replace("_", " ").split())
        return "pad:" + PAD_ALIASES.get(part, part)
    if len(text) == 1:
        return text.lower()
    text = " ".join(text.lower().replace("_", " ").split())
    return KEY_ALIASES.get(text, text)


def parse_key(name: str) -> str:
    """A user-typed key name -> its canonical name; BadSettingError if it names no bindable key."""
    key = canonical_key(name)
    if len(key) == 1 and key in string.printable and not key.isspace():
        return key
    if key in NAMED_KEYS:
        return key
    raise BadSettingError(
        f"unknown key {name!r}: use a letter, digit or punctuation key, or one of "
        "left/right/up/down/return/tab/f1-f12/[0]-[9] (keypad), or a gamepad input such as pad:south, "
        "pad:dpad_right, pad:lstick_left, pad:lt"
    )


def key_display(key: str) -> str:
    """Short text of a key for the legend ("1", "Left", "Space", "KP1")."""
    if len(key) == 1:
        return key.upper()
    if key.startswith("pad:"):
        part = key[4:]
        if part in _PAD_DISPLAY:
            return _PAD_DISPLAY[part]
        stick, _, direction = part.partition("_")
        short = {"dpad": "D", "lstick": "LS", "rstick": "RS"}.get(stick)
        return f"{short}-{direction.title()}" if short and direction else part.replace("axis", "Axis ")
    if key.startswith("[") and key.endswith("]") and len(key) == 3:
        return "KP" + key[1]
    return key.title()


def _label_words(label: str) -> list[str]:
    return str(label).lower().replace("-", " ").replace("_", " ").split()


def _direction_score(direction: str, words: list[str]) -> tuple[int, ...] | None:
    """How plausibly a label (as words) means a direction; higher is better, None: not at all.

    An exact label ("right") beats a word inside a label ("jump right"); the direction's own name
    beats a verb for it ("up" beats "jump"); a label that also names another direction ("jump
    right" for Right) loses to one that does not ("step right"); shorter labels win ties."""
    names = _DIRECTION_KEYS[direction][0]
    hits = [names.index(w) for w in words if w in names]
    if not hits:
        return None
    exact = len(words) == 1
    others = sum(1 for d, (ws, _) in _DIRECTION_KEYS.items() if d != direction and any(w in ws for w in words))
    return (int(exact), int(min(hits) == 0), -others, -len(words))


def direction_actions(num_actions: int, default_labels: Sequence[str] = ()) -> dict[str, int]:
    """Which action each arrow direction plays, from the world's labels.

    Pairs are taken best-first by `_direction_score` (ties: the lower action), each action and each
    direction at most once. With no label naming any direction: actions 0-3 as left, right, up,
    down. Otherwise Left, Right and Up still never stay unbound: an unclaimed direction takes the
    lowest unclaimed action, preferring unlabelled ones over labelled ones and those over resting
    labels ("idle", "stay"). Down is bound only when a label says so (or positionally).
    """
    labels = [_label_words(x) for x in list(default_labels)[:num_actions]]
    labels += [[] for _ in range(num_actions - len(labels))]
    candidates = []
    for direction in _DIRECTION_KEYS:
        for action, words in enumerate(labels):
            score = _direction_score(direction, words)
            if score is not None:
                candidates.append((score, -action, direction, action))
    if not candidates:
        return {d: i for i, d in enumerate(_POSITIONAL_DIRECTIONS) if i < num_actions}
    matched: dict[str, int] = {}
    for _, _, direction, action in sorted(candidates, reverse=True):
        if direction not in matched and action not in matched.values():
            matched[direction] = action
    for direction in _ALWAYS_BOUND:
        if direction in matched:
            continue
        free = [a for a in range(num_actions) if a not in matched.values()]
        if not free:
            break

        def preference(a: int) -> tuple[int, int]:
            words = labels[a]
            return (2 if any(w in _RESTING_WORDS for w in words) else 1 if words else 0, a)

        matched[direction] = min(free, key=preference)
    return matched


def default_key_bindings(num_actions: int, default_labels: Sequence[str] = ()) -> list[list[str]]:
    """The keys each action has until the user binds their own.

    Digits 1-9, 0 for the first ten actions; the arrows and WASD as `direction_actions` decides (so
    with labels "jump right" and "right", Right plays "right"), and with them a gamepad's D-pad and
    left stick (its south button jumps: it plays Up); F1-F12 beyond ten actions.
    """
    bindings = [[str((i + 1) % 10)] if i < 10 else [] for i in range(num_actions)]
    for direction, action in direction_actions(num_actions, default_labels).items():
        arrow, wasd = direction, _DIRECTION_KEYS[direction][1][0]
        bindings[action] += [arrow, wasd]
    for direction, action in direction_actions(num_actions, default_labels).items():  # then the pad's
        bindings[action] += [f"pad:dpad_{direction}", f"pad:lstick_{direction}"] + (["pad:south"] if direction == "up" else [])
    for i, keys in enumerate(bindings):  # more than ten actions: a fallback so all stay reachable
        if not keys:
            bindings[i] = [f"f{i - 9}"] if i - 9 <= 12 else []
    return bindings


def check_bindings(bindings: Sequence[Sequence[str]], num_actions: int) -> None:
    """Raise BadSettingError unless: one key list per action, every key valid and not reserved,
    no key on two actions, and every action has at least one key."""
    if len(bindings) != num_actions:
        raise BadSettingError(f"key bindings list {len(bindings)} actions; this world has {num_actions}")
    owner: dict[str, int] = {}
    for action, keys in enumerate(bindings):
        if not keys:
            raise BadSettingError(f"action {action} has no key: every action must stay reachable")
        for key in keys:
            if parse_key(key) != key:
                raise BadSettingError(f"key {key!r} of action {action} is not in canonical form ({parse_key(key)!r})")
            if key in RESERVED_KEYS:
                raise BadSettingError(
                    f"key {key!r} is a player control ({CONTROL_KEYS[key]}) and cannot be bound to action {action}"
                )
            if key in owner and owner[key] != action:
                raise BadSettingError(f"key {key!r} is bound to both action {owner[key]} and action {action}")
            owner[key] = action


class KeyMap:
    """A checked, immutable binding of keys to actions, with lookups both ways."""

    def __init__(self, bindings: Sequence[Sequence[str]]):
        check_bindings(bindings, len(bindings))
        self.bindings: tuple[tuple[str, ...], ...] = tuple(tuple(dict.fromkeys(keys)) for keys in bindings)
        self._action_of = {key: a for a, keys in enumerate(self.bindings) for key in keys}

    @property
    def num_actions(self) -> int:
        return len(self.bindings)

    def action_for(self, key: str) -> int | None:
        """The action bound to a key name (canonicalised, so "Left" and "left" agree), or None."""
        return self._action_of.get(canonical_key(key))

    def keys_for(self, action: int) -> tuple[str, ...]:
        return self.bindings[action]

    def describe(self, action: int, limit: int | None = 3, pad: bool = True) -> str:
        """Keys of an action as legend text, e.g. "1/Left/A" (all of them when limit is None;
        without gamepad inputs when pad is False)."""
        keys = [k for k in self.bindings[action] if pad or not k.startswith("pad:")]
        return "/".join(key_display(k) for k in keys[:limit])

    def as_lists(self) -> list[list[str]]:
        return [list(keys) for keys in self.bindings]


def control_command(key: str) -> str | None:
    """The player command of a control key name ("rewind", "quit", ...), or None."""
    return CONTROL_KEYS.get(canonical_key(key))
