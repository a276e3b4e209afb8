"""The plain MaskGIT sampler that maskgit.decode is tested against: every round samples all positions."""
from __future__ import annotations

from typing import Callable

import torch

from genie_play.models.maskgit import mask_counts


def decode_reference(
    logits_fn: Callable[[torch.Tensor], torch.Tensor],
    tokens: torch.Tensor,
    mask_id: int,
    steps: int = 25,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    choice_temperature: float = 1.0,
) -> torch.Tensor:
    """The plain sampler: every round samples all N positions and ranks them (revealed ones at +inf).

    temperature scales the sampling logits (0 = greedy); choice_temperature scales the Gumbel noise
    on the confidences, annealed linearly to 0 over the rounds (MaskGIT's randomised ranking).
    Every row must start with the same number of masked positions (true for a new frame)."""
    if steps < 1:
        raise ValueError("steps must be >= 1")
    tokens = tokens.clone()
    b, n = tokens.shape
    masked = tokens == mask_id
    counts = mask_counts(int(masked[0].sum()), steps)
    for s, keep_masked in enumerate(counts):
        logits = logits_fn(tokens).float()  # (B, N, V)
        last = s == steps - 1
        if temperature <= 0 or last:
            sampled = logits.argmax(dim=-1)
        else:
            probs = (logits / temperature).softmax(dim=-1)
            u = torch.rand((1, n, 1), generator=generator, device="cpu").to(probs.device)
            sampled = torch.searchsorted(probs.cumsum(dim=-1), u.expand(b, n, 1).contiguous()).squeeze(-1)
            sampled = sampled.clamp_(max=logits.shape[-1] - 1)
        logp = logits.log_softmax(dim=-1).gather(-1, sampled[..., None]).squeeze(-1)  # (B, N)
        noise_scale = choice_temperature * (1.0 - (s + 1) / steps)
        if noise_scale > 0:
            g = torch.rand((1, n), generator=generator, device="cpu").to(logp.device)
            logp = logp + noise_scale * -torch.log(-torch.log(g.clamp(1e-20, 1.0 - 1e-7)))
        confidence = torch.where(masked, logp, torch.full_like(logp, float("inf")))
        # Rank of every position by confidence (0 = most confident); reveal all but keep_masked.
        order = confidence.argsort(dim=-1, descending=True, stable=True)
        rank = torch.empty_like(order).scatter_(1, order, torch.arange(n, device=order.device).expand(b, n))
        reveal = masked & (rank < n - keep_masked)
        tokens = torch.where(reveal, sampled, tokens)
        masked = masked & ~reveal
    return tokens
