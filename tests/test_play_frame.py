"""A whole frame in one C call (models/play_frame.c) and the AMX int8 product (play_linear.c).

The frame kernel must give exactly the tokens of the round-by-round path through the same kernels
(same draws, same ranking, same record pass), at any thread count and for batches as for single
rollouts; it must step aside when the weights change. AMX and AVX-512 VNNI products must give the
same exact integer sums.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from genie_play.devices import c_int8_linear
from genie_play.models import play_kernels

kernels = play_kernels.load()
needs_frame = pytest.mark.skipif(not c_int8_linear(kernels), reason="no C int8 linear here: int8 play is on fbgemm, no frame kernel")


def _world(path):
    from genie_play.world import World

    world = World.load(path, device="cpu", precision="int8")
    assert world._fused_frame() is not None
    return world


def _rollout(world, prompt, actions, frame_kernel: bool, threads: int = 1, **sampling) -> np.ndarray:
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        world.frame_kernel = frame_kernel
        world._pack_kernels()
        world.sampling = {"steps": 25, "temperature": 1.0, **sampling}
        return world.rollout(prompt, actions, seed=3)
    finally:
        torch.set_num_threads(before)
        world.frame_kernel = True
        world._pack_kernels()


@needs_frame
@pytest.mark.parametrize("sampling", [{}, {"steps": 2}, {"steps": 1}, {"temperature": 0.0}, {"temperature": 2.0, "steps": 7}])
def test_the_frame_kernel_gives_the_round_by_round_frames(tiny_world_path, prompt_image, sampling):
    world = _world(tiny_world_path)
    actions = [1, 5, 2, 7, 0, 3, 3, 6, 4]  # longer than the context window: the window slides
    fused = _rollout(world, prompt_image, actions, True, **sampling)
    state = world._generator.get_state()
    rounds = _rollout(world, prompt_image, actions, False, **sampling)
    assert np.array_equal(fused, rounds)
    assert torch.equal(state, world._generator.get_state())  # the same numbers were drawn
    assert not np.array_equal(fused[1], fused[-1])  # the rollout moved: the comparison is not of constants


@needs_frame
def test_the_frame_kernel_is_the_same_at_any_thread_count_and_batch(tiny_world_path, prompt_image):
    world = _world(tiny_world_path)
    one = _rollout(world, prompt_image, [2, 4, 6], True, threads=1)
    two = _rollout(world, prompt_image, [2, 4, 6], True, threads=2)
    assert np.array_equal(one, two)
    world.seed(1)
    world.reset(prompt_image)
    world.step(2)
    grid = world.explore(2, seed=11)  # all 8 actions as one batch of the frame kernel
    for action in (0, 6):
        world.seed(1)
        world.reset(prompt_image)
        world.step(2)
        world.seed(11)
        alone = [world.step(action) for _ in range(2)]
        assert np.array_equal(grid[action], np.stack(alone))


@needs_frame
def test_the_frame_kernel_steps_aside_when_weights_change(tiny_world_path, prompt_image):
    world = _world(tiny_world_path)
    world.dynamics.transformer.use_kernels(None)  # blocks back on PyTorch operations
    assert world._fused_frame() is None
    world._pack_kernels()
    assert world._fused_frame() is not None
    with torch.no_grad():
        world.dynamics.tok_emb.weight[3] += 1.0
    assert world._fused_frame() is None  # stale: the round-by-round path (with its own checks) runs
    world.reset(prompt_image)
    assert world.step(1).shape == (*world.frame_size, 3)


@pytest.mark.skipif(kernels is None or not kernels.linear_vnni, reason="no AVX-512 VNNI product here")
@pytest.mark.parametrize("rows", [64, 37, 31, 8])
def test_amx_and_vnni_products_are_identical(rows):
    if not kernels.use_amx(True):
        pytest.skip("no AMX on this CPU or kernel")
    torch.manual_seed(rows)
    layer = torch.nn.Linear(256, 96).requires_grad_(False)
    w = kernels.pack_linear(layer.weight, layer.bias)
    x, residual = torch.randn(rows, 256), torch.randn(rows, 96)
    try:
        amx = kernels.linear(x, w, act=True, residual=residual)
        kernels.use_amx(False)
        vnni = kernels.linear(x, w, act=True, residual=residual)
    finally:
        kernels.use_amx(True)
    assert torch.equal(amx, vnni)
    assert float((amx - (torch.nn.functional.silu(layer(x)) + residual)).norm() / amx.norm()) < 0.03
