"""Two trees of this repository side by side: play speed per route, and whether their fp32 frames
are identical (issue 16's "old and new measured in the same run").

    python benchmarks/bench_trees.py OLD [NEW] [--route default|no-compiler|both] [--rounds 5] [--frames 20]
                                     [--steps 25] [--world PATH]

OLD and NEW are git revisions (NEW: the working tree when left out), each exported with `git archive`
into a temporary folder and imported from there; both play the old tree's bundled world unless
--world says otherwise (the new tree must read old bundles). Every round runs one fresh process per tree and
route, alternating (the VMs this project runs on drift by tens of percent within minutes, so both
trees must see the same drift), each timing `World.step` like bench_play.py: a full context window,
`--steps` MaskGIT steps, the median of `--frames` frames. Routes: "default" (what the tree plays
with) and "no-compiler" (`GENIE_PLAY_KERNELS=0`, the PyTorch route). Then each tree rolls out 8
frames in fp32 from a bundled prompt (seed 0, actions 0..7) and the table says whether the frames
are byte-identical. Nothing else may run on the machine meanwhile.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
ROUTES = {"default": {}, "no-compiler": {"GENIE_PLAY_KERNELS": "0"}}

# Run in a child process with the tree on sys.path; uses only the World API both trees share.
CHILD = r"""
import hashlib, json, statistics, sys, time
from genie_play.devices import set_threads
from genie_play.world import World
world, prompt, mode, steps, frames = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
set_threads()
if mode == "frames":
    w = World.load(world, device="cpu", precision="fp32")
    print(json.dumps({"sha256": hashlib.sha256(w.rollout(prompt, list(range(8)), seed=0).tobytes()).hexdigest()}))
    raise SystemExit
w = World.load(world, device="cpu")
w.sampling = {"steps": 1}
w.seed(0)
w.reset(prompt)
for i in range(w.config.dynamics.st.window + 1):  # fill the context (its content does not change the cost)
    w.step(i % w.num_actions)
w.sampling = {"steps": steps}
w.step(0)  # warm-up at this step count
times = []
for i in range(frames):
    t0 = time.perf_counter()
    w.step(i % w.num_actions)
    times.append(time.perf_counter() - t0)
print(json.dumps({"fps": 1.0 / statistics.median(times)}))
"""


def export_tree(revision: str | None, into: Path) -> Path:
    """The files of `revision` (None: the working tree as it is) in a folder under `into`."""
    if revision is None:
        return REPO
    folder = into / revision.replace("/", "_")
    folder.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", revision], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def run_child(tree: Path, args: argparse.Namespace, mode: str, env: dict[str, str]) -> dict:
    full_env = {**os.environ, **env, "PYTHONPATH": str(tree)}
    done = subprocess.run([sys.executable, "-c", CHILD, str(args.world), str(args.prompt), mode, str(args.steps),
                           str(args.frames)], capture_output=True, text=True, env=full_env, cwd=tree)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"bench_trees: {tree} ({mode}) failed: {last}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old", help="git revision of the old tree (e.g. 03082d5)")
    ap.add_argument("new", nargs="?", help="git revision of the new tree (default: the working tree)")
    ap.add_argument("--route", choices=[*ROUTES, "both"], default="both", help="which route to time (default: both)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--frames", type=int, default=20, help="timed frames per process")
    ap.add_argument("--steps", type=int, default=25, help="MaskGIT steps per frame")
    ap.add_argument("--world", type=Path, help="the world both trees play (default: the old tree's bundled world, "
                    "which the new tree must read too)")
    ap.add_argument("--prompt", type=Path, default=sorted((REPO / "assets" / "prompts").glob("coinrun_*.png"))[0])
    args = ap.parse_args()
    names = {"old": args.old, "new": args.new or "working tree"}
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"old": export_tree(args.old, Path(tmp)), "new": export_tree(args.new, Path(tmp))}
        args.world = args.world or trees["old"] / "weights" / "coinrun.safetensors"
        routes = ROUTES if args.route == "both" else {args.route: ROUTES[args.route]}
        fps = {(route, side): [] for route in routes for side in trees}
        with tqdm(total=args.rounds * len(routes) * 2, desc="bench_trees", unit="process") as bar:
            for r in range(args.rounds):
                for route, env in routes.items():
                    for side in (("old", "new") if r % 2 == 0 else ("new", "old")):
                        fps[route, side].append(run_child(trees[side], args, "speed", env)["fps"])
                        bar.update()
        hashes = {side: run_child(tree, args, "frames", {})["sha256"] for side, tree in trees.items()}
        world_name = f"the old tree's {args.world.relative_to(trees['old'])}" if args.world.is_relative_to(trees["old"]) else args.world
    print(f"old: {names['old']}  new: {names['new']}  world: {world_name}  {args.steps} MaskGIT steps, "
          f"{args.frames} frames per process, {args.rounds} alternating rounds")
    print("| route | tree | frames/s by round | median |\n|---|---|---|---|")
    for route in routes:
        for side in trees:
            values = fps[route, side]
            print(f"| {route} | {side} | {', '.join(f'{v:.2f}' for v in values)} | {statistics.median(values):.2f} |")
    for route in routes:
        ratio = statistics.median(fps[route, "new"]) / statistics.median(fps[route, "old"])
        per_round = sorted(n / o for n, o in zip(fps[route, "new"], fps[route, "old"]))  # the same round's drift cancels
        print(f"{route}: new / old {ratio:.3f} (medians); per round {per_round[0]:.2f}-{per_round[-1]:.2f}, "
              f"median {statistics.median(per_round):.2f}")
    print(f"fp32 frames (8 from a bundled prompt, seed 0): {'identical' if hashes['old'] == hashes['new'] else 'DIFFERENT'}")


if __name__ == "__main__":
    main()
