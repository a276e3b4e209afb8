"""The shared training loop that drives both training stages (tokenizer; LAM + dynamics).

A stage is an `nn.Module` with this contract (see `TrainModule`)::

    forward(frames (B, T, H, W, 3) uint8 on the device, step: int) -> (scalar fp32 loss, {name: 0-dim tensor})
    write_pictures(frames, path: Path) -> None          # rank 0 only, under no_grad, in eval mode
    param_groups() -> list[dict] | None                 # optional; default: `default_param_groups`
    tokens_per_frame: int                               # optional attribute; enables tokens/s in the log
    ddp_find_unused_parameters: bool                    # optional attribute (default False)

`Trainer(module, dataset, cfg, run_dir, device, extra_state).run()` trains it with bf16 autocast
(fp32 master weights), AdamW with linear warmup + cosine decay, gradient clipping and accumulation,
DistributedDataParallel under torchrun, checkpoints that resume bit-exactly (checkpoint.py), a
progress bar, `metrics.jsonl`, `curves.png`, sample pictures and, when the `tensorboard` package is
installed, TensorBoard event files (reports.py). Running the same command again resumes.

The dataset is duck-typed: `len(ds)`, `ds[i] -> np.ndarray (T, H, W, 3) uint8` and
`ds.sample_indices(n, seed, step, rank, world_size) -> np.ndarray` (a pure function of its arguments,
so the data position after a resume is simply the step).
"""
from __future__ import annotations

import contextlib
import json
import math
import random
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from .. import devices
from ..errors import BadDataError, BadSettingError, CheckpointError
from . import distributed as dist_utils
from .checkpoint import (CHECKPOINT_NAME, host_rng_state, load_checkpoint_weights, model_and_optimizer_tensors,
                         read_checkpoint, read_checkpoint_meta, restore_model_and_optimizer, set_host_rng_state,
                         stale_temp_files, strip_wrapper_prefixes, trim_metrics, write_checkpoint,
                         write_json_atomic)
from .distributed import init_distributed, is_main, shutdown_distributed
from .optim import default_param_groups, default_schedule, lr_at, make_adamw, resolve_schedule
from .overrides import apply_overrides, config_from_dict, config_to_dict
from .prefetch import BatchLoader
from .reports import RunReports
from .samples import picture_frames, write_samples
from .signals import StopOnSignal

__all__ = [
    "TrainConfig", "TrainModule", "Trainer", "lr_at", "default_param_groups", "apply_overrides",
    "config_to_dict", "config_from_dict", "init_distributed", "shutdown_distributed", "is_main",
    "load_checkpoint_weights", "read_checkpoint_meta",
]


