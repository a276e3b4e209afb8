"""Phase 1: train the video tokenizer (VQ-VAE) on pixels.

loss = MSE(reconstruction, frames) + codebook + beta * commitment, with pixels in [0, 1]. The loop
(loop.py) handles precision, the optimiser, DDP, checkpoints and progress; this module only says
what one step computes and what picture to draw.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models.tokenizer import Tokenizer, TokenizerConfig
from ..models.vq import batch_perplexity
from .pictures import grid, save_png


def psnr_from_mse(mse: torch.Tensor) -> torch.Tensor:
    return 10.0 * torch.log10(1.0 / mse.clamp(min=1e-10))


class TokenizerTrainer(nn.Module):
    def __init__(self, cfg: TokenizerConfig, beta: float = 0.25) -> None:
        super().__init__()
        self.tokenizer = Tokenizer(cfg)
        self.beta = beta
        self.tokens_per_frame = cfg.tokens_per_frame  # for the loop's tokens/s

    def forward(self, frames: torch.Tensor, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """frames (B, T, H, W, 3) uint8 -> (loss, metrics)."""
        q = self.tokenizer.quantize(frames)
        recon = self.tokenizer.decode_codes(q.quantized).float()
        mse = F.mse_loss(recon, frames.float() / 255.0)
        codebook = F.mse_loss(q.z_q, q.z_e.detach())
        commit = F.mse_loss(q.z_e, q.z_q.detach())
        loss = mse + codebook + self.beta * commit
        restarted = self.tokenizer.vq.restart_dead_codes(step, q.z_e) if self.training else 0
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
