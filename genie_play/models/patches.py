"""Frames <-> patch vectors, and the learned spatial position table shared by the pixel models."""
from __future__ import annotations

import torch
import torch.nn as nn


def patchify(frames: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, T, H, W, C) -> (B, T, N, patch*patch*C), patches in row-major order."""
    b, t, h, w, c = frames.shape
    x = frames.reshape(b, t, h // patch, patch, w // patch, patch, c)
    return x.permute(0, 1, 2, 4, 3, 5, 6).reshape(b, t, (h // patch) * (w // patch), patch * patch * c)


def unpatchify(patches: torch.Tensor, patch: int, height: int, width: int) -> torch.Tensor:
    """(B, T, N, patch*patch*C) -> (B, T, H, W, C); inverse of `patchify`."""
    b, t, _, pc = patches.shape
    c = pc // (patch * patch)
    gh, gw = height // patch, width // patch
    x = patches.reshape(b, t, gh, gw, patch, patch, c).permute(0, 1, 2, 4, 3, 5, 6)
    return x.reshape(b, t, height, width, c)


def to_unit(frames: torch.Tensor) -> torch.Tensor:
    """uint8 frames -> float in [0, 1]; float frames pass through."""
    return frames.float() / 255.0 if frames.dtype == torch.uint8 else frames


class PositionTable(nn.Module):
    """Learned absolute position embedding for the N tokens of a frame (the grid never changes)."""

    def __init__(self, num_tokens: int, dim: int) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.randn(num_tokens, dim) * 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.table.to(x.dtype)
