"""Two agents play a genie-play world through Gymnasium and each writes an animated GIF.

    pip install "genie-play[gym]"
    python examples/agents_gif.py --steps 60 --out runs/agents        # the bundled CoinRun world
    python examples/agents_gif.py --world my_world.safetensors --prompt my_drawing.png

- random: a uniformly random latent action every frame (the action space's own sampler);
- scripted: "hold right, jump every 10 frames", with the actions found by their labels
  (`genie-play labels WORLD` shows and sets them), falling back to actions 0 and 1.

Each GIF shows the action label under every frame. The random agent is seeded, so a run is
reproducible: the same --seed gives the same GIFs.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import gymnasium
import numpy as np

import genie_play.env  # noqa: F401 -- registers the genie_play/... ids
from genie_play.gif import write_gif


def action_named(labels: list[str], *names: str, fallback: int) -> int:
    """The first action whose label is one of `names` (case-insensitive), else `fallback`."""
    lowered = [label.strip().lower() for label in labels]
    for name in names:
        if name in lowered:
            return lowered.index(name)
    return fallback


def scripted_policy(labels: list[str], jump_every: int = 10):
    """Hold right; every `jump_every`-th frame, jump (right)."""
    right = action_named(labels, "right", "step right", fallback=0)
    jump = action_named(labels, "jump right", "jump", fallback=1)
    return lambda t, obs: jump if t % jump_every == jump_every - 1 else right


def random_policy(env: gymnasium.Env, seed: int):
    env.action_space.seed(seed)
    return lambda t, obs: int(env.action_space.sample())


def play(env: gymnasium.Env, policy, steps: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """Run `policy(t, obs)` for `steps` frames from reset(seed); (frames (steps+1, H, W, 3), captions)."""
    obs, _ = env.reset(seed=seed)
    frames, captions = [obs], ["prompt"]
    for t in range(steps):
        obs, _reward, terminated, truncated, info = env.step(policy(t, obs))
        frames.append(obs)
        captions.append(info["action_label"] or "?")
        if terminated or truncated:
            break
    return np.stack(frames), captions


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", default="coinrun", help="a world name or .safetensors path")
    parser.add_argument("--prompt", default=None, help="an image to start from (default: a bundled prompt)")
    parser.add_argument("--steps", type=int, default=60, help="frames each agent plays")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--maskgit-steps", type=int, default=25, help="MaskGIT rounds per frame (fewer: faster)")
    parser.add_argument("--scale", type=int, default=4, help="GIF upscale factor")
    parser.add_argument("--out", type=Path, default=Path("agents"), help="folder for random.gif and scripted.gif")
    args = parser.parse_args(argv)

    env = gymnasium.make("genie_play/World-v0", world=args.world, prompt=args.prompt, steps=args.maskgit_steps,
                         max_steps=args.steps)
    labels = env.unwrapped.labels
    args.out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, policy in (("random", random_policy(env, args.seed)), ("scripted", scripted_policy(labels))):
        frames, captions = play(env, policy, args.steps, args.seed)
        path = write_gif(args.out / f"{name}.gif", frames, fps=10, scale=args.scale, captions=captions)
        print(f"{name}: {len(frames) - 1} steps -> {path}")
        written.append(path)
    env.close()
    return written


if __name__ == "__main__":
    main()
