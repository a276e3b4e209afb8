"""`genie-play eval WORLD --data DIR [--split heldout]`: the metrics of DESIGN.md section 6."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("world", help="world name or bundle path")
    parser.add_argument("--data", required=True, type=Path, help="dataset folder")
    parser.add_argument("--split", default="heldout", choices=["heldout", "train"],
                        help="evaluate on held-out episodes (default); 'train' only to diagnose overfitting")
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--horizon", type=int, default=10)
    parser.add_argument("--delta-t", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=25, help="MaskGIT steps")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32", "int8"],
                        help="compute precision (int8 = the dynamics' linears in int8)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


def run(args: argparse.Namespace) -> int:
    from ..devices import set_threads
    from ..world import World
    from .data import ClipDataset
    from .evaluate import evaluate, format_report

    set_threads()
    world = World.load(args.world, device=args.device, precision=args.precision)
    world.sampling = {"steps": args.steps, "temperature": args.temperature}
    dataset = ClipDataset(args.data, split=args.split, clip_len=args.horizon + 1)
    result = evaluate(world, dataset, clips=args.clips, horizon=args.horizon, delta_t=args.delta_t,
                      seed=args.seed, batch=args.batch, progress=not args.json)
    result["split"], result["world"] = args.split, str(world.path)
    print(json.dumps(result) if args.json else f"{world.path} on {args.data} ({args.split})\n" + format_report(result))
    return 0
