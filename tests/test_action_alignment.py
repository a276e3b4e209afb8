"""The action of the transition t -> t+1 conditions the prediction of frame t+1: in training (the
LAM's action k goes to the dynamics as the action that leads to frame k+1) and in play (step(a)
conditions the new frame on action a exactly as training conditioned frame 1 on it). An
off-by-one here silently kills control, so it is checked end to end, not only per model."""
from __future__ import annotations

import numpy as np
import torch

from genie_play.presets import preset
from genie_play.models.tokenizer import Tokenizer
from genie_play.train.stage_dynamics import DynamicsTrainer
from genie_play.world import World


def test_training_conditions_frame_k_plus_1_on_the_lam_action_of_k_to_k_plus_1():
    torch.manual_seed(0)
    cfg = preset("tiny")
    trainer = DynamicsTrainer(cfg, Tokenizer(cfg.tokenizer)).eval()
    h, w = cfg.tokenizer.frame_size
    video = torch.randint(0, 256, (2, 5, h, w, 3), dtype=torch.uint8)
    seen = []
    trainer.dynamics.register_forward_pre_hook(lambda module, args: seen.append(args[1].detach().clone()))
    with torch.no_grad():
        trainer(video, step=1)
        expected = trainer.lam.infer(video).quantized  # (B, T-1, D): index k = transition k -> k+1
    assert torch.equal(seen[0], expected)  # the dynamics gets the LAM's actions in the LAM's order
    # ... and the dynamics reads actions[:, k] as the action that leads to frame k+1:
    changed = seen[0].clone()
    changed[:, 2] = -changed[:, 2]
    tokens = trainer.tokenizer.encode(video)
    with torch.no_grad():
        a, b = trainer.dynamics(tokens, seen[0]), trainer.dynamics(tokens, changed)
    assert torch.equal(a[:, :3], b[:, :3]) and not torch.allclose(a[:, 3], b[:, 3])
    # and the LAM's action 2 is the first to see frame 3 (so it describes frames 2 -> 3)
    later = video.clone()
    later[:, 3] = 255 - later[:, 3]
    with torch.no_grad():
        moved = trainer.lam.infer(later).z_e
    assert torch.equal(moved[:, :2], trainer.lam.infer(video).z_e[:, :2]) and not torch.equal(moved[:, 2], trainer.lam.infer(video).z_e[:, 2])


def test_play_conditions_the_new_frame_on_the_pressed_action_as_training_does(tiny_world_path, prompt_image):
    world = World.load(tiny_world_path, device="cpu", precision="fp32")
    world.sampling = {"steps": 4, "temperature": 1.0}
    first_round = []
    original = world.dynamics.sample_logits

    def spy(tokens, emb, context, positions=None):
        logits = original(tokens, emb, context, positions)
        if not first_round:
            first_round.append((tokens.clone(), logits.clone()))
        return logits

    world.dynamics.sample_logits = spy  # an instance attribute: the model's own method is untouched
    action = 3
    world.seed(0)
    world.reset(prompt_image)
    world.step(action)
    tokens, play_logits = first_round[0]  # round 1 of frame 1: every token masked
    assert (tokens == world.dynamics.cfg.mask_id).all()
    prompt_tokens = world.tokenizer.encode(torch.from_numpy(prompt_image)[None, None])  # (1, 1, N)
    masked = torch.full_like(prompt_tokens, world.dynamics.cfg.mask_id)
    with torch.no_grad():
        train_logits = world.dynamics(torch.cat([prompt_tokens, masked], 1), world.action_codes[action][None, None])
    torch.testing.assert_close(play_logits, train_logits[:, 1], atol=1e-4, rtol=0)
    with torch.no_grad():
        other = world.dynamics(torch.cat([prompt_tokens, masked], 1), world.action_codes[action + 1][None, None])
    assert not torch.allclose(play_logits, other[:, 1], atol=1e-4)  # the action matters at that frame


def test_a_rollout_frame_depends_on_the_action_before_it_not_after(tiny_world_path, prompt_image):
    world = World.load(tiny_world_path, device="cpu", precision="fp32")
    runs = {acts: world.rollout(prompt_image, list(acts), seed=5) for acts in [(0, 1), (0, 2), (4, 1)]}
    assert np.array_equal(runs[(0, 1)][1], runs[(0, 2)][1])  # frame 1 does not see action 1
    assert not np.array_equal(runs[(0, 1)][1], runs[(4, 1)][1])  # frame 1 does see action 0
