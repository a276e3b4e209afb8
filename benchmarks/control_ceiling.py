"""The controllability report's ceiling for a world's tokenizer, and the world's accuracy by horizon.

A diagnostic beside `true_action_bound.py` (which bounds the LAM's share of the gap): here the
"rollout" of class c from each saved CoinRun state is the tokenizer's reconstruction of c's own real
future (the prompt then the future, encoded and decoded as one clip), scored with the report's own
metric (`train.control.control_metrics`). That is what a perfect dynamics model would score through
this tokenizer, so it says whether the token grid can carry the keys' effects at all; it needs only
a tokenizer, so a new tokenizer can be judged before any dynamics is trained on it. With the world's
own rollouts beside it at horizons 1..K, the table shows where the world falls short: at the first
frame (the action's immediate effect) or by drifting later.

    python benchmarks/control_ceiling.py [--world coinrun] --data data/skip3 [--clips 48] [--seed 0]
                                         [--horizon 8] [--settle 16] [--no-world]

States, held-out levels and frame skip as `genie-play eval WORLD --control --data D` takes them.
"""
from __future__ import annotations

import argparse
import json

import numpy as np
from tqdm import tqdm

from genie_play.devices import set_threads
from genie_play.train.control import control_metrics, rollout_latents
from genie_play.train.control_states import collect_states, heldout_levels
from genie_play.train.data import open_dataset
from genie_play.world import World


def tokenizer_futures(world: World, prompts: np.ndarray, real: np.ndarray, progress: bool = True) -> np.ndarray:
    """real (C, 6, K, H, W, 3) -> the tokenizer's reconstruction of each future after its prompt, same shape."""
    out = np.empty_like(real)
    for i in tqdm(range(len(prompts)), desc="tokenizer", unit="clip", disable=not progress):
        for c in range(real.shape[1]):
            out[i, c] = world.reconstruct(np.concatenate([prompts[i][None], real[i, c]]))[1:]
    return out


def by_horizon(real: np.ndarray, rolled: np.ndarray, prompts: np.ndarray, labels: list[str] | None,
               horizons: list[int]) -> dict[int, dict]:
    """control_metrics over the first k frames of every future, for each k."""
    return {k: control_metrics(real[:, :, :k], rolled[:, :, :k], prompts, labels) for k in horizons}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", default="coinrun")
    ap.add_argument("--data", required=True, help="the dataset the world learned from (held-out levels, frame skip)")
    ap.add_argument("--clips", type=int, default=48)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--horizon", type=int, default=8)
    ap.add_argument("--settle", type=int, default=16, help="idle frames before a state is saved (as eval --control)")
    ap.add_argument("--no-world", action="store_true", help="the tokenizer's ceiling alone (no rollouts)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = ap.parse_args()
    set_threads()
    states = collect_states(heldout_levels(args.data), args.clips, seed=args.seed, horizon=args.horizon,
                            settle=args.settle, frame_skip=open_dataset(args.data).frame_skip)
    exact = World.load(args.world, precision="fp32")  # the tokenizer's own numbers
    ceiling = tokenizer_futures(exact, states.prompts, states.real, progress=not args.json)
    horizons = sorted({1, 2, 4, args.horizon} & set(range(1, args.horizon + 1)))
    rows = {"tokenizer ceiling": by_horizon(states.real, ceiling, states.prompts, None, horizons)}
    if not args.no_world:
        world = World.load(args.world)
        rolled = rollout_latents(world, states.prompts, args.horizon, seed=args.seed, progress=not args.json)
        rows["world, fitted map"] = by_horizon(states.real, rolled, states.prompts, world.labels, horizons)
    if args.json:
        print(json.dumps({name: {k: {"control_accuracy": r["control_accuracy"], "per_class": r["control_accuracy_per_class"],
                                     "distinct_classes": r["distinct_classes"]} for k, r in res.items()}
                          for name, res in rows.items()}))
        return
    print(f"{args.world}: control accuracy over the first k frames ({args.clips} states, seed {args.seed}, "
          f"{args.settle} idle frames before each, chance 0.17)")
    print("| | " + " | ".join(f"k = {k}" for k in horizons) + " | per class at k = " + f"{horizons[-1]} |")
    print("|---" * (len(horizons) + 2) + "|")
    for name, res in rows.items():
        last = res[horizons[-1]]["control_accuracy_per_class"]
        print(f"| {name} | " + " | ".join(f"{res[k]['control_accuracy']:.2f}" for k in horizons) + " | "
              + ", ".join(f"{c} {v:.2f}" for c, v in last.items()) + " |")


if __name__ == "__main__":
    main()
