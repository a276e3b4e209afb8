"""The one safetensors header reader (world bundles and training checkpoints).

`read_raw` reads and checks a file's JSON header without touching tensor data: every length is
bounded by the real file size before anything is allocated, and `tensor_infos` checks that the
tensors' dtypes, shapes and offsets tile the data section exactly. Problems raise HeaderError with
a one-line reason and a suggested fix; callers add the file name and their own error type.
"""
from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_HEADER_BYTES = 100 * 1024 * 1024  # a real header is a few kB; anything larger is a lie

# safetensors dtype -> bytes per element (sub-byte and exotic types are refused)
DTYPE_SIZES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8,
}


class HeaderError(ValueError):
    def __init__(self, what: str, fix: str = "re-download or re-export the world") -> None:
        super().__init__(what)
        self.fix = fix


@dataclass
class TensorInfo:
    """One tensor as the header describes it; `begin`/`end` are offsets in the data section."""

    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


def sniff(head: bytes) -> str | None:
    """A friendlier name for common non-bundles, from their first bytes."""
    if head.startswith(b"PK\x03\x04"):
        return "is a zip archive (a PyTorch .pt/.pth checkpoint?), not a world bundle; genie-play never unpickles files"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "is a Python pickle (a PyTorch checkpoint?), not a world bundle; genie-play never unpickles files"
    low = head.lstrip().lower()
    if low.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head", b"<!--")):
        return "is an HTML/XML page (a failed download?), not a world bundle"
    if head.startswith((b"\x89PNG", b"GIF8", b"\xff\xd8\xff", b"BM")) or head[8:12] == b"WEBP":
        return "is an image, not a world bundle (a prompt image goes before --world, not after it)"
    if head.startswith(b"version https://git-lfs"):
        return "is a Git LFS pointer, not the world itself (run `git lfs pull`)"
    return None


def read_raw(path: str | Path) -> tuple[int, int, dict[str, Any]]:
    """(file size, offset of the data section, the header's JSON object incl. __metadata__)."""
    path = Path(path)
    if not path.exists():
        raise HeaderError("no such file", "check the path or run `genie-play info` to list worlds")
    if path.is_dir():
        if (path / "checkpoint.safetensors").exists() or (path / "checkpoint.prev.safetensors").exists():
            raise HeaderError("is a training run folder, not a world bundle",
                              f"export a world from it first: genie-play train export {path} --out world.safetensors")
        raise HeaderError("is a directory, not a world bundle", "pass a .safetensors file")
    if not path.is_file():
        raise HeaderError("is not a regular file", "pass a .safetensors file")
    try:
        with open(path, "rb") as f:
            file_size = os.fstat(f.fileno()).st_size
            head = f.read(8)
            if file_size < 8 or len(head) < 8:
                raise HeaderError(f"too short to be a world bundle ({file_size} bytes)")
            (header_len,) = struct.unpack("<Q", head)
            if header_len == 0 or header_len > file_size - 8 or header_len > MAX_HEADER_BYTES:
                sniffed = sniff(head + f.read(64))
                if sniffed:
                    raise HeaderError(sniffed, "pass a .safetensors world bundle")
                raise HeaderError(f"header length {header_len} does not fit the {file_size}-byte file (truncated or not safetensors)")
            header_bytes = f.read(header_len)
    except PermissionError:
        raise HeaderError("cannot be read (permission denied)", "check the file's permissions") from None
    except OSError as err:
        raise HeaderError(f"cannot be read ({err.strerror or err})", "check the file") from None
    if len(header_bytes) != header_len:
        raise HeaderError("file shrank while reading (truncated)")
    try:
        header = json.loads(header_bytes.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        sniffed = sniff(head + header_bytes[:64])
        raise HeaderError(sniffed or "header is not valid JSON (not a safetensors file, or corrupted)") from None
    if not isinstance(header, dict):
        raise HeaderError("header is not a JSON object (not a safetensors file)")

    return file_size, 8 + header_len, header


def tensor_infos(header: dict[str, Any], data_len: int) -> dict[str, TensorInfo]:
    """The header's tensors (without __metadata__), checked against a data section of data_len bytes."""
    tensors: dict[str, TensorInfo] = {}
    for name, entry in header.items():
        tensors[name] = _tensor_info(name, entry, data_len)
    # Offsets must tile the data section exactly (safetensors requires it too): no overlaps, no gaps.
    expected_begin = 0
    for name, info in sorted(tensors.items(), key=lambda kv: (kv[1].begin, kv[1].end)):
        if info.begin != expected_begin:
            what = "overlaps another tensor" if info.begin < expected_begin else "leaves a gap before it"
            raise HeaderError(f"tensor {name!r} {what} (corrupted header)")
        expected_begin = info.end
    if expected_begin != data_len:
        if expected_begin > data_len:
            raise HeaderError(f"file is truncated (tensors need {expected_begin} data bytes, file has {data_len})")
        raise HeaderError(f"{data_len - expected_begin} unexpected bytes after the last tensor (corrupted)")

    return tensors


def _tensor_info(name: str, entry: Any, data_len: int) -> TensorInfo:
    if not isinstance(entry, dict):
        raise HeaderError(f"header entry {name[:60]!r} is not a tensor description")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in DTYPE_SIZES:
        raise HeaderError(f"tensor {name[:60]!r} has unsupported dtype {str(dtype)[:20]!r}")
    if (not isinstance(shape, list) or len(shape) > 16
            or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d for d in shape)):
        raise HeaderError(f"tensor {name[:60]!r} has an invalid shape")
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)):
        raise HeaderError(f"tensor {name[:60]!r} has invalid data_offsets")
    begin, end = offsets
    if not 0 <= begin <= end:
        raise HeaderError(f"tensor {name[:60]!r} has invalid data_offsets")
    if end > data_len:
        raise HeaderError(f"file is truncated (tensor {name[:60]!r} ends past the end of the file)")
    if end - begin != math.prod(shape) * DTYPE_SIZES[dtype]:
        raise HeaderError(f"tensor {name[:60]!r}: {dtype} x {tuple(shape)} does not match its {end - begin} bytes (dtype or shape corrupted)")
    return TensorInfo(dtype, tuple(shape), begin, end)
