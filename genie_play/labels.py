"""Per-world action labels and key bindings, stored as JSON in the user's config folder.

One file per world, named by the world's identity (the SHA-256 of its tensor bytes), under
``<user_config_dir>/worlds/<world_id>.json``. It holds only what the user changed; the bundle's
default labels and the default keys (keymap.py) apply to everything else. Format::

    {"format": "genie-play-labels/1", "world_id": "<sha256 hex>", "world_name": "coinrun",
     "num_actions": 8, "labels": {"3": "jump"}, "keys": {"3": ["4", "j"]}, "saved_at": "..."}

Writes are atomic (fileio.atomic_write: temp file + fsync + os.replace), so concurrent writers never leave a torn file:
the last write wins whole. A file that cannot be parsed or breaks a rule (unknown format, a key on
two actions, an action without keys, ...) is moved aside to ``<name>.corrupt-<timestamp>``, reported
in ``ActionLabels.notice``, and the defaults apply. Nothing here needs torch or pygame.
"""
from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path

from .errors import BadSettingError, GenieError, OutputError
from .fileio import atomic_write
from .keymap import CONTROL_KEYS, KeyMap, check_bindings, default_key_bindings, key_display, parse_key

LABELS_FORMAT = "genie-play-labels/1"
NO_ACTION = -1  # an action that is no key: the dynamics' "no action" input (World.learned_no_action)
MAX_LABEL_CHARS = 40


class BadLabelsFileError(GenieError):
    """A labels file (import or export) that cannot be read, parsed or used."""


def labels_dir(config_dir: str | os.PathLike | None = None) -> Path:
    if config_dir is None:
        from .paths import user_config_dir

        config_dir = user_config_dir()
    return Path(config_dir) / "worlds"


def clean_label(text: str) -> str:
    """One line of printable text, at most MAX_LABEL_CHARS characters."""
    text = "".join(ch if ch.isprintable() else " " for ch in str(text))
    return " ".join(text.split())[:MAX_LABEL_CHARS]


def _parse_overrides(data: object, num_actions: int, where: str) -> tuple[dict[int, str], dict[int, list[str]], str]:
    """Validate the JSON of a labels file -> (labels, keys, world_id). Raises ValueError(reason)."""
    if not isinstance(data, dict):
        raise ValueError("the top level is not a JSON object")
    if data.get("format") != LABELS_FORMAT:
        raise ValueError(f"format is {data.get('format')!r}, expected {LABELS_FORMAT!r}")
    if int(data.get("num_actions", num_actions)) != num_actions:
        raise ValueError(f"it is for {data.get('num_actions')} actions; this world has {num_actions}")
    labels: dict[int, str] = {}
    keys: dict[int, list[str]] = {}
    for name, table in (("labels", labels), ("keys", keys)):
        raw = data.get(name, {})
        if not isinstance(raw, dict):
            raise ValueError(f"{name!r} is not an object of action index -> value")
        for index_text, value in raw.items():
            if not re.fullmatch(r"\d+", str(index_text)) or not 0 <= int(index_text) < num_actions:
                raise ValueError(f"{name!r} has action {index_text!r}; actions are 0-{num_actions - 1}")
            if name == "labels":
                if not isinstance(value, str):
                    raise ValueError(f"label of action {index_text} is not a string")
                table[int(index_text)] = clean_label(value)
            else:
                if not isinstance(value, list) or not all(isinstance(k, str) for k in value):
                    raise ValueError(f"keys of action {index_text} are not a list of key names")
                table[int(index_text)] = [parse_key(k) for k in value]
    world_id = data.get("world_id", "")
    if not isinstance(world_id, str):
        raise ValueError("world_id is not a string")
    return labels, keys, world_id


