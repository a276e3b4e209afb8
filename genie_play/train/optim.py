"""The optimiser and learning-rate schedule of the training loop (loop.py): AdamW with weight decay
on matrices only, linear warmup then cosine decay."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from .loop import TrainConfig


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate of step `step` (0-based): linear warmup, then cosine down to min_lr_ratio * lr."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    low = cfg.lr * cfg.min_lr_ratio
    return low + (cfg.lr - low) * 0.5 * (1.0 + math.cos(math.pi * progress))


_NO_DECAY_NAME_PARTS = ("codebook", "pos_emb", "position")


def default_param_groups(module: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices only: no decay for biases, norms (ndim < 2), nn.Embedding weights,
    codebooks and position embeddings (names containing 'codebook', 'pos_emb' or 'position')."""
    embedding_ids = {id(m.weight) for m in module.modules() if isinstance(m, (nn.Embedding, nn.EmbeddingBag))}
    decay, no_decay = [], []
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        skip = p.ndim < 2 or id(p) in embedding_ids or any(s in name.lower() for s in _NO_DECAY_NAME_PARTS)
        (no_decay if skip else decay).append(p)
    return [g for g in ({"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}) if g["params"]]


def make_adamw(groups: list[dict], cfg: TrainConfig) -> torch.optim.Optimizer:
    kwargs: dict[str, Any] = dict(lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    try:  # one fused kernel per step on CUDA and (torch >= 2.4) on CPU
        return torch.optim.AdamW(groups, fused=True, **kwargs)
    except (RuntimeError, ValueError, TypeError):
        return torch.optim.AdamW(groups, foreach=True, **kwargs)


def fit_schedule(cfg):
    """`cfg` (a TrainConfig) with the intervals that make no sense for its length fitted to it, and
    one warning line per change: warmup_steps >= steps becomes min(warmup_steps, steps // 10) (a run
    that never left its warmup would end at a fraction of its lr); picture_every and eval_every
    longer than the run become steps // 4 (at least 1), so a short run still shows its progress."""
    import dataclasses

    changes, notes = {}, []
    if cfg.warmup_steps >= cfg.steps:
        changes["warmup_steps"] = min(cfg.warmup_steps, cfg.steps // 10)
        notes.append(f"warmup_steps={cfg.warmup_steps} is not shorter than steps={cfg.steps} (the run would never "
                     f"reach its lr); using warmup_steps={changes['warmup_steps']}")
    for key in ("picture_every", "eval_every"):
        value = getattr(cfg, key)
        if value > cfg.steps:
            changes[key] = max(1, cfg.steps // 4)
            notes.append(f"{key}={value} is longer than steps={cfg.steps}; using {key}={changes[key]}")
    return dataclasses.replace(cfg, **changes), notes
