"""`genie-play rollout IMAGE --actions 0,3,3,7 --out run.gif|run.mp4`: play a list of actions headless.

Loads the world, prompts it with IMAGE, applies the actions with `world.rollout(..., seed=S)` (the
same seed and actions give the same frames) and writes the prompt frame plus one frame per action
as an animated GIF or, for an --out ending in .mp4, an H.264 MP4 (PyAV, the `video` extra), atomically. Everything that can be checked without the model (the action list's
syntax, the settings, the output path) is checked before the model loads.
"""
from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path

from ..errors import BadActionError, BadSettingError
from ..labels import NO_ACTION

MAX_ROLLOUT_ACTIONS = 10_000  # a typo like 3x1000000 should fail fast, not run for a day
_ITEM = re.compile(r"^\s*([+-]?\d+|n)\s*(?:[x*]\s*(\d+)\s*)?$")  # n: no action


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", help="prompt image (PNG, JPEG, GIF, WebP, BMP)")
    parser.add_argument("--world", default="coinrun", help="world name or .safetensors path (default: coinrun)")
    parser.add_argument("--actions", required=True,
                        help="comma-separated action indices, e.g. 0,3,3,7; 3x10 repeats action 3 ten times; "
                             "n is no action (a released key, for worlds trained with loss.action_drop): 2,nx6")
    parser.add_argument("--out", required=True, type=Path,
                        help="output path: .gif (animated GIF) or .mp4 (H.264 video; needs PyAV)")
    parser.add_argument("--steps", type=int, default=25, help="MaskGIT steps per frame (default 25)")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default 1.0; 0 = greedy)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument("--scale", type=int, default=4, help="integer upscale of the output, nearest neighbour (default 4)")
    parser.add_argument("--fps", type=float, default=10.0, help="frames per second of the output (default 10)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | mps (default auto)")
    parser.add_argument("--captions", action="store_true", help="caption each frame with its action and label")


def parse_actions(text: str) -> list[int]:
    """'0,3,3,7' or '0, 3x2, 7' -> [0, 3, 3, 7]; 'n' is NO_ACTION. Syntax errors raise BadActionError
    (range is checked later)."""
    if not isinstance(text, str) or not text.strip():
        raise BadActionError("--actions is empty: give comma-separated action indices, e.g. --actions 0,3,3,7")
    actions: list[int] = []
    for item in text.split(","):
        m = _ITEM.match(item)
        if not m:
            raise BadActionError(f"--actions: {item.strip()[:30]!r} is not an action index; use integers like 0,3,3,7 (3x5 repeats 3 five times)")
        count = int(m.group(2)) if m.group(2) else 1
        if count < 1 or len(actions) + count > MAX_ROLLOUT_ACTIONS:
            raise BadActionError(f"--actions: {item.strip()[:30]!r}: a rollout takes 1..{MAX_ROLLOUT_ACTIONS} actions")
        actions += [NO_ACTION if m.group(1) == "n" else int(m.group(1))] * count
    return actions


def check_action_range(actions: list[int], num_actions: int, world_name: str) -> None:
    for a in actions:
        if a != NO_ACTION and not 0 <= a < num_actions:
            raise BadActionError(f"--actions: action {a} is outside [0, {num_actions}) for world {world_name}; use 0..{num_actions - 1} or n")


def _check_settings(args: argparse.Namespace) -> None:
    if not 1 <= args.steps <= 1000:
        raise BadSettingError(f"--steps {args.steps}: use 1..1000 (25 is the default)")
    if not math.isfinite(args.temperature) or args.temperature < 0:
        raise BadSettingError(f"--temperature {args.temperature}: use a number >= 0 (1.0 is the default)")
    if not 1 <= args.scale <= 32:
        raise BadSettingError(f"--scale {args.scale}: use an integer in 1..32")
    if not math.isfinite(args.fps) or not 0 < args.fps <= 100:
        raise BadSettingError(f"--fps {args.fps}: use a number in (0, 100]")
    if args.out.suffix.lower() not in (".gif", ".mp4"):
        raise BadSettingError(f"--out {args.out}: the rollout is written as an animated GIF or an MP4 video; "
                              "give a path ending in .gif or .mp4")
    if args.out.is_dir():
        raise BadSettingError(f"--out {args.out}: is a directory; give a file path ending in .gif or .mp4")
    if args.out.suffix.lower() == ".mp4":
        from ..video import require_pyav

        require_pyav()  # before the model loads: a one-line message saying how to install PyAV


def captions_for(actions: list[int], labels: list[str]) -> list[str]:
    """One caption per frame: the prompt, then 't: action label' per step."""
    captions = ["prompt"]
    for t, a in enumerate(actions, start=1):
        if a == NO_ACTION:
            captions.append(f"{t}: no action")
            continue
        label = labels[a] if a < len(labels) and labels[a] else ""
        captions.append(f"{t}: {a}" + (f" {label}" if label else ""))
    return captions


def run(args: argparse.Namespace) -> int:
    from .. import World
    from ..gif import write_gif
    from ..images import load_image
    from ..video import write_mp4

    actions = parse_actions(args.actions)
    _check_settings(args)
    image = Path(args.image).expanduser()
    load_image(image, (8, 8))  # a bad prompt fails now, not after the model has loaded

    world = World.load(args.world, device=args.device)
    check_action_range(actions, world.num_actions, args.world)
    world.sampling = dict(steps=args.steps, temperature=args.temperature)
    print(f"rolling out {len(actions)} frames of {args.world} on {world.device_description} "
          f"({args.steps} steps, temperature {args.temperature:g}, seed {args.seed})...", file=sys.stderr)
    prompt = load_image(image, world.frame_size)  # (H, W, 3) uint8
    frames = world.rollout(prompt, actions, seed=args.seed)  # (len(actions)+1, H, W, 3)
    captions = captions_for(actions, list(world.labels)) if args.captions else None
    write = write_mp4 if args.out.suffix.lower() == ".mp4" else write_gif
    path = write(args.out, frames, fps=args.fps, scale=args.scale, captions=captions)
    print(path)
    return 0
