"""`genie-play info [WORLD] [--json]`: the worlds found (user dir, then bundled) and their configs.

Reads bundle headers only (plus one pass over the tensor bytes for the world id); never builds a
model, so it does not import torch and works on a machine without a GPU in a fraction of a second.
A broken bundle is listed with its error instead of stopping the listing.

`--bench` loads each world and times play (about 10 s per world, see `bench_world`); the helpers
here are also what `benchmarks/bench_play.py` builds its full table from.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .. import bundle, paths
from ..errors import BadSettingError, GenieError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("world", nargs="?", help="show only this world (a name or a .safetensors path)")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON instead of text")
    parser.add_argument("--bench", action="store_true",
                        help="also time play on this machine (about 10 s per world): ms per frame, frames per second, "
                             "GFLOP/s against this CPU's matmul rate, and the full-recompute baseline")
    parser.add_argument("--plan", action="store_true",
                        help="also print how this machine would compute each world's frames (engine route, linears, "
                             "attention, MaskGIT, threads and why; imports torch)")
    parser.add_argument("--steps", type=int, default=25, help="MaskGIT steps for --bench (default 25)")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "int8"),
                        help="compute precision for --bench (default auto = bf16 where it is fast)")


def run(args: argparse.Namespace) -> int:
    entries = _entries(args.world)
    records = [_record(e) for e in entries]
    if getattr(args, "bench", False):
        if not 1 <= args.steps <= 1000:
            raise BadSettingError(f"--steps must be in 1..1000, got {args.steps}")
        from .. import speed  # imports torch: only when asked for

        for rec in records:
            if not rec.get("error"):
                rec["bench"] = speed.bench_world(rec["path"], steps=args.steps, precision=args.precision)
    if getattr(args, "plan", False) or getattr(args, "bench", False):
        from ..engine import make_plan  # imports torch: only when asked for
        from ..presets import world_config_from_dict

        for rec in records:
            if not rec.get("error"):
                rec["plan"] = make_plan(world_config_from_dict(rec["config"]), "cpu", args.precision).summary()
    if args.json:
        json.dump({"search": _search_dirs(), "worlds": records}, sys.stdout, indent=2)
        print()
        return 0
    if not records:
        dirs = _search_dirs()
        print(f"no worlds found (looked in {dirs['user']} and {dirs['bundled']}); "
              f"copy a .safetensors world bundle into {dirs['user']} or train one with `genie-play train`")
        return 0
    for i, rec in enumerate(records):
        if i:
            print()
        print("\n".join(_text(rec)))
    return 0


def _search_dirs() -> dict[str, str]:
    return {"user": str(paths.user_worlds_dir()), "bundled": str(paths.bundled_weights_dir())}


def _entries(world: str | None) -> list[bundle.WorldEntry]:
    if world is None:
        return bundle.list_worlds()
    path = bundle.resolve_world(world)
    user_dir, bundled_dir = paths.user_worlds_dir().resolve(), paths.bundled_weights_dir().resolve()
    parent = path.resolve().parent
    where = "user" if parent == user_dir else "bundled" if parent == bundled_dir else "path"
    entry = bundle.WorldEntry(path=path, name=path.stem, where=where, size=_size(path))
    entry.header = bundle.read_header(path)  # asked for by name: a broken file is an error (exit 2)
    return [entry]


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _record(entry: bundle.WorldEntry) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "name": entry.name, "where": entry.where, "path": str(entry.path), "size_bytes": entry.size,
        "shadowed": entry.shadowed, "error": entry.error,
    }
    h = entry.header
    if h is None:
        return rec
    try:
        rec["world_id"] = bundle.compute_world_id(h)
    except GenieError as err:
        rec["error"] = str(err)
        return rec
    namespaces = sorted({name.split(".", 1)[0] for name in h.tensors})
    rec.update(
        format=h.format,
        params={ns: h.num_params(ns + ".") for ns in namespaces},
        stored_dtypes=sorted({t.dtype for t in h.tensors.values()}),
        config=h.config,
        labels=h.labels,
        card=h.card,
    )
    return rec


# ------------------------------------------------------------------------------------------ text


def _text(rec: dict[str, Any]) -> list[str]:
    where = rec["where"] + (", hidden by a user world of the same name" if rec.get("shadowed") else "")
    head = f"{rec['name']}  [{where}]  {rec['size_bytes'] / 1e6:.1f} MB"
    if rec.get("error"):
        return [head, f"  path: {rec['path']}", f"  BROKEN: {rec['error']}"]
    head += f"  id {rec['world_id'][:12]}  {rec['format']}  ({'/'.join(rec['stored_dtypes'])})"
    lines = [head, f"  path: {rec['path']}"]
    try:
        lines += _config_lines(rec["config"], rec["params"])
    except Exception:  # an odd but valid config must never break the listing
        lines.append("  config: " + _short(json.dumps(rec["config"], sort_keys=True), 200))
    labels = rec.get("labels")
    if labels is not None:
        shown = ", ".join(f"{i}={s or '-'}" for i, s in enumerate(labels))
        lines.append(f"  labels: {_short(shown, 160)}")
    if rec.get("plan"):
        lines.append(f"  plan: {rec['plan']}")
    if rec.get("bench"):
        lines += bench_text(rec["bench"])
    if rec.get("card"):
        card = ", ".join(f"{k}={_short(json.dumps(v) if not isinstance(v, str) else v, 40)}" for k, v in rec["card"].items())
        lines.append(f"  card: {_short(card, 200)}")
    return lines


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _find(config: Any, *keys: str) -> Any:
    """The first value under any of `keys`, searching nested dicts breadth-first."""
    queue = [config]
    while queue:
        node = queue.pop(0)
        if isinstance(node, dict):
            for k in keys:
                if k in node and not isinstance(node[k], dict):
                    return node[k]
            queue.extend(v for v in node.values() if isinstance(v, dict))
    return None


def _size_text(value: Any) -> str | None:
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return f"{value[0]}x{value[1]}"
    if isinstance(value, int):
        return f"{value}x{value}"
    return None


def _config_lines(config: dict, params: dict[str, int]) -> list[str]:
    summary = []
    frame = _find(config, "frame_size", "image_size", "resolution")
    if _size_text(frame):
        summary.append(f"frames {_size_text(frame)}")
    tok = config.get("tokenizer") if isinstance(config.get("tokenizer"), dict) else config
    patch = _find(tok, "patch", "patch_size")
    grid = _find(config, "grid")
    if isinstance(frame, (list, tuple)) and len(frame) == 2 and isinstance(patch, int) and patch > 0:
        summary.append(f"{(frame[0] // patch) * (frame[1] // patch)} tokens/frame (patch {patch})")
    elif isinstance(grid, (list, tuple)) and len(grid) == 2:
        summary.append(f"{grid[0] * grid[1]} tokens/frame")
    codes = _find(tok, "num_codes", "codebook_size", "vocab")
    if codes is not None:
        summary.append(f"{codes} codes")
    actions = _find(config.get("dynamics", config), "num_actions")
    if actions is not None:
        mode = _find(config.get("dynamics", {}), "action_mode")
        summary.append(f"{actions} actions" + (f" ({mode})" if mode else ""))
    lines = ["  " + ", ".join(summary)] if summary else []
    for name, component in config.items():
        if not isinstance(component, dict):
            lines.append(f"  {name}: {_short(json.dumps(component), 80)}")
            continue
        parts = []
        for key, value in component.items():
            if isinstance(value, dict):
                depth, dim = _find(value, "depth", "layers", "num_layers"), _find(value, "dim", "width", "d_model", "hidden")
                if depth is not None and dim is not None:
                    heads = _find(value, "heads", "num_heads")
                    parts.append(f"{key} {depth}x{dim}" + (f"/{heads}h" if heads else ""))
                elif key in ("vq", "codebook"):
                    parts.append(f"{key} {_find(value, 'num_codes', 'size')}x{_find(value, 'code_dim', 'dim')}")
        p = params.get(name)
        if p is not None:
            parts.insert(0, f"{p / 1e6:.2f}M params")
        if parts:
            lines.append(f"  {name}: " + ", ".join(parts))
    for name, p in params.items():  # tensors with no config section of their own (e.g. actions)
        if name not in config:
            lines.append(f"  {name}: {p:,} values")
    return lines


def bench_text(b: dict[str, Any]) -> list[str]:
    sweep = "/".join(str(s) for s in b["fps_by_steps"])
    return [
        f"  bench ({b['device']}, {b['threads']} thread{'s' * (b['threads'] != 1)}, {b['steps']} MaskGIT steps, context {b['context_frames']} frames): "
        f"{b['fps']:.1f} frames/s = {b['total_ms']:.0f} ms/frame (dynamics {b['dynamics_ms']:.0f}, decode {b['decode_ms']:.0f}; "
        f"encode {b['encode_ms']:.0f} per prompt)",
        f"    {b['gflop_per_frame']['dynamics'] + b['gflop_per_frame']['decode']:.1f} GFLOP/frame; dynamics at "
        f"{b['dynamics_gflops']:.0f} GFLOP/s = {100 * b['dynamics_gflops'] / b['matmul_gflops']:.0f}% of this CPU's "
        f"{b['matmul_dtype']} matmul rate at the model's shapes ({b['matmul_gflops']:.0f} GFLOP/s)",
        f"    full recompute of the context every step (the usual baseline, {b['full_recompute_device']}): {b['full_recompute_ms']:.0f} ms/frame; "
        f"the cache is {b['full_recompute_ms'] / b['total_ms']:.1f}x faster",
        f"    frames/s at {sweep} MaskGIT steps: " + "/".join(f"{v:.1f}" for v in b["fps_by_steps"].values()),
    ]
