"""What one held-out evaluation adds to the wall time of a default-config training run.

    python benchmarks/bench_heldout.py [--phases tokenizer,dynamics] [--steps 6] [--eval-every 3]
                                       [--tokenizer coinrun] [--threads N]

For each phase, `genie-play train PHASE` runs with the default settings (`--preset small`, the
phase's batch and clip length from train/cli.py) on a small synthetic 64x64 dataset (moving
squares; the cost of a step or an evaluation does not depend on the pixels) twice, `--steps`
steps each: once with `eval_every=0` and once with `eval_every=--eval-every`. Pictures and
checkpoints between the ends are off in both, so the runs differ only by their evaluations; a
one-step run before them pays the process's one-time set-up.
The dynamics runs take their tokenizer from the world `--tokenizer`.

The table gives, per phase: the median training step (from metrics.jsonl's `elapsed_s`), the mean
held-out evaluation (its `heldout/seconds`), the extra wall time per evaluation of the run with
evaluations (a direct but noisy measure: on a busy machine the steps' own spread can exceed it),
and what evaluations add to a default run, where one comes every `eval_every` steps (about twelve
a run, optim.default_schedule): one evaluation against the whole run, eval s / (steps x step s),
and all of them, eval s / (eval_every x step s). The issue's floor is 10%.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from genie_play import devices
from genie_play.cli import main as genie_play
from genie_play.train.cli import PHASE_DEFAULTS
from genie_play.train.data import DatasetWriter
from genie_play.train.optim import default_schedule


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def write_dataset(folder: Path, size: int = 64) -> None:
    """12 train and 4 held-out episodes of 60 frames: a square moving over a still background."""
    rng = np.random.default_rng(0)
    with DatasetWriter(folder, size) as writer:
        for e in range(16):
            frames = np.empty((60, size, size, 3), np.uint8)
            frames[:] = rng.integers(0, 256, 3, dtype=np.uint8)
            y, x = rng.integers(0, size - 8, 2)
            for t in range(60):
                frames[t, y : y + 8, x : x + 8] = (250, 220, 40)
                x = int(np.clip(x + rng.integers(-2, 3), 0, size - 8))
            writer.append_episode(frames, None, split="heldout" if e >= 12 else "train", source=f"ep{e}")


def timed_run(phase: str, data: Path, run: Path, steps: int, eval_every: int, tokenizer: str) -> tuple[float, list[dict]]:
    """(wall seconds of the command, its metrics records)."""
    args = ["train", phase, "--data", str(data), "--run", str(run), f"steps={steps}", "log_every=1",
            f"checkpoint_every={10 * steps}", "picture_every=0", f"eval_every={eval_every}"]
    if phase == "dynamics":
        args += ["--tokenizer", tokenizer]
    start = time.perf_counter()
    if genie_play(args) != 0:
        raise SystemExit(f"genie-play {' '.join(args)} failed")
    wall = time.perf_counter() - start
    return wall, [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def step_seconds(records: list[dict]) -> float:
    """Median time of a training step after the first (which also pays for start-up)."""
    elapsed = [r["elapsed_s"] for r in records if "elapsed_s" in r]
    return statistics.median(b - a for a, b in zip(elapsed, elapsed[1:]))


def bench(phase: str, args: argparse.Namespace, folder: Path) -> dict:
    # A first run in the process pays for lazy imports and first-call set-up: not part of either timing.
    timed_run(phase, folder / "data", folder / f"{phase}_warm", 1, 1, args.tokenizer)
    plain_wall, plain = timed_run(phase, folder / "data", folder / f"{phase}_plain", args.steps, 0, args.tokenizer)
    eval_wall, evaluated = timed_run(phase, folder / "data", folder / f"{phase}_eval", args.steps, args.eval_every, args.tokenizer)
    evals = [r["heldout/seconds"] for r in evaluated if "heldout/seconds" in r]
    if not evals:
        raise SystemExit(f"{phase}: no held-out evaluation ran")
    step_s = step_seconds(plain)
    eval_s = statistics.mean(evals)
    steps = PHASE_DEFAULTS[phase]["steps"]
    every = default_schedule(steps)["eval_every"]
    return {"phase": phase, "batch": f"{PHASE_DEFAULTS[phase]['batch_size']}x{PHASE_DEFAULTS[phase]['clip_len']}",
            "step_s": step_s, "eval_s": eval_s, "extra_wall_s": (eval_wall - plain_wall) / len(evals),
            "evals": len(evals), "steps": steps, "every": every, "one": eval_s / (steps * step_s),
            "all": eval_s / (every * step_s)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--phases", default="tokenizer,dynamics")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--eval-every", type=int, default=3)
    ap.add_argument("--tokenizer", default="coinrun", help="world (or phase-1 run) the dynamics runs take their tokenizer from")
    ap.add_argument("--threads", type=int)
    args = ap.parse_args()
    devices.set_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_dataset(folder / "data")
        for phase in args.phases.split(","):
            rows.append(bench(phase, args, folder))
    print(f"\n{cpu_model()}, {torch.get_num_threads()} threads, torch {torch.__version__}; preset small, "
          f"{args.steps} steps per run, eval_every={args.eval_every} against eval_every=0")
    print("| phase | batch (clips x frames) | s/step | s/held-out eval | extra wall s per eval (measured) "
          "| default run: steps, eval_every | one eval / default run | all evals / default run |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['phase']} | {r['batch']} | {r['step_s']:.2f} | {r['eval_s']:.2f} | {r['extra_wall_s']:.2f} "
              f"({r['evals']} evals) | {r['steps']}, {r['every']} | {100 * r['one']:.3f}% | {100 * r['all']:.2f}% |")


if __name__ == "__main__":
    main()
