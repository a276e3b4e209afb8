"""The game states of the controllability report (`control.py`): saved CoinRun states on held-out
levels and each action class's real future from them. Needs procgen (`genie-play data install-coinrun`).

- states: procgen CoinRun on held-out levels. Each environment plays a random-length prefix with the
  held policy (`coinrun_policy.HeldPolicy`), then holds idle for `settle` frames so the agent stands
  still, and its state is saved (`get_state`). From the state, each of the six `ACTION_CLASSES` is
  held for `horizon` frames (`set_state` first): its real future. The prompt is the frame at the
  saved state. A state is skipped when its episode ends during the prefix, the settling or any future
  (gym3 `first` flag), or when two classes' real futures are pixel-identical (no world could tell
  them apart); skips are counted. After a state is saved its environment plays on (held policy)
  until its episode ends, so every state comes from another episode.
- taps (`press=P`): each class is pressed for the first P frames of its real future and then
  released (procgen's no-key action).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import BadDataError, BadSettingError, GenieError
from .coinrun_policy import ACTION_CLASSES, CLASS_TO_PROCGEN, HeldPolicy

NUM_CLASSES = len(ACTION_CLASSES)
IDLE = CLASS_TO_PROCGEN[ACTION_CLASSES.index("idle")]  # procgen action 4: no key
COINRUN_FRAME = (64, 64)


@dataclass
class ControlStates:
    """Saved CoinRun states with their real futures: what `collect_states` returns."""

    prompts: np.ndarray  # (C, H, W, 3) uint8: the frame at each saved state
    real: np.ndarray  # (C, 6, K, H, W, 3) uint8: real[i, c] = frames 1..K holding ACTION_CLASSES[c]
    states: list[bytes]  # (C,) procgen states (env.get_state() of one environment)
    level_seeds: np.ndarray  # (C,) int: procgen level of each state
    prefix_frames: np.ndarray  # (C,) int: held-policy frames played before settling
    settings: dict = field(default_factory=dict)  # levels, mode, seed, horizon, prefix_max, settle
    skipped: dict = field(default_factory=dict)  # reason -> count


def heldout_levels(data_folder, override: str | None = None) -> tuple[int, int]:
    """The level range [A, B) to play: `override` ('A:B') if given, else the dataset's held-out range
    (the first one if the index lists several). BadDataError when the dataset has none."""
    from .coinrun import parse_levels
    from .data import open_dataset

    if override:
        return parse_levels(override)
    ranges = open_dataset(data_folder).level_ranges.get("heldout") or []
    if not ranges:
        raise BadDataError(f"{data_folder}: its index has no held-out level range (generate held-out data with "
                           f"`genie-play data coinrun --heldout-levels A:B`) and no --levels A:B was given")
    return int(ranges[0][0]), int(ranges[0][1])


def make_env(levels: tuple[int, int], num: int, seed: int, mode: str):
    from .coinrun import import_procgen

    env_class = import_procgen()
    return env_class(num=num, env_name="coinrun", distribution_mode=mode, start_level=levels[0],
                     num_levels=levels[1] - levels[0], rand_seed=int(seed))


def real_futures(futures_env, state: bytes, horizon: int, frame_skip: int = 1,
                 press: int | None = None) -> tuple[np.ndarray, np.ndarray, bool]:
    """From `state`, hold each class's procgen action for `horizon` frames in `futures_env` (6 envs),
    or for the first `press` frames and then no key, each frame `frame_skip` game steps after the
    last (the data's frame skip). Returns (the frame at the state (H, W, 3), futures (6, K, H, W, 3),
    whether an episode ended)."""
    futures_env.set_state([state] * NUM_CLASSES)
    prompt = futures_env.observe()[1]["rgb"][0].copy()
    pressed = np.asarray(CLASS_TO_PROCGEN, np.int32)
    released = np.full(NUM_CLASSES, IDLE, np.int32)
    frames, ended = [], False
    for k in range(horizon):
        actions = pressed if press is None or k < press else released
        for _ in range(frame_skip):
            futures_env.act(actions)
            _, obs, first = futures_env.observe()
            ended |= bool(np.any(first))
        frames.append(obs["rgb"].copy())  # (6, H, W, 3)
    return prompt, np.stack(frames, axis=1), ended


def collect_states(levels: tuple[int, int], clips: int, seed: int = 0, mode: str = "hard", horizon: int = 8,
                   prefix_max: int = 60, settle: int = 16, num_envs: int = 8,
                   max_frames: int | None = None, frame_skip: int = 1, press: int | None = None) -> ControlStates:
    """`clips` saved states (see the module docstring), deterministic in all arguments; `press` makes
    the real futures taps (the class for `press` frames, then no key). GenieError if procgen is
    missing or `max_frames` environment frames do not yield enough states."""
    if clips < 1 or horizon < 1 or prefix_max < 0 or settle < 0 or (press is not None and not 1 <= press < horizon):
        raise BadSettingError("need clips >= 1, horizon >= 1, prefix_max >= 0, settle >= 0 and 1 <= press < horizon")
    env = make_env(levels, num_envs, seed, mode)
    futures_env = make_env(levels, NUM_CLASSES, seed, mode)
    policy = HeldPolicy(num_envs, seed)
    rng = np.random.default_rng([int(seed), 0xC7A1])
    max_frames = max_frames or 2000 * clips + 10_000
    prefix = np.zeros(num_envs, np.int64)  # frames of this state's prefix
    left = np.full(num_envs, -1, np.int64)  # frames until the state is saved; -1: playing to the episode's end
    out: dict[str, list] = {"prompts": [], "real": [], "states": [], "level_seeds": [], "prefix_frames": []}
    skipped = {"episode ended before the state": 0, "episode ended in a real future": 0, "identical real futures": 0}
    frames_played = 0
    while len(out["states"]) < clips:
        _, obs, first = env.observe()
        info = env.get_info()
        for e in np.flatnonzero(first):  # a new episode: start a new state there
            if left[e] >= 0:
                skipped["episode ended before the state"] += 1
            prefix[e] = rng.integers(0, prefix_max + 1)
            left[e] = prefix[e] + settle
        ready = np.flatnonzero(left == 0)
        if ready.size:
            saved = env.get_state()
            for e in ready:
                left[e] = -1
                if len(out["states"]) >= clips:
                    break
                prompt, real, ended = real_futures(futures_env, saved[e], horizon, frame_skip, press)
                if ended:
                    skipped["episode ended in a real future"] += 1
                elif any(np.array_equal(real[a], real[b]) for a in range(NUM_CLASSES) for b in range(a)):
                    skipped["identical real futures"] += 1
                else:
                    for key, value in (("prompts", obs["rgb"][e].copy()), ("real", real), ("states", saved[e]),
                                       ("level_seeds", int(info[e]["level_seed"])), ("prefix_frames", int(prefix[e]))):
                        out[key].append(value)
        held = policy.act(first)
        actions = np.where((left > 0) & (left <= settle), IDLE, held).astype(np.int32)
        left[left > 0] -= 1
        env.act(actions)
        frames_played += num_envs
        if frames_played > max_frames:
            raise GenieError(f"only {len(out['states'])} of {clips} CoinRun states after {frames_played} frames "
                             f"on levels {levels[0]}:{levels[1]} ({skipped}); try other levels or fewer clips")
    settings = {"levels": list(levels), "mode": mode, "seed": int(seed), "horizon": int(horizon), "frame_skip": int(frame_skip),
                "prefix_max": int(prefix_max), "settle": int(settle), "press": press}
    return ControlStates(np.stack(out["prompts"]), np.stack(out["real"]), out["states"],
                         np.asarray(out["level_seeds"]), np.asarray(out["prefix_frames"]), settings, skipped)
