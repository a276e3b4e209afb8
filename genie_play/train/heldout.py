"""Held-out evaluation while a run trains, and the run's best weights.

`make_evaluator(phase, data_folder, cfg, say)` returns the evaluator of a training phase, or None
(with a note through `say`) when the dataset has no held-out clips or `eval_every` and
`control_every` are 0. An evaluator is called on rank 0 as `evaluator(module, step, control)` in
eval mode under no_grad, and returns {"heldout/<metric>": float}; its `best_key` names the metric
(higher is better) that `best.safetensors` is kept by. It works on a fixed set of held-out clips
picked once, so its numbers are comparable from call to call:

- tokenizer: `heldout/psnr` of reconstructions of `eval_clips` clips;
- dynamics: `genie_play.train.evaluate.evaluate` on `eval_clips` clips of `EVAL_HORIZON` frames
  with `EVAL_STEPS` MaskGIT steps (rollout PSNR vs copy, delta-t PSNR, action perplexity, NMI with
  true actions where the data have them); with `control=True` (every `control_every` steps, CoinRun
  data with procgen installed) also the controllability report of `genie_play.train.control` on
  states collected once from the dataset's held-out levels.

`best.safetensors` holds the module's weights ("model.<name>", like a checkpoint) and in its
metadata the step, metric and value ("best" JSON); `train export RUN --best` exports it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..fileio import atomic_path
from .checkpoint import _cpu_unshared, strip_wrapper_prefixes
from .evaluate import psnr

BEST_NAME = "best.safetensors"
EVAL_HORIZON = 6  # frames generated per held-out clip (dynamics)
EVAL_STEPS = 4  # MaskGIT steps per generated frame (dynamics; play uses more)
CONTROL_CLIPS = 8  # saved CoinRun states for the controllability report
CONTROL_SEED = 0


class TokenizerHeldout:
    """Reconstruction PSNR of a fixed set of held-out clips (C, T, H, W, 3) uint8."""

    best_key = "heldout/psnr"

    def __init__(self, clips: np.ndarray) -> None:
        self.clips = clips

    def __call__(self, module: nn.Module, step: int, control: bool = False) -> dict[str, float]:
        device = next(module.parameters()).device
        frames = torch.from_numpy(self.clips).to(device)
        recon = (module.tokenizer.decode(module.tokenizer.encode(frames)).float() * 255).round().clamp(0, 255)
        return {"heldout/psnr": float(psnr(recon.byte().cpu().numpy(), self.clips).mean())}


class DynamicsHeldout:
    """`evaluate` on a held-out ClipDataset; the control report every `control_every` steps."""

    best_key = "heldout/rollout_psnr"

    def __init__(self, dataset: Any, clips: int, horizon: int, control_levels: tuple[int, int] | None = None,
                 frame_skip: int = 1) -> None:
        self.dataset, self.clips, self.horizon = dataset, clips, horizon
        self.control_levels, self.frame_skip = control_levels, frame_skip
        self._states = None  # collected at the first control report, then reused

    def __call__(self, module: nn.Module, step: int, control: bool = False) -> dict[str, float]:
        from .evaluate import evaluate

        device = next(module.parameters()).device
        world = module.world(device=device, precision="auto")
        world.sampling = {"steps": EVAL_STEPS}
        delta_t = min(4, self.horizon)
        r = evaluate(world, self.dataset, clips=self.clips, horizon=self.horizon, delta_t=delta_t, seed=0,
                     batch=self.clips, progress=False)
        out = {"heldout/rollout_psnr": r["rollout_psnr"], "heldout/copy_psnr": r["copy_baseline_psnr"],
               "heldout/rollout_minus_copy": r["rollout_minus_copy"], f"heldout/delta_psnr_t{delta_t}": r[f"delta_psnr_t{delta_t}"],
               "heldout/action_perplexity": r["action_perplexity"], "heldout/tokenizer_psnr": r["tokenizer_psnr"]}
        if "nmi_true_actions" in r:
            out["heldout/nmi_true_actions"] = r["nmi_true_actions"]
        if control and self.control_levels is not None:
            out.update(self.control(world))
        return out

    def control(self, world: Any) -> dict[str, float]:
        """The controllability report's headline numbers (states collected on the first call)."""
        from . import control, control_states

        if self._states is None:
            self._states = control_states.collect_states(self.control_levels, CONTROL_CLIPS, CONTROL_SEED,
                                                         frame_skip=self.frame_skip)
        r = control.control_report(world, self._states, CONTROL_SEED)
        return {"heldout/control_accuracy": r["control_accuracy"], "heldout/distinct_classes": float(r["distinct_classes"]),
                "heldout/mapped_minus_copy": r["mapped_minus_copy"]}


