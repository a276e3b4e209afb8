"""The play decoder's held-out reconstruction quality by precision: what a player sees.

    python benchmarks/bench_decoder.py --data data/coinrun64 [--world coinrun] [--clips 64] [--seed 0]

`genie-play eval`'s tokenizer PSNR runs the tokenizer's full forward (`World.reconstruct`). In play the
decoder runs differently: one frame at a time against its cached keys/values, and in an int8 world
on the int8 C kernels. This decodes the same fp32 tokens of held-out clips (the clips eval picks)
through each precision's play path (the runtime's decode, as `step` calls it) and prints the PSNR beside
the full forward's, in one run.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from genie_play.devices import set_threads
from genie_play.train.data import ClipDataset
from genie_play.train.evaluate import pick_clips, psnr
from genie_play.world import World, to_uint8


def play_decode(world: World, tokens: torch.Tensor) -> np.ndarray:
    """tokens (T, N) -> (T, H, W, 3) uint8 through the world's play path, frame after frame."""
    frames, contexts = [], ()
    for t in range(tokens.shape[0]):
        ctx = world.runtime.context(contexts, t, 1, world.tokenizer.decoder)
        pixels, kv = world.runtime.decode(tokens[t : t + 1], ctx)
        contexts = (contexts + (kv,))[-(world.config.tokenizer.decoder.window - 1):]
        frames.append(to_uint8(pixels)[0])
    return np.stack(frames)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--world", default="coinrun")
    ap.add_argument("--clips", type=int, default=64)
    ap.add_argument("--frames", type=int, default=11, help="frames per clip (eval's horizon + 1)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    set_threads()
    dataset = ClipDataset(args.data, split="heldout", clip_len=args.frames)
    videos = [dataset[int(i)] for i in pick_clips(dataset, args.clips, args.seed)]
    reference = World.load(args.world, device="cpu", precision="fp32")
    with torch.inference_mode():
        tokens = [reference.tokenizer.encode(torch.from_numpy(v)[None])[0] for v in videos]  # (T, N) each
    print(f"world {args.world}: {len(videos)} held-out clips of {args.frames} frames (seed {args.seed}), fp32 tokens")
    print("| decoder | path | PSNR |")
    print("|---|---|---|")
    full = np.mean([psnr(reference.reconstruct(v), v).mean() for v in videos])
    print(f"| fp32 | full forward (World.reconstruct, what eval reports) | {full:.2f} dB |")
    for precision in ("fp32", "bf16", "auto"):
        world = reference if precision == "fp32" else World.load(args.world, device="cpu", precision=precision)
        if precision == "bf16" and world.dtype != torch.bfloat16:
            continue  # no native bf16 here: the same as fp32
        with torch.inference_mode():
            score = np.mean([psnr(play_decode(world, t), v).mean() for t, v in zip(tokens, videos)])
        print(f"| {precision} ({world.device_description}) | play: cached, frame by frame | {score:.2f} dB |")


if __name__ == "__main__":
    main()
