"""Sample pictures a training run writes so people can see what the model learned.

`write_samples(module, frames, run_dir, step, device, say)` writes `pictures/step_NNNNNN.png` (the
stage's own `write_pictures`) and, for a stage that makes a playable world (`module.world()`, the
dynamics stage), `pictures/step_NNNNNN.gif`: the prompt rolled out under every action side by side
with the real clip, one GIF frame per time step. Both run under no_grad in eval mode without
touching the training RNG; a failure is reported through `say` and never ends the run.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

GIF_FRAMES = 6  # generated frames per action in the GIF
GIF_STEPS = 8  # MaskGIT steps per generated frame (as in the dynamics stage's PNG)


def picture_paths(run_dir: Path, step: int) -> tuple[Path, Path]:
    """(PNG, GIF) paths of `step`'s sample pictures (the GIF exists only for world-making stages)."""
    png = Path(run_dir) / "pictures" / f"step_{step:06d}.png"
    return png, png.with_suffix(".gif")


def picture_frames(dataset, count: int, device: torch.device) -> torch.Tensor:
    """(count', T, H, W, 3) uint8: up to `count` clips spread evenly over `dataset` (a fixed set)."""
    count = min(count, len(dataset))
    picks = np.linspace(0, len(dataset) - 1, count).round().astype(int)
    return torch.from_numpy(np.stack([dataset[int(i)] for i in picks])).to(device)


def rollout_strip(rows: list[np.ndarray], real: np.ndarray, labels: list[str]) -> np.ndarray:
    """rows: A arrays (K, H, W, 3) (one per action), real (K, H, W, 3) -> (K, H', W', 3) uint8 frames,
    each the A rollouts and the real frame side by side under their labels."""
    from .pictures import grid

    k = min(len(real), *(len(r) for r in rows))
    columns = [r[:k] for r in rows] + [real[:k]]
    frames = []
    for t in range(k):
        strip = [np.stack([c[t] for c in columns])]  # one row of A+1 frames
        frames.append(np.asarray(grid(strip, scale=2, column_labels=labels)))
    return np.stack(frames)


def write_rollout_gif(module: nn.Module, frames: torch.Tensor, path: Path) -> None:
    """The first clip's first frame rolled out under each action, beside the real clip, as a GIF."""
    from ..gif import write_gif

    world = module.world(device=frames.device, precision="auto")
    world.sampling = {"steps": GIF_STEPS}
    num_frames = min(GIF_FRAMES, frames.shape[1] - 1)
    real = frames[0, : num_frames + 1].cpu().numpy()
    world.seed(0)
    world.reset(real[0])
    generated = world.explore(num_frames=num_frames)  # (A, K, H, W, 3): frames 1..K under each action
    rows = [np.concatenate([real[:1], r]) for r in generated]  # each starts at the prompt, like the real clip
    labels = [str(a) for a in range(len(rows))] + ["real"]
    write_gif(path, rollout_strip(rows, real, labels), fps=4)


def write_samples(module: nn.Module, frames: torch.Tensor, run_dir: Path, step: int, device: torch.device,
                  say: Callable[[str], None]) -> None:
    """The PNG (and for a world-making stage the GIF) of `step`; see the module docstring."""
    cuda = [device.index or 0] if device.type == "cuda" else []
    was_training = module.training
    png, gif = picture_paths(run_dir, step)
    try:
        png.parent.mkdir(parents=True, exist_ok=True)  # a full disk or a read-only folder: warn below
        with torch.random.fork_rng(devices=cuda), torch.no_grad():
            module.eval()
            module.write_pictures(frames, png)
            if callable(getattr(module, "world", None)):
                write_rollout_gif(module, frames, gif)
    except Exception as err:  # a broken picture must not end a long run; say so and go on
        say(f"warning: could not write the pictures of step {step} in {png.parent}: {type(err).__name__}: {err}")
    finally:
        module.train(was_training)
