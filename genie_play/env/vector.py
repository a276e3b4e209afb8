"""GenieVectorEnv: num_envs sub-environments of one world, stepped by the batched engine.

Made by `gymnasium.make_vec("genie_play/CoinRun-v0", num_envs=8, vectorization_mode="vector_entry_point")`.
One World serves every sub-environment: sub-environments in lockstep (cohorts.py) take one MaskGIT
pass per step between them, instead of one pass each as num_envs GenieEnvs would.

Contract (Gymnasium's vector API, with GenieEnv's per-environment contract):
- observation_space (num_envs, H, W, 3) uint8; action_space MultiDiscrete([num_actions] * num_envs).
- reset(seed=s) seeds sub-environment i with s + i (a list gives one seed each, None keeps each
  one's generator running), like SyncVectorEnv; options={"prompt": image} starts every reset
  sub-environment there, a list of num_envs images (None entries: drawn) one each;
  options={"reset_mask": bool array} resets only those sub-environments (after a first full reset).
- Sub-environment i, reset with seed s and stepped with actions a_0, a_1, ..., gives the same
  observations as GenieEnv reset with seed s and stepped with the same actions (same arguments).
- autoreset_mode NEXT_STEP (the default), SAME_STEP or DISABLED, with Gymnasium's rules: NEXT_STEP
  resets a finished sub-environment on the following step (its action ignored, reward 0, both flags
  False); SAME_STEP resets it in the same step and puts its last frame and info in
  info["final_obs"] / info["final_info"]; DISABLED refuses to step it until reset(options=
  {"reset_mask": ...}).
- Errors are GenieEnv's (errors.py); a failing call leaves every sub-environment unchanged.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from . import cohorts
from .errors import EnvResetNeeded, EnvSettingError
from .inputs import (Prompts, RewardFn, apply_sampling, call_reward, check_actions, check_render_mode, check_settings,
                     load_world, reset_prompt)
from .single import RENDER_FPS, FrameTimings


class GenieVectorEnv(VectorEnv):
    """Sub-environments of one world on the batched engine (see the module docstring)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": RENDER_FPS, "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int = 8, world: Any = "coinrun", prompt: Any = None, max_steps: int = 1000,
                 steps: int = 25, temperature: float = 1.0, reward_fn: RewardFn | None = None,
                 render_mode: str | None = None, noise_seed: int = 0,
                 autoreset_mode: str | AutoresetMode = AutoresetMode.NEXT_STEP) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise EnvSettingError(f"num_envs must be a positive integer, got {num_envs!r}")
        try:
            mode = AutoresetMode(autoreset_mode)
        except ValueError:
            modes = ", ".join(m.value for m in AutoresetMode)
            raise EnvSettingError(f"autoreset_mode must be one of {modes}, got {autoreset_mode!r}") from None
        self.metadata = {**self.metadata, "autoreset_mode": mode}
        self.render_mode = check_render_mode(render_mode, self.metadata["render_modes"])
        self.max_steps, self.noise_seed = check_settings(max_steps, steps, temperature, reward_fn, noise_seed)
        self.num_envs, self.reward_fn = int(num_envs), reward_fn
        self.world = load_world(world)
        apply_sampling(self.world, steps, temperature)
        self.prompts = Prompts(prompt, self.world.frame_size)
        h, w = self.world.frame_size
        self.single_observation_space = spaces.Box(0, 255, (h, w, 3), np.uint8)
        self.single_action_space = spaces.Discrete(self.world.num_actions)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.labels = [label or "" for label in self.world.labels]
        self._rngs: list[np.random.Generator | None] = [None] * self.num_envs  # each sub-environment's np_random
        self._cohorts: list[cohorts.Cohort] = []
        self._frames = np.zeros((self.num_envs, h, w, 3), np.uint8)
        self._elapsed = np.zeros(self.num_envs, np.int64)
        self._ended = np.zeros(self.num_envs, bool)  # truncated on the last step (NEXT_STEP resets it next)

    @property
    def autoreset_mode(self) -> AutoresetMode:
        return self.metadata["autoreset_mode"]

    @property
    def num_cohorts(self) -> int:
        """How many batched passes one step takes (1 unless sub-environments were reset apart)."""
        return len(self._cohorts)

    @property
    def elapsed_steps(self) -> np.ndarray:
        return self._elapsed.copy()

    # -- reset ---------------------------------------------------------------------------------------
    def reset(self, *, seed: int | list[int | None] | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        seeds = self._seeds(seed)
        options = dict(options or {})
        mask = self._reset_mask(options.get("reset_mask"))
        given = self._given_prompts(options)  # every check before anything changes
        if not mask.all() and not self._cohorts:
            raise EnvResetNeeded("reset every sub-environment once (no reset_mask) before resetting some of them")
        rows = np.flatnonzero(mask)
        for i in rows:
            if seeds[i] is not None or self._rngs[i] is None:
                self._rngs[i], _ = seeding.np_random(seeds[i])
        timings = self._restart(rows, given)
        infos: dict = {}
        for i in rows:
            infos = self._add_info(infos, {"timings_ms": FrameTimings(timings)}, i)
        return self._frames.copy(), infos

    def _seeds(self, seed: Any) -> list[int | None]:
        if seed is None:
            return [None] * self.num_envs
        if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
            return [int(seed) + i for i in range(self.num_envs)]
        if isinstance(seed, (list, tuple)) and len(seed) == self.num_envs and all(
                s is None or (isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 0) for s in seed):
            return [None if s is None else int(s) for s in seed]
        raise EnvSettingError(f"seed must be None, an int or a list of {self.num_envs} seeds, got {seed!r}")

    def _reset_mask(self, mask: Any) -> np.ndarray:
        if mask is None:
            return np.ones(self.num_envs, bool)
        if not isinstance(mask, np.ndarray) or mask.shape != (self.num_envs,) or mask.dtype != np.bool_ or not mask.any():
            raise EnvSettingError(f"options['reset_mask'] must be a bool numpy array of shape ({self.num_envs},) "
                                  f"with at least one True, got {mask!r}")
        return mask

    def _given_prompts(self, options: dict) -> list[np.ndarray | None]:
        """The prompts asked for in options, one per sub-environment (None: drawn)."""
        prompt = options.get("prompt")
        if isinstance(prompt, (list, tuple)):
            reset_prompt(self.prompts, {k: v for k, v in options.items() if k != "prompt"})  # refuses unknown keys
            if len(prompt) != self.num_envs:
                raise EnvSettingError(f"options['prompt'] as a list needs {self.num_envs} images (None: drawn), got {len(prompt)}")
            return [None if p is None else self.prompts.load(p, f"options['prompt'][{i}]") for i, p in enumerate(prompt)]
        return [reset_prompt(self.prompts, options)] * self.num_envs

    def _restart(self, rows: np.ndarray, given: list[np.ndarray | None]) -> dict[str, float]:
        """Start sub-environments `rows` as one new cohort (the others untouched); the timings (ms)."""
        pixels = np.stack([given[i] if given[i] is not None else self.prompts.pick(self._rngs[i]) for i in rows])
        cohort, timings = cohorts.start(self.world, rows, pixels, self.noise_seed)
        leaving = np.zeros(self.num_envs, bool)
        leaving[rows] = True
        kept = [cohorts.subset(c, ~leaving[c.rows]) for c in self._cohorts if not leaving[c.rows].all()]
        self._cohorts = kept + [cohort]
        self._frames[rows] = cohort.state.frame
        self._elapsed[rows] = 0
        self._ended[rows] = False
        return timings

    # -- step ----------------------------------------------------------------------------------------
    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        if not self._cohorts:
            raise EnvResetNeeded("call reset() before step()")
        actions = check_actions(actions, self.num_envs, self.world.num_actions)
        resetting = self._ended.copy() if self.autoreset_mode == AutoresetMode.NEXT_STEP else np.zeros(self.num_envs, bool)
        if self.autoreset_mode == AutoresetMode.DISABLED and self._ended.any():
            raise EnvResetNeeded(f"sub-environment {int(np.flatnonzero(self._ended)[0])} was truncated: reset it with "
                                 "options={'reset_mask': mask} (autoreset_mode is disabled)")
        stepped, frames, rewards, elapsed, step_infos = [], self._frames.copy(), np.zeros(self.num_envs), self._elapsed.copy(), {}
        for cohort in self._cohorts:  # nothing is committed until every reward is in
            moving = ~resetting[cohort.rows]
            if not moving.any():
                continue
            before = cohorts.subset(cohort, moving)
            after, timings = cohorts.advance(self.world, before, actions[before.rows])
            for j, i in enumerate(after.rows):
                rewards[i] = call_reward(self.reward_fn, self._frames[i], after.state.frame[j], int(actions[i]))
                step_infos[i] = {"action_label": self.labels[actions[i]], "timings_ms": FrameTimings(timings)}
            frames[after.rows] = after.state.frame
            elapsed[after.rows] += 1
            stepped.append(after)
        truncated = (elapsed >= self.max_steps) & ~resetting
        self._cohorts, self._frames, self._elapsed = stepped, frames, elapsed
        infos: dict = {}
        if self.autoreset_mode == AutoresetMode.SAME_STEP and truncated.any():
            ended = np.flatnonzero(truncated)
            for i in ended:
                infos = self._add_info(infos, {"final_obs": frames[i].copy(), "final_info": step_infos.pop(i)}, i)
            resetting = truncated
        if resetting.any():  # autoreset: each with its own generator, as SyncVectorEnv's env.reset()
            rows = np.flatnonzero(resetting)
            timings = self._restart(rows, [None] * self.num_envs)
            step_infos.update({int(i): {"timings_ms": FrameTimings(timings)} for i in rows})
        for i in sorted(step_infos):
            infos = self._add_info(infos, step_infos[i], i)
        self._ended = truncated if self.autoreset_mode != AutoresetMode.SAME_STEP else np.zeros(self.num_envs, bool)
        return self._frames.copy(), rewards, np.zeros(self.num_envs, bool), truncated, infos

    def render(self) -> tuple[np.ndarray, ...] | None:
        """rgb_array: every sub-environment's current frame."""
        if not self._cohorts:
            raise EnvResetNeeded("call reset() before render()")
        if self.render_mode == "rgb_array":
            return tuple(frame.copy() for frame in self._frames)
        return None
