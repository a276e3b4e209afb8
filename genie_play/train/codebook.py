"""What training does with a VQ codebook besides the losses (models/vq.py is the quantizer itself).

A code no encoder output chooses gets no gradient and stays unused; `restart_dead_codes` moves such
codes to where the data are, from the usage statistics the VectorQuantizer keeps while it trains. A
soft VQ (vq.soft_temperature > 0) keeps its codes in use through `usage_entropy` instead. The
perplexities report how many codes are in use (1 = collapsed onto one code).
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from ..models.vq import VectorQuantizer


@torch.no_grad()
def restart_dead_codes(vq: VectorQuantizer, step: int, candidates: torch.Tensor | None = None) -> int:
    """Replace the codes of `vq` idle for `dead_after` steps, and every code at step 0 (data-dependent init).

    With `candidates` (M, code_dim) (this batch's encoder outputs) a dead code moves onto a
    random candidate, i.e. to where the data is; without, onto a perturbed copy of a used code.
    Choices are seeded by `step` and, under DDP, broadcast from rank 0, so all ranks agree.
    Returns the number of codes restarted.
    """
    cfg = vq.cfg
    if cfg.dead_after <= 0:
        return 0
    if step == 0 and int(vq.restarts) == 0:
        vq.idle_steps.fill_(cfg.dead_after)
    dead = (vq.idle_steps >= cfg.dead_after).nonzero().flatten()
    alive = (vq.idle_steps < cfg.dead_after).nonzero().flatten()
    if dead.numel() == 0:
        return 0
    gen = torch.Generator(device="cpu").manual_seed(1_000_003 * step + 17)
    if candidates is not None and candidates.numel() > 0:
        pool = F.normalize(candidates.detach().float().reshape(-1, cfg.code_dim), dim=-1)
        pick = torch.randint(0, pool.shape[0], (dead.numel(),), generator=gen).to(pool.device)
        noise = torch.randn(dead.numel(), cfg.code_dim, generator=gen).to(pool.device)
        new = F.normalize(pool[pick] + 0.01 * noise, dim=-1).to(vq.codebook.dtype)
        if dist.is_available() and dist.is_initialized():
            dist.broadcast(new, src=0)  # candidates differ between ranks; rank 0 decides
    elif alive.numel() > 0:
        weights = vq.usage[alive].float().cpu().clamp(min=1e-6)
        src = alive[torch.multinomial(weights, dead.numel(), replacement=True, generator=gen).to(alive.device)]
        noise = torch.randn(dead.numel(), cfg.code_dim, generator=gen).to(vq.codebook.device)
        new = F.normalize(vq.codes()[src] + cfg.restart_noise * noise, dim=-1)
    else:
        return 0
    vq.codebook.data[dead] = new.to(vq.codebook.device)
    vq.idle_steps[dead] = 0
    vq.usage[dead] = 1.0 / cfg.num_codes
    vq.restarts.add_(dead.numel())
    return int(dead.numel())


def usage_perplexity(vq: VectorQuantizer) -> torch.Tensor:
    """exp(entropy) of the EMA usage of `vq`'s codes: 1 = collapsed to one code, num_codes = uniform."""
    p = vq.usage / vq.usage.sum().clamp(min=1e-12)
    return torch.exp(-(p * torch.log(p.clamp(min=1e-12))).sum())


def usage_entropy(probs: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of the batch-mean code distribution of probs (..., num_codes): log(num_codes)
    when every code is used equally, 0 when all samples pick one code. Maximised, it keeps a small
    codebook from collapsing onto one code."""
    p = probs.reshape(-1, probs.shape[-1]).float().mean(dim=0)
    return -(p * torch.log(p.clamp(min=1e-12))).sum()


def batch_perplexity(indices: torch.Tensor, num_codes: int) -> torch.Tensor:
    """Perplexity of the code histogram of one batch of indices."""
    p = torch.bincount(indices.reshape(-1), minlength=num_codes).float()
    p = p / p.sum().clamp(min=1)
    return torch.exp(-(p * torch.log(p.clamp(min=1e-12))).sum())
