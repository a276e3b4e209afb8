"""Phase 1: train the video tokenizer (VQ-VAE) on pixels.

loss = MSE(reconstruction, frames) + codebook + beta * commitment, with pixels in [0, 1]. The loop
(loop.py) handles precision, the optimiser, DDP, checkpoints and progress; this module only says
what one step computes and what picture to draw.

`decoder_only=True` (`genie-play train tokenizer ... decoder_only=true --init WORLD`) freezes the
encoder and codebook and trains only the decoder: every frame keeps exactly the tokens it had, so a
dynamics model trained on those tokens stays valid and can be paired with the sharper decoder
(`genie-play train export RUN --decoder TOKENIZER_RUN`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models.tokenizer import Tokenizer, TokenizerConfig
from .codebook import batch_perplexity, restart_dead_codes
from .pictures import grid, save_png


def psnr_from_mse(mse: torch.Tensor) -> torch.Tensor:
    return 10.0 * torch.log10(1.0 / mse.clamp(min=1e-10))


ENCODER_PARTS = ("enc_in", "enc_pos", "encoder", "enc_out", "vq")


@dataclass
class TokenizerLossConfig:
    """The tokenizer phase's `loss.` settings (`genie-play train tokenizer ... loss.beta=0.5`)."""

    beta: float = 0.25  # commitment weight of the VQ


class TokenizerTrainer(nn.Module):
    def __init__(self, cfg: TokenizerConfig, beta: float = 0.25, decoder_only: bool = False) -> None:
        super().__init__()
        self.tokenizer = Tokenizer(cfg)
        self.beta = beta
        self.decoder_only = decoder_only
        if decoder_only:  # the loop's optimiser only takes parameters that require grad
            for name in ENCODER_PARTS:
                getattr(self.tokenizer, name).requires_grad_(False)
        self.tokens_per_frame = cfg.tokens_per_frame  # for the loop's tokens/s

    def train(self, mode: bool = True) -> "TokenizerTrainer":
        super().train(mode)
        if self.decoder_only:  # frozen parts never update their VQ usage statistics
            for name in ENCODER_PARTS:
                getattr(self.tokenizer, name).eval()
        return self

    def forward(self, frames: torch.Tensor, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """frames (B, T, H, W, 3) uint8 -> (loss, metrics)."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.decoder_only):
            q = self.tokenizer.quantize(frames)
        recon = self.tokenizer.decode_codes(q.quantized).float()
        mse = F.mse_loss(recon, frames.float() / 255.0)
        codebook = F.mse_loss(q.z_q, q.z_e.detach())
        commit = F.mse_loss(q.z_e, q.z_q.detach())
        if self.decoder_only:
            loss, restarted = mse, 0
        else:
            loss = mse + codebook + self.beta * commit
            restarted = restart_dead_codes(self.tokenizer.vq, step, q.z_e) if self.training else 0
        metrics = {
            "mse": mse.detach(),
            "psnr": psnr_from_mse(mse.detach()),
            "commit": commit.detach(),
            "code_perplexity": batch_perplexity(q.indices, self.tokenizer.cfg.vq.num_codes),
            "codes_restarted": torch.tensor(float(restarted)),
        }
        return loss, metrics

    @torch.no_grad()
    def write_pictures(self, frames: torch.Tensor, path: Path) -> None:
        """Rows: real frames, then their reconstructions, for up to 3 clips of up to 8 frames."""
        was_training = self.training
        self.eval()
        clips = frames[:3, :8]
        recon = (self.tokenizer.decode(self.tokenizer.encode(clips)) * 255).round().byte().cpu().numpy()
        real = clips.cpu().numpy()
        rows, labels = [], []
        for i in range(clips.shape[0]):
            rows += [real[i], recon[i]]
            labels += [f"real {i}", f"recon {i}"]
        save_png(grid(rows, scale=2, labels=labels), path)
        self.train(was_training)
