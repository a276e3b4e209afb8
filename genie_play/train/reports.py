"""What a training run reports on rank 0: metrics.jsonl, curves.png, held-out evaluation, best
weights and, when the `tensorboard` package is installed, TensorBoard events (tensorboard_log.py).

`RunReports(run_dir, module, evaluator, device, say, save_file, start_step)` is made when the loop starts:
- `log(record)` appends a metrics record to metrics.jsonl, adds it to the TensorBoard events and
  redraws curves.png (at most every `CURVES_SECONDS`);
- `pictures(step)` adds the sample pictures of `step` (samples.py) to the TensorBoard events;
- `evaluate(step, control)` runs the evaluator (heldout.py) in eval mode under no_grad without
  touching the training RNG, logs its "heldout/..." metrics (and "heldout/seconds"), redraws the
  curves and rewrites best.safetensors when its `best_key` improved; returns the text for the
  progress line;
- `close()` closes metrics.jsonl and draws the curves a last time.
Failures to write or evaluate are reported through `say`; they never end a run.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..errors import GenieError, one_line_reason
from .checkpoint import MetricsLog
from .curves import Curves
from .heldout import BEST_NAME, read_best, write_best
from .samples import picture_paths
from .tensorboard_log import open_board

CURVES_SECONDS = 30.0  # curves.png is redrawn at most this often at log steps (always after an evaluation)


class RunReports:
    def __init__(self, run_dir: Path, module: nn.Module, evaluator: Any, device: torch.device,
                 say: Callable[[str], None], save_file: Callable, start_step: int = 0) -> None:
        self.run_dir, self.module, self.evaluator, self.device = Path(run_dir), module, evaluator, device
        self.say, self.save_file = say, save_file
        self.metrics = MetricsLog(self.run_dir / "metrics.jsonl", say)
        self.board = open_board(self.run_dir, start_step, say)  # None without the tensorboard package
        self.curves: Curves | None = Curves(self.run_dir)
        self._curves_drawn = -math.inf

    def log(self, record: dict[str, Any]) -> None:
        self.metrics.write(record)
        if self.board is not None:
            self.board.scalars(record)
        if self.curves is not None:
            self.curves.add(record)
            self.draw_curves()

    def pictures(self, step: int) -> None:
        if self.board is not None:
            self.board.pictures(*picture_paths(self.run_dir, step), step)

    def draw_curves(self, force: bool = False) -> None:
        """Redraw curves.png, at most every CURVES_SECONDS unless `force`; a failure warns once."""
        if self.curves is None or not (force or time.monotonic() - self._curves_drawn > CURVES_SECONDS):
            return
        self._curves_drawn = time.monotonic()
        try:
            self.curves.draw()
        except OSError as err:
            self.say(f"warning: could not write {self.curves.path} ({one_line_reason(err)}); curves are no longer drawn")
            self.curves = None

    def evaluate(self, step: int, control: bool) -> str:
        cuda = [self.device.index or 0] if self.device.type == "cuda" else []
        was_training = self.module.training
        start = time.perf_counter()
        try:
            with torch.random.fork_rng(devices=cuda), torch.no_grad():
                self.module.eval()
                metrics = self.evaluator(self.module, step, control)
        except Exception as err:  # a failed evaluation must not end a long run
            reason = str(err) if isinstance(err, GenieError) else f"{type(err).__name__}: {err}"
            self.say(f"warning: held-out evaluation at step {step} failed: {reason}")
            return ""
        finally:
            self.module.train(was_training)
        self.log({"step": step, **{k: float(v) for k, v in metrics.items()}, "heldout/seconds": time.perf_counter() - start})
        self.draw_curves(force=True)
        key = self.evaluator.best_key
        value = metrics.get(key)
        if value is None or not math.isfinite(value):
            return ""
        best = read_best(self.run_dir)
        # A best from a later step than this one belongs to a run resumed from an earlier checkpoint: replace it.
        if best is None or best.get("metric") != key or value > best["value"] or best["step"] >= step:
            try:
                write_best(self.module, self.run_dir, step, key, value, save=self.save_file)
            except Exception as err:
                self.say(f"warning: could not write {self.run_dir / BEST_NAME}: {one_line_reason(err)}")
        return f" held-out {key.split('/')[-1]} {value:.2f}"

    def close(self) -> None:
        self.metrics.close()
        if self.board is not None:
            self.board.close()
        self.draw_curves(force=True)
