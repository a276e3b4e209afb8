"""`genie-play labels WORLD`: show, set, bind, export or import a world's action labels and keys.

Runs without torch: the world's identity and default labels come from the bundle header
(`bundle.read_header` + `bundle.compute_world_id`), not from loading the model. Changes are applied
in this order: --reset, --import, --set, --unbind, --bind; then the table is saved (atomically),
exported with --export, and printed.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import BadSettingError
from ..labels import ActionLabels


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("world", metavar="WORLD", help="world name or .safetensors path")
    parser.add_argument("--set", action="append", default=[], metavar="I=LABEL",
                        help="label action I (repeatable); an empty label restores the default")
    parser.add_argument("--bind", action="append", default=[], metavar="I=KEY",
                        help="add KEY to action I (repeatable), e.g. 3=j or 0=left")
    parser.add_argument("--unbind", action="append", default=[], metavar="I=KEY",
                        help="remove KEY from action I (an action keeps at least one key)")
    parser.add_argument("--export", type=Path, default=None, metavar="FILE", help="write the labels and keys to FILE")
    parser.add_argument("--import", dest="import_file", type=Path, default=None, metavar="FILE",
                        help="replace this world's labels and keys with FILE's")
    parser.add_argument("--reset", action="store_true", help="forget your labels and keys for this world")


def world_identity(name: str) -> tuple[str, str, list[str], int]:
    """(display name, world_id, default labels, num_actions) of a world, from its header only."""
    from .. import bundle

    path = bundle.resolve_world(name)
    header = bundle.read_header(path)
    num_actions = int(header.config.get("dynamics", {}).get("num_actions", 0) or len(header.labels or []) or 8)
    return path.stem, bundle.compute_world_id(header), list(header.labels or []), num_actions


def _pair(text: str, option: str) -> tuple[int, str]:
    index, sep, value = text.partition("=")
    if not sep or not index.strip().isdigit():
        raise BadSettingError(f"{option} {text!r}: write it as INDEX=VALUE, e.g. {option} 3=jump")
    return int(index), value


def format_table(table: ActionLabels, name: str) -> str:
    where = str(table.path) if table.path.exists() else "(no file: defaults)"
    lines = [f"world {name}  id {table.world_id[:16]}...  labels file {where}", ""]
    rows = [("#", "keys", "label", "source")] + [(str(i), k, lab or "-", src) for i, k, lab, src in table.rows()]
    widths = [max(len(r[c]) for r in rows) for c in range(3)]
    for r in rows:
        lines.append(f"  {r[0]:>{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    name, world_id, default_labels, num_actions = world_identity(args.world)
    table = ActionLabels.load(world_id, default_labels, num_actions, world_name=name)
    if table.notice:
        print(f"genie-play: warning: {table.notice}", file=sys.stderr)
    changed = False
    if args.reset:
        table.reset()
        changed = True
    if args.import_file is not None:
        note = table.import_file(args.import_file)
        if note:
            print(f"genie-play: {note}", file=sys.stderr)
        changed = True
    for text in args.set:
        index, label = _pair(text, "--set")
        table.set_label(index, label)
        changed = True
    for text in args.unbind:
        index, key = _pair(text, "--unbind")
        table.unbind(index, key)
        changed = True
    for text in args.bind:
        index, key = _pair(text, "--bind")
        table.bind(index, key)  # a conflict raises: nothing is saved
        changed = True
    if changed:
        table.save()
    if args.export is not None:
        print(f"exported to {table.save(args.export)}")
    print(format_table(table, name))
    return 0
