"""Multi-process helpers for torchrun: process group set-up, rank queries, small collectives.

`torchrun --nproc_per_node K [--nnodes N --rdzv-endpoint HOST:PORT] -m genie_play ...` sets
RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; `init_distributed()` reads them through
`env://`, so one machine and many machines take the same code path. Without torchrun (WORLD_SIZE
unset or 1) everything here is a cheap no-op and the trainer runs as a single process.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def init_distributed() -> tuple[int, int, int]:
    """Join the torchrun process group if launched by torchrun; return (rank, world_size, local_rank).

    Idempotent. Backend: NCCL when CUDA is available (one GPU per process, chosen by LOCAL_RANK),
    gloo on CPU-only machines.
    """
    world_size = _env_int("WORLD_SIZE", 1)
    local_rank = _env_int("LOCAL_RANK", 0)
    if world_size <= 1 or not dist.is_available():
        return 0, 1, 0
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available()
        if use_cuda:
            # Before init: NCCL binds the process to the current device.
            torch.cuda.set_device(local_rank % torch.cuda.device_count())
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", init_method="env://")
    return dist.get_rank(), dist.get_world_size(), local_rank


def shutdown_distributed() -> None:
    """Leave the process group (call once at the end of the entry point; no-op without torchrun)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    """True on the process that writes files and prints (rank 0, or the only process)."""
    return rank() == 0


def device_for_rank(device: torch.device) -> torch.device:
    """Under torchrun on CUDA each process owns the GPU LOCAL_RANK; other devices are unchanged."""
    if device.type == "cuda" and is_distributed():
        return torch.device("cuda", _env_int("LOCAL_RANK", 0) % torch.cuda.device_count())
    return device


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def collective_device() -> torch.device:
    """Where tensors for collectives must live: the GPU for NCCL, the CPU for gloo."""
    if is_distributed() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def any_rank(flag: bool) -> bool:
    """True on every rank if `flag` is True on any rank (so all ranks stop at the same step)."""
    if not is_distributed():
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=collective_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def mean_over_ranks(values: torch.Tensor) -> torch.Tensor:
    """Element-wise mean of a 1-d float tensor over all ranks (identity without torchrun)."""
    if not is_distributed():
        return values
    t = values.detach().to(collective_device(), torch.float32).clone()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return (t / dist.get_world_size()).cpu()


def gather_bytes(data: torch.Tensor) -> list[torch.Tensor]:
    """All ranks' 1-d uint8 tensors (lengths may differ), in rank order, on the CPU.

    Used to collect every rank's RNG state into rank 0's checkpoint; all ranks must call it.
    """
    data = data.reshape(-1).to(torch.uint8).cpu()
    if not is_distributed():
        return [data]
    dev, n = collective_device(), dist.get_world_size()
    length = torch.tensor([data.numel()], dtype=torch.int64, device=dev)
    lengths = [torch.zeros_like(length) for _ in range(n)]
    dist.all_gather(lengths, length)
    longest = int(max(int(x.item()) for x in lengths))
    padded = torch.zeros(longest, dtype=torch.uint8, device=dev)
    padded[: data.numel()] = data.to(dev)
    parts = [torch.zeros_like(padded) for _ in range(n)]
    dist.all_gather(parts, padded)
    return [p[: int(l.item())].cpu() for p, l in zip(parts, lengths)]


def broadcast_json(obj: object) -> object:
    """Rank 0's JSON-able `obj` on every rank (others may pass None)."""
    if not is_distributed():
        return obj
    import json

    if dist.get_rank() == 0:
        payload = torch.frombuffer(bytearray(json.dumps(obj).encode()), dtype=torch.uint8)
    else:
        payload = torch.zeros(0, dtype=torch.uint8)
    return json.loads(bytes(broadcast_bytes(payload).numpy()).decode())


def broadcast_bytes(data: torch.Tensor) -> torch.Tensor:
    """Rank 0's 1-d uint8 tensor on every rank (the length is sent first)."""
    if not is_distributed():
        return data
    dev = collective_device()
    length = torch.tensor([data.numel()], dtype=torch.int64, device=dev)
    dist.broadcast(length, src=0)
    buf = data.to(dev) if dist.get_rank() == 0 else torch.empty(int(length.item()), dtype=torch.uint8, device=dev)
    dist.broadcast(buf, src=0)
    return buf.cpu()


def broadcast_tensors(tensors: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
    """Rank 0's dict of CPU tensors on every rank, so only rank 0 has to read the checkpoint file
    (multi-node runs need not share a filesystem). Any dtype: tensors travel as raw bytes."""
    if not is_distributed():
        assert tensors is not None
        return tensors
    index = broadcast_json(
        [[k, str(t.dtype).removeprefix("torch."), list(t.shape)] for k, t in tensors.items()] if dist.get_rank() == 0 else None
    )
    out = {}
    for name, dtype_name, shape in index:  # type: ignore[union-attr]
        if dist.get_rank() == 0:
            broadcast_bytes(tensors[name].contiguous().reshape(-1).view(torch.uint8))
            out[name] = tensors[name]
        else:
            raw = broadcast_bytes(torch.zeros(0, dtype=torch.uint8))
            out[name] = raw.view(getattr(torch, dtype_name)).reshape(shape)
    return out
