"""The latent action model's motion tools and soft VQ: whole-pixel shifts, the motion costs the
encoder reads, a decoder that starts as a copy of frame t, codes that all learn, and bundles made
before these options still loading with their old meaning."""
from __future__ import annotations

import torch

from genie_play.models.lam import LatentActionModel
from genie_play.models.motion import motion_costs, shift_frames, shifted
from genie_play.presets import from_dict, override, preset, to_dict
from genie_play.models.lam import LAMConfig
from genie_play.models.vq import VectorQuantizer, VQConfig
from genie_play.train.codebook import usage_entropy

torch.manual_seed(0)


def test_shift_mixture_moves_frames_by_whole_pixels():
    x = torch.rand(2, 32, 32, 3)
    onehot = torch.zeros(2, 4, 4, 9)
    onehot[..., 4 + 3] = 1  # shift +3 across: out[y, x] = x[y, x + 3]
    assert torch.allclose(shifted(x, onehot, 2, 8)[:, :, :-3], x[:, :, 3:])
    assert torch.equal(shift_frames(x, 0, 3)[:, :, :-3], x[:, :, 3:])
    down = torch.zeros(2, 4, 4, 5)
    down[..., 2 - 2] = 1  # shift -2 down: out[y] = x[y - 2]
    assert torch.allclose(shifted(x, down, 1, 8)[:, 2:], x[:, :-2])
    half = torch.zeros(2, 4, 4, 9)
    half[..., 4], half[..., 5] = 0.5, 0.5  # a mixture blends the two shifts
    assert torch.allclose(shifted(x, half, 2, 8)[:, :, :-1], 0.5 * (x[:, :, :-1] + x[:, :, 1:]), atol=1e-6)


def test_motion_costs_pick_the_shift_that_explains_the_next_frame():
    prev = torch.rand(3, 64, 64, 3)
    for dy, dx in ((0, 2), (-6, 0), (4, -4)):
        cur = shift_frames(prev, dy, dx)
        for stride in (1, 2):
            costs = motion_costs(prev, cur, (4, 8), 16, stride)  # (3, 16, S)
            rx, ry = 4 // stride, 8 // stride
            assert costs.shape == (3, 16, (2 * rx + 1) * (2 * ry + 1))
            best = costs.mean(dim=1).argmax(-1)  # over patches, per frame
            want = (dy // stride + ry) * (2 * rx + 1) + dx // stride + rx
            assert (best == want).all(), (dy, dx, stride)
            torch.testing.assert_close(costs.mean(-1), torch.zeros(3, 16), atol=1e-5, rtol=0)


def _lam(*over: str) -> LatentActionModel:
    return LatentActionModel(override(preset("small").lam, list(over)))


def test_shift_decoder_starts_as_a_copy_and_motion_input_changes_the_action():
    lam = _lam("predict=shift", "motion_input=true", "motion_stride=2", "max_shift=[8,12]")
    frames = torch.randint(0, 256, (2, 4, 64, 64, 3), dtype=torch.uint8)
    act = lam.infer(frames)
    pred = lam.predict_next(frames[:, :-1], act.quantized)
    # the zero shift dominates at initialisation: close to frame t, with a small blur from the rest
    assert (pred - frames[:, :-1].float() / 255).abs().mean() < 0.05
    moved = frames.clone()
    moved[:, 2] = torch.roll(frames[:, 1], 2, dims=2)  # frame 2 is frame 1 moved, in both clips
    with torch.no_grad():
        a, b = lam.infer(frames).z_e, lam.infer(moved).z_e
    assert torch.equal(a[:, 0], b[:, 0]) and not torch.allclose(a[:, 1], b[:, 1])


def test_soft_vq_sends_every_code_a_gradient_and_keeps_the_forward_value():
    vq = VectorQuantizer(VQConfig(num_codes=8, code_dim=4, soft_temperature=0.1))
    z = torch.randn(32, 4, requires_grad=True)
    out = vq(z)
    assert torch.allclose(out.quantized, out.z_q, atol=1e-6)  # the value is the chosen code
    (out.quantized * torch.randn(32, 4)).sum().backward()
    assert (vq.codebook.grad.abs().sum(-1) > 0).all()  # every code learns, chosen or not
    assert usage_entropy(out.probs).item() <= torch.log(torch.tensor(8.0)).item() + 1e-6
    hard = VectorQuantizer(VQConfig(num_codes=8, code_dim=4))
    assert hard(z).probs is None


def test_bundles_made_before_the_motion_options_keep_their_meaning():
    old = to_dict(preset("small").lam)
    for key in ("predict", "max_shift", "motion_input", "motion_stride"):
        old.pop(key)
    old["vq"].pop("soft_temperature")
    cfg = from_dict(LAMConfig, old)
    assert cfg.predict == "frame" and not cfg.motion_input and cfg.vq.soft_temperature == 0.0
    assert LatentActionModel(cfg).state_dict().keys() == LatentActionModel(preset("small").lam).state_dict().keys()
