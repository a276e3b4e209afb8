"""Errors the Gymnasium environments raise for input a user can get wrong.

Each is both a genie-play error (a GenieError subclass with a one-line message that names the
argument) and the matching `gymnasium.error` class, so RL code catching Gymnasium's errors and
genie-play code catching GenieError both see it. None of them leaves the environment half-changed:
after one is raised the environment is in the state it was in before the call.
"""
from __future__ import annotations

from gymnasium import error as gym_error

from ..errors import BadActionError, BadBundleError, BadImageError, BadSettingError, GenieError


class EnvActionError(BadActionError, gym_error.InvalidAction):
    """An action that is not an integer in [0, num_actions), or actions of the wrong shape."""


class EnvPromptError(BadImageError, gym_error.Error):
    """A prompt (the `prompt` argument or reset's options['prompt']) that cannot be used as a frame."""


class EnvWorldError(BadBundleError, gym_error.Error):
    """A `world` argument that names no world, or a world bundle that cannot be loaded."""


class EnvSettingError(BadSettingError, gym_error.Error):
    """A constructor argument or reset option out of range (max_steps, steps, num_envs, ...)."""


class RewardFunctionError(GenieError, gym_error.Error):
    """`reward_fn` raised or returned something other than a finite number; the step was undone."""


class EnvResetNeeded(GenieError, gym_error.ResetNeeded):
    """step() or render() before the first reset()."""
