"""Procgen CoinRun episodes, played by one of the policies of `coinrun_policy.py`.

Many environments run side by side (procgen renders thousands of frames a second). The policy
("held" by default: one of six distinct actions held for several frames; "random": the Genie
paper's uniform random action every frame) is applied to all of them at once and the procgen
action taken after each frame is stored with it. Levels are drawn by procgen from [start, stop):
disjoint ranges give the train and held-out splits. Episodes are cut after `max_episode_frames`
frames and the rest of that episode is skipped, because a random agent often wanders one level for
its whole 1,000-step limit; shorter episodes mean more levels per frame of data. The first frame of
every episode is the level's start; the frames procgen renders after its own episode end belong to
the next episode (gym3 `first` flags), so no clip mixes two levels.

procgen is imported lazily: it is an optional extra (`genie-play data install-coinrun`).
"""
from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..errors import GenieError
from .coinrun_policy import make_policy


def import_procgen():  # -> the ProcgenGym3Env class
    try:
        # gym 0.26 prints a multi-line deprecation notice on import; it is not for our users.
        with contextlib.redirect_stderr(io.StringIO()):
            from procgen import ProcgenGym3Env
    except ImportError as err:
        raise GenieError(f"CoinRun needs procgen, which is not installed ({err}); "
                         f"run `genie-play data install-coinrun`") from err
    return ProcgenGym3Env


@dataclass
class Episode:
    frames: np.ndarray  # (L, 64, 64, 3) uint8
    actions: np.ndarray  # (L,) int16: action taken after frame i; -1 after the last frame
    level: int


def parse_levels(text: str) -> tuple[int, int]:
    """'A:B' -> (A, B), the half-open level range [A, B); 'A' -> (A, A + 1)."""
    try:
        a, _, b = text.partition(":")
        start, stop = int(a), (int(b) if b else int(a) + 1)
    except ValueError:
        raise GenieError(f"bad level range {text!r}; write START:STOP, e.g. --levels 0:10000") from None
    if start < 0 or stop <= start:
        raise GenieError(f"bad level range {text!r}: need 0 <= START < STOP, e.g. --levels 0:10000")
    return start, stop


def ranges_overlap(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def generate_episodes(levels: tuple[int, int], num_frames: int, seed: int = 0, mode: str = "hard",
                      max_episode_frames: int = 500, min_episode_frames: int = 16,
                      num_envs: int = 16, policy: str = "random",
                      hold: tuple[int, int] | None = None, frame_skip: int = 1) -> Iterator[Episode]:
    """Yield complete (or capped) episodes until at least `num_frames` frames have been yielded.

    Deterministic in all its arguments. `policy` and `hold` are `coinrun_policy.make_policy`'s; with
    `frame_skip` k every kept frame is k game steps after the previous one (the action is repeated
    for the k steps; an episode that ends inside them starts the next episode at the kept frame). Episodes
    still running when the target is reached are dropped, as are episodes shorter than
    `min_episode_frames` (too short for a training clip).
    """
    env_class = import_procgen()
    env = env_class(num=num_envs, env_name="coinrun", distribution_mode=mode, start_level=levels[0],
                    num_levels=levels[1] - levels[0], rand_seed=int(seed))
    actor = make_policy(policy, num_envs, seed, hold)  # its own RNG, separate from procgen's levels
    frames: list[list[np.ndarray]] = [[] for _ in range(num_envs)]
    actions: list[list[int]] = [[] for _ in range(num_envs)]
    level = [0] * num_envs
    capped = [False] * num_envs  # True while skipping the rest of an episode past the cap
    emitted = 0
    ended = np.zeros(num_envs, bool)  # an episode ended inside the skipped steps

    def finish(e: int) -> Episode | None:
        ep = None
        if len(frames[e]) >= max(1, min_episode_frames):
            acts = np.asarray(actions[e], np.int16)
            acts[-1] = -1  # the action after the last kept frame leaves the episode
            ep = Episode(np.stack(frames[e]), acts, level[e])
        frames[e], actions[e] = [], []
        return ep

    while emitted < num_frames:
        _, obs, first = env.observe()
        first = first | ended
        rgb = obs["rgb"]  # (num_envs, 64, 64, 3) uint8
        info = env.get_info()
        act = actor.act(first)
        for e in range(num_envs):
            if first[e]:
                if not capped[e] and frames[e]:
                    ep = finish(e)
                    if ep is not None:
                        emitted += len(ep.frames)
                        yield ep
                frames[e], actions[e] = [], []
                capped[e], level[e] = False, int(info[e]["level_seed"])
            if capped[e]:
                continue
            frames[e].append(rgb[e].copy())
            actions[e].append(int(act[e]))
            if len(frames[e]) >= max_episode_frames:
                capped[e] = True
                ep = finish(e)
                if ep is not None:
                    emitted += len(ep.frames)
                    yield ep
            if emitted >= num_frames:
                return
        ended[:] = False
        for k in range(frame_skip):
            env.act(act.astype(np.int32))
            if k < frame_skip - 1:
                ended |= env.observe()[2]
