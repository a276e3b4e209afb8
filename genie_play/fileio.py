"""Atomic file writes: every file a user cares about (bundles, labels, datasets, checkpoints,
pictures, videos, the compiled kernels) is written through `atomic_path` or `atomic_write`.

Contract: the new content is written to a hidden temp file beside the target (`.NAME.<random>.tmp`),
fsynced, given the old file's mode (or 0644), and renamed onto the target in one `os.replace`; the
folder is then fsynced so the rename survives a power cut where the platform allows it. A crash or
kill leaves the old file or the new one, never a partial one (at most a stale `.tmp` beside it); an
exception removes the temp file. OSErrors (folder not writable, disk full) become a one-line
OutputError naming the file and the fix.
"""
from __future__ import annotations

import errno
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import OutputError


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside `path` to write to; on success it replaces `path` atomically."""
    path = Path(path)
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        yield tmp
        try:  # mkstemp (and safetensors) make 0600 files; keep the old file's mode, or the usual 0644
            os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        except OSError:
            pass
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as err:
        raise write_error(path, err) from err
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write `data` (str as UTF-8) to `path` atomically (see the module docstring)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)


def fsync_dir(folder: str | Path) -> None:
    """Make renames in `folder` durable; a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_error(path: Path, err: OSError) -> OutputError:
    """A one-line OutputError for a failed write of `path`."""
    reason = err.strerror or str(err) or type(err).__name__
    fix = "free some disk space or write elsewhere" if err.errno == errno.ENOSPC else "choose a folder you can write to"
    return OutputError(f"{path}: cannot write ({reason}); {fix}")
