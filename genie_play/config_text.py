"""A config dataclass as text: one `key=value` line per setting, each with its one line of help.

The help of a field is the comment written beside it in the dataclass's source, so the settings
are documented in one place, where they are defined::

    steps: int = 10_000                  # optimiser steps in total      <- the help of `steps`

A field without a trailing comment takes the first sentence of the comment block right above it;
a field with neither has no help. `field_help(cls)` -> {field: help}; `config_lines(config,
prefix)` -> the lines of every leaf setting of a (nested) config, keys spelt as on the command
line (`model.tokenizer.decoder.depth=4`) and values in the override grammar of overrides.py, so
any line can be pasted back as an override.
"""
from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import io
import re
import textwrap
import tokenize
from typing import Any


@functools.lru_cache(maxsize=None)
def field_help(cls: type) -> dict[str, str]:
    """{field name: one line of help} from the comments in `cls`'s source ({} when it has none)."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
        comments = {tok.start[0]: tok.string.lstrip("#").strip()
                    for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.COMMENT}
        body = ast.parse(source).body[0].body
    except (OSError, TypeError, SyntaxError, tokenize.TokenError, IndexError, AttributeError):
        return {}  # no source (a frozen app, a class made at run time): no help, nothing else changes
    lines = source.splitlines()
    helps = {}
    for node in body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        text = comments.get(node.end_lineno, "")
        if not text:  # the comment block right above the field: its first sentence
            block, row = [], node.lineno - 1
            while row in comments and lines[row - 1].lstrip().startswith("#"):
                block.insert(0, comments[row])
                row -= 1
            text = re.split(r"(?<=\.)\s", " ".join(block), maxsplit=1)[0] if block else ""
        helps[node.target.id] = text
    return helps


def value_text(value: Any) -> str:
    """A value as the override grammar writes it: true/false, none, comma-separated tuples."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, (tuple, list)):
        return ",".join(value_text(v) for v in value)
    return str(value)


def config_items(config: Any, prefix: str = "") -> list[tuple[str, str, str]]:
    """(key, value text, help) of every leaf setting of dataclass `config`, nested configs flattened."""
    items = []
    helps = field_help(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            items += config_items(value, f"{prefix}{f.name}.")
        else:
            items.append((prefix + f.name, value_text(value), helps.get(f.name, "")))
    return items


def config_lines(config: Any, prefix: str = "") -> list[str]:
    """`key=value  # help` lines of `config` (see config_items), the comments lined up."""
    items = config_items(config, prefix)
    width = max((len(k) + len(v) + 1 for k, v, _ in items), default=0) + 2
    return [(f"{k}={v}".ljust(width) + f"# {h}") if h else f"{k}={v}" for k, v, h in items]
