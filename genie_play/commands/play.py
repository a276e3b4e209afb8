"""`genie-play [IMAGE...] [--world NAME|PATH]`: play a world live in a window.

The checks that can fail cheaply (world name, bundle header, prompt files, settings) run before the
window opens, so a typo ends in a one-line error rather than a window. The world itself is loaded
on the player's worker thread (the window shows "loading the world..." meanwhile); this module and
the UI never import torch.
"""
from __future__ import annotations

import argparse
import random
from pathlib import Path

from ..errors import BadSettingError
from ..player.session import DEFAULT_COAST_FRAMES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="*", metavar="IMAGE", type=Path,
                        help="prompt images; O cycles through them and the bundled prompts (default: a bundled prompt)")
    parser.add_argument("--world", default=None, metavar="NAME|PATH",
                        help="world name or .safetensors path (default: the bundled coinrun world)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | mps (default: auto)")
    parser.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32", "int8"),
                        help="compute precision (default: auto = bf16 where it is fast)")
    parser.add_argument("--seed", type=int, default=None, help="sampling seed (default: random, shown in the HUD)")
    parser.add_argument("--steps", type=int, default=None, help="MaskGIT steps per frame (live: - and =)")
    parser.add_argument("--temperature", type=float, default=None, help="sampling temperature (live: [ and ])")
    parser.add_argument("--fps-cap", type=float, default=None, metavar="FPS",
                        help="at most this many frames per second while a key is held")
    parser.add_argument("--coast", type=int, default=None, metavar="FRAMES",
                        help="frames the world plays on with no action after the last key is released "
                             f"(default: {DEFAULT_COAST_FRAMES} for worlds trained with loss.action_drop, else 0)")
    parser.add_argument("--scale", type=int, default=8, help="initial window scale of the frame (default: 8)")
    parser.add_argument("--smooth", action="store_true", help="smooth upscaling instead of crisp pixels")
    parser.add_argument("--record-dir", type=Path, default=None,
                        help="where G (GIF/MP4), P (PNG) and sketches write (default: your pictures folder/genie-play)")
    parser.add_argument("--record-format", choices=("gif", "mp4"), default="gif",
                        help="what G records (default: gif); Shift+G records the other. mp4 is H.264 and "
                             "needs PyAV: pip install \"genie-play[video]\"")
    parser.add_argument("--record-fps", type=float, default=None,
                        help="recording frame rate (default: the real timing of play)")
    parser.add_argument("--record-scale", type=int, default=4, help="GIF/PNG upscaling factor (default: 4)")
    parser.add_argument("--no-captions", action="store_true", help="no action labels under GIF frames")
    parser.add_argument("--explore-frames", type=int, default=4, help="frames per action in the explorer (L)")


def _check_args(args: argparse.Namespace) -> None:
    checks = [
        (args.steps is not None and not 1 <= args.steps <= 1000, f"--steps {args.steps}: use 1..1000"),
        (args.temperature is not None and not 0 <= args.temperature <= 100,
         f"--temperature {args.temperature}: use a number in [0, 100]"),
        (args.fps_cap is not None and args.fps_cap <= 0, f"--fps-cap {args.fps_cap}: use a positive number"),
        (args.coast is not None and not 0 <= args.coast <= 100, f"--coast {args.coast}: use 0..100"),
        (not 1 <= args.scale <= 64, f"--scale {args.scale}: use 1..64"),
        (args.record_fps is not None and not 0 < args.record_fps <= 100, f"--record-fps {args.record_fps}: use 0..100"),
        (not 1 <= args.record_scale <= 32, f"--record-scale {args.record_scale}: use 1..32"),
        (not 1 <= args.explore_frames <= 16, f"--explore-frames {args.explore_frames}: use 1..16"),
    ]
    for bad, message in checks:
        if bad:
            raise BadSettingError(message)
    if getattr(args, "record_format", "gif") == "mp4":
        from ..video import require_pyav

        require_pyav()  # without PyAV: a one-line BadSettingError saying how to install it
    if str(args.device).split(":")[0].lower() not in ("auto", "cpu", "cuda", "mps"):
        raise BadSettingError(f"unknown device {args.device!r}: use auto, cpu, cuda or mps")


def run(args: argparse.Namespace) -> int:
    from .. import bundle
    from ..images import load_image
    from ..paths import bundled_prompts

    _check_args(args)
    world_path = bundle.resolve_world(args.world)  # WorldNotFoundError before any window opens
    bundle.read_header(world_path)  # a broken or foreign file: BadBundleError now, not in the window
    for image in args.images:
        load_image(image, (16, 16))  # BadImageError names the file (cheap: Pillow only)
    seed = args.seed if args.seed is not None else random.randrange(1 << 31)
    device, precision = args.device, args.precision

    def load_world():  # runs on the worker thread: the only place torch is imported
        from ..devices import set_threads
        from ..world import World

        set_threads()
        return World.load(world_path, device=device, precision=precision)

    from ..player.app import App, PlayOptions

    options = PlayOptions(
        world_name=world_path.stem, seed=seed, steps=args.steps, temperature=args.temperature,
        fps_cap=args.fps_cap, coast=args.coast, scale=args.scale, smooth=args.smooth, record_dir=args.record_dir,
        record_format=args.record_format,
        record_fps=args.record_fps, record_scale=args.record_scale, captions=not args.no_captions,
        explore_frames=args.explore_frames,
    )
    prompts = [p.expanduser() for p in args.images] + bundled_prompts()
    return App(load_world, prompts, options).run()  # no display: a one-line GenieError
