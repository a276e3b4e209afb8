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
    parser.add_argument("--steps", type=int, default=25, help="MaskGIT steps for --bench (default 25)")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "int8"),
                        help="compute precision for --bench (default auto = bf16 where it is fast)")


def run(args: argparse.Namespace) -> int:
    entries = _entries(args.world)
    records = [_record(e) for e in entries]
    if getattr(args, "bench", False):
        if not 1 <= args.steps <= 1000:
            raise BadSettingError(f"--steps must be in 1..1000, got {args.steps}")
        for rec in records:
            if not rec.get("error"):
                rec["bench"] = bench_world(rec["path"], steps=args.steps, precision=args.precision)
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


# ----------------------------------------------------------------------------------------- bench
# Imported lazily: the listing above must not pay for torch.


def frame_flops(config, steps: int) -> dict[str, float]:
    """FLOPs of one played frame, counted from the config: the dynamics' `steps` MaskGIT rounds plus
    the pass that records the final tokens' keys/values (the head only on still-masked tokens, as
    the fast path computes it), the decoder once, and the encoder once per prompt."""
    from ..models.maskgit import mask_counts
    from ..models.st_block import st_block_flops

    d, t = config.dynamics, config.tokenizer
    n = d.tokens_per_frame + (d.action_mode == "token")
    masked = [d.tokens_per_frame] + mask_counts(d.tokens_per_frame, steps)[:-1]  # before each round
    dynamics = (steps + 1) * st_block_flops(d.st, n, d.st.window - 1) + 2.0 * d.st.dim * d.vocab * sum(masked)
    tn, patch = t.tokens_per_frame, t.patch * t.patch * 3
    decode = st_block_flops(t.decoder, tn, t.decoder.window - 1) + 2.0 * tn * (t.vq.code_dim + patch) * t.decoder.dim
    encode = st_block_flops(t.encoder, tn, 0) + 2.0 * tn * ((patch + t.vq.code_dim) * t.encoder.dim + t.vq.code_dim * t.vq.num_codes)
    return {"dynamics": dynamics, "decode": decode, "encode": encode}


def model_shapes(config) -> list[tuple[int, int, int]]:
    """(M, K, N) of the dynamics' matmuls in one MaskGIT round: M = tokens per frame."""
    d = config.dynamics
    m, w, hidden = d.tokens_per_frame, d.st.dim, int(d.st.dim * d.st.mlp_ratio)
    layer = [(m, w, 3 * w), (m, w, w), (m, w, 3 * w), (m, w, w), (m, w, hidden), (m, hidden, w)]
    return layer * d.st.depth + [(m, w, d.vocab)]


def _prompt(world):
    import numpy as np

    h, w = world.frame_size
    return np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)


def time_play(world, steps: int, frames: int) -> dict[str, float]:
    """Median ms per frame of World.step at `steps` MaskGIT steps with a full context window
    (filled at 1 step: the context's content does not change the cost), and encode per prompt."""
    import statistics
    import time

    world.sampling = {"steps": 1}
    world.seed(0)
    world.reset(_prompt(world))
    world.reset(_prompt(world))  # the second prompt: no first-call warm-up in the encode time
    encode = world.last_timings["encode"]
    for i in range(world.config.dynamics.st.window + 1):
        world.step(i % world.num_actions)
    world.sampling = {"steps": steps}
    world.step(0)  # warm-up at this step count
    total, dyn, dec = [], [], []
    for i in range(frames):
        t0 = time.perf_counter()
        world.step(i % world.num_actions)
        total.append((time.perf_counter() - t0) * 1e3)
        dyn.append(world.last_timings["dynamics"])
        dec.append(world.last_timings["decode"])
    med = statistics.median
    return {"encode": encode, "dynamics": med(dyn), "decode": med(dec), "total": med(total), "fps": 1e3 / med(total)}


