"""ST-ViViT video tokenizer: a VQ-VAE whose encoder and decoder are causal ST transformers.

Frames (B, T, H, W, 3) are cut into patch x patch patches; the encoder maps each patch token to a
code of the VQ codebook, so a frame becomes a (H/patch) x (W/patch) grid of integers. The decoder
maps token grids back to pixels, attending causally to earlier frames' tokens, so at play time it
decodes each new frame once against its cached temporal keys/values.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn

from .patches import PositionTable, patchify, to_unit, unpatchify
from .st_block import ContextKV, FrameKV, STConfig, STTransformer, init_weights
from .vq import VectorQuantizer, VQConfig, VQOutput


@dataclass
class TokenizerConfig:
    frame_size: tuple[int, int] = (64, 64)  # (height, width) of every frame in pixels, multiples of patch
    patch: int = 8                          # pixels per token side: a frame is (H/patch) x (W/patch) tokens
    vq: VQConfig = field(default_factory=lambda: VQConfig(num_codes=1024, code_dim=32))
    # "More effective to scale the decoder than the encoder" (Genie); the encoder runs once per prompt.
    encoder: STConfig = field(default_factory=lambda: STConfig(dim=256, depth=3, heads=4, window=4))
    decoder: STConfig = field(default_factory=lambda: STConfig(dim=256, depth=4, heads=4, window=4))

    @property
    def grid(self) -> tuple[int, int]:
        return self.frame_size[0] // self.patch, self.frame_size[1] // self.patch

    @property
    def tokens_per_frame(self) -> int:
        return self.grid[0] * self.grid[1]


class Tokenizer(nn.Module):
    def __init__(self, cfg: TokenizerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        h, w = cfg.frame_size
        if h % cfg.patch or w % cfg.patch:
            raise ValueError(f"frame size {cfg.frame_size} is not a multiple of patch {cfg.patch}")
        n, patch_dim = cfg.tokens_per_frame, cfg.patch * cfg.patch * 3
        self.enc_in = nn.Linear(patch_dim, cfg.encoder.dim)
        self.enc_pos = PositionTable(n, cfg.encoder.dim)
        self.encoder = STTransformer(cfg.encoder)
        self.enc_out = nn.Linear(cfg.encoder.dim, cfg.vq.code_dim)
        self.vq = VectorQuantizer(cfg.vq)
        self.dec_in = nn.Linear(cfg.vq.code_dim, cfg.decoder.dim)
        self.dec_pos = PositionTable(n, cfg.decoder.dim)
        self.decoder = STTransformer(cfg.decoder)
        self.dec_out = nn.Linear(cfg.decoder.dim, patch_dim)
        init_weights(self)

    # -- encoder -------------------------------------------------------------------------------
    def quantize(self, frames: torch.Tensor, t0: int = 0) -> VQOutput:
        """frames (B, T, H, W, 3) uint8 or [0,1] float -> VQOutput over (B, T, N)."""
        x = patchify(to_unit(frames) * 2 - 1, self.cfg.patch).to(self.enc_in.weight.dtype)  # (B, T, N, p*p*3) in [-1, 1]
        x = self.encoder(self.enc_pos(self.enc_in(x)), t0=t0)
        return self.vq(self.enc_out(x))

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """frames (B, T, H, W, 3) -> token grids (B, T, N) long (banded-causal over long videos)."""
        return self.quantize(frames).indices

    # -- decoder -------------------------------------------------------------------------------
    def decode_codes(self, codes: torch.Tensor, t0: int = 0) -> torch.Tensor:
        """codes (B, T, N, code_dim) -> frames (B, T, H, W, 3) float, ~[0, 1] (not clamped)."""
        x = self.decoder(self.dec_pos(self.dec_in(codes)), t0=t0)
        return self._pixels(self.dec_out(x))

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, T, N) -> frames (B, T, H, W, 3) float in [0, 1] (banded over long videos)."""
        return self.decode_codes(self.vq.lookup(tokens)).clamp(0, 1)

    def decoder_input(self, tokens: torch.Tensor) -> torch.Tensor:
        """One frame's tokens (B, N) -> the decoder's input (B, N, D)."""
        return self.dec_pos(self.dec_in(self.vq.lookup(tokens)))

    def decoder_pixels(self, y: torch.Tensor) -> torch.Tensor:
        """The decoder's cached step output y (B, N, D), before its final norm -> frame (B, H, W, 3) in [0, 1]."""
        return self._pixels(self.dec_out(self.decoder.norm(y))[:, None])[:, 0].clamp(0, 1)

    def decode_step(self, tokens: torch.Tensor, context: ContextKV) -> tuple[torch.Tensor, FrameKV]:
        """One new frame's tokens (B, N) against cached context -> (frame (B, H, W, 3) in [0,1], its KV)."""
        return self.decoder_pixels(self.decoder.step(self.decoder_input(tokens), context)), context.frame_kv()

    def _pixels(self, patches: torch.Tensor) -> torch.Tensor:
        h, w = self.cfg.frame_size
        return unpatchify(patches, self.cfg.patch, h, w) * 0.5 + 0.5
