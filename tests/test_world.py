"""The World API on the tiny preset: determinism, snapshots, exploration, bundles, bad input."""
from __future__ import annotations

import numpy as np
import pytest

from genie_play import World
from genie_play.errors import BadActionError, BadSettingError


@pytest.fixture
def world(tiny_world_path):
    return World.load(tiny_world_path, device="cpu", precision="fp32")


def test_shapes_and_metadata(world, prompt_image):
    assert world.num_actions == 8 and world.frame_size == (16, 16)
    assert world.labels[0] == "right" and len(world.world_id) == 64
    frame = world.reset(prompt_image)
    assert frame.shape == (16, 16, 3) and frame.dtype == np.uint8
    nxt = world.step(3)
    assert nxt.shape == (16, 16, 3) and nxt.dtype == np.uint8
    assert set(world.last_timings) == {"encode", "dynamics", "decode"}


def test_same_seed_same_frames_and_reload_is_bit_identical(world, tiny_world_path, prompt_image):
    actions = [0, 3, 3, 7, 1, 5]
    a = world.rollout(prompt_image, actions, seed=5)
    again = World.load(tiny_world_path, device="cpu", precision="fp32").rollout(prompt_image, actions, seed=5)
    assert a.shape == (7, 16, 16, 3)
    assert np.array_equal(a, again)
    other = world.rollout(prompt_image, actions, seed=6)
    assert not np.array_equal(a, other)  # the seed matters (random weights give spread-out logits)


def test_save_then_load_gives_identical_outputs(world, tmp_path, prompt_image):
    path = tmp_path / "copy.safetensors"
    world.save(path, dtype=None)
    copy = World.load(path, device="cpu", precision="fp32")
    assert copy.world_id == world.world_id
    assert np.array_equal(world.rollout(prompt_image, [1, 2, 3], seed=1), copy.rollout(prompt_image, [1, 2, 3], seed=1))


def test_snapshot_restore_reproduces_the_next_frame_past_the_window(world, prompt_image):
    world.seed(0)
    world.reset(prompt_image)
    for a in [1, 2, 3, 4, 5, 6, 7, 0]:  # longer than the tiny window of 6 frames
        world.step(a)
    snap = world.snapshot()
    first = world.step(4)
    world.step(2)
    world.restore(snap)
    assert np.array_equal(world.step(4), first)


def test_explore_equals_separate_rollouts(world, prompt_image):
    world.seed(9)
    world.reset(prompt_image)
    before = world.snapshot()
    grid = world.explore(num_frames=3)
    assert grid.shape == (8, 3, 16, 16, 3)
    assert world.snapshot().position == before.position  # state unchanged
    for a in range(8):
        frames = world.rollout(prompt_image, [a] * 3, seed=9)
        assert np.array_equal(grid[a], frames[1:]), f"action {a}"


def test_infer_actions_and_reconstruct(world):
    video = np.random.default_rng(0).integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    actions = world.infer_actions(video)
    assert actions.shape == (4,) and actions.min() >= 0 and actions.max() < 8
    assert world.reconstruct(video).shape == video.shape


@pytest.mark.parametrize("bad", [-2, 8, 2**40, "3", 1.5, None, True])  # -1 is NO_ACTION
def test_bad_actions_are_refused_and_state_kept(world, prompt_image, bad):
    world.reset(prompt_image)
    snap = world.snapshot()
    with pytest.raises(BadActionError):
        world.step(bad)
    assert world.snapshot().position == snap.position


@pytest.mark.parametrize("setting", [{"steps": 0}, {"steps": 10**6}, {"temperature": -1.0},
                                     {"temperature": float("nan")}, {"speed": 2}])
def test_bad_sampling_settings_are_refused(world, setting):
    before = world.sampling
    with pytest.raises(BadSettingError):
        world.sampling = setting
    assert world.sampling == before


def test_step_before_reset_is_an_error(world):
    with pytest.raises(BadSettingError):
        world.step(0)
