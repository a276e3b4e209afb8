"""`genie-play eval WORLD --data DIR [--split heldout]`: the held-out metrics (docs/architecture.md, "Evaluation").

`--control` instead measures controllability (genie_play/train/control.py) on procgen CoinRun states
from the dataset's held-out level range (or `--levels A:B`).
"""
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
    parser.add_argument("--horizon", type=int, default=None, help="frames to roll out (default 10; 8 with --control)")
    parser.add_argument("--delta-t", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=25, help="MaskGIT steps")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32", "int8"],
                        help="compute precision (int8 = the dynamics' linears in int8)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    control = parser.add_argument_group("controllability (--control)")
    control.add_argument("--control", action="store_true",
                         help="controllability report: hold each CoinRun action class and each latent from saved states")
    control.add_argument("--levels", default=None, help="level range START:STOP (default: the dataset's held-out range)")
    control.add_argument("--mode", default="hard", choices=["easy", "hard"], help="procgen distribution_mode (default hard)")
    control.add_argument("--prefix-max", type=int, default=60, help="longest random held-policy prefix before a state (frames)")
    control.add_argument("--settle", type=int, default=16, help="idle frames before a state is saved (default 16)")
    control.add_argument("--press", type=int, default=None, metavar="P",
                         help="tap instead of hold: press each class (and latent) for P frames, then release "
                              "(the world releases with its action labelled 'idle', or see --release)")
    control.add_argument("--release", default="idle", choices=["idle", "none"],
                         help="with --press: the world releases with its 'idle' latent (default) or with no action "
                              "(worlds trained with loss.action_drop)")
    control.add_argument("--frame-skip", type=int, default=None,
                         help="game steps per world frame (default: the dataset's, 1 without a dataset)")
    control.add_argument("--labels-out", type=Path, default=None,
                         help="write the suggested labels (a JSON list, one per action) here, for `train export --labels`")
    control.add_argument("--picture", type=Path, default=None, help="write the control picture (PNG) here")
    control.add_argument("--picture-clips", type=int, default=2, help="clips shown in the picture (default 2)")


def run(args: argparse.Namespace) -> int:
    from ..devices import set_threads
    from ..world import World
    from .data import ClipDataset
    from .evaluate import evaluate, format_report

    set_threads()
    world = World.load(args.world, device=args.device, precision=args.precision)
    world.sampling = {"steps": args.steps, "temperature": args.temperature}
    if args.control:
        return run_control(args, world)
    args.horizon = 10 if args.horizon is None else args.horizon
    dataset = ClipDataset(args.data, split=args.split, clip_len=args.horizon + 1)
    result = evaluate(world, dataset, clips=args.clips, horizon=args.horizon, delta_t=args.delta_t,
                      seed=args.seed, batch=args.batch, progress=not args.json)
    result["split"], result["world"] = args.split, str(world.path)
    print(json.dumps(result) if args.json else f"{world.path} on {args.data} ({args.split})\n" + format_report(result))
    return 0


def run_control(args: argparse.Namespace, world) -> int:
    from ..errors import BadSettingError
    from .control import control_report, format_control_report
    from .control_states import COINRUN_FRAME, collect_states, heldout_levels

    if tuple(world.frame_size) != COINRUN_FRAME:
        raise BadSettingError(f"{world.path}: the control report plays CoinRun at {COINRUN_FRAME[0]}x{COINRUN_FRAME[1]}; "
                              f"this world's frames are {world.frame_size[0]}x{world.frame_size[1]}")
    horizon = 8 if args.horizon is None else args.horizon
    if args.clips < 2 or not 1 <= horizon <= 64 or not 1 <= (args.frame_skip or 1) <= 16 \
            or (args.press is not None and not 1 <= args.press < horizon):
        raise BadSettingError("--control needs --clips >= 2 (two halves), --horizon in 1..64, --frame-skip in 1..16 "
                              "and --press in 1..horizon-1")
    from .data import INDEX_NAME, open_dataset

    levels = heldout_levels(args.data, args.levels)
    # One world frame is as many game steps as one frame of the data the world learned from.
    frame_skip = args.frame_skip or (open_dataset(args.data).frame_skip if (args.data / INDEX_NAME).exists() else 1)
    states = collect_states(levels, args.clips, seed=args.seed, mode=args.mode, horizon=horizon,
                            prefix_max=args.prefix_max, settle=args.settle, frame_skip=frame_skip,
                            press=args.press)
    result = control_report(world, states, seed=args.seed, progress=not args.json, picture=args.picture,
                            picture_clips=args.picture_clips, release=args.release)
    result["world"] = str(world.path)
    if args.labels_out is not None:
        from ..fileio import atomic_write, write_error

        try:
            atomic_write(args.labels_out, json.dumps(result["suggested_labels"]) + "\n")
        except OSError as err:
            raise write_error(args.labels_out, err) from err
        result["labels_out"] = str(args.labels_out)
    print(json.dumps(result) if args.json else f"{world.path}: controllability on CoinRun\n" + format_control_report(result))
    return 0
