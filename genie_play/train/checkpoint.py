"""Training checkpoints: one safetensors file per run folder, written atomically, never pickled.

Layout of `RUN/checkpoint.safetensors` (the previous one is kept as `checkpoint.prev.safetensors`):

tensors
    model.<name>              the module's state dict (parameters and buffers, fp32 master weights),
                              names without torch.compile's `_orig_mod.` or DDP's `module.`
    optim.<i>.<key>           AdamW state of parameter i (exp_avg, exp_avg_sq, step)
    rng.<rank>.torch_cpu      torch CPU generator state of each rank (uint8)
    rng.<rank>.torch_cuda     the CUDA generator state of each rank, when on CUDA (uint8)
metadata (string -> string; every value but `format` is JSON)
    format                    "genie-play-checkpoint/1"
    step                      completed optimiser steps (= the next step to run; the data position)
    train_config, extra_state resolved TrainConfig; the JSON dict the caller passed (model config, data)
    optim                     parameter names in optimiser order, param_groups, non-tensor state
    schedule                  the lr schedule's settings and the lr of the last step
    rng_host                  per rank: python `random` and numpy global RNG states
    world_size, module, torch_version, saved_at
"""
from __future__ import annotations

import json
import math
import os
import random
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import CheckpointError, OutputError, one_line_reason
from ..fileio import atomic_write, fsync_dir
from ..safetensors_header import read_raw, tensor_infos

FORMAT = "genie-play-checkpoint/1"
CHECKPOINT_NAME = "checkpoint.safetensors"
PREV_NAME = "checkpoint.prev.safetensors"
_TMP_PREFIX = ".checkpoint.tmp."

SaveFile = Callable[..., None]  # safetensors.torch.save_file(tensors, filename, metadata=...)


def strip_wrapper_prefixes(name: str) -> str:
    """'module._orig_mod.enc._orig_mod.w' -> 'enc.w' (DDP and torch.compile wrappers)."""
    if name.startswith("module."):
        name = name[len("module."):]
    return name.replace("_orig_mod.", "")


