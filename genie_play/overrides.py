"""`--key=value` overrides for any config dataclass, checked against the field types.

The one override grammar: the trainer's `TrainConfig`, the loss config and the model configs
(presets + overrides, dotted keys into nested configs) all take it::

    cfg = apply_overrides(TrainConfig(), ["lr=3e-4", "--betas=0.9,0.95", "compile"])
    world = apply_overrides(preset("small"), ["dynamics.st.depth=4", "tokenizer.frame_size=[64,64]"])

Supported field types: bool, int, float, str, Literal[...], tuple[X, ...] / tuple[X, Y],
Optional[X] / X | None. An unknown key or a value of the wrong type raises `BadSettingError`
with a one-line message that lists the valid keys or shows the expected form.
`config_to_dict` / `config_from_dict` round-trip a config through JSON (tuples come back as tuples).
"""
from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Iterable, TypeVar

from .errors import BadSettingError

C = TypeVar("C")

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
_NONE = ("none", "null")


def _field_types(cls: type) -> dict[str, Any]:
    # get_type_hints resolves the string annotations of `from __future__ import annotations`.
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def _describe(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("none" if a is type(None) else _describe(a) for a in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"comma-separated {_describe(args[0])}s"
        return f"{len(args)} comma-separated values"
    return {bool: "true/false", int: "an integer", float: "a number", str: "text"}.get(tp, getattr(tp, "__name__", str(tp)))


def _parse(tp: Any, text: str) -> Any:
    """Parse `text` as a value of type `tp`; raise ValueError when it does not fit."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and text.strip().lower() in _NONE:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _parse(arg, text)
            except ValueError:
                continue
        raise ValueError(text)
    if origin is typing.Literal:
        for choice in args:
            if str(choice) == text.strip():
                return choice
        raise ValueError(text)
    if origin is tuple:
        parts = [p.strip() for p in text.strip().strip("()[]").split(",") if p.strip()]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_parse(args[0], p) for p in parts)
        if len(parts) != len(args):
            raise ValueError(text)
        return tuple(_parse(a, p) for a, p in zip(args, parts))
    if tp is bool:
        low = text.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ValueError(text)
    if tp is int:
        value = float(text)  # accepts "1e4" and "10_000"; refuses "2.5" below
        if not value.is_integer():
            raise ValueError(text)
        return int(value)
    if tp is float:
        return float(text)
    if tp is str:
        return text
    raise ValueError(f"unsupported field type {tp!r}")


def _is_bool(tp: Any) -> bool:
    return tp is bool or (typing.get_origin(tp) in (typing.Union, types.UnionType) and bool in typing.get_args(tp))


def apply_overrides(config: C, overrides: Iterable[str], prefix: str = "") -> C:
    """A copy of dataclass `config` with each "key=value" (or "--key=value", or a bare bool "key") applied.

    `prefix` is how the command line spells this config's keys (e.g. "model." or "loss."): error
    messages name the key in full, so "model.tokenizer.decodr.depth=2" is reported as the unknown
    setting 'model.tokenizer.decodr' with the valid keys of model.tokenizer."""
    cls = type(config)
    kinds = _field_types(cls)
    valid = ", ".join(kinds)
    changes: dict[str, Any] = {}
    nested: dict[str, list[str]] = {}
    for item in overrides:
        key, sep, text = item.strip().lstrip("-").partition("=")
        key = key.strip().replace("-", "_")
        head, dot, rest = key.partition(".")
        if dot and head in kinds and dataclasses.is_dataclass(kinds[head]):  # a key of a nested config
            nested.setdefault(head, []).append(f"{rest}{sep}{text}")
            continue
        if key not in kinds:
            shown = prefix + (head if dot else key)
            where = f" of {prefix.rstrip('.')}" if prefix else f" for {cls.__name__}"
            raise BadSettingError(f"unknown setting {shown!r}{where}; valid keys: {valid}")
        tp = kinds[key]
        if not sep:
            if not _is_bool(tp):
                raise BadSettingError(f"setting {key!r} needs a value: write {key}=VALUE ({_describe(tp)})")
            text = "true"
        try:
            changes[key] = _parse(tp, text)
        except ValueError:
            raise BadSettingError(f"bad value {text!r} for setting {key!r} of {cls.__name__}: expected {_describe(tp)}") from None
    for head, items in nested.items():
        changes[head] = apply_overrides(getattr(config, head), items, f"{prefix}{head}.")
    return dataclasses.replace(config, **changes)


def config_to_dict(config: Any) -> dict[str, Any]:
    """The JSON-able dict of a config dataclass (tuples become lists)."""
    return dataclasses.asdict(config)


def config_from_dict(cls: type[C], data: dict[str, Any]) -> C:
    """Rebuild a config dataclass from `config_to_dict` output (e.g. read back from JSON).

    Unknown keys raise BadSettingError; missing keys take the class defaults, so configs saved by
    an older version with fewer fields still load.
    """
    kinds = _field_types(cls)
    unknown = sorted(set(data) - set(kinds))
    if unknown:
        raise BadSettingError(f"unknown settings {unknown} for {cls.__name__}; valid keys: {', '.join(kinds)}")
    values = {}
    for key, value in data.items():
        tp = kinds[key]
        # Parse through the same path as the command line, so JSON's 1.0-for-1, lists-for-tuples
        # and wrong types are handled exactly like a typed override.
        try:
            if value is None:
                if not _parse_none_ok(tp):
                    raise ValueError(value)
            elif isinstance(value, (list, tuple)):
                value = _parse(tp, ",".join(str(v) for v in value))
            else:
                value = _parse(tp, str(value).lower() if isinstance(value, bool) else str(value))
        except ValueError:
            raise BadSettingError(f"bad value {value!r} for setting {key!r} of {cls.__name__}: expected {_describe(tp)}") from None
        values[key] = value
    return cls(**values)


def _parse_none_ok(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in typing.get_args(tp)