class TrainModule(Protocol):
    def __call__(self, frames: torch.Tensor, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]: ...
    def write_pictures(self, frames: torch.Tensor, path: Path) -> None: ...


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 10_000                  # optimiser steps in total (a resumed run continues to this)
    batch_size: int = 8                  # clips per micro-batch per process
    clip_len: int = 16                   # frames per clip (the dataset must yield this T)
    lr: float = 3e-4                     # peak learning rate
    min_lr_ratio: float = 0.1            # cosine decays to min_lr_ratio * lr
    warmup_steps: int | None = None      # linear warmup from lr / warmup_steps, shorter than steps; unset: steps // 16
    weight_decay: float = 1e-4           # AdamW weight decay of weight matrices (not of norms, biases, embeddings)
    betas: tuple[float, float] = (0.9, 0.9)   # AdamW betas, as in the Genie paper
    grad_clip: float = 1.0               # max global grad norm; 0 = no clipping (norm still logged)
    grad_accum: int = 1                  # micro-batches per step: batch = batch_size * grad_accum * processes
    precision: Literal["auto", "bf16", "fp32"] = "auto"   # auto: bf16 on CUDA and on CPUs with bf16
    seed: int = 0                        # seeds weights, masks and noise (the data order follows the step)
    log_every: int = 10                  # steps between metrics.jsonl lines
    checkpoint_every: int = 500          # steps between checkpoints (also at the end and on Ctrl-C)
    picture_every: int | None = None     # steps between sample pictures; 0 = never; unset: about 12 per run
    eval_every: int | None = None        # steps between held-out evaluations (heldout.py); 0 = never; unset: about 12 per run
    eval_clips: int = 8                  # held-out clips per evaluation (a fixed set)
    control_every: int = 0               # steps between CoinRun control reports (dynamics, procgen); 0 = never
    num_workers: int = 1                 # data loading threads (0 = load in the training thread)
    compile: bool = False                # torch.compile the forward (slow first step)

    def validate(self) -> None:
        positive = ("steps", "batch_size", "clip_len", "grad_accum", "log_every", "checkpoint_every")
        for key in positive:
            if getattr(self, key) < 1:
                raise BadSettingError(f"setting {key}={getattr(self, key)} must be at least 1")
        for key in ("warmup_steps", "picture_every", "num_workers", "eval_every", "eval_clips", "control_every"):
            if (getattr(self, key) or 0) < 0:  # None: not given yet (optim.resolve_schedule fills it)
                raise BadSettingError(f"setting {key}={getattr(self, key)} must be 0 or more")
        if self.warmup_steps is not None and self.warmup_steps >= self.steps:
            # A run that never leaves its warmup ends at a fraction of its lr: a mistake, never a choice.
            raise BadSettingError(f"setting warmup_steps={self.warmup_steps} is not shorter than steps={self.steps}: the "
                                  f"run would end before its learning rate reached lr={self.lr:g}; use warmup_steps="
                                  f"{default_schedule(self.steps)['warmup_steps']} (a sixteenth of the run) or leave it out")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise BadSettingError(f"setting lr={self.lr} must be a positive number, e.g. lr=3e-4")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise BadSettingError(f"setting min_lr_ratio={self.min_lr_ratio} must be between 0 and 1")
        if self.weight_decay < 0 or self.grad_clip < 0:
            raise BadSettingError("settings weight_decay and grad_clip must be 0 or more")
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise BadSettingError(f"setting betas={self.betas} must be two numbers in [0, 1), e.g. betas=0.9,0.9")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise BadSettingError(f"setting precision={self.precision!r}: use auto, bf16 or fp32")


def _say(text: str) -> None:
    if is_main():
        from tqdm import tqdm

        tqdm.write(text, file=sys.stderr)

