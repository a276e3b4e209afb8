"""Vector quantizer with L2-normalised codes and straight-through (or soft) gradients.

Normalised (cosine) codes keep every code on the unit sphere, so no code drifts far away from the
encoder outputs and dies; a very small codebook (the LAM's 8 actions) plus restarts of codes unused
for `dead_after` steps (train/codebook.py, from the usage statistics kept here while training) are
the usual fixes for latent-action collapse. For the LAM they were not enough (weights/README.md,
"Towards v1.0"): `soft_temperature` > 0 sends the gradient through a softmax over all codes instead
(see VQConfig).

The forward pass returns everything the trainer needs for the losses (it does not compute them):
    commitment = mse(z_e, z_q.detach()), codebook = mse(z_e.detach(), z_q)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class VQConfig:
    num_codes: int = 1024  # codebook size: distinct tokens (tokenizer) or actions (LAM)
    code_dim: int = 32  # width of each code vector
    dead_after: int = 50  # training steps without use before a code is restarted (0 = never)
    restart_noise: float = 0.1  # relative noise on the copy of a used code
    # 0: straight-through (the value of the nearest code, the gradient of the encoder output).
    # > 0: the forward value is still the nearest code, but the gradient flows through a softmax over
    # every code's cosine similarity / soft_temperature, so every code and every direction of the
    # encoder output learns from every sample, and `VQOutput.probs` can be held to a spread-out
    # usage (`usage_entropy`); for tiny codebooks (latent actions), which straight-through collapses.
    soft_temperature: float = 0.0  # 0: straight-through VQ; > 0: soft-VQ gradients at this temperature (above)

    # Fields added after the first bundles, with the value that reproduces those bundles.
    ADDED_FIELDS = {"soft_temperature": 0.0}


class VQOutput(NamedTuple):
    quantized: torch.Tensor  # (..., code_dim) straight-through: value of z_q, gradient of z_e
    indices: torch.Tensor  # (...,) long
    z_e: torch.Tensor  # (..., code_dim) normalised encoder output
    z_q: torch.Tensor  # (..., code_dim) normalised chosen code (gradient flows to the codebook)
    probs: torch.Tensor | None = None  # (..., num_codes) the softmax of soft_temperature > 0, else None


class VectorQuantizer(nn.Module):
    def __init__(self, cfg: VQConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.codebook = nn.Parameter(F.normalize(torch.randn(cfg.num_codes, cfg.code_dim), dim=-1))
        # Steps since each code was last chosen (training statistics; saved with checkpoints).
        self.register_buffer("idle_steps", torch.zeros(cfg.num_codes, dtype=torch.long), persistent=True)
        self.register_buffer("usage", torch.zeros(cfg.num_codes), persistent=True)  # EMA of use frequency
        self.register_buffer("restarts", torch.zeros((), dtype=torch.long), persistent=True)

    def codes(self) -> torch.Tensor:
        """(num_codes, code_dim) unit vectors."""
        return F.normalize(self.codebook, dim=-1)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """indices (...,) -> (..., code_dim) unit code vectors."""
        return F.embedding(indices, self.codes())

    def forward(self, z: torch.Tensor) -> VQOutput:
        """z (..., code_dim) encoder output -> nearest normalised code, straight-through."""
        z_e = F.normalize(z.float(), dim=-1)
        codes = self.codes().float()
        # Cosine similarity on unit vectors; argmax = nearest in L2.
        sim = z_e @ codes.t()  # (..., num_codes)
        indices = sim.argmax(dim=-1)
        z_q = F.embedding(indices, codes)
        probs = None
        if self.cfg.soft_temperature > 0:
            probs = (sim / self.cfg.soft_temperature).softmax(dim=-1)
            soft = probs @ codes  # (..., code_dim): the expected code
            quantized = soft + (z_q - soft).detach()
        else:
            quantized = z_e + (z_q - z_e).detach()
        if self.training:
            self._track_usage(indices)
        return VQOutput(quantized, indices, z_e, z_q, probs)

    @torch.no_grad()
    def _track_usage(self, indices: torch.Tensor) -> None:
        counts = torch.bincount(indices.reshape(-1), minlength=self.cfg.num_codes).float()
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(counts)  # every rank sees the same statistics -> identical restarts
        self.usage.mul_(0.99).add_(0.01 * counts / counts.sum().clamp(min=1))
        self.idle_steps.add_(1).masked_fill_(counts > 0, 0)
