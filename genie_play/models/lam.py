"""Latent action model (LAM): infers a discrete action in {0..num_actions-1} between frames.

Encoder: pixels of frames 1..T through a causal ST transformer; the output at frame t+1 (which has
seen frames 1..t+1) is pooled over space and quantised to one of `num_actions` normalised codes:
the latent action of the transition t -> t+1. Decoder (training only): predicts frame t+1 from the
pixels of frames 1..t plus that action, so the action must carry whatever frame t does not. What the
decoder outputs (`predict`):
- "frame":  frame t+1's pixels, one linear per patch (the first bundles);
- "change": the change from frame t, added to frame t's pixels (copying frame t is free);
- "shift":  frame t moved, per patch, by a mixture of whole-pixel shifts (a softmax over -Rx..Rx
  pixels across, then over -Ry..Ry down), plus a change added to the result. A one-linear-per-
  patch head cannot draw a texture moved by a pixel or two (its patch has 768 values and the model
  128 dimensions), so with "frame" or "change" the frequent, cheap actions (walking scrolls
  CoinRun's view by 1-2 px per frame) never lower the loss; a shift draws them exactly, and which
  way things move is what an action is. A mixture over whole shifts (rather than a continuous
  flow resampled bilinearly) gives every candidate shift its own gradient, which a 1-2 px texture
  does not give a flow.
At play time only the action codebook is used (it conditions the dynamics model).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from .motion import motion_costs, shifted
from .patches import PositionTable, patchify, to_unit, unpatchify
from .st_block import STConfig, STTransformer, init_weights
from .vq import VectorQuantizer, VQConfig, VQOutput

PREDICTIONS = ("frame", "change", "shift")  # what the decoder can output (module docstring)


@dataclass
class LAMConfig:
    frame_size: tuple[int, int] = (64, 64)  # frame height, width in pixels (the tokenizer's)
    patch: int = 16  # side of the square pixel patches the LAM reads frames in
    vq: VQConfig = field(default_factory=lambda: VQConfig(num_codes=8, code_dim=32, dead_after=50))
    encoder: STConfig = field(default_factory=lambda: STConfig(dim=128, depth=4, heads=4, window=16))
    decoder: STConfig = field(default_factory=lambda: STConfig(dim=128, depth=4, heads=4, window=16))
    predict: str = "frame"  # "frame" | "change" | "shift": what the decoder outputs (module docstring)
    max_shift: tuple[int, int] = (4, 8)  # largest shift across and down, in pixels per frame (both below)
    # The encoder also reads, per patch, how well each shift of frame t explains frame t+1
    # (models/motion.py `motion_costs`): which way things moved is given, not discovered.
    motion_input: bool = False  # the encoder also reads per-patch motion costs (above)
    motion_stride: int = 1  # the motion costs' shifts step by this many pixels (on frames averaged as much)

    # Fields added after the first bundles, with the value that reproduces those bundles.
    ADDED_FIELDS = {"predict": "frame", "max_shift": (4, 8), "motion_input": False, "motion_stride": 1}

    @property
    def num_shifts(self) -> int:
        """Shifts in the encoder's motion costs."""
        rx, ry = (m // self.motion_stride for m in self.max_shift)
        return (2 * rx + 1) * (2 * ry + 1)

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
        self.enc_motion = nn.Linear(cfg.num_shifts, cfg.encoder.dim) if cfg.motion_input else None
        self.enc_out = nn.Linear(cfg.encoder.dim, cfg.vq.code_dim)
        self.vq = VectorQuantizer(cfg.vq)
        self.dec_in = nn.Linear(patch_dim, cfg.decoder.dim)
        self.dec_pos = PositionTable(n, cfg.decoder.dim)
        self.dec_action = nn.Linear(cfg.vq.code_dim, cfg.decoder.dim)
        self.dec_mask = nn.Parameter(torch.zeros(cfg.decoder.dim))  # replaces dropped context patches
        self.decoder = STTransformer(cfg.decoder)
        self.dec_out = nn.Linear(cfg.decoder.dim, patch_dim)
        if cfg.predict not in PREDICTIONS:
            raise ValueError(f"LAM predict must be one of {', '.join(PREDICTIONS)}, not {cfg.predict!r}")
        if min(cfg.max_shift) < 1 or cfg.motion_stride < 1:
            raise ValueError(f"LAM max_shift {cfg.max_shift} and motion_stride {cfg.motion_stride} must be >= 1")
        rx, ry = cfg.max_shift
        self.dec_shift = nn.Linear(cfg.decoder.dim, 2 * rx + 1 + 2 * ry + 1) if cfg.predict == "shift" else None
        init_weights(self)
        if self.dec_shift is not None:  # start from "nothing moves, nothing changes": a copy of frame t
            for layer in (self.dec_shift, self.dec_out):
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)
            with torch.no_grad():  # the zero shifts take 98% of each softmax
                self.dec_shift.bias[rx] = math.log(49 * 2 * rx)
                self.dec_shift.bias[2 * rx + 1 + ry] = math.log(49 * 2 * ry)

    def infer(self, frames: torch.Tensor) -> VQOutput:
        """frames (B, T, H, W, 3) uint8 or [0,1] -> VQOutput over (B, T-1): action of t -> t+1."""
        pixels = to_unit(frames)  # (B, T, H, W, 3) in [0, 1], as in the paper
        x = self.enc_in(patchify(pixels, self.cfg.patch).to(self.enc_in.weight.dtype))  # (B, T, N, D)
        if self.enc_motion is not None:
            x = x + self.enc_motion(self._motion(pixels).to(x.dtype))
        x = self.encoder(self.enc_pos(x))  # (B, T, N, D)
        pooled = x[:, 1:].mean(dim=2)  # (B, T-1, D): frame t+1 has seen frames 1..t+1
        return self.vq(self.enc_out(pooled))

    @torch.no_grad()
    def _motion(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels (B, T, H, W, 3) -> (B, T, N, num_shifts) motion costs of frame t-1 -> t (zeros for
        the first frame, which has no predecessor)."""
        b, t, h, w, _ = pixels.shape
        p = pixels.float()
        costs = motion_costs(p[:, :-1].reshape(-1, h, w, 3), p[:, 1:].reshape(-1, h, w, 3), self.cfg.max_shift,
                             self.cfg.patch, self.cfg.motion_stride)
        costs = costs.view(b, t - 1, *costs.shape[1:])
        return torch.cat([torch.zeros_like(costs[:, :1]), costs], dim=1)

    def predict_next(
        self, frames: torch.Tensor, actions: torch.Tensor, drop: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Decoder. frames (B, T, H, W, 3) = frames 1..T, actions (B, T, code_dim) where
        actions[:, t] is the action t -> t+1; drop (B, T, N) bool hides context patches.
        Returns predicted frames 2..T+1: (B, T, H, W, 3), in [0, 1] for "frame", about [0, 1] otherwise."""
        pixels = to_unit(frames)  # (B, T, H, W, 3) in [0, 1]
        x = self.dec_in(patchify(pixels, self.cfg.patch).to(self.dec_in.weight.dtype))  # (B, T, N, D)
        if drop is not None:
            x = torch.where(drop[..., None], self.dec_mask.to(x.dtype), x)
        x = self.dec_pos(x) + self.dec_action(actions)[:, :, None, :]
        y = self.decoder(x)  # (B, T, N, D)
        h, w = self.cfg.frame_size
        change = unpatchify(self.dec_out(y), self.cfg.patch, h, w)  # (B, T, H, W, 3)
        if self.cfg.predict == "frame":
            return torch.sigmoid(change)
        if self.cfg.predict == "shift":
            b, t, n, _ = y.shape
            gh, gw, rx = h // self.cfg.patch, w // self.cfg.patch, self.cfg.max_shift[0]
            logits = self.dec_shift(y).float().reshape(b * t, gh, gw, -1)
            moved = shifted(pixels.reshape(b * t, h, w, 3).float(), logits[..., : 2 * rx + 1].softmax(-1), 2, self.cfg.patch)
            moved = shifted(moved, logits[..., 2 * rx + 1 :].softmax(-1), 1, self.cfg.patch)
            pixels = moved.reshape(b, t, h, w, 3)
        return pixels + change

    def action_codebook(self) -> torch.Tensor:
        """(num_actions, code_dim) unit vectors: what the dynamics model is conditioned on."""
        return self.vq.codes()