class Trainer(StopOnSignal):
    """Trains `module` on `dataset` into `run_dir`; resumes from the checkpoint found there.

    `evaluator` (optional, see heldout.py) is called on rank 0 every `eval_every` steps (and with
    control=True every `control_every` steps) and at the end; its "heldout/..." metrics go to
    metrics.jsonl and curves.png, and best.safetensors keeps the weights of its best `best_key`.
    A run that fails before its first checkpoint removes the run folder it created. Schedule settings
    `cfg` leaves at None follow `cfg.steps` (optim.resolve_schedule; the CLI resolves them first).

    After construction, `start_step` is the step training continues from (0 for a new run) and
    `resumed_from` the checkpoint path (or None). After `run()`, `interrupted` says whether a
    Ctrl-C / SIGTERM stopped it early (a checkpoint was saved either way).
    """

    def __init__(self, module: nn.Module, dataset: Any, cfg: TrainConfig, run_dir: Path,
                 device: torch.device | str, extra_state: dict | None = None, evaluator: Any = None) -> None:
        cfg, notes = resolve_schedule(cfg)  # the CLI resolved it already (with the resumed run's values)
        cfg.validate()
        self.evaluator = evaluator
        self.cfg, self.dataset, self.run_dir = cfg, dataset, Path(run_dir)
        self.extra_state = json.loads(json.dumps(extra_state or {}))  # must be JSON-able; keep a copy
        self.rank, self.world_size, _ = init_distributed()
        self.device = dist_utils.device_for_rank(devices.resolve_device(device))
        self.module = module.to(self.device)
        self.amp_dtype = devices.autocast_dtype(self.device, cfg.precision)
        # fp16 (CUDA GPUs without bf16 only) needs loss scaling; bf16 and fp32 do not.
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        if len(dataset) == 0:
            raise BadDataError("the training dataset holds no clips; import more video or lower clip_len")

        custom = getattr(module, "param_groups", None)
        groups = (custom() if callable(custom) else None) or default_param_groups(module, cfg.weight_decay)
        names = {id(p): n for n, p in module.named_parameters()}
        self.param_names = [strip_wrapper_prefixes(names[id(p)]) for g in groups for p in g["params"]]
        self.optimizer = make_adamw(groups, cfg)
        self.params = [p for g in self.optimizer.param_groups for p in g["params"]]

        self.interrupted = False
        self.save_file = save_file  # writes the safetensors file; tests swap in one that fails like a full disk
        self._stop_signal: int | None = None
        self._stop_time = 0.0
        self.say = _say
        for note in notes:
            _say(f"warning: {note}")
        self._skipped_in_a_row = 0
        self.resumed_from: Path | None = None
        self.start_step = self._resume()

        self._ddp: nn.parallel.DistributedDataParallel | None = None
        forward: nn.Module = module
        if self.world_size > 1:  # buffers (e.g. VQ usage counts) follow rank 0 at each forward: DDP's default
            self._ddp = nn.parallel.DistributedDataParallel(
                module, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=bool(getattr(module, "ddp_find_unused_parameters", False)))
            forward = self._ddp
        self.forward_module = torch.compile(forward) if cfg.compile else forward

        self.made_run_dir = False  # this Trainer created the run folder (removed again if the start fails)
        if is_main():
            try:
                self.made_run_dir = not self.run_dir.exists()
                self.run_dir.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise CheckpointError(f"cannot create run folder {self.run_dir} ({err.strerror or err}); "
                                      "choose another run folder") from err
            for stale in stale_temp_files(self.run_dir):
                stale.unlink(missing_ok=True)
            write_json_atomic(self.run_dir / "config.json", {
                "train": config_to_dict(cfg), "extra_state": self.extra_state, "module": type(module).__name__,
                "world_size": self.world_size, "device": devices.describe(self.device, self.amp_dtype),
                "start_step": self.start_step})
            trim_metrics(self.run_dir / "metrics.jsonl", self.start_step)

    # ----- resume -------------------------------------------------------------------------------
    def _resume(self) -> int:
        """Load the run folder's checkpoint (rank 0 reads, all ranks receive it) or seed a new run."""
        found, error = None, None
        if is_main():
            try:
                found = read_checkpoint(self.run_dir)
            except CheckpointError as err:
                error = str(err)
        header = dist_utils.broadcast_json({"error": error, "meta": found[1] if found else None,
                                            "path": str(found[2]) if found else None})
        if header["error"]:
            raise CheckpointError(header["error"])
        if header["meta"] is None:
            seed = self.cfg.seed + 100_003 * self.rank  # ranks draw different masks/noise
            torch.manual_seed(seed)
            random.seed(seed)
            np.random.seed(seed % 2**32)
            return 0
        meta = header["meta"]
        tensors = dist_utils.broadcast_tensors(found[0] if found else None)
        self._load_state(tensors, meta, Path(header["path"]))
        self.resumed_from = Path(header["path"])
        now = json.loads(json.dumps(config_to_dict(self.cfg)))  # tuples as lists, like the saved JSON
        changed = [f"{k} {v!r} -> {now[k]!r}" for k, v in meta.get("train_config", {}).items() if k in now and now[k] != v]
        _say(f"resuming {self.run_dir} from step {meta['step']}" + (f" with changed settings: {', '.join(changed)}" if changed else ""))
        if meta.get("extra_state", {}) != self.extra_state:
            _say("warning: the model/data settings differ from the checkpoint's (extra_state); continuing with the new ones")
        return int(meta["step"])

    def _load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any], path: Path) -> None:
        restore_model_and_optimizer(self.module, self.optimizer, self.param_names, tensors, meta["optim"], path)
        if self.scaler is not None and meta.get("scaler"):
            self.scaler.load_state_dict(meta["scaler"])
        cpu_rng = tensors.get(f"rng.{self.rank}.torch_cpu")
        if cpu_rng is None:  # a different number of processes than the run was started with
            _say(f"warning: {path} has no RNG state for rank {self.rank} (world size changed); reseeding")
            torch.manual_seed(self.cfg.seed + 100_003 * self.rank + meta["step"])
            return
        torch.set_rng_state(cpu_rng)
        cuda_rng = tensors.get(f"rng.{self.rank}.torch_cuda")
        if cuda_rng is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(cuda_rng, self.device)
        host = meta.get("rng_host") or []
        if self.rank < len(host):
            set_host_rng_state(host[self.rank])

    # ----- save ---------------------------------------------------------------------------------
    def save_checkpoint(self, step: int) -> None:
        """Write the checkpoint of `step` completed steps. Collective: every rank must call it."""
        cpu_states = dist_utils.gather_bytes(torch.get_rng_state())
        cuda_states = dist_utils.gather_bytes(torch.cuda.get_rng_state(self.device)) if self.device.type == "cuda" else []
        host = json.dumps(host_rng_state()).encode()
        host_states = dist_utils.gather_bytes(torch.frombuffer(bytearray(host), dtype=torch.uint8))
        error = None
        if is_main():
            tensors, optim_meta = model_and_optimizer_tensors(self.module, self.optimizer, self.param_names)
            for r, t in enumerate(cpu_states):
                tensors[f"rng.{r}.torch_cpu"] = t
            for r, t in enumerate(cuda_states):
                tensors[f"rng.{r}.torch_cuda"] = t
            meta = {
                "step": step, "train_config": config_to_dict(self.cfg), "extra_state": self.extra_state,
                "optim": optim_meta,
                "schedule": {"kind": "linear_warmup_cosine", "lr": self.cfg.lr, "warmup_steps": self.cfg.warmup_steps,
                             "min_lr_ratio": self.cfg.min_lr_ratio, "steps": self.cfg.steps,
                             "last_lr": lr_at(max(0, step - 1), self.cfg)},
                "rng_host": [json.loads(bytes(t.numpy()).decode()) for t in host_states],
                "scaler": self.scaler.state_dict() if self.scaler is not None else None,
                "world_size": self.world_size, "module": type(self.module).__name__,
                "torch_version": torch.__version__, "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            try:
                write_checkpoint(self.run_dir, tensors, meta, save=self.save_file)
            except CheckpointError as err:
                error = str(err)
        error = dist_utils.broadcast_json(error)  # every rank stops on a failed write, none hangs
        if error:
            raise CheckpointError(error)

    # ----- the loop -----------------------------------------------------------------------------
    def run(self) -> None:
        """Train from `start_step` to `cfg.steps`, then save. Ctrl-C / SIGTERM: finish the step, save, return."""
        try:
            self._run()
        except BaseException:
            if self.made_run_dir and read_checkpoint_meta(self.run_dir) is None:  # nothing to resume: no half-made folder
                shutil.rmtree(self.run_dir, ignore_errors=True)
            raise

    def _run(self) -> None:
        cfg = self.cfg
        if self.start_step >= cfg.steps:
            _say(f"{self.run_dir} already finished {self.start_step} steps; raise steps=N to train longer")
            return
        from tqdm import tqdm

        loader = BatchLoader(self.dataset, cfg, self.rank, self.world_size, self.device)
        previous_handlers = self._install_signal_handlers()
        bar = tqdm(total=cfg.steps, initial=self.start_step, desc="train", unit="step", dynamic_ncols=True,
                   disable=not is_main(), file=sys.stderr, mininterval=1.0)
        reports = RunReports(self.run_dir, self.module, self.evaluator, self.device, _say, self.save_file,
                             self.start_step) if is_main() else None
        frames_per_step = cfg.batch_size * cfg.grad_accum * cfg.clip_len * self.world_size
        tokens_per_frame = getattr(self.module, "tokens_per_frame", None)
        step, saved_step = self.start_step, self.start_step
        window_start, window_steps, run_start = time.perf_counter(), 0, time.perf_counter()
        sums: dict[str, torch.Tensor] = {}
        throughput, heldout = "", ""
        try:
            loader.prefetch(step)
            while step < cfg.steps:
                micro_batches = loader.get(step)
                loader.prefetch(step + 1)  # loads while this step computes
                stats = self._train_step(micro_batches, step)
                step += 1
                window_steps += 1
                for k, v in stats.items():
                    sums[k] = sums.get(k, 0.0) + v
                if is_main():
                    bar.update(1)
                    bar.set_postfix_str(f"loss {float(stats['loss']):.4f} lr {lr_at(step - 1, cfg):.2e}{throughput}{heldout}", refresh=False)
                if step % cfg.log_every == 0 or step == cfg.steps:
                    names = sorted(sums)
                    means = dist_utils.mean_over_ranks(torch.stack([sums[k].detach().float().cpu() for k in names]) / window_steps)
                    seconds = time.perf_counter() - window_start
                    record: dict[str, Any] = {"step": step, "lr": lr_at(step - 1, cfg)}
                    record.update({k: float(v) for k, v in zip(names, means.tolist())})
                    record["frames_per_s"] = frames_per_step * window_steps / seconds
                    if tokens_per_frame:
                        record["tokens_per_s"] = record["frames_per_s"] * tokens_per_frame
                    record["elapsed_s"] = time.perf_counter() - run_start
                    throughput = (f" {record['tokens_per_s']:,.0f} tok/s" if tokens_per_frame else f" {record['frames_per_s']:,.1f} frames/s")
                    if reports is not None:
                        reports.log(record)
                    sums, window_start, window_steps = {}, time.perf_counter(), 0
                if is_main() and cfg.picture_every and (step % cfg.picture_every == 0 or step == cfg.steps):
                    if not hasattr(self, "_picture_frames"):
                        self._picture_frames = picture_frames(self.dataset, min(4, cfg.batch_size), self.device)
                    write_samples(self.module, self._picture_frames, self.run_dir, step, self.device, _say)
                    if reports is not None:
                        reports.pictures(step)
                control = bool(cfg.control_every) and step % cfg.control_every == 0
                if reports is not None and self.evaluator is not None and (control or (cfg.eval_every and (step % cfg.eval_every == 0 or step == cfg.steps))):
                    eval_start = time.perf_counter()
                    heldout = reports.evaluate(step, control)
                    window_start += time.perf_counter() - eval_start  # not counted against the throughput
                stop = dist_utils.any_rank(self._stop_signal is not None)
                if step % cfg.checkpoint_every == 0 or step == cfg.steps or stop:
                    self.save_checkpoint(step)
                    saved_step = step
                if stop:
                    self.interrupted = True
                    break
        finally:
            bar.close()
            loader.close()
            if reports is not None:
                reports.close()
            self._restore_signal_handlers(previous_handlers)
        where = self.run_dir / CHECKPOINT_NAME
        if self.interrupted:
            _say(f"interrupted: saved step {saved_step} to {where}; run the same command again to resume")
        else:
            _say(f"done: {step} steps; checkpoint {where}")

    def _train_step(self, micro_batches: list[torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        """One optimiser step over the micro-batches; returns loss, grad_norm and the module's metrics."""
        cfg = self.cfg
        self.module.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum = torch.zeros((), device=self.device)
        metric_sums: dict[str, torch.Tensor] = {}
        for i, frames in enumerate(micro_batches):
            # DDP all-reduces gradients in backward: only on the last micro-batch of the step.
            sync = self._ddp.no_sync() if self._ddp is not None and i < len(micro_batches) - 1 else contextlib.nullcontext()
            with sync:
                with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                    loss, metrics = self.forward_module(frames, step)
                loss = loss.float()  # the loss and its scaling stay fp32 under autocast
                scaled = loss / len(micro_batches)
                (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
            loss_sum += loss.detach()
            for k, v in metrics.items():
                metric_sums[k] = metric_sums.get(k, 0.0) + v.detach().float().mean()
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip if cfg.grad_clip > 0 else math.inf)
        lr = lr_at(step, cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        if self.scaler is not None:  # skips non-finite steps itself and adapts the scale
            self.scaler.step(self.optimizer)
            self.scaler.update()
        elif bool(torch.isfinite(grad_norm)):
            self.optimizer.step()
            self._skipped_in_a_row = 0
        else:  # identical on all ranks: the norm is computed from all-reduced gradients
            self._skipped_in_a_row += 1
            _say(f"warning: step {step}: gradient norm is {float(grad_norm)}; step skipped")
            if self._skipped_in_a_row >= 20:
                raise BadSettingError(f"training diverged: 20 steps in a row with non-finite gradients at step {step}; "
                                      "resume with a lower lr=... or precision=fp32")
        n = len(micro_batches)
        return {"loss": loss_sum / n, "grad_norm": grad_norm.detach().float(), **{k: v / n for k, v in metric_sums.items()}}
