"""The controllability upper bound: a dynamics model conditioned on the TRUE CoinRun actions.

A diagnostic, never a shipped world: it trains the dynamics model exactly as phase 2 does (same
size, masking, optimiser and steps) but conditions it on a learned vector per true action class
(`coinrun_policy.ACTION_CLASSES`, 6 classes in 8 slots) instead of the latent action model's codes
(`stage_dynamics.dynamics_loss`, phase 2's own objective).
Its control report (`genie-play eval OUT --control --data D`) then says how much of a world's
controllability gap is the LAM's and how much the dynamics' or the tokenizer's.

    python benchmarks/true_action_bound.py --data data/held --tokenizer weights/coinrun.safetensors \\
        --out runs/true_bound --steps 1500 [--init weights/coinrun.safetensors]

Writes OUT/world.safetensors (labels = the class names, so the label accuracy is the
control accuracy under the true map) and OUT/metrics.jsonl; resumes from OUT/state.safetensors.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from genie_play.bundle import read_bundle, resolve_world
from genie_play.fileio import atomic_write
from genie_play.models.dynamics import DynamicsModel
from genie_play.presets import world_config_from_dict
from genie_play.models.tokenizer import Tokenizer
from genie_play import devices
from genie_play.train.coinrun_policy import ACTION_CLASSES, PROCGEN_TO_CLASS
from genie_play.train.data import ClipDataset
from genie_play.train.stage_dynamics import dynamics_loss
from genie_play.world import World, build_models

CPU = torch.device("cpu")
AMP = devices.autocast_dtype(CPU)  # bf16 where this CPU computes it fast, else fp32 (as the trainer)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--tokenizer", required=True, help="world bundle whose tokenizer (and config) to use")
    ap.add_argument("--init", help="warm-start the dynamics from this world bundle")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--clip", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--mask-min", type=float, default=0.5)
    args = ap.parse_args()
    torch.manual_seed(0)
    b = read_bundle(resolve_world(args.tokenizer))
    cfg = world_config_from_dict(b.config)
    models = build_models(cfg, with_lam=False)
    tok: Tokenizer = models["tokenizer"]
    tok.load_state_dict({k[10:]: v.float() for k, v in b.tensors.items() if k.startswith("tokenizer.")})
    tok.eval().requires_grad_(False)
    dyn: DynamicsModel = models["dynamics"]
    if args.init:
        init = read_bundle(resolve_world(args.init)).tensors
        dyn.load_state_dict({k[9:]: v.float() for k, v in init.items() if k.startswith("dynamics.")})
    codes = torch.nn.Parameter(F.normalize(torch.randn(cfg.dynamics.num_actions, cfg.dynamics.action_dim), dim=-1))
    params = list(dyn.parameters()) + [codes]
    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.9), weight_decay=1e-4)
    args.out.mkdir(parents=True, exist_ok=True)
    state_path, start = args.out / "state.safetensors", 0
    if state_path.exists():
        st = load_file(state_path)
        dyn.load_state_dict({k[9:]: v for k, v in st.items() if k.startswith("dynamics.")})
        codes.data.copy_(st["codes"])
        start = int(json.loads((args.out / "step.json").read_text())["step"])
        print(f"resumed at step {start} (optimiser state restarts)", file=sys.stderr)
    data = ClipDataset(args.data, split="train", clip_len=args.clip)
    to_class = torch.tensor(PROCGEN_TO_CLASS)
    log = open(args.out / "metrics.jsonl", "a")
    bar = tqdm(range(start, args.steps), initial=start, total=args.steps, desc="true-action dynamics", unit="step")
    t0 = time.perf_counter()
    for step in bar:
        lr = args.lr * min(1.0, (step + 1) / args.warmup) * (0.55 + 0.45 * math.cos(math.pi * step / args.steps))
        for g in opt.param_groups:
            g["lr"] = lr
        idx = data.sample_indices(args.batch, 0, step)
        frames = torch.from_numpy(np.stack([data[int(i)] for i in idx]))  # (B, T, H, W, 3)
        true = to_class[torch.from_numpy(np.stack([data.actions(int(i)) for i in idx])).clamp(min=0)]  # (B, T-1)
        with torch.no_grad(), torch.autocast("cpu", dtype=AMP, enabled=AMP is not None):
            tokens = tok.encode(frames)  # (B, T, N)
        with torch.autocast("cpu", dtype=AMP, enabled=AMP is not None):
            loss, _ = dynamics_loss(dyn, tokens, F.normalize(codes, dim=-1)[true], args.mask_min)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        bar.set_postfix_str(f"ce {loss.item():.3f}")
        if (step + 1) % 50 == 0 or step + 1 == args.steps:
            print(json.dumps({"step": step + 1, "ce": round(loss.item(), 4), "elapsed_s": round(time.perf_counter() - t0)}), file=log, flush=True)
        if (step + 1) % 250 == 0 or step + 1 == args.steps:
            save_file({**{f"dynamics.{k}": v.contiguous() for k, v in dyn.state_dict().items()}, "codes": codes.data},
                      str(state_path))
            atomic_write(args.out / "step.json", json.dumps({"step": step + 1}))
    labels = list(ACTION_CLASSES) + ["unused"] * (cfg.dynamics.num_actions - len(ACTION_CLASSES))
    world = World(cfg, tok, dyn, F.normalize(codes.detach(), dim=-1), device="cpu", precision="fp32", labels=labels,
                  card={"diagnostic": "dynamics conditioned on true CoinRun action classes (an upper bound, not a world to ship)"})
    world.save(args.out / "world.safetensors", include_lam=False)
    print(f"wrote {args.out / 'world.safetensors'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
