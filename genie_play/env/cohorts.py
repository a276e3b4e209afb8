"""Lockstep cohorts: sub-environments that advance together in one batched pass of the World.

World's batched engine (what `World.rollout_batch` and `World.explore` run) steps a batch of frames
in one MaskGIT pass when every row is at the same frame index since its reset (one temporal
position, one context length) and shares the same random numbers. Sub-environments reset in the
same call start at index 0 with the same noise (GenieEnv's noise_seed), so they stay in lockstep
until one of them is reset on its own; such a cohort is then split, and each cohort takes one pass.

A row of a batch equals the single-frame path's result (tests/test_fast_path.py checks
rollout_batch against rollout), so a cohort's rows are what GenieEnv gives for the same prompt and
actions. This module is the one place the environments use World's batched API (`World.start`,
`World.advance`, `World.timings`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..models.st_block import FrameKV
from ..world import World, WorldState


@dataclass(frozen=True)
class Cohort:
    """Sub-environments `rows` (indices, in batch order) and their batched World state."""

    rows: np.ndarray
    state: WorldState


def start(world: World, rows: np.ndarray, prompts: np.ndarray, noise_seed: int) -> tuple[Cohort, dict[str, float]]:
    """A new cohort from prompts (B, H, W, 3) uint8 (checked by the caller), each recorded as
    frame 0 with the noise stream of `noise_seed`; returns it and the timings (ms) of the batch."""
    world.seed(noise_seed)
    state = world.start(np.ascontiguousarray(prompts, dtype=np.uint8))
    return Cohort(np.asarray(rows, dtype=np.int64), state), dict(world.last_timings)


def advance(world: World, cohort: Cohort, actions: np.ndarray) -> tuple[Cohort, dict[str, float]]:
    """The cohort one frame on under actions (B,) (checked ints, in the cohort's row order), in
    one MaskGIT pass; returns the new cohort and the timings (ms) of the pass."""
    state = world.advance(cohort.state, actions)  # from the cohort's own place in its noise stream
    return Cohort(cohort.rows, state), {"encode": 0.0, **world.timings}


def subset(cohort: Cohort, keep: np.ndarray) -> Cohort:
    """The cohort's rows where keep (B,) bool is True, their state rows selected."""
    if keep.all():
        return cohort
    index = np.flatnonzero(keep)
    state, batch = cohort.state, len(cohort.rows)
    chosen = torch.from_numpy(index).to(state.tokens.device)
    selected = WorldState(
        tuple(_select_kv(f, chosen, batch) for f in state.dynamics_kv),
        tuple(_select_kv(f, chosen, batch) for f in state.decoder_kv),
        state.tokens[chosen], state.frame[index], state.position, state.rng_state,
    )
    return Cohort(cohort.rows[index], selected)


def _select_kv(frame_kv: FrameKV, chosen: torch.Tensor, batch: int) -> FrameKV:
    """Rows of a FrameKV, whose (B*N, heads, 1, head_dim) tensors are batch-major."""
    layers = []
    for k, v in frame_kv.layers:
        per_item = k.shape[0] // batch
        index = (chosen[:, None] * per_item + torch.arange(per_item, device=chosen.device)).reshape(-1)
        layers.append((k.index_select(0, index), v.index_select(0, index)))
    return FrameKV(tuple(layers))
