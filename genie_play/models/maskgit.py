"""Model-agnostic MaskGIT sampler (Chang et al. 2022), as used by Genie's dynamics model.

`decode(logits_fn, tokens, ...)` fills the masked positions of `tokens` (B, N) in `steps` rounds:
each round samples every masked position from logits_fn(tokens), ranks positions by the confidence of
their sample (already-revealed positions rank first, with +inf), and reveals the most confident until
only `mask_counts(...)` positions stay masked. Revealed tokens are never resampled, every round reveals
at least one token, and the last round reveals all that remain (argmax there).

Randomness comes only from the given torch.Generator, and the same noise is shared by every batch
row, so a batch of B rollouts equals B separate rollouts with the same seed.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch


def cosine_schedule(progress: float) -> float:
    """Fraction of the tokens still masked after `progress` (0..1) of the rounds."""
    return math.cos(math.pi / 2 * progress)


def mask_counts(num_masked: int, steps: int) -> list[int]:
    """How many tokens stay masked after each of `steps` rounds of the cosine schedule: strictly
    decreasing (>=1 revealed per round while any remain), ending at 0."""
    counts, remaining = [], num_masked
    for s in range(steps):
        target = 0 if s == steps - 1 else math.floor(num_masked * cosine_schedule((s + 1) / steps))
        remaining = max(0, min(target, remaining - 1))
        counts.append(remaining)
    return counts


class Round(NamedTuple):
    """One round of a frame's sampling plan: how many positions stay masked after it, its draws
    (u (N,) uniforms for the token draw, None on greedy rounds; g (1, N) for the Gumbel noise, None
    without noise) and the noise's scale."""

    keep_masked: int
    u: torch.Tensor | None
    g: torch.Tensor | None
    noise_scale: float


def plan_rounds(num_masked: int, n: int, steps: int, temperature: float, generator: torch.Generator | None,
                choice_temperature: float = 1.0) -> list[Round]:
    """Every round's schedule and random numbers for a frame of n positions, num_masked of them
    masked, drawn from the generator (on the CPU) in the order of the plain sampler
    (tests/_reference.py): the same numbers and the same generator state after, whatever is left to
    reveal in a round."""
    rounds = []
    for s, keep_masked in enumerate(mask_counts(num_masked, steps)):
        greedy = temperature <= 0 or s == steps - 1
        noise_scale = choice_temperature * (1.0 - (s + 1) / steps)
        u = None if greedy else torch.rand(n, generator=generator, device="cpu")
        g = torch.rand((1, n), generator=generator, device="cpu") if noise_scale > 0 else None
        rounds.append(Round(keep_masked, u, g, noise_scale))
    return rounds


def masked_positions(tokens: torch.Tensor, mask_id: int) -> torch.Tensor:
    """The masked positions (B, M) of tokens (B, N), ascending in each row; every row must have the
    same number masked (true for a new frame)."""
    masked = tokens == mask_id
    m = int(masked[0].sum())
    if int(masked.sum()) != tokens.shape[0] * m:
        raise ValueError("every row must start with the same number of masked positions")
    return masked.nonzero()[:, 1].view(tokens.shape[0], m)


def torch_pick(logits: torch.Tensor, u: torch.Tensor | None, positions: torch.Tensor, temperature: float,
               g: torch.Tensor | None, noise_scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One round's draw for the masked positions: logits (B, M, V) fp32, positions (B, M); u (N,)
    uniforms per position (None = greedy), g (1, N) uniforms for the Gumbel noise (None = none).
    -> sampled (B, M) long and its confidence log_softmax(logits)[sampled] + noise (B, M)."""
    if u is None:
        sampled = logits.argmax(dim=-1)
    else:
        probs = (logits if temperature == 1.0 else logits / temperature).softmax(dim=-1)
        sampled = torch.searchsorted(probs.cumsum(dim=-1), u[positions][..., None]).squeeze(-1)
        sampled = sampled.clamp_(max=logits.shape[-1] - 1)
    logp = logits.log_softmax(dim=-1).gather(-1, sampled[..., None]).squeeze(-1)  # (B, M)
    if g is not None:
        logp = logp + (noise_scale * -torch.log(-torch.log(g.clamp(1e-20, 1.0 - 1e-7))))[0, positions]
    return sampled, logp


def decode(
    logits_fn: Callable[..., torch.Tensor],
    tokens: torch.Tensor,
    mask_id: int,
    steps: int = 25,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    choice_temperature: float = 1.0,
    masked_only: bool = False,
    pick: Callable[..., tuple[torch.Tensor, torch.Tensor]] = torch_pick,
) -> torch.Tensor:
    """Fill the masked positions of tokens (B, N). logits_fn: (B, N) long -> (B, N, V) logits, or
    with masked_only, (tokens (B, N), positions (B, M) long) -> (B, M, V) logits of those positions.

    temperature scales the sampling logits (0 = greedy); choice_temperature scales the Gumbel noise
    on the confidences, annealed linearly to 0 over the rounds (MaskGIT's randomised ranking).
    Every row must start with the same number of masked positions (true for a new frame). `pick`
    draws and scores the masked positions' tokens (`torch_pick`'s arguments and results).

    With torch_pick, gives exactly the plain sampler's tokens (tests/_reference.py) and leaves the
    generator in the same state, but works on the M still-masked positions only (revealed ones are
    never resampled): the same uniforms are drawn for all N positions and indexed, and ranking the
    masked ones by confidence (stable, ties to the lower position) reveals the same tokens as
    ranking all N with +inf for the revealed."""
    if steps < 1:
        raise ValueError("steps must be >= 1")
    tokens = tokens.clone()
    positions = masked_positions(tokens, mask_id)  # (B, M)
    # the logits function never draws, so drawing every round's numbers first changes nothing
    for keep_masked, u, g, noise_scale in plan_rounds(positions.shape[1], tokens.shape[1], steps, temperature, generator,
                                                      choice_temperature):
        if positions.shape[1] == 0:
            continue
        u = None if u is None else u.to(tokens.device)
        g = None if g is None else g.to(tokens.device)
        if masked_only:
            logits = logits_fn(tokens, positions).float()  # (B, M, V)
        else:
            full = logits_fn(tokens)
            logits = full.gather(1, positions[..., None].expand(-1, -1, full.shape[-1])).float()
        sampled, logp = pick(logits, u, positions, temperature, g, noise_scale)
        reveal_count = positions.shape[1] - keep_masked
        order = logp.argsort(dim=-1, descending=True, stable=True)
        reveal = order[:, :reveal_count]
        tokens.scatter_(1, positions.gather(1, reveal), sampled.gather(1, reveal))
        positions = positions.gather(1, order[:, reveal_count:]).sort(dim=-1).values
    return tokens
