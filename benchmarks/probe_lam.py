"""LAM probe: train the latent action model alone (phase 2's LAM losses, no dynamics) on a CoinRun
dataset with true actions, and print how well its codes separate the six action classes on
held-out clips, every few hundred steps. A cheap first test of a LAM design before a joint run.

    python benchmarks/probe_lam.py --data data/held --minutes 15 predict=shift decoder.window=1 \\
        motion_input=true vq.soft_temperature=0.1

Overrides are `model.lam` keys (without the prefix). Per evaluation: NMI between codes and true
classes, purity (share of transitions whose code's majority class is theirs), perplexity of code
use, and per class its most common code with that code's share ("distinct": how many classes
have different top codes). Numbers come from 256 fixed held-out clips; the LAM never sees them.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np
import torch

from genie_play.models.lam import LatentActionModel
from genie_play.presets import override, preset
from genie_play import devices
from genie_play.train.coinrun_policy import ACTION_CLASSES, PROCGEN_TO_CLASS
from genie_play.train.codebook import restart_dead_codes
from genie_play.train.data import ClipDataset
from genie_play.train.evaluate import normalized_mutual_information
from genie_play.train.stage_dynamics import DynamicsLossConfig, lam_losses

CPU = torch.device("cpu")
AMP = devices.autocast_dtype(CPU)  # bf16 where this CPU computes it fast, else fp32 (as the trainer)


def separation(lam: LatentActionModel, frames: torch.Tensor, classes: np.ndarray) -> dict:
    """How the LAM's codes on frames (C, T, H, W, 3) line up with true classes (C, T-1)."""
    lam.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=AMP, enabled=AMP is not None):
        codes = torch.cat([lam.infer(frames[s : s + 32]).indices for s in range(0, len(frames), 32)]).numpy()
    lam.train()
    x, y = codes.ravel(), classes.ravel()
    table = np.zeros((lam.cfg.num_actions, len(ACTION_CLASSES)), int)
    np.add.at(table, (x, y), 1)
    top = {name: int(table[:, c].argmax()) for c, name in enumerate(ACTION_CLASSES)}
    share = {name: round(float(table[:, c].max() / max(1, table[:, c].sum())), 2) for c, name in enumerate(ACTION_CLASSES)}
    p = np.bincount(x, minlength=lam.cfg.num_actions) / len(x)
    p = p[p > 0]
    return {"nmi": round(normalized_mutual_information(x, y), 4), "purity": round(float(table.max(1).sum() / table.sum()), 4),
            "perplexity": round(float(math.exp(-(p * np.log(p)).sum())), 2), "distinct": len(set(top.values())),
            "top": top, "share": share}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--minutes", type=float, default=15)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--clip", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--eval-every", type=int, default=200)
    ap.add_argument("overrides", nargs="*", help="model.lam keys, e.g. predict=shift")
    args = ap.parse_args()
    torch.manual_seed(0)
    lam = LatentActionModel(override(preset("small").lam, args.overrides))
    loss_cfg = DynamicsLossConfig()
    opt = torch.optim.AdamW(lam.parameters(), lr=args.lr, betas=(0.9, 0.9), weight_decay=1e-4)
    train = ClipDataset(args.data, split="train", clip_len=args.clip)
    held = ClipDataset(args.data, split="heldout", clip_len=args.clip)
    picks = np.random.default_rng(1).choice(len(held), min(256, len(held)), replace=False)
    held_frames = torch.from_numpy(np.stack([held[int(i)] for i in picks]))
    held_classes = np.asarray(PROCGEN_TO_CLASS)[np.stack([held.actions(int(i)) for i in picks])]
    start, step = time.time(), 0
    while time.time() - start < args.minutes * 60:
        for g in opt.param_groups:
            g["lr"] = args.lr * min(1.0, (step + 1) / 100)
        idx = train.sample_indices(args.batch, 0, step)
        frames = torch.from_numpy(np.stack([train[int(i)] for i in idx]))
        with torch.autocast("cpu", dtype=AMP, enabled=AMP is not None):
            act, mse, vq = lam_losses(lam, frames, loss_cfg)
        opt.zero_grad(set_to_none=True)
        (mse + vq).backward()
        torch.nn.utils.clip_grad_norm_(lam.parameters(), 1.0)
        opt.step()
        if act.probs is None:
            restart_dead_codes(lam.vq, step, act.z_e)
        step += 1
        if step % args.eval_every == 0:
            print(json.dumps({"step": step, "minutes": round((time.time() - start) / 60, 1),
                              "lam_psnr": round(-10 * math.log10(mse.item()), 2), **separation(lam, held_frames, held_classes)}), flush=True)
    print(json.dumps({"step": step, "final": True, **separation(lam, held_frames, held_classes)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
