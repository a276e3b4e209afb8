"""Latent action model (LAM): infers a discrete action in {0..num_actions-1} between frames.

Encoder: pixels of frames 1..T through a causal ST transformer; the output at frame t+1 (which has
seen frames 1..t+1) is pooled over space and quantised to one of `num_actions` normalised codes:
the latent action of the transition t -> t+1. Decoder (training only): predicts frame t+1 from the
pixels of frames 1..t plus that action, so the action must carry whatever frame t does not. With
`predict_change` the decoder outputs the change from frame t (added to frame t's pixels) instead of
the whole frame: copying frame t is then free, and the loss is spent on what changed, which is
what an action is (a scroll of a pixel or two is invisible next to a blurry whole-frame guess).
At play time only the action codebook is used (it conditions the dynamics model).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn

from .patches import PositionTable, patchify, to_unit, unpatchify
from .st_block import STConfig, STTransformer, init_weights
from .vq import VectorQuantizer, VQConfig, VQOutput


@dataclass
class LAMConfig:
    frame_size: tuple[int, int] = (64, 64)
    patch: int = 16
    vq: VQConfig = field(default_factory=lambda: VQConfig(num_codes=8, code_dim=32, dead_after=50))
    encoder: STConfig = field(default_factory=lambda: STConfig(dim=128, depth=4, heads=4, window=16))
    decoder: STConfig = field(default_factory=lambda: STConfig(dim=128, depth=4, heads=4, window=16))
    predict_change: bool = False  # decoder output = frame t + change (True) or the whole frame t+1

    # Fields added after the first bundles, with the value that reproduces those bundles.
    ADDED_FIELDS = {"predict_change": False}

    @property
    def num_actions(self) -> int:
        return self.vq.num_codes

    @property
    def tokens_per_frame(self) -> int:
        return (self.frame_size[0] // self.patch) * (self.frame_size[1] // self.patch)


class LatentActionModel(nn.Module):
    def __init__(self, cfg: LAMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        n, patch_dim = cfg.tokens_per_frame, cfg.patch * cfg.patch * 3
        self.enc_in = nn.Linear(patch_dim, cfg.encoder.dim)
        self.enc_pos = PositionTable(n, cfg.encoder.dim)
        self.encoder = STTransformer(cfg.encoder)
        self.enc_out = nn.Linear(cfg.encoder.dim, cfg.vq.code_dim)
        self.vq = VectorQuantizer(cfg.vq)
        self.dec_in = nn.Linear(patch_dim, cfg.decoder.dim)
        self.dec_pos = PositionTable(n, cfg.decoder.dim)
        self.dec_action = nn.Linear(cfg.vq.code_dim, cfg.decoder.dim)
        self.dec_mask = nn.Parameter(torch.zeros(cfg.decoder.dim))  # replaces dropped context patches
        self.decoder = STTransformer(cfg.decoder)
        self.dec_out = nn.Linear(cfg.decoder.dim, patch_dim)
        init_weights(self)

    def infer(self, frames: torch.Tensor) -> VQOutput:
        """frames (B, T, H, W, 3) uint8 or [0,1] -> VQOutput over (B, T-1): action of t -> t+1."""
        x = patchify(to_unit(frames), self.cfg.patch).to(self.enc_in.weight.dtype)  # pixels in [0, 1], as in the paper
        x = self.encoder(self.enc_pos(self.enc_in(x)))  # (B, T, N, D)
        pooled = x[:, 1:].mean(dim=2)  # (B, T-1, D): frame t+1 has seen frames 1..t+1
        return self.vq(self.enc_out(pooled))

    def predict_next(
        self, frames: torch.Tensor, actions: torch.Tensor, drop: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Decoder. frames (B, T, H, W, 3) = frames 1..T, actions (B, T, code_dim) where
        actions[:, t] is the action t -> t+1; drop (B, T, N) bool hides context patches.
        Returns predicted frames 2..T+1: (B, T, H, W, 3), in [0, 1] (about [0, 1] with predict_change)."""
        pixels = to_unit(frames)  # (B, T, H, W, 3) in [0, 1]
        x = self.dec_in(patchify(pixels, self.cfg.patch).to(self.dec_in.weight.dtype))  # (B, T, N, D)
        if drop is not None:
            x = torch.where(drop[..., None], self.dec_mask.to(x.dtype), x)
        x = self.dec_pos(x) + self.dec_action(actions)[:, :, None, :]
        y = self.dec_out(self.decoder(x))
        h, w = self.cfg.frame_size
        if self.cfg.predict_change:
            return pixels + unpatchify(y, self.cfg.patch, h, w)
        return torch.sigmoid(unpatchify(y, self.cfg.patch, h, w))

    def action_codebook(self) -> torch.Tensor:
        """(num_actions, code_dim) unit vectors: what the dynamics model is conditioned on."""
        return self.vq.codes()