def time_full_recompute(world, steps: int, frames: int) -> float:
    """ms per frame of the baseline other open implementations use: every MaskGIT round runs the
    dynamics over the whole context window (logits for every token of every frame), with the
    plain sampler; then the decoder over its window."""
    import statistics
    import time

    import torch

    from ..models import maskgit

    d, window = world.config.dynamics, world.config.dynamics.st.window
    gen = torch.Generator().manual_seed(0)
    history = torch.randint(0, d.vocab, (1, window - 1, d.tokens_per_frame), generator=gen, device=world.device)
    acts = world.action_codes[torch.arange(window - 1) % world.num_actions][None]  # (1, W-1, A)
    times = []
    with torch.inference_mode():
        for _ in range(frames):
            t0 = time.perf_counter()
            logits_fn = lambda tok: world.dynamics(torch.cat([history, tok[:, None]], 1), acts)[:, -1]  # noqa: E731
            masked = torch.full((1, d.tokens_per_frame), d.mask_id, device=world.device)
            tokens = maskgit.decode_reference(logits_fn, masked, d.mask_id, steps=steps, generator=gen)
            world.tokenizer.decode(torch.cat([history, tokens[:, None]], 1)[:, -world.config.tokenizer.decoder.window:])
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def bench_world(path: str, steps: int = 25, precision: str = "auto", frames: int = 8) -> dict[str, Any]:
    """The ~10-second play benchmark of `genie-play info --bench` for one world."""
    import torch

    from ..devices import cpu_has_bf16, matmul_rate
    from ..world import World

    world = World.load(path, device="cpu", precision=precision)
    flops = frame_flops(world.config, steps)
    play = time_play(world, steps, frames)
    # int8 is compared with the fastest float path this CPU has: its bf16 (else fp32) matmul rate,
    # and a full recompute in that precision (the training-time forward has no int8 kernels).
    baseline = world
    if world.precision == "int8":
        baseline = World.load(path, device="cpu", precision="bf16" if cpu_has_bf16() else "fp32")
    dtype = torch.float32 if baseline.dynamics.head.weight.dtype == torch.float32 else torch.bfloat16
    peak = matmul_rate(model_shapes(world.config), dtype)
    sweep = {s: time_play(world, s, 3)["fps"] for s in sorted({1, 8, steps})}
    full = time_full_recompute(baseline, steps, 1)
    return {
        "device": world.device_description, "attention": world.attention_path, "linears": world.linear_path, "rounds": world.frame_path, "threads": torch.get_num_threads(), "steps": steps,
        "context_frames": world.config.dynamics.st.window, **{f"{k}_ms": v for k, v in play.items() if k != "fps"},
        "fps": play["fps"], "gflop_per_frame": {k: v / 1e9 for k, v in flops.items()},
        "dynamics_gflops": flops["dynamics"] / play["dynamics"] / 1e6, "matmul_gflops": peak,
        "matmul_dtype": "fp32" if dtype == torch.float32 else "bf16", "full_recompute_ms": full,
        "full_recompute_device": baseline.device_description, "fps_by_steps": sweep,
    }


def bench_text(b: dict[str, Any]) -> list[str]:
    sweep = "/".join(str(s) for s in b["fps_by_steps"])
    return [
        f"  bench ({b['device']}, {b['threads']} thread{'s' * (b['threads'] != 1)}, {b['steps']} MaskGIT steps, context {b['context_frames']} frames): "
        f"{b['fps']:.1f} frames/s = {b['total_ms']:.0f} ms/frame (dynamics {b['dynamics_ms']:.0f}, decode {b['decode_ms']:.0f}; "
        f"encode {b['encode_ms']:.0f} per prompt); attention: {b['attention']}; linears: {b['linears']}; MaskGIT: {b['rounds']}",
        f"    {b['gflop_per_frame']['dynamics'] + b['gflop_per_frame']['decode']:.1f} GFLOP/frame; dynamics at "
        f"{b['dynamics_gflops']:.0f} GFLOP/s = {100 * b['dynamics_gflops'] / b['matmul_gflops']:.0f}% of this CPU's "
        f"{b['matmul_dtype']} matmul rate at the model's shapes ({b['matmul_gflops']:.0f} GFLOP/s)",
        f"    full recompute of the context every step (the usual baseline, {b['full_recompute_device']}): {b['full_recompute_ms']:.0f} ms/frame; "
        f"the cache is {b['full_recompute_ms'] / b['total_ms']:.1f}x faster",
        f"    frames/s at {sweep} MaskGIT steps: " + "/".join(f"{v:.1f}" for v in b["fps_by_steps"].values()),
    ]
