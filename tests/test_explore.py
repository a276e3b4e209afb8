"""The action explorer: in the player (L) and headless (`genie-play explore`)."""
from __future__ import annotations

import os

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # before pygame is imported
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

import numpy as np  # noqa: E402
import pygame  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from genie_play.cli import main as cli_main  # noqa: E402
from genie_play.labels import ActionLabels  # noqa: E402
from genie_play.player.app import App, PlayOptions  # noqa: E402

SEED, STEPS, FRAMES = 11, 3, 3


def load(path):
    from genie_play import World

    world = World.load(path, device="cpu", precision="fp32")
    world.sampling = {"steps": STEPS}
    return world


@pytest.fixture
def app(tiny_world_path, prompt_path, tmp_path):
    options = PlayOptions(world_name="tiny", seed=SEED, explore_frames=FRAMES, config_dir=tmp_path / "config")
    app = App(lambda: load(tiny_world_path), [prompt_path], options).start()
    pump(app, app.settled)
    yield app
    app.close()


def pump(app, condition, timeout: float = 60.0) -> None:
    for _ in range(int(timeout * 200)):
        assert app.tick(), "the app quit"
        if condition():
            return
    raise AssertionError("timed out waiting for the app")


def press(k: int, text: str = "") -> None:
    pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=k, mod=0, unicode=text))
    pygame.event.post(pygame.event.Event(pygame.KEYUP, key=k, mod=0, unicode=text))


def type_text(text: str) -> None:
    for ch in text:
        press(pygame.key.key_code(ch), ch)


def rollouts(world, prompt, seed: int) -> np.ndarray:
    """(A, FRAMES, H, W, 3) from 8 separate World.rollout calls, each action held."""
    return np.stack([world.rollout(prompt, [a] * FRAMES, seed=seed)[1:] for a in range(world.num_actions)])


def test_world_explore_equals_separate_rollouts(tiny_world_path, prompt_path):
    world = load(tiny_world_path)
    world.seed(SEED)
    world.reset(prompt_path)
    batch = world.explore(num_frames=FRAMES, seed=SEED)
    assert batch.shape == (8, FRAMES, 16, 16, 3)
    assert np.array_equal(batch, rollouts(world, prompt_path, SEED))


def test_the_bundled_worlds_action_embedding_of_a_batch_equals_its_rows_one_by_one():
    """The explorer's batch must not round differently from single rollouts anywhere. One place did:
    a batch of 8 action codes through the action projection went through MKL's gemm, a single code
    through its gemv, ~5e-7 apart, and on the bundled world that flipped tokens by the third frame."""
    import torch

    from genie_play.world import World

    world = World.load("coinrun", device="cpu", precision="fp32")
    with torch.inference_mode():
        batch = world.dynamics.frame_action(world.action_codes, world.num_actions)
        rows = [world.dynamics.frame_action(world.action_codes[a : a + 1], 1)[0] for a in range(world.num_actions)]
    assert all(torch.equal(batch[a], rows[a]) for a in range(world.num_actions))


def test_player_explorer_shows_the_rollouts_labels_binds_and_returns(app, tiny_world_path, prompt_path):
    reference = load(tiny_world_path)
    prompt_frame = app.frame.copy()
    press(pygame.K_l)
    pump(app, lambda: app.explorer is not None and not app.explorer.loading)
    ex = app.explorer
    assert ex.frames.shape == (8, FRAMES + 1, 16, 16, 3)
    assert np.array_equal(ex.frames[:, 0], np.broadcast_to(prompt_frame, (8, 16, 16, 3)))
    assert np.array_equal(ex.frames[:, 1:], rollouts(reference, prompt_path, SEED))

    # pick tile 5 (0 -> right -> 1 -> down -> 5), type a label, save it
    press(pygame.K_RIGHT)
    press(pygame.K_DOWN)
    app.tick()
    assert ex.selected == 5
    type_text("dash")
    press(pygame.K_RETURN)
    app.tick()
    assert ex.editing is None and ex.table.label(5) == "dash" and "saved" in ex.message
    type_text("nope")
    press(pygame.K_ESCAPE)  # cancels the edit, stays in the explorer
    app.tick()
    assert app.explorer is ex and ex.table.label(5) == "dash"

    press(pygame.K_k)
    press(pygame.K_z)  # binds z to action 5
    app.tick()
    assert ex.table.keymap().action_for("z") == 5
    press(pygame.K_k)
    press(pygame.K_1)  # "1" is action 0's: refused with a message
    app.tick()
    assert "already bound to action 0" in ex.message and ex.table.keymap().action_for("1") == 0

    # the mouse picks a tile
    ex.draw(app.screen, app.screen.get_rect(), app.font, 0.0)
    pygame.event.post(pygame.event.Event(pygame.MOUSEBUTTONDOWN, button=1, pos=ex._tile_rects[2].center))
    app.tick()
    assert ex.selected == 2

    press(pygame.K_r)  # re-roll with a new seed
    pump(app, lambda: not ex.loading)
    assert ex.seed == SEED + 1
    assert np.array_equal(ex.frames[:, 1:], rollouts(reference, prompt_path, SEED + 1))

    press(pygame.K_l)  # back to play, in the same state
    app.tick()
    assert app.explorer is None and app.state.step == 0 and np.array_equal(app.frame, prompt_frame)
    assert app._legend()[5] == ("6/Z", "dash")
    press(pygame.K_z)  # the new key plays action 5, from the unchanged state and RNG
    pump(app, lambda: app.settled() and app.state.step == 1)
    assert np.array_equal(app.frame, reference.rollout(prompt_path, [5], seed=SEED)[-1])
    # saved per world, so a restart sees it
    again = ActionLabels.load(app.info.world_id, app.info.labels, 8, config_dir=app.options.config_dir)
    assert again.label(5) == "dash" and again.keymap().action_for("z") == 5


@pytest.mark.parametrize("suffix", [".png", ".gif"])
def test_headless_explore_writes_the_grid(tiny_world_path, prompt_path, tmp_path, monkeypatch, suffix):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    out = tmp_path / f"grid{suffix}"
    assert cli_main(["explore", str(prompt_path), "--world", str(tiny_world_path), "--frames", "2", "--out", str(out),
                     "--seed", "3", "--steps", str(STEPS), "--device", "cpu", "--precision", "fp32", "--scale", "2"]) == 0
    with Image.open(out) as im:
        if suffix == ".gif":
            assert im.n_frames == 3  # the prompt frame, then 2 frames
            assert im.size[0] == 2 + 4 * (32 + 4) + 2  # 4 tiles of 16*2 px per row, 4 px gaps
        else:
            assert im.size == (2 + 3 * (32 + 2), 2 + 8 * (32 + 2 + 16))  # 8 rows of 3 frames
    assert cli_main(["explore", str(prompt_path), "--world", str(tiny_world_path), "--out", str(tmp_path / "x.jpg")]) == 2
