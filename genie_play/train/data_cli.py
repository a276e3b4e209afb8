"""`genie-play data`: make and inspect training datasets.

    genie-play data coinrun --out data/coinrun64 --levels 0:10000 --frames 400000 \
        --heldout-levels 10000:10500 --heldout-frames 25000 --seed 0
    genie-play data import VIDEO_OR_GIF_OR_FOLDER... --out data/mine --size 64 --fps 15
    genie-play data install-coinrun          # procgen without downgrading numpy
    genie-play data info data/coinrun64
    genie-play data frame data/mine --episode 0 --index 0 --out prompt.png   # a prompt for play/rollout

Writing into a folder that already holds a dataset appends to it (same frame size required);
`--overwrite` deletes that dataset's files first. An import skips sources already in the dataset,
so re-running an interrupted import completes it; `coinrun` refuses to add the same (mode, seed,
levels) twice and refuses train and held-out level ranges that overlap.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..errors import BadDataError, GenieError
from .coinrun_policy import POLICIES
from .data import DEFAULT_SHARD_BYTES, DatasetWriter, open_dataset

FEW_SOURCES = 10  # an import of fewer sources warns that held-out takes whole videos
COINRUN_PACKAGES = ["procgen-mirror", "gym3", "gym==0.26.2", "gym-notices", "cffi", "pycparser", "cloudpickle",
                    "filelock", "imageio", "glfw", "moderngl", "glcontext"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--out", required=True, type=Path, help="dataset folder (created if missing)")
        p.add_argument("--overwrite", action="store_true", help="replace the dataset in --out instead of appending")
        p.add_argument("--shard-mb", type=int, default=DEFAULT_SHARD_BYTES // 2**20, help="shard size in MB (default 256)")

    c = sub.add_parser("coinrun", help="generate procgen CoinRun episodes (actions held for several frames)")
    common(c)
    c.add_argument("--levels", default="0:10000", help="level range START:STOP (half-open) of --split (default 0:10000)")
    c.add_argument("--frames", type=int, default=100_000, help="frames to generate for --split (default 100000)")
    c.add_argument("--split", choices=("train", "heldout"), default="train")
    c.add_argument("--heldout-levels", default=None, help="also generate held-out episodes from these levels")
    c.add_argument("--heldout-frames", type=int, default=25_000, help="frames for --heldout-levels (default 25000)")
    c.add_argument("--mode", choices=("hard", "easy"), default="hard", help="procgen distribution mode (default hard)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--max-episode-frames", type=int, default=500, help="cut episodes after this many frames (default 500)")
    c.add_argument("--min-episode-frames", type=int, default=16, help="drop shorter episodes (default 16)")
    c.add_argument("--envs", type=int, default=16, help="environments run side by side (default 16; part of the seed)")
    c.add_argument("--policy", choices=POLICIES, default="held",
                   help="held (default): one of idle/left/right/jump/jump left/jump right held for --hold frames; "
                        "random: a uniform random procgen action every frame (the Genie paper's data)")
    c.add_argument("--hold", default="4:12", help="held policy: frames an action is held, MIN:MAX (default 4:12)")
    c.add_argument("--frame-skip", type=int, default=1,
                   help="game steps per stored frame (the action repeats for each; default 1)")

    i = sub.add_parser("import", help="import videos, animated GIFs/WebPs and folders of numbered images")
    i.add_argument("paths", nargs="+", type=Path, help="files or folders (folders are searched)")
    common(i)
    i.add_argument("--size", type=int, default=64, help="output frames are SIZE x SIZE, centre-cropped (default 64)")
    i.add_argument("--fps", type=float, default=None, help="resample to this frame rate by time stamps (default: keep all)")
    i.add_argument("--heldout-fraction", type=float, default=0.1, help="share of sources held out for eval (default 0.1)")
    i.add_argument("--min-frames", type=int, default=16, help="skip sources shorter than this (default 16)")

    n = sub.add_parser("install-coinrun", help="install procgen (CoinRun) without touching numpy/torch")
    n.add_argument("--dry-run", action="store_true", help="print the pip command only")

    f = sub.add_parser("info", help="episodes, frames, levels and size of a dataset")
    f.add_argument("folder", type=Path)

    g = sub.add_parser("frame", help="write one frame of a dataset as a PNG (a prompt for play, rollout, explore)")
    g.add_argument("folder", type=Path)
    g.add_argument("--episode", type=int, default=0, help="episode number, as `data info` counts them (default 0)")
    g.add_argument("--index", type=int, default=0, help="frame number inside the episode (default 0)")
    g.add_argument("--out", required=True, type=Path, help="PNG file to write")


def run(args: argparse.Namespace) -> int:
    return {"coinrun": run_coinrun, "import": run_import, "install-coinrun": run_install,
            "info": run_info, "frame": run_frame}[args.data_command](args)


def run_coinrun(args: argparse.Namespace) -> int:
    from .coinrun import generate_episodes, import_procgen, parse_levels, ranges_overlap

    jobs = [(args.split, parse_levels(args.levels), args.frames)]
    if args.heldout_levels is not None:
        if args.split != "train":
            raise GenieError("--heldout-levels goes with --split train (the default); drop --split heldout")
        jobs.append(("heldout", parse_levels(args.heldout_levels), args.heldout_frames))
        if ranges_overlap(jobs[0][1], jobs[1][1]):
            raise GenieError(f"held-out levels {args.heldout_levels} overlap train levels {args.levels}; "
                             f"choose disjoint ranges, e.g. --levels 0:10000 --heldout-levels 10000:10500")
    if args.max_episode_frames < 2 or min(f for _, _, f in jobs) < 1:
        raise GenieError("--frames, --heldout-frames must be >= 1 and --max-episode-frames >= 2")
    hold = _parse_hold(args.hold)
    if not 1 <= args.frame_skip <= 16:
        raise GenieError(f"--frame-skip {args.frame_skip} must be between 1 and 16")
    import_procgen()  # fail before creating any folder when procgen is missing
    with DatasetWriter(args.out, (64, 64), shard_bytes=args.shard_mb * 2**20, overwrite=args.overwrite) as writer:
        for split, levels, _ in jobs:
            other = "heldout" if split == "train" else "train"
            for r in writer.level_ranges().get(other, []):
                if ranges_overlap(levels, (r[0], r[1])):
                    raise GenieError(f"{args.out}: {split} levels {levels[0]}:{levels[1]} overlap its {other} levels "
                                     f"{r[0]}:{r[1]}; choose disjoint ranges or use --overwrite")
            source = _coinrun_source(args, levels, hold)
            if source in writer.sources():
                raise GenieError(f"{args.out}: already holds {source}; use another --seed or --overwrite")
        writer.set_frame_skip(args.frame_skip)
        for split, levels, num_frames in jobs:
            writer.add_level_range(split, *levels)
            source = _coinrun_source(args, levels, hold)
            bar = tqdm(total=num_frames, desc=f"coinrun {split} {levels[0]}:{levels[1]}", unit="frame", unit_scale=True)
            for ep in generate_episodes(levels, num_frames, seed=args.seed, mode=args.mode,
                                        max_episode_frames=args.max_episode_frames,
                                        min_episode_frames=args.min_episode_frames, num_envs=args.envs,
                                        policy=args.policy, hold=hold, frame_skip=args.frame_skip):
                writer.append_episode(ep.frames, ep.actions, split=split, source=source, level=ep.level)
                bar.update(len(ep.frames))
            bar.close()
    print_info(args.out)
    print(next_step(args.out))
    return 0


def _parse_hold(text: str) -> tuple[int, int]:
    a, _, b = text.partition(":")
    try:
        lo, hi = int(a), int(b or a)
    except ValueError:
        raise GenieError(f"bad --hold {text!r}; write MIN:MAX frames, e.g. --hold 4:12") from None
    if not 1 <= lo <= hi:
        raise GenieError(f"bad --hold {text!r}: need 1 <= MIN <= MAX, e.g. --hold 4:12")
    return lo, hi


def _coinrun_source(args: argparse.Namespace, levels: tuple[int, int], hold: tuple[int, int]) -> str:
    """The dataset's name for one generated level range; the policy is part of it (the random
    policy's name is the one v0.1-v0.4's datasets carry)."""
    source = f"coinrun/{args.mode}/seed={args.seed}/levels={levels[0]}:{levels[1]}"
    source += "" if args.policy == "random" else f"/policy={args.policy}:{hold[0]}-{hold[1]}"
    return source + (f"/skip={args.frame_skip}" if args.frame_skip > 1 else "")


def run_import(args: argparse.Namespace) -> int:
    from .importers import find_sources, import_paths

    if args.size < 8:
        raise GenieError(f"--size {args.size} is too small; use e.g. --size 64")
    if not 0 <= args.heldout_fraction < 1:
        raise GenieError(f"--heldout-fraction {args.heldout_fraction} must be in [0, 1)")
    missing = [str(p) for p in args.paths if not p.exists()]
    if missing:
        raise BadDataError(f"{missing[0]}: no such file or folder; check the path")
    if not find_sources(args.paths):
        raise BadDataError(f"{args.paths[0]}: no videos, GIFs or image folders found; check the path")
    with DatasetWriter(args.out, (args.size, args.size), shard_bytes=args.shard_mb * 2**20,
                       overwrite=args.overwrite) as writer:
        report = import_paths(args.paths, writer, size=args.size, fps=args.fps,
                              heldout_fraction=args.heldout_fraction, min_frames=args.min_frames)
    print(report.summary(), file=sys.stderr)
    if report.heldout_sources and report.imported and len(report.imported) < FEW_SOURCES:
        print(f"warning: only {len(report.imported)} sources: the held-out split takes whole videos, so "
              f"{len(report.heldout_sources)} of {len(report.imported)} ({report.heldout_frames} of {report.frames} frames) "
              "went to held-out and are never trained on; import more videos or use --heldout-fraction 0", file=sys.stderr)
    print_info(args.out)
    # A failure only when sources were tried, all failed and the dataset holds none of them: re-importing
    # the same folder (everything already present, the same short files skipped again) is not.
    if report.imported or report.already_present or not report.skipped:
        print(next_step(args.out))
        return 0
    return 1


def run_install(args: argparse.Namespace) -> int:
    # --no-deps: procgen-mirror declares numpy<2 and gym<1, yet runs with numpy 2; its pins would
    # otherwise downgrade the numpy that torch and the rest of genie-play use.
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", *COINRUN_PACKAGES]
    print(" ".join(cmd))
    if args.dry_run:
        return 0
    if subprocess.call(cmd) != 0:
        raise GenieError("pip could not install procgen; see pip's message above (procgen-mirror has wheels "
                         "for CPython 3.8-3.11 on Linux, macOS and Windows)")
    check = subprocess.run([sys.executable, "-c", "from procgen import ProcgenGym3Env; ProcgenGym3Env(num=1, env_name='coinrun')"],
                           capture_output=True, text=True)
    if check.returncode != 0:
        last = (check.stderr.strip().splitlines() or ["unknown error"])[-1]
        raise GenieError(f"procgen installed but does not start ({last})")
    print("CoinRun is ready: genie-play data coinrun --out data/coinrun64")
    return 0


def next_step(folder: Path) -> str:
    """The command that trains on dataset `folder`, with the preset that makes its frame size."""
    from ..presets import presets_for

    h, w = open_dataset(folder).frame_size
    fits = presets_for((h, w))
    if not fits:
        return (f"next: genie-play train tokenizer --data {folder} --run runs/tok, after importing at --size 64 "
                f"(preset small) or --size 16 (preset tiny): no preset makes {h}x{w} frames")
    preset = "" if "small" in fits else f" --preset {fits[0]}"  # small is the default
    return f"next: genie-play train tokenizer --data {folder} --run runs/tok{preset}"


def _du(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def print_info(folder: Path) -> None:
    data = open_dataset(folder)
    h, w = data.frame_size
    size = _du(Path(folder))
    print(f"dataset {folder} ({data.index['format']}): {h}x{w} frames, {len(data.shards)} shards, "
          f"{size / 1e9:.2f} GB on disk")
    for split in ("train", "heldout"):
        eps = [(e, ep) for e, ep in enumerate(data.episodes) if ep["split"] == split]
        frames = sum(ep["length"] for _, ep in eps)
        line = f"  {split:8s} {len(eps):6d} episodes {frames:9d} frames"
        if eps:
            lengths = [ep["length"] for _, ep in eps]
            line += f", length {min(lengths)}-{max(lengths)} (mean {frames / len(eps):.0f})"
            levels = sorted({ep["level"] for _, ep in eps if ep["level"] is not None})
            if levels:
                ranges = ", ".join(f"{a}:{b}" for a, b in data.level_ranges.get(split, []))
                line += f", {len(levels)} levels in {levels[0]}..{levels[-1]}" + (f" (range {ranges})" if ranges else "")
            with_actions = sum(1 for _, ep in eps if data.shards[ep["shard"]].get("actions"))
            line += f", {len({ep['source'] for _, ep in eps})} sources"
            line += f", true actions for {with_actions} episodes" if with_actions else ", no true actions"
        print(line)


def run_frame(args: argparse.Namespace) -> int:
    """Write frame --index of episode --episode as a PNG (atomically)."""
    from ..gif import write_png

    data = open_dataset(args.folder)
    if not 0 <= args.episode < len(data.episodes):
        raise BadDataError(f"{args.folder}: no episode {args.episode}; it has episodes 0..{len(data.episodes) - 1} "
                           "(see genie-play data info)")
    frames = data.episode_frames(args.episode)
    if not 0 <= args.index < len(frames):
        raise BadDataError(f"{args.folder}: episode {args.episode} has frames 0..{len(frames) - 1}, not {args.index}")
    write_png(args.out, np.asarray(frames[args.index]))
    split = data.episodes[args.episode]["split"]
    print(f"wrote {args.out} (episode {args.episode} ({split}), frame {args.index}); "
          f"next: genie-play {args.out} --world WORLD")
    return 0


def run_info(args: argparse.Namespace) -> int:
    print_info(args.folder)
    return 0
