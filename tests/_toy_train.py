"""A tiny runnable training entry for tests/test_loop.py (subprocess, SIGKILL/SIGINT and torchrun tests).

    python tests/_toy_train.py --run-dir DIR [--die-at-step K] [--sigint-at-step K] [key=value ...]
    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/_toy_train.py --run-dir DIR ...

Trains `ToyModule` (a per-frame autoencoder that also uses the torch, python and numpy RNGs and
changes a buffer in forward, so a resume must restore all of them) on `SpriteClips`.
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from genie_play.train.loop import (Trainer, TrainConfig, apply_overrides, init_distributed,  # noqa: E402
                                   shutdown_distributed)


class SpriteClips:
    """`count` clips of T frames (size x size) of a bright square moving right; a fake ClipDataset."""

    def __init__(self, count: int = 24, clip_len: int = 4, size: int = 8, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.clips = np.zeros((count, clip_len, size, size, 3), np.uint8)
        for i in range(count):
            y, x = rng.integers(0, size - 2, 2)
            colour = rng.integers(64, 256, 3)
            for t in range(clip_len):
                xx = (x + t) % (size - 1)
                self.clips[i, t, y:y + 2, xx:xx + 2] = colour

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.clips[i]

    def sample_indices(self, n: int, seed: int, step: int, rank: int, world_size: int) -> np.ndarray:
        rng = np.random.default_rng([seed, step])
        return rng.integers(0, len(self), n * world_size).reshape(world_size, n)[rank]


class ToyModule(nn.Module):
    tokens_per_frame = 4

    def __init__(self, size: int = 8, hidden: int = 16, noise: bool = True) -> None:
        super().__init__()
        self.noise = noise  # False: a deterministic function of the batch (for the accumulation test)
        d = size * size * 3
        self.encode = nn.Linear(d, hidden)
        self.norm = nn.LayerNorm(hidden)
        self.decode = nn.Linear(hidden, d)
        self.register_buffer("frames_seen", torch.zeros((), dtype=torch.int64))
        self.die_at_step: int | None = None  # SIGKILL itself during this step
        self.signal_at_step: int | None = None  # send itself `signal_to_send` during this step
        self.signal_to_send = signal.SIGINT
        self.sleep = 0.0

    def forward(self, frames: torch.Tensor, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if step == self.die_at_step:
            os.kill(os.getpid(), signal.SIGKILL)
        if step == self.signal_at_step:
            os.kill(os.getpid(), self.signal_to_send)
        if self.sleep:
            time.sleep(self.sleep)
        x = frames.float().flatten(2) / 255.0  # (B, T, H*W*3)
        # Noise from the torch, python and numpy RNGs: a resume that forgot one of them would differ.
        if self.noise:
            x_in = x + torch.randn_like(x) * 0.01 * (random.random() + float(np.random.rand()))
        else:
            x_in = x
        h = nn.functional.dropout(self.norm(torch.relu(self.encode(x_in))), 0.1, self.training and self.noise)
        recon = self.decode(h)
        loss = nn.functional.mse_loss(recon.float(), x)
        self.frames_seen += frames.shape[0] * frames.shape[1]
        return loss, {"mse": loss.detach(), "mean_code": h.detach().float().mean()}

    def write_pictures(self, frames: torch.Tensor, path: Path) -> None:
        from PIL import Image

        x = frames[:, 0].float().flatten(1) / 255.0
        recon = (self.decode(self.norm(torch.relu(self.encode(x)))).clamp(0, 1) * 255).byte()
        img = torch.cat([frames[:, 0], recon.view_as(frames[:, 0])], dim=2).flatten(0, 1).cpu().numpy()
        Image.fromarray(img).save(path)


def train(run_dir: Path, overrides: list[str], die_at_step: int | None = None, sigint_at_step: int | None = None,
          sleep: float = 0.0) -> Trainer:
    """Build the toy module (same initial weights every time) and train it; returns the Trainer."""
    cfg = apply_overrides(TrainConfig(steps=12, batch_size=4, clip_len=4, lr=1e-2, warmup_steps=3, precision="fp32",
                                      log_every=1, checkpoint_every=4, picture_every=6), overrides)
    torch.manual_seed(1234)  # same initial weights on every rank and every run
    module = ToyModule()
    module.die_at_step, module.signal_at_step, module.sleep = die_at_step, sigint_at_step, sleep
    trainer = Trainer(module, SpriteClips(clip_len=cfg.clip_len), cfg, run_dir, "cpu",
                      extra_state={"model": {"hidden": 16}, "data": "sprites"})
    trainer.run()
    return trainer


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run-dir", type=Path, required=True)
    ap.add_argument("--die-at-step", type=int)
    ap.add_argument("--sigint-at-step", type=int)
    ap.add_argument("--sleep", type=float, default=0.0)
    ap.add_argument("--dump-params", type=Path, help="write the final parameters of each rank to PATH.rankR.safetensors")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rank, _, _ = init_distributed()
    trainer = train(args.run_dir, args.overrides, args.die_at_step, args.sigint_at_step, args.sleep)
    if args.dump_params:
        from safetensors.torch import save_file

        params = trainer.module.state_dict()
        save_file({k: v.contiguous() for k, v in params.items()}, f"{args.dump_params}.rank{rank}.safetensors")
    print(f"rank {rank} finished interrupted={trainer.interrupted}", flush=True)
    shutdown_distributed()
    return 0


if __name__ == "__main__":
    sys.exit(main())