def make_evaluator(phase: str, data_folder: str | Path, cfg: Any, say: Callable[[str], None]):
    """The evaluator of `phase` ("tokenizer" or "dynamics") on `data_folder`'s held-out split, or None."""
    from .data import ClipDataset

    if not (cfg.eval_every or cfg.control_every):
        return None
    horizon = min(EVAL_HORIZON, cfg.clip_len - 1) if phase == "dynamics" else 0
    length = cfg.clip_len if phase == "tokenizer" else horizon + 1
    if length < 2 and phase == "dynamics":
        say("note: clip_len < 2 leaves nothing to roll out; held-out evaluation is off")
        return None
    heldout = ClipDataset(data_folder, split="heldout", clip_len=length, allow_empty=True)
    if len(heldout) == 0:
        say(f"note: {data_folder} has no held-out clips of {length} frames; held-out evaluation is off "
            "(import more sources or raise --heldout-fraction)")
        return None
    if phase == "tokenizer":
        picks = heldout.spread_indices(cfg.eval_clips)
        return TokenizerHeldout(np.stack([heldout[int(i)] for i in picks]))
    levels = None
    if cfg.control_every:
        levels = _control_levels(heldout, say)
    return DynamicsHeldout(heldout, cfg.eval_clips, horizon, levels, heldout.data.frame_skip)


def _control_levels(heldout: Any, say: Callable[[str], None]) -> tuple[int, int] | None:
    """The held-out CoinRun level range for the control report, or None (with a note) if it cannot run."""
    ranges = heldout.data.level_ranges.get("heldout") or []
    if not ranges:
        say("note: control_every needs CoinRun data with held-out levels (genie-play data coinrun --heldout-levels A:B); "
            "the control report is off")
        return None
    try:
        from .coinrun import import_procgen

        import_procgen()
    except Exception as err:
        say(f"note: the control report is off: {err}")
        return None
    return int(ranges[0][0]), int(ranges[0][1])


def read_best(run_dir: Path) -> dict | None:
    """The "best" metadata ({"step", "metric", "value"}) of the run's best.safetensors, or None."""
    from safetensors import safe_open

    path = Path(run_dir) / BEST_NAME
    try:
        with safe_open(str(path), framework="pt") as f:
            return json.loads((f.metadata() or {})["best"])
    except Exception:
        return None


def write_best(module: nn.Module, run_dir: Path, step: int, metric: str, value: float,
               save: Callable | None = None) -> None:
    """Write the module's weights as best.safetensors (atomically)."""
    from safetensors.torch import save_file

    tensors = _cpu_unshared({"model." + strip_wrapper_prefixes(k): v for k, v in module.state_dict().items()})
    best = json.dumps({"step": int(step), "metric": metric, "value": float(value)})
    with atomic_path(Path(run_dir) / BEST_NAME) as tmp:
        (save or save_file)(tensors, str(tmp), metadata={"best": best})


def load_best_weights(run_dir: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(state dict without the "model." prefix, best metadata) of the run's best.safetensors."""
    from safetensors.torch import load_file

    from ..errors import CheckpointError

    best = read_best(run_dir)
    if best is None:
        raise CheckpointError(f"{run_dir}: no readable {BEST_NAME} (held-out evaluation writes it; eval_every=0 turns it off)")
    tensors = load_file(str(Path(run_dir) / BEST_NAME))
    return {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}, best
