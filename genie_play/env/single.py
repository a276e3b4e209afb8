"""GenieEnv: one genie-play world as a Gymnasium environment.

Contract:
- observation_space Box(0, 255, (H, W, 3), uint8); action_space Discrete(world.num_actions).
- reset(seed=..., options={"prompt": image}) starts from that prompt, else from the constructor's
  `prompt`, else from a bundled prompt drawn with the episode's np_random. The observation is the
  world's view of the prompt (the tokenizer's reconstruction).
- step(a) returns the next frame, reward 0.0 (or reward_fn(prev_frame, frame, action)),
  terminated=False (a learned world has no end state), truncated=True on the max_steps-th step,
  and info {"action_label": the action's label ("" when unlabelled), "timings_ms": the world's
  encode/dynamics/decode milliseconds for this frame (FrameTimings)}.
- Sampling noise: a frame's MaskGIT random numbers depend only on `noise_seed` and the frame's
  index in the episode, never on reset's seed (which picks the prompt). That is what lets
  GenieVectorEnv run all its sub-environments in one batched pass (the batched engine shares one
  noise stream across a batch, see models/maskgit.py) and give the same frames as GenieEnv: the
  same prompt, actions and noise_seed always give the same episode. Vary noise_seed for other
  samples of the same prompt and actions.
- Errors (bad action, prompt, world, reward_fn, settings) are errors.py's classes; after one, the
  environment is as it was before the call (a failing reward_fn's step is undone).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

from .errors import EnvResetNeeded
from .inputs import (Prompts, RewardFn, apply_sampling, call_reward, check_action, check_render_mode, check_settings,
                     load_world, reset_prompt)

RENDER_FPS = 15  # the frame rate of the CoinRun data the bundled world learned from


class FrameTimings(Mapping):
    """info["timings_ms"]: milliseconds each part of making the frame took (World.last_timings:
    encode, dynamics, decode), read-only. Timings are measurements, not outcomes: two FrameTimings
    compare equal when they measure the same parts, so infos of the same seed and actions compare
    equal (as Gymnasium's determinism checks require) although the clock differs."""

    __slots__ = ("_ms",)

    def __init__(self, ms: dict[str, float]) -> None:
        self._ms = {str(k): float(v) for k, v in ms.items()}

    def __getitem__(self, part: str) -> float:
        return self._ms[part]

    def __iter__(self):
        return iter(self._ms)

    def __len__(self) -> int:
        return len(self._ms)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FrameTimings) and self._ms.keys() == other._ms.keys()

    def __hash__(self) -> int:
        return hash(tuple(self._ms))

    def __repr__(self) -> str:
        return "FrameTimings(" + ", ".join(f"{k}={v:.2f}" for k, v in self._ms.items()) + ")"


class GenieEnv(gymnasium.Env):
    """A learned world played through Gymnasium's API (see the module docstring for the contract).

    world: a name, a .safetensors path or a loaded World (the environment then owns its play state
    and sampling: do not share one World between environments); prompt: an image path, PIL image or
    (H, W, 3) array, None for a bundled prompt per episode; max_steps: steps until truncation;
    steps, temperature: MaskGIT's rounds per frame and sampling temperature (0 = greedy)."""

    metadata = {"render_modes": ["rgb_array", "human"], "render_fps": RENDER_FPS}

    def __init__(self, world: Any = "coinrun", prompt: Any = None, max_steps: int = 1000, steps: int = 25,
                 temperature: float = 1.0, reward_fn: RewardFn | None = None, render_mode: str | None = None,
                 noise_seed: int = 0) -> None:
        self.render_mode = check_render_mode(render_mode, self.metadata["render_modes"])
        self.max_steps, self.noise_seed = check_settings(max_steps, steps, temperature, reward_fn, noise_seed)
        self.reward_fn = reward_fn
        self.world = load_world(world)
        apply_sampling(self.world, steps, temperature)
        self.prompts = Prompts(prompt, self.world.frame_size)
        h, w = self.world.frame_size
        self.observation_space = spaces.Box(0, 255, (h, w, 3), np.uint8)
        self.action_space = spaces.Discrete(self.world.num_actions)
        self.labels = [label or "" for label in self.world.labels]
        self._frame: np.ndarray | None = None  # the current observation, None before the first reset
        self._elapsed = 0  # steps since reset
        self._window = None  # the player's pygame window, opened by the first human render

    @property
    def elapsed_steps(self) -> int:
        return self._elapsed

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        pixels = reset_prompt(self.prompts, options)  # checked before anything changes
        super().reset(seed=seed)
        if pixels is None:
            pixels = self.prompts.pick(self.np_random)
        self.world.seed(self.noise_seed)
        frame = self.world.reset(pixels)
        self._frame, self._elapsed = frame, 0
        if self.render_mode == "human":
            self.render()
        return frame.copy(), {"timings_ms": FrameTimings(self.world.last_timings)}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self._frame is None:
            raise EnvResetNeeded("call reset() before step()")
        action = check_action(action, self.world.num_actions)
        prev = self._frame
        undo = self.world.snapshot() if self.reward_fn is not None else None
        frame = self.world.step(action)
        try:
            reward = call_reward(self.reward_fn, prev, frame, action)
        except Exception:
            self.world.restore(undo)
            raise
        self._frame = frame
        self._elapsed += 1
        info = {"action_label": self.labels[action], "timings_ms": FrameTimings(self.world.last_timings)}
        if self.render_mode == "human":
            self.render()
        return frame.copy(), reward, False, self._elapsed >= self.max_steps, info

    def render(self) -> np.ndarray | None:
        """rgb_array: the current frame (H, W, 3) uint8. human: show it in the player's window
        (genie_play.player.app.open_window), returns None."""
        if self._frame is None:
            raise EnvResetNeeded("call reset() before render()")
        if self.render_mode == "rgb_array":
            return self._frame.copy()
        if self.render_mode == "human":
            self._show(self._frame)
        return None

    def _show(self, frame: np.ndarray) -> None:
        from ..player import hud
        from ..player.app import open_window, pygame

        if self._window is None:
            h, w = frame.shape[:2]
            self._window = open_window((w * 8, h * 8), f"genie-play: {self.world.world_id or 'world'} (Gymnasium)")
        pygame.event.pump()  # keep the window responsive; input belongs to the agent, not the window
        screen = pygame.display.get_surface()
        surface = hud.array_to_surface(frame)
        screen.fill(hud.BG)
        hud.blit_scaled(screen, surface, hud.fit_rect(surface.get_size(), screen.get_rect()), smooth=False)
        pygame.display.flip()

    def close(self) -> None:
        if self._window is not None:
            from ..player.app import pygame

            pygame.display.quit()
            self._window = None
        super().close()