def _cpu_unshared(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU, contiguous tensors with no two sharing memory (safetensors refuses shared storage,
    e.g. tied weights)."""
    out, seen = {}, set()
    for name, t in tensors.items():
        t = t.detach().cpu().contiguous()
        key = (t.untyped_storage().data_ptr(), t.storage_offset()) if t.numel() else None
        if key is not None and key in seen:
            t = t.clone()
        elif key is not None:
            seen.add(key)
        out[name] = t
    return out


def write_checkpoint(run_dir: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any],
                     save: SaveFile = save_file) -> Path:
    """Write `run_dir/checkpoint.safetensors` atomically and keep the one before as `.prev`.

    The new file is complete and fsynced under a temporary name before anything is renamed, and
    `checkpoint.safetensors` is only ever replaced by one atomic rename (the old file is hard-linked
    to `.prev` first), so a kill, a crash or a full disk at any moment leaves a complete latest
    checkpoint. `save` is the function that writes the file (tests pass one that fails like a full
    disk). An interrupted or failed write removes its temporary file.
    """
    run_dir = Path(run_dir)
    latest, prev = run_dir / CHECKPOINT_NAME, run_dir / PREV_NAME
    tmp = run_dir / f"{_TMP_PREFIX}{os.getpid()}.safetensors"
    prev_tmp = run_dir / f"{_TMP_PREFIX}{os.getpid()}.prev.safetensors"
    metadata = {"format": FORMAT, **{k: json.dumps(v) for k, v in meta.items()}}
    done = False
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        save(_cpu_unshared(tensors), str(tmp), metadata=metadata)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        if latest.exists():
            _keep_as_prev(latest, prev, prev_tmp)
        os.replace(tmp, latest)
        done = True
        fsync_dir(run_dir)
    except (OSError, SafetensorError) as err:
        raise CheckpointError(
            f"could not write checkpoint {latest}: {one_line_reason(err)}; free disk space or use another run folder "
            f"(earlier checkpoints in {run_dir} are intact)"
        ) from err
    finally:  # also on Ctrl-C / SIGTERM raised inside the write: never leave a temporary file
        if not done:
            tmp.unlink(missing_ok=True)
        prev_tmp.unlink(missing_ok=True)
    return latest


def _keep_as_prev(latest: Path, prev: Path, prev_tmp: Path) -> None:
    """Make `prev` the current `latest` without `latest` ever missing: hard link + atomic rename.
    Where hard links are not supported, rename `latest` to `prev` (a brief window with only `prev`,
    which `read_checkpoint` also resumes from)."""
    prev_tmp.unlink(missing_ok=True)
    try:
        os.link(latest, prev_tmp)
    except OSError:
        os.replace(latest, prev)
        return
    os.replace(prev_tmp, prev)


def _read_header(path: Path) -> dict[str, Any]:
    """The safetensors JSON header of `path` (safetensors_header, the one reader); raises HeaderError
    (a ValueError) if the file is short, garbled or truncated."""
    file_size, data_start, header = read_raw(path)
    tensor_infos({k: v for k, v in header.items() if k != "__metadata__"}, file_size - data_start)
    return header


def _parse_meta(header: dict[str, Any]) -> dict[str, Any]:
    metadata = header.get("__metadata__") or {}
    fmt = metadata.get("format", "")
    kind, _, major = fmt.partition("/")
    if kind != FORMAT.split("/")[0]:
        raise ValueError(f"not a genie-play checkpoint (format {fmt!r})")
    if major.split(".")[0] != FORMAT.split("/")[1]:
        raise ValueError(f"checkpoint format {fmt!r} comes from another genie-play version")
    meta = {k: json.loads(v) for k, v in metadata.items() if k != "format"}
    meta["format"] = fmt
    if not isinstance(meta.get("step"), int):
        raise ValueError("no step in metadata")
    return meta


def _candidates(run_dir: Path) -> list[Path]:
    return [p for p in (Path(run_dir) / CHECKPOINT_NAME, Path(run_dir) / PREV_NAME) if p.exists()]


def read_checkpoint(run_dir: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], Path] | None:
    """(tensors, meta, path) of the newest readable checkpoint in `run_dir`, or None if there is none.

    A corrupt or truncated latest file falls back to `checkpoint.prev.safetensors` with a warning;
    if every file present is unreadable, raises CheckpointError.
    """
    candidates = _candidates(run_dir)
    if not candidates:
        return None
    problems = []
    for path in candidates:
        try:
            meta = _parse_meta(_read_header(path))
            tensors = load_file(str(path), device="cpu")  # checks the file covers every tensor
        except Exception as err:  # safetensors raises its own error type; anything means unusable
            problems.append(f"{path.name}: {err}")
            continue
        if problems:
            warnings.warn(f"checkpoint {problems[0]} is unreadable; resuming from {path.name} instead", stacklevel=2)
        return tensors, meta, path
    raise CheckpointError(
        f"no readable checkpoint in {run_dir} ({'; '.join(problems)}); delete the folder or use another run folder"
    )


def read_checkpoint_meta(run_dir: Path) -> dict[str, Any] | None:
    """The metadata of the newest readable checkpoint (header only: cheap), or None if there is none."""
    for path in _candidates(run_dir):
        try:
            return _parse_meta(_read_header(path))
        except Exception:
            continue
    return None


def load_checkpoint_weights(run_dir: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(model state dict, meta) of the newest good checkpoint in `run_dir`, for exporting a world.

    The state dict's names are the module's own (no `model.` prefix, no wrapper prefixes); meta
    holds step, train_config, extra_state (whatever the training command passed, e.g. the model config).
    """
    found = read_checkpoint(Path(run_dir))
    if found is None:
        raise CheckpointError(f"no checkpoint in {run_dir}: train first (genie-play train ...) or check the folder name")
    tensors, meta, _ = found
    state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    return state, meta


def stale_temp_files(run_dir: Path) -> list[Path]:
    """Temporary files a killed writer left behind (safe to delete: never read)."""
    return sorted(Path(run_dir).glob(f"{_TMP_PREFIX}*"))


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON to `path` atomically (fileio.atomic_write)."""
    try:
        atomic_write(path, json.dumps(obj, indent=2) + "\n")
    except OutputError as err:
        cause = err.__cause__
        reason = getattr(cause, "strerror", None) or cause or err
        raise CheckpointError(f"could not write {path}: {reason}; free disk space or use another run folder") from err


# ----- metrics.jsonl -------------------------------------------------------------------------------
def _logged_step(line: str) -> float:
    """The step of a metrics.jsonl line; infinity for a half-written or foreign line (dropped)."""
    try:
        return float(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return math.inf


def trim_metrics(path: Path, step: int) -> None:
    """Drop metrics lines after `step` (written by a run killed after its last checkpoint) and a
    half-written last line, atomically."""
    if not path.exists():
        return
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    kept = [line for line in lines if _logged_step(line) <= step]
    if len(kept) != len(lines):
        tmp = path.with_name(".metrics.jsonl.tmp")
        try:
            tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
            tmp.replace(path)
        except OSError as err:
            raise CheckpointError(f"could not write {path}: {err.strerror or err}; free disk space or use "
                                  "another run folder") from err
        finally:
            tmp.unlink(missing_ok=True)


class MetricsLog:
    """metrics.jsonl, appended one JSON line per log step. A write that fails (full disk, quota)
    is reported once through `warn` and logging stops; training and checkpointing go on (a
    checkpoint write that fails too stops the run with its own message)."""

    def __init__(self, path: Path, warn: Callable[[str], None]) -> None:
        self.path, self._warn = path, warn
        self._file: Any = open(path, "a", encoding="utf-8")

    def write(self, record: dict) -> None:
        if self._file is None:
            return
        try:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()
        except OSError as err:
            self._warn(f"warning: could not write {self.path} ({err.strerror or err}); metrics are no longer "
                       "logged, training goes on")
            self.close()

    def close(self) -> None:
        f, self._file = self._file, None
        if f is not None:
            try:
                f.close()
            except OSError:  # the buffered tail could not be flushed: already reported
                pass


# ----- training state <-> checkpoint tensors --------------------------------------------------------
def model_and_optimizer_tensors(module: nn.Module, optimizer: torch.optim.Optimizer,
                                param_names: list[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors `model.*` and `optim.<i>.<key>`, JSON-able `optim` metadata) of a training state."""
    tensors = {f"model.{strip_wrapper_prefixes(k)}": v for k, v in module.state_dict().items()}
    osd = optimizer.state_dict()
    non_tensor: dict[str, dict[str, Any]] = {}
    for index, per_param in osd["state"].items():
        for key, value in per_param.items():
            if torch.is_tensor(value):
                tensors[f"optim.{index}.{key}"] = value
            else:
                non_tensor.setdefault(str(index), {})[key] = value
    groups = [{k: (float(v) if torch.is_tensor(v) else v) for k, v in g.items()} for g in osd["param_groups"]]
    return tensors, {"param_names": param_names, "param_groups": groups, "non_tensor_state": non_tensor}


def restore_model_and_optimizer(module: nn.Module, optimizer: torch.optim.Optimizer, param_names: list[str],
                                tensors: dict[str, torch.Tensor], optim: dict[str, Any], path: Path) -> None:
    """Load `model_and_optimizer_tensors` output back; CheckpointError if it belongs to another model."""
    own = {strip_wrapper_prefixes(k): k for k in module.state_dict()}
    saved = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    missing, unexpected = sorted(set(own) - set(saved)), sorted(set(saved) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            f"{path} holds a different model ({len(missing)} missing tensors, {len(unexpected)} unexpected, e.g. "
            f"{(missing + unexpected)[0]!r}); use the run's model settings or a new run folder")
    try:
        module.load_state_dict({own[k]: v for k, v in saved.items()}, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{path} does not fit this model ({str(err).splitlines()[-1].strip()}); "
                              "use the run's model settings or a new run folder") from None
    if optim["param_names"] != param_names:
        raise CheckpointError(f"{path}: the optimiser's parameters differ from this model's; use the run's settings or a new run folder")
    state: dict[int, dict[str, Any]] = {int(i): dict(v) for i, v in optim.get("non_tensor_state", {}).items()}
    for name, t in tensors.items():
        if name.startswith("optim."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = t
    groups = []
    for saved_group, live in zip(optim["param_groups"], optimizer.param_groups):
        groups.append({k: (tuple(v) if isinstance(live.get(k), tuple) else v) for k, v in saved_group.items()})
    try:
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError, RuntimeError) as err:
        raise CheckpointError(f"{path}: optimiser state does not fit ({err}); use the run's settings or a new run folder") from None


def host_rng_state() -> dict[str, Any]:
    """Python `random` and numpy global RNG states, JSON-able."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": [version, list(internal), gauss], "numpy": [name, keys.tolist(), pos, has_gauss, cached]}


def set_host_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
