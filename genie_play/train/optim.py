"""The optimiser and learning-rate schedule of the training loop (loop.py): AdamW with weight decay
on matrices only, linear warmup then cosine decay; and the schedule of settings a run did not
give (warmup, picture and evaluation intervals follow the run's length: `resolve_schedule`)."""
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


WARMUP_FRACTION = 16  # default warmup: a sixteenth of the run (the dynamics' 8,000 steps: 500, as the shipped world)
PER_RUN = 12  # default picture_every / eval_every: about twelve pictures and held-out evaluations per run
SCHEDULE_KEYS = ("warmup_steps", "picture_every", "eval_every")  # TrainConfig's None: "a fraction of steps"


def default_schedule(steps: int) -> dict[str, int]:
    """The schedule of a run of `steps` steps whose settings were not given (see resolve_schedule)."""
    every = max(1, -(-steps // PER_RUN))  # rounded up: a 20-step run draws every 2 steps, not every step
    return {"warmup_steps": steps // WARMUP_FRACTION, "picture_every": every, "eval_every": every}


def resolve_schedule(cfg, saved: dict | None = None):
    """(`cfg` with every schedule setting an int, warning lines) for a TrainConfig `cfg`.

    A setting left at None (not given) takes the value `saved` (the train_config of the checkpoint
    being resumed) had, so a resumed run continues its own schedule, as long as that value fits the
    run; otherwise `default_schedule(cfg.steps)`. A picture_every or eval_every that was given but
    is longer than the run becomes the default, with a warning (a short run still shows its
    progress). A given warmup_steps >= steps is left as it is: `TrainConfig.validate` refuses it."""
    import dataclasses

    defaults, changes, notes = default_schedule(cfg.steps), {}, []
    for key in SCHEDULE_KEYS:
        value = getattr(cfg, key)
        if value is None:
            old = (saved or {}).get(key)
            fits = isinstance(old, int) and 0 <= old and (old < cfg.steps if key == "warmup_steps" else old <= cfg.steps)
            changes[key] = old if fits else defaults[key]
        elif key != "warmup_steps" and value > cfg.steps:
            changes[key] = defaults[key]
            notes.append(f"{key}={value} is longer than steps={cfg.steps}; using {key}={changes[key]}")
    return dataclasses.replace(cfg, **changes), notes
