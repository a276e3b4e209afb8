"""Model-level properties: causality, cached == full recompute, sampler contract, gradients."""
from __future__ import annotations

import torch

from genie_play.models import maskgit
from genie_play.models.dynamics import DynamicsModel
from genie_play.models.lam import LatentActionModel
from genie_play.presets import preset, override
from genie_play.models.st_block import ContextKV
from genie_play.models.tokenizer import Tokenizer

torch.manual_seed(0)
CFG = preset("tiny")


def _video(t: int, b: int = 2) -> torch.Tensor:
    h, w = CFG.tokenizer.frame_size
    return torch.randint(0, 256, (b, t, h, w, 3), dtype=torch.uint8)


def test_tokenizer_encoder_and_decoder_are_causal():
    tok = Tokenizer(CFG.tokenizer).eval()
    video = _video(4)
    changed = video.clone()
    changed[:, 2] = 255 - changed[:, 2]
    with torch.no_grad():
        a, b = tok.quantize(video), tok.quantize(changed)
        assert torch.equal(a.z_e[:, :2], b.z_e[:, :2])
        assert not torch.equal(a.z_e[:, 2], b.z_e[:, 2])
        tokens = a.indices.clone()
        tokens2 = tokens.clone()
        tokens2[:, 3] = (tokens2[:, 3] + 1) % CFG.tokenizer.vq.num_codes
        assert torch.equal(tok.decode(tokens)[:, :3], tok.decode(tokens2)[:, :3])


def test_lam_actions_are_causal():
    lam = LatentActionModel(CFG.lam).eval()
    video = _video(5)
    changed = video.clone()
    changed[:, 3] = 0
    with torch.no_grad():
        a, b = lam.infer(video), lam.infer(changed)
    # action t is the transition t -> t+1, so frame 3 first affects action 2
    assert torch.equal(a.z_e[:, :2], b.z_e[:, :2])
    assert not torch.equal(a.z_e[:, 2], b.z_e[:, 2])


def _dynamics(mode: str = "add") -> DynamicsModel:
    return DynamicsModel(override(CFG, [f"dynamics.action_mode={mode}"]).dynamics).eval()


def test_dynamics_is_causal_in_frames_and_actions():
    for mode in ("add", "token"):
        dyn = _dynamics(mode)
        d = dyn.cfg
        tokens = torch.randint(0, d.vocab, (2, 5, d.tokens_per_frame))
        actions = torch.randn(2, 4, d.action_dim)
        t2, a2 = tokens.clone(), actions.clone()
        t2[:, 3] = d.mask_id
        a2[:, 2] = -a2[:, 2]  # action 2 leads to frame 3
        with torch.no_grad():
            base = dyn(tokens, actions)
            assert torch.equal(base[:, :3], dyn(t2, actions)[:, :3])
            assert torch.equal(base[:, :3], dyn(tokens, a2)[:, :3])
            assert not torch.allclose(base[:, 3], dyn(tokens, a2)[:, 3])


def test_cached_steps_equal_full_recompute_past_the_window():
    for mode in ("add", "token"):
        dyn = _dynamics(mode)
        d, window = dyn.cfg, dyn.cfg.st.window
        total = window + 5  # the cache has slid on by 5 frames
        tokens = torch.randint(0, d.vocab, (2, total, d.tokens_per_frame))
        tokens[:, -1, ::2] = d.mask_id  # the frame being generated is partly masked
        actions = torch.randn(2, total - 1, d.action_dim)
        with torch.no_grad():
            full = dyn(tokens, actions)  # banded attention over the whole history
            frames, rows = [], 2 * (d.tokens_per_frame + (mode == "token"))
            for t in range(total):
                empty = (d.st.depth, rows, d.st.heads, d.st.dim // d.st.heads, torch.float32, torch.device("cpu"))
                ctx = ContextKV(frames[-(window - 1):], t, empty)
                logits = dyn.sample_logits(tokens[:, t], dyn.frame_action(actions[:, t - 1] if t else None, 2), ctx)
                kv = ctx.frame_kv()
                torch.testing.assert_close(logits, full[:, t], atol=2e-5, rtol=1e-4)
                frames.append(kv)


def test_decoder_cached_step_equals_full_decode():
    tok = Tokenizer(CFG.tokenizer).eval()
    c, window = CFG.tokenizer, CFG.tokenizer.decoder.window
    tokens = torch.randint(0, c.vq.num_codes, (1, window + 3, c.tokens_per_frame))
    with torch.no_grad():
        full = tok.decode(tokens)
        frames = []
        st = c.decoder
        for t in range(tokens.shape[1]):
            empty = (st.depth, c.tokens_per_frame, st.heads, st.dim // st.heads, torch.float32, torch.device("cpu"))
            px, kv = tok.decode_step(tokens[:, t], ContextKV(frames[-(window - 1):], t, empty))
            torch.testing.assert_close(px, full[:, t], atol=1e-5, rtol=1e-4)
            frames.append(kv)


def test_sampler_fills_every_token_in_exactly_steps_rounds():
    n, vocab, mask_id = 64, 50, 50
    for steps in (1, 2, 8, 25):
        calls, seen = [], []

        def logits_fn(tokens):
            calls.append(1)
            seen.append(tokens.clone())
            return torch.randn(tokens.shape[0], n, vocab)

        out = maskgit.decode(logits_fn, torch.full((3, n), mask_id), mask_id, steps=steps,
                             generator=torch.Generator().manual_seed(1))
        assert len(calls) == steps
        assert (out != mask_id).all() and (out < vocab).all()
        # each round reveals at least one token, and revealed tokens never change afterwards
        for before, after in zip(seen, seen[1:] + [out]):
            revealed = before != mask_id
            assert torch.equal(after[revealed], before[revealed])
            assert ((after != mask_id).sum(1) > revealed.sum(1)).all()


def test_sampler_keeps_known_tokens_and_is_seeded():
    n, vocab, mask_id = 16, 10, 10
    start = torch.full((1, n), mask_id)
    start[0, :4] = torch.tensor([1, 2, 3, 4])
    fn = lambda t: torch.randn(1, n, vocab, generator=torch.Generator().manual_seed(int(t.sum())))  # noqa: E731
    a = maskgit.decode(fn, start, mask_id, steps=5, generator=torch.Generator().manual_seed(3))
    b = maskgit.decode(fn, start, mask_id, steps=5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and torch.equal(a[0, :4], start[0, :4])
    assert maskgit.mask_counts(12, 4)[-1] == 0


def test_gradients_reach_every_parameter():
    tok, lam, dyn = Tokenizer(CFG.tokenizer), LatentActionModel(CFG.lam), _dynamics("token").train()
    video = _video(3)
    q = tok.quantize(video)
    loss = tok.decode_codes(q.quantized).square().mean() + (q.z_e - q.z_q).square().mean()
    act = lam.infer(video)
    loss = loss + lam.predict_next(video[:, :-1], act.quantized).mean() + (act.z_e - act.z_q).square().mean()
    logits = dyn(q.indices, act.quantized.detach())
    loss = loss + logits.logsumexp(-1).mean()
    loss.backward()
    for name, module in {"tokenizer": tok, "lam": lam, "dynamics": dyn}.items():
        for pname, p in module.named_parameters():
            if name == "lam" and pname == "dec_mask":
                continue  # only used when context patches are dropped
            assert p.grad is not None and p.grad.abs().sum() > 0, f"{name}.{pname} got no gradient"
