"""What users pass to the Gymnasium environments, checked and converted in one place.

The single and the vector environment take the same arguments (world, prompt, max_steps, steps,
temperature, reward_fn, noise_seed) and accept actions and prompts the same way; every check here
raises one of `errors.py`'s classes with a message naming the argument, before anything changes.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BadImageError, BadSettingError, GenieError
from .errors import EnvActionError, EnvPromptError, EnvSettingError, EnvWorldError, RewardFunctionError

RewardFn = Callable[[np.ndarray, np.ndarray, int], float]


def load_world(world: Any):
    """A World from a name, a .safetensors path or an already loaded World (used as is: the
    environment then owns its play state and sampling settings)."""
    from ..world import World

    if isinstance(world, World):
        return world
    if world is None:
        raise EnvWorldError("world=None: give a world name or a .safetensors path, "
                            "e.g. gymnasium.make('genie_play/World-v0', world='my_world.safetensors')")
    if not isinstance(world, (str, Path)):
        raise EnvWorldError(f"world must be a name, a .safetensors path or a World, got {type(world).__name__}")
    try:
        return World.load(world)
    except GenieError as err:
        raise EnvWorldError(f"world={str(world)!r}: {err}") from None


def check_settings(max_steps: Any, steps: Any, temperature: Any, reward_fn: Any, noise_seed: Any) -> tuple[int, int]:
    """Validate the episode settings; returns (max_steps, noise_seed) as ints. steps and
    temperature are checked by applying them (`apply_sampling`)."""
    if isinstance(max_steps, bool) or not isinstance(max_steps, (int, np.integer)) or max_steps < 1:
        raise EnvSettingError(f"max_steps must be a positive integer, got {max_steps!r}")
    if reward_fn is not None and not callable(reward_fn):
        raise EnvSettingError(f"reward_fn must be callable as reward_fn(prev_frame, frame, action), got {type(reward_fn).__name__}")
    if isinstance(noise_seed, bool) or not isinstance(noise_seed, (int, np.integer)) or not 0 <= noise_seed < 2**63:
        raise EnvSettingError(f"noise_seed must be a non-negative integer, got {noise_seed!r}")
    return int(max_steps), int(noise_seed)


def apply_sampling(world, steps: Any, temperature: Any) -> None:
    """Set the world's MaskGIT steps and temperature, naming the argument on a bad value."""
    try:
        world.sampling = {"steps": steps, "temperature": temperature}
    except BadSettingError as err:
        raise EnvSettingError(str(err)) from None


def check_render_mode(render_mode: Any, modes: list[str]) -> str | None:
    if render_mode is not None and render_mode not in modes:
        raise EnvSettingError(f"render_mode must be None or one of {', '.join(modes)}, got {render_mode!r}")
    return render_mode


def check_action(action: Any, num_actions: int, where: str = "action") -> int:
    """An action as a Python int: ints, numpy integers and 0-d integer arrays in [0, num_actions)."""
    if isinstance(action, np.ndarray) and action.ndim == 0:
        action = action[()]
    if isinstance(action, (bool, np.bool_)) or not isinstance(action, (int, np.integer)) or not 0 <= action < num_actions:
        raise EnvActionError(f"{where} must be an integer in [0, {num_actions}), got {action!r}")
    return int(action)


def check_actions(actions: Any, num_envs: int, num_actions: int) -> np.ndarray:
    """A batch of actions (num_envs,) of integers in [0, num_actions) -> int64 array."""
    array = np.asarray(actions)
    if array.shape != (num_envs,) or not (np.issubdtype(array.dtype, np.integer) and array.dtype != np.bool_):
        raise EnvActionError(f"actions must be {num_envs} integers in [0, {num_actions}), got shape {array.shape} of {array.dtype}")
    bad = np.flatnonzero((array < 0) | (array >= num_actions))
    if bad.size:
        raise EnvActionError(f"actions[{bad[0]}] must be an integer in [0, {num_actions}), got {array[bad[0]]!r}")
    return array.astype(np.int64)


def call_reward(reward_fn: RewardFn | None, prev_frame: np.ndarray, frame: np.ndarray, action: int) -> float:
    """reward_fn(prev_frame, frame, action) as a finite float (0.0 without one). The frames are
    read-only views: the function may keep them, not change them."""
    if reward_fn is None:
        return 0.0
    prev_view, view = prev_frame.view(), frame.view()
    prev_view.flags.writeable = view.flags.writeable = False
    try:
        value = reward_fn(prev_view, view, action)
    except Exception as err:  # noqa: BLE001 -- any failure of user code becomes one clear error
        reason = (str(err).strip().splitlines() or [""])[0][:160]
        raise RewardFunctionError(f"reward_fn raised {type(err).__name__}" + (f": {reason}" if reason else "")
                                  + "; the step was undone") from err
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(())[()]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise RewardFunctionError(f"reward_fn must return a finite number, got {value!r}; the step was undone")
    return float(value)


class Prompts:
    """Where episodes start: a fixed prompt, or one of the bundled prompts picked by the episode's
    np_random. Images are decoded and resized to the world's frame size once."""

    def __init__(self, prompt: Any, frame_size: tuple[int, int]) -> None:
        self.frame_size = frame_size
        self.fixed = None if prompt is None else self.load(prompt, "prompt")
        self._bundled: list[np.ndarray] | None = None

    def load(self, image: Any, where: str) -> np.ndarray:
        from ..images import load_image

        try:
            return load_image(image, self.frame_size)
        except BadImageError as err:
            raise EnvPromptError(f"{where}: {err}") from None
        except (TypeError, ValueError) as err:
            raise EnvPromptError(f"{where}: not an image ({err})") from None

    def bundled(self) -> list[np.ndarray]:
        if self._bundled is None:
            from ..paths import bundled_prompts

            self._bundled = [self.load(path, f"bundled prompt {path.name}") for path in bundled_prompts()]
            if not self._bundled:
                raise EnvPromptError("prompt=None but no bundled prompts are installed: pass prompt=IMAGE")
        return self._bundled

    def pick(self, rng: np.random.Generator) -> np.ndarray:
        """The fixed prompt, else a bundled one drawn with rng (one integer draw)."""
        if self.fixed is not None:
            return self.fixed
        choices = self.bundled()
        return choices[int(rng.integers(len(choices)))]


def reset_prompt(prompts: Prompts, options: dict | None, where: str = "options") -> np.ndarray | None:
    """The prompt asked for by reset's options ({"prompt": image}), or None; other keys are refused."""
    options = dict(options or {})
    options.pop("reset_mask", None)
    unknown = sorted(set(options) - {"prompt"})
    if unknown:
        raise EnvSettingError(f"unknown reset option {unknown[0]!r}: use {where}={{'prompt': image}}")
    if options.get("prompt") is None:
        return None
    return prompts.load(options["prompt"], f"{where}['prompt']")
