"""Training throughput per phase, through the real training loop, beside this machine's matmul peak.

    python benchmarks/bench_train.py [--preset small] [--phases tokenizer,dynamics] [--precisions fp32,bf16]
                                     [--steps 6] [--warmup 2] [--batch-size B] [--clip-len T] [--threads N]

For each phase and precision: trains `--steps` optimiser steps with `genie_play.train.loop.Trainer`
on random uint8 clips (throughput does not depend on the pixels) in a temporary run folder, and
reports tokens/s and s/step over the steps after `--warmup`, plus the achieved GFLOP/s: FLOPs of
one forward + backward counted by torch's FlopCounterMode (matmuls and convolutions; the AdamW
update and elementwise work are not counted) divided by the measured step time. The matmul peak
(square N=2048 torch.matmul, best of 5) is measured in the same run for fp32 and bf16.
Batch size and clip length default to the phase defaults of `genie-play train` (train/cli.py).
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
from torch.utils.flop_counter import FlopCounterMode

from genie_play import devices
from genie_play.presets import preset
from genie_play.train.cli import PHASE_DEFAULTS
from genie_play.train.loop import Trainer, TrainConfig


class RandomClips:
    """An in-memory stand-in for ClipDataset: random frames, the same sampling contract."""

    def __init__(self, count: int, clip_len: int, frame_size: tuple[int, int], seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.clips = rng.integers(0, 256, (count, clip_len, *frame_size, 3), dtype=np.uint8)

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.clips[i]

    def sample_indices(self, n: int, seed: int, step: int, rank: int = 0, world_size: int = 1) -> np.ndarray:
        return np.random.default_rng([seed, step]).integers(0, len(self), n * world_size).reshape(world_size, n)[rank]


def matmul_peak(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    """Best GFLOP/s of an n x n matmul in `dtype` on the CPU."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.matmul(a, b)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def build_module(phase: str, preset_name: str) -> tuple[torch.nn.Module, int, tuple[int, int]]:
    """(training module, tokens per frame, frame size) of a phase at a preset, random weights."""
    cfg = preset(preset_name)
    torch.manual_seed(0)
    if phase == "tokenizer":
        from genie_play.train.stage_tokenizer import TokenizerTrainer

        module = TokenizerTrainer(cfg.tokenizer)
    else:
        from genie_play.models.tokenizer import Tokenizer
        from genie_play.train.stage_dynamics import DynamicsTrainer

        module = DynamicsTrainer(cfg, Tokenizer(cfg.tokenizer))
    return module, cfg.tokenizer.tokens_per_frame, tuple(cfg.tokenizer.frame_size)


def step_flops(module: torch.nn.Module, frames: torch.Tensor, amp: torch.dtype | None) -> int:
    """FLOPs of one forward + backward (matmuls/convolutions) on `frames`."""
    counter = FlopCounterMode(display=False)
    with counter:
        with torch.autocast("cpu", dtype=amp, enabled=amp is not None):
            loss, _ = module(frames, 0)
        loss.float().backward()
    module.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def bench(phase: str, precision: str, args: argparse.Namespace) -> dict:
    module, tokens_per_frame, frame_size = build_module(phase, args.preset)
    defaults = PHASE_DEFAULTS[phase]
    batch = args.batch_size or defaults["batch_size"]
    clip_len = args.clip_len or defaults["clip_len"]
    data = RandomClips(max(4 * batch, 16), clip_len, frame_size)
    amp = devices.autocast_dtype(torch.device("cpu"), precision)
    flops = step_flops(module, torch.from_numpy(data.clips[:batch]), amp)
    module.tokens_per_frame = tokens_per_frame  # the loop's tokens/s uses it
    cfg = TrainConfig(steps=args.steps, batch_size=batch, clip_len=clip_len, precision=precision, warmup_steps=1,
                      log_every=1, checkpoint_every=10**9, picture_every=0, num_workers=1)
    with tempfile.TemporaryDirectory() as run_dir:
        Trainer(module, data, cfg, Path(run_dir), "cpu").run()
        rows = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
        rows = [r for r in rows if "tokens_per_s" in r]  # training records, not held-out evaluations
    timed = rows[args.warmup:] or rows[-1:]
    tokens_per_s = statistics.median(r["tokens_per_s"] for r in timed)
    step_s = batch * clip_len * tokens_per_frame / tokens_per_s
    return {"phase": phase, "precision": devices.describe(torch.device("cpu"), amp), "batch": f"{batch}x{clip_len}",
            "params_M": sum(p.numel() for p in module.parameters() if p.requires_grad) / 1e6,
            "s_per_step": step_s, "tokens_per_s": tokens_per_s, "gflops": flops / step_s / 1e9}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="small")
    ap.add_argument("--phases", default="tokenizer,dynamics")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=2, help="first steps left out of the timing")
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--clip-len", type=int)
    ap.add_argument("--threads", type=int)
    args = ap.parse_args()
    devices.set_threads(args.threads)
    peaks = {p: matmul_peak(d) for p, d in (("fp32", torch.float32), ("bf16", torch.bfloat16))}
    print(f"preset {args.preset}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
          f"matmul peak (N=2048): fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s")
    print("| phase | precision | batch (clips x frames) | trainable params (M) | s/step | tokens/s | GFLOP/s (fwd+bwd) | % of matmul peak |")
    print("|---|---|---|---|---|---|---|---|")
    for phase in args.phases.split(","):
        for precision in args.precisions.split(","):
            r = bench(phase, precision, args)
            peak = peaks["bf16" if "bf16" in r["precision"] else "fp32"]
            print(f"| {r['phase']} | {r['precision']} | {r['batch']} | {r['params_M']:.2f} | {r['s_per_step']:.2f} | "
                  f"{r['tokens_per_s']:,.0f} | {r['gflops']:.0f} | {100 * r['gflops'] / peak:.0f}% |", flush=True)


if __name__ == "__main__":
    main()