class ActionLabels:
    """The labels and keys of one world's actions: bundle defaults + the user's overrides."""

    def __init__(self, world_id: str, default_labels: Sequence[str], num_actions: int | None = None,
                 config_dir: str | os.PathLike | None = None, world_name: str = ""):
        if not re.fullmatch(r"[0-9a-fA-F]{8,128}", str(world_id)):
            raise BadSettingError(f"world id {world_id!r} is not a hex hash")
        self.world_id = str(world_id).lower()
        self.num_actions = int(num_actions if num_actions is not None else len(default_labels))
        labels = [clean_label(x) for x in list(default_labels)[: self.num_actions]]
        self.default_labels = labels + [""] * (self.num_actions - len(labels))
        self.default_keys = default_key_bindings(self.num_actions, self.default_labels)
        self.world_name = world_name
        self.path = labels_dir(config_dir) / f"{self.world_id}.json"
        self.user_labels: dict[int, str] = {}
        self.user_keys: dict[int, list[str]] = {}
        self.notice: str | None = None  # a problem met while loading, for the CLI / HUD to show

    # ---- loading -------------------------------------------------------------------------------
    @classmethod
    def load(cls, world_id: str, default_labels: Sequence[str], num_actions: int | None = None,
             config_dir: str | os.PathLike | None = None, world_name: str = "") -> "ActionLabels":
        """The stored table of a world; defaults when there is no file or it is corrupt (then
        the file is moved aside and `notice` says so)."""
        table = cls(world_id, default_labels, num_actions, config_dir, world_name)
        try:
            text = table.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return table
        except OSError as err:
            table.notice = f"cannot read labels file {table.path} ({err.strerror}); using the defaults"
            return table
        try:
            labels, keys, _ = _parse_overrides(json.loads(text), table.num_actions, str(table.path))
            keys, dropped = _without_player_controls(keys)
            table._apply(labels, keys)
            if dropped:  # a key a newer player reserved (E: sketch mode): the rest of the file still applies
                table.notice = (f"key {', '.join(dropped)} is now a player control (E: sketch mode) and no longer "
                                "plays an action; your other labels and keys are kept")
        except (ValueError, GenieError) as err:  # json.JSONDecodeError is a ValueError
            table.user_labels, table.user_keys = {}, {}
            backup = table._move_aside()
            where = f"moved it to {backup.name}" if backup else "could not move it aside"
            table.notice = (f"labels file {table.path} was broken ({_first_line(err)}); {where} "
                            "and using the default labels and keys")
        return table

    def _apply(self, labels: dict[int, str], keys: dict[int, list[str]]) -> None:
        merged = [keys.get(a, self.default_keys[a]) for a in range(self.num_actions)]
        check_bindings(merged, self.num_actions)  # BadSettingError -> the caller reports it
        self.user_labels = {a: t for a, t in labels.items()}
        self.user_keys = {a: list(dict.fromkeys(k)) for a, k in keys.items() if k != self.default_keys[a]}

    def _move_aside(self) -> Path | None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for n in range(100):
            backup = self.path.with_name(f"{self.path.name}.corrupt-{stamp}" + (f"-{n}" if n else ""))
            if backup.exists():
                continue
            try:
                os.replace(self.path, backup)
                return backup
            except FileNotFoundError:  # another process moved it first
                return None
            except OSError:
                return None
        return None

    # ---- reading ---------------------------------------------------------------------------------
    def label(self, action: int) -> str:
        """The user's label, else the bundle's default, else ""; "no action" for NO_ACTION."""
        if action == NO_ACTION:
            return "no action"
        return self.user_labels.get(action, self.default_labels[action])

    def display_label(self, action: int) -> str:
        return self.label(action) or f"action {action}"

    def source(self, action: int) -> str:
        if action in self.user_labels:
            return "user"
        return "bundle" if self.default_labels[action] else "none"

    def keys_for(self, action: int) -> list[str]:
        return list(self.user_keys.get(action, self.default_keys[action]))

    def keymap(self) -> KeyMap:
        return KeyMap([self.keys_for(a) for a in range(self.num_actions)])

    def rows(self) -> list[tuple[int, str, str, str]]:
        """(index, keys, label, source) per action; source "user", "bundle" or "none", with
        "+keys" when the user changed that action's keys."""
        km = self.keymap()
        return [(a, km.describe(a, limit=8), self.label(a), self.source(a) + ("+keys" if a in self.user_keys else ""))
                for a in range(self.num_actions)]

    # ---- changing ------------------------------------------------------------------------------
    def _check_action(self, action: int) -> int:
        if not isinstance(action, int) or not 0 <= action < self.num_actions:
            raise BadSettingError(f"action {action!r} is out of range: actions are 0-{self.num_actions - 1}")
        return action

    def set_label(self, action: int, text: str) -> None:
        """Set a label; an empty text goes back to the bundle's default."""
        self._check_action(action)
        text = clean_label(text)
        if text and text != self.default_labels[action]:
            self.user_labels[action] = text
        else:
            self.user_labels.pop(action, None)

    def bind(self, action: int, key: str) -> None:
        """Add a key to an action. Refused (BadSettingError) if the key is a player control or
        already belongs to another action; it must be unbound there first."""
        self._check_action(action)
        key = parse_key(key)
        if key in CONTROL_KEYS:
            raise BadSettingError(f"key {key_display(key)} is the player's {CONTROL_KEYS[key]} key and cannot be bound")
        owner = self.keymap().action_for(key)
        if owner == action:
            return
        if owner is not None:
            raise BadSettingError(
                f"key {key_display(key)} is already bound to action {owner} ({self.display_label(owner)}); "
                f"unbind it from action {owner} first"
            )
        self._set_keys(action, self.keys_for(action) + [key])

    def unbind(self, action: int, key: str) -> None:
        """Remove a key from an action; refused if it is the action's last key."""
        self._check_action(action)
        key = parse_key(key)
        keys = self.keys_for(action)
        if key not in keys:
            raise BadSettingError(f"key {key_display(key)} is not bound to action {action}")
        if len(keys) == 1:
            raise BadSettingError(f"key {key_display(key)} is the last key of action {action}: bind another key first "
                                  "(every action must stay reachable)")
        self._set_keys(action, [k for k in keys if k != key])

    def _set_keys(self, action: int, keys: list[str]) -> None:
        merged = [keys if a == action else self.keys_for(a) for a in range(self.num_actions)]
        check_bindings(merged, self.num_actions)
        if keys == self.default_keys[action]:
            self.user_keys.pop(action, None)
        else:
            self.user_keys[action] = keys

    def reset(self) -> None:
        """Forget the user's labels and keys (saved on save())."""
        self.user_labels, self.user_keys = {}, {}

    # ---- files -----------------------------------------------------------------------------------
    def to_json(self) -> dict:
        return {
            "format": LABELS_FORMAT,
            "world_id": self.world_id,
            "world_name": self.world_name,
            "num_actions": self.num_actions,
            "labels": {str(a): t for a, t in sorted(self.user_labels.items())},
            "keys": {str(a): k for a, k in sorted(self.user_keys.items())},
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }

    def save(self, path: str | os.PathLike | None = None) -> Path:
        """Write the table (atomically) to its per-world file, or to `path` (an export)."""
        target = Path(path) if path is not None else self.path
        try:
            atomic_write(target, json.dumps(self.to_json(), indent=2, ensure_ascii=False) + "\n")
        except OSError as err:
            raise OutputError(f"cannot write labels file {target}: {err.strerror}; check the folder is writable") from err
        return target

    def import_file(self, path: str | os.PathLike) -> str | None:
        """Replace the overrides with a file's (not saved until save()). Returns a note when the
        file was made for another world; raises BadLabelsFileError if it is unusable."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            labels, keys, world_id = _parse_overrides(data, self.num_actions, str(path))
            self._apply(labels, keys)
        except FileNotFoundError as err:
            raise BadLabelsFileError(f"labels file {path} does not exist; check the path") from err
        except OSError as err:
            raise BadLabelsFileError(f"cannot read labels file {path} ({err.strerror})") from err
        except (ValueError, GenieError) as err:
            raise BadLabelsFileError(f"labels file {path} is not usable: {_first_line(err)}") from err
        if world_id and world_id.lower() != self.world_id:
            return f"note: {path.name} was exported from another world ({world_id[:12]}...); imported anyway"
        return None


# Keys that became player controls after files of this format were first written (E: sketch mode,
# issue 19). A file binding one is not broken: the key is dropped, the rest of the file applies.
NEWLY_RESERVED_KEYS = frozenset(["e"])


def _without_player_controls(keys: dict[int, list[str]]) -> tuple[dict[int, list[str]], list[str]]:
    """Stored key lists without the NEWLY_RESERVED_KEYS (saved by an older version); an action left
    with no key drops its override (its default keys apply). -> (keys, dropped key names)."""
    kept: dict[int, list[str]] = {}
    dropped: list[str] = []
    for action, names in keys.items():
        dropped += [key_display(k) for k in names if k in NEWLY_RESERVED_KEYS]
        rest = [k for k in names if k not in NEWLY_RESERVED_KEYS]
        if rest or len(rest) == len(names):  # an empty list stays (and is refused as before)
            kept[action] = rest
    return kept, list(dict.fromkeys(dropped))


def _first_line(err: BaseException) -> str:
    return (str(err).splitlines() or [type(err).__name__])[0]


def read_label_list(path: str | os.PathLike, num_actions: int) -> list[str]:
    """The labels of a file, one per action ("" where unset), for `train export --labels FILE`:
    either a JSON list of strings or a file written by `genie-play labels WORLD --export FILE`."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, list):
            if len(data) != num_actions or not all(isinstance(x, str) for x in data):
                raise ValueError(f"a list of labels must hold {num_actions} strings")
            return [clean_label(x) for x in data]
        labels, _, _ = _parse_overrides(data, num_actions, str(path))
    except FileNotFoundError as err:
        raise BadLabelsFileError(f"labels file {path} does not exist; check the path") from err
    except OSError as err:
        raise BadLabelsFileError(f"cannot read labels file {path} ({err.strerror})") from err
    except (ValueError, GenieError) as err:
        raise BadLabelsFileError(f"labels file {path} is not usable: {_first_line(err)}") from err
    return [labels.get(a, "") for a in range(num_actions)]
