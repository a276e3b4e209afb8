"""Who presses CoinRun's keys while a dataset is recorded: the policies of `genie-play data coinrun`.

Whether a latent action model can learn a key at all depends on this policy (docs/architecture.md,
"Training data"). Of procgen's 15 actions, 6 (9-14) are no-ops in CoinRun and DOWN does almost
nothing; on the ground the horizontal speed follows `vx <- 0.8 vx + 0.1 a`, so a single frame of
LEFT from rest moves the view by about half a pixel, while a key held for 8 frames scrolls it by
about 11 px. Hence two policies:

- "held" (the default): one of the six distinct actions (`ACTION_CLASSES`) is chosen and held for a
  random number of frames in [hold_min, hold_max]; walks are chosen more often than jumps, and
  right more often than left, so the agent drifts forward through the level;
- "random": a fresh action uniform over all 15 procgen actions every frame (the Genie paper's
  CoinRun data, and v0.1-v0.4 of the bundled world).

A policy acts for many environments at once: `act(first)` takes the gym3 `first` flags (a new
episode starts: a held action never carries over a reset) and returns one procgen action per
environment. Policies are deterministic for a seed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NUM_PROCGEN_ACTIONS = 15

# The six things a CoinRun player can do, as procgen action ids (procgen's combos:
# 1 LEFT, 2 LEFT+UP, 4 no key, 5 UP, 7 RIGHT, 8 RIGHT+UP). The names are the default labels'.
ACTION_CLASSES: tuple[str, ...] = ("idle", "left", "right", "jump", "jump left", "jump right")
CLASS_TO_PROCGEN: tuple[int, ...] = (4, 1, 7, 5, 2, 8)

# What each procgen action does in CoinRun, as a class index (-1: not one of the six, e.g. DOWN
# combos, which move like LEFT/RIGHT/idle but are never chosen by the held policy).
PROCGEN_TO_CLASS: tuple[int, ...] = (1, 1, 4, 0, 0, 3, 2, 2, 5, 0, 0, 0, 0, 0, 0)

POLICIES = ("held", "random")


@dataclass(frozen=True)
class HeldPolicyConfig:
    hold_min: int = 4
    hold_max: int = 12
    # Probability of each of ACTION_CLASSES when a new action is chosen: walks 0.5, jumps 0.35,
    # idle 0.15; right-ward 0.48 vs left-ward 0.27 (the forward drift).
    weights: tuple[float, ...] = (0.15, 0.20, 0.30, 0.10, 0.07, 0.18)

    def check(self) -> "HeldPolicyConfig":
        if not 1 <= self.hold_min <= self.hold_max:
            raise ValueError(f"need 1 <= hold_min <= hold_max, got {self.hold_min}, {self.hold_max}")
        if len(self.weights) != len(ACTION_CLASSES) or min(self.weights) < 0 or sum(self.weights) <= 0:
            raise ValueError(f"weights must be {len(ACTION_CLASSES)} non-negative numbers, not all 0")
        return self


class HeldPolicy:
    """Each environment holds one of ACTION_CLASSES for a random 4-12 frames (by default)."""

    def __init__(self, num_envs: int, seed: int, cfg: HeldPolicyConfig | None = None) -> None:
        self.cfg = (cfg or HeldPolicyConfig()).check()
        self.rng = np.random.default_rng([int(seed), 0x4E1D])
        self.p = np.asarray(self.cfg.weights, np.float64) / sum(self.cfg.weights)
        self.current = np.zeros(num_envs, np.int64)  # class index being held
        self.left = np.zeros(num_envs, np.int64)  # frames it is still held for

    def act(self, first: np.ndarray) -> np.ndarray:
        """first (num_envs,) bool -> procgen actions (num_envs,) int32."""
        renew = (self.left <= 0) | np.asarray(first, bool)
        n = int(renew.sum())
        if n:
            self.current[renew] = self.rng.choice(len(ACTION_CLASSES), size=n, p=self.p)
            self.left[renew] = self.rng.integers(self.cfg.hold_min, self.cfg.hold_max + 1, size=n)
        self.left -= 1
        return np.asarray(CLASS_TO_PROCGEN, np.int32)[self.current]


class RandomPolicy:
    """A fresh action, uniform over all 15 procgen actions, every frame."""

    def __init__(self, num_envs: int, seed: int) -> None:
        self.num_envs = num_envs
        self.rng = np.random.default_rng([int(seed), 0xC011])

    def act(self, first: np.ndarray) -> np.ndarray:
        return self.rng.integers(0, NUM_PROCGEN_ACTIONS, size=self.num_envs).astype(np.int32)


def make_policy(name: str, num_envs: int, seed: int, hold: tuple[int, int] | None = None):
    """The policy called `name` ("held" or "random") for `num_envs` environments."""
    if name == "held":
        cfg = HeldPolicyConfig() if hold is None else HeldPolicyConfig(hold_min=hold[0], hold_max=hold[1])
        return HeldPolicy(num_envs, seed, cfg)
    if name == "random":
        return RandomPolicy(num_envs, seed)
    raise ValueError(f"unknown policy {name!r}: choose one of {', '.join(POLICIES)}")
