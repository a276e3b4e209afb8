"""Dropped actions in training, no action in play: a transition whose action is dropped gets the
dynamics' "no action" vector, and `NO_ACTION` in a batched rollout plays that vector (a released key)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from genie_play.errors import BadActionError, BadSettingError
from genie_play.models.dynamics import DynamicsModel
from genie_play.models.tokenizer import Tokenizer
from genie_play.overrides import apply_overrides
from genie_play.presets import preset
from genie_play.train.stage_dynamics import DynamicsLossConfig, DynamicsTrainer
from genie_play.world import NO_ACTION, World


def test_dropped_transitions_get_the_no_action_vector_and_the_others_their_action() -> None:
    torch.manual_seed(0)
    model = DynamicsModel(preset("tiny").dynamics)
    with torch.no_grad():
        model.no_action.normal_()  # zeros at initialisation would hide a mix-up with a zero action
    actions = torch.randn(2, 3, model.cfg.action_dim)
    drop = torch.tensor([[True, False, False], [False, False, True]])
    emb = model.action_embedding(actions, 2, drop)  # (B, T, D): frame 0, then one per transition
    plain = model.action_embedding(actions, 2)
    for b, t in [(0, 0), (1, 2)]:
        assert torch.equal(emb[b, t + 1], model.no_action.detach())
    for b, t in [(0, 1), (0, 2), (1, 0), (1, 1)]:
        assert torch.equal(emb[b, t + 1], plain[b, t + 1])
    assert torch.equal(emb[:, 0], plain[:, 0])
    played = model.frame_action(actions[:, 0], 2, drop=torch.tensor([True, False]))  # play: one frame, the same rule
    assert torch.equal(played[0], model.no_action.detach()) and torch.allclose(played[1], plain[1, 1])


def test_training_drops_actions_at_the_configured_rate_and_refuses_a_rate_of_one() -> None:
    torch.manual_seed(0)
    cfg = preset("tiny")
    trainer = DynamicsTrainer(cfg, Tokenizer(cfg.tokenizer), DynamicsLossConfig(action_drop=0.5))
    drops = []
    trainer.dynamics.register_forward_hook(lambda m, args, kwargs, out: drops.append(kwargs["drop"]), with_kwargs=True)
    h, w = cfg.tokenizer.frame_size
    video = torch.randint(0, 256, (8, 9, h, w, 3), dtype=torch.uint8)
    with torch.no_grad():
        trainer(video, step=1)
    assert drops[0].shape == (8, 8) and 0.3 < drops[0].float().mean() < 0.7
    plain = DynamicsTrainer(cfg, Tokenizer(cfg.tokenizer))
    plain.dynamics.register_forward_hook(lambda m, args, kwargs, out: drops.append(kwargs["drop"]), with_kwargs=True)
    with torch.no_grad():
        plain(video, step=1)
    assert drops[1] is None  # the default never drops
    with pytest.raises(BadSettingError, match="action_drop"):
        apply_overrides(DynamicsLossConfig(), ["action_drop=1.0"], "loss.")


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_no_action_plays_the_no_action_vector_row_by_row(tiny_world_path, prompt_image, precision) -> None:
    world = World.load(tiny_world_path, device="cpu", precision=precision)
    with torch.no_grad():  # a "no action" vector unlike any action, so that the futures differ
        world.dynamics.no_action.normal_(generator=torch.Generator().manual_seed(1))
    world.sampling = {"steps": 4}
    prompts = np.repeat(prompt_image[None], 2, 0)
    actions = np.array([[1, 2, 1], [5, 5, 0]])
    plain = world.rollout_batch(prompts, actions, seed=3)
    none = world.rollout_batch(prompts, np.full_like(actions, NO_ACTION), seed=3)
    assert not np.array_equal(plain[:, 1:], none[:, 1:])
    mixed = world.rollout_batch(prompts, np.array([[1, 2, 1], [NO_ACTION] * 3]), seed=3)  # per row
    assert np.array_equal(mixed[0], plain[0]) and np.array_equal(mixed[1], none[1])
    released = world.rollout_batch(prompts[:1], np.array([[1, NO_ACTION, NO_ACTION]]), seed=3)  # a tap
    assert np.array_equal(released[0, :2], plain[0, :2]) and not np.array_equal(released[0, 2:], plain[0, 2:])


def test_step_plays_no_action_like_a_batched_rollout_and_refuses_below_it(tiny_world_path, prompt_image) -> None:
    world = World.load(tiny_world_path, device="cpu", precision="fp32")
    with torch.no_grad():
        world.dynamics.no_action.normal_(generator=torch.Generator().manual_seed(1))
    world.sampling = {"steps": 4}
    with pytest.raises(BadActionError, match="NO_ACTION"):
        world.rollout_batch(prompt_image[None], np.array([[-2]]))
    batched = world.rollout_batch(prompt_image[None], np.array([[3, NO_ACTION, NO_ACTION]]), seed=5)[0]
    assert np.array_equal(world.rollout(prompt_image, [3, NO_ACTION, NO_ACTION], seed=5), batched)  # step, frame by frame
    with pytest.raises(BadActionError, match="NO_ACTION"):
        world.step(-2)
    assert world.position == 3  # the refused step changed nothing


def test_a_world_knows_no_action_only_when_its_card_says_it_was_trained_with_dropped_actions(tiny_world_path) -> None:
    world = World.load(tiny_world_path, device="cpu", precision="fp32")
    for card, learned in [({}, False), ({"action_drop": 0.0}, False), ({"action_drop": 0.3}, True),
                          ({"action_drop": "0.3"}, False), ({"action_drop": True}, False)]:
        world.card = card
        assert world.learned_no_action is learned, card
