"""Training batches from a clip dataset, built one step ahead in a background thread.

The dataset is duck-typed (see loop.py). A batch depends on the step only (through the dataset's
pure `sample_indices`), never on thread timing, so prefetching keeps a resumed run exact.
"""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from ..errors import BadDataError


class BatchLoader:
    """Builds the uint8 batch of a step from `dataset.sample_indices`; `prefetch(step)` starts the
    next one in a thread (the CPU is shared with compute, so one batch ahead is enough);
    `num_workers` > 1 also reads the clips of a batch in parallel."""

    def __init__(self, dataset: Any, cfg: Any, rank: int, world_size: int, device: torch.device):
        self.dataset, self.cfg, self.rank, self.world_size, self.device = dataset, cfg, rank, world_size, device
        self.ahead = ThreadPoolExecutor(1, thread_name_prefix="genie-prefetch") if cfg.num_workers > 0 else None
        self.items = ThreadPoolExecutor(cfg.num_workers, thread_name_prefix="genie-load") if cfg.num_workers > 1 else None
        self.pending: dict[int, Future] = {}

    def _clip(self, index: int) -> np.ndarray:
        clip = self.dataset[int(index)]
        t = self.cfg.clip_len
        if not (isinstance(clip, np.ndarray) and clip.dtype == np.uint8 and clip.ndim == 4 and clip.shape[0] == t and clip.shape[3] == 3):
            got = f"{getattr(clip, 'shape', None)} {getattr(clip, 'dtype', type(clip).__name__)}"
            raise BadDataError(f"dataset clip {index} is {got}, expected ({t}, H, W, 3) uint8; make the dataset with clip_len={t}")
        return clip

    def load(self, step: int) -> torch.Tensor:
        n = self.cfg.batch_size * self.cfg.grad_accum
        indices = np.asarray(self.dataset.sample_indices(n, self.cfg.seed, step, self.rank, self.world_size)).reshape(-1)
        if indices.size != n:
            raise BadDataError(f"dataset.sample_indices returned {indices.size} indices, expected {n}")
        clips = list(self.items.map(self._clip, indices)) if self.items else [self._clip(i) for i in indices]
        if len({c.shape for c in clips}) > 1:
            raise BadDataError(f"dataset clips of step {step} differ in size ({sorted({c.shape for c in clips})}); re-import at one --size")
        batch = torch.from_numpy(np.stack(clips))  # (n, T, H, W, 3) uint8
        return batch.pin_memory() if self.device.type == "cuda" else batch

    def prefetch(self, step: int) -> None:
        if self.ahead is not None and step < self.cfg.steps and step not in self.pending:
            self.pending[step] = self.ahead.submit(self.load, step)

    def get(self, step: int) -> list[torch.Tensor]:
        """The step's grad_accum micro-batches, each (batch_size, T, H, W, 3) uint8 on the device."""
        future = self.pending.pop(step, None)
        batch = future.result() if future is not None else self.load(step)
        batch = batch.to(self.device, non_blocking=True)
        return list(batch.split(self.cfg.batch_size))

    def close(self) -> None:
        for pool in (self.ahead, self.items):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
