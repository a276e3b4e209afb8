"""Building and loading the C kernel library (the `play_*.c` files beside this one).

The library is compiled once per machine with the system C compiler (`cc`, or $CC) into the user
cache directory and loaded with ctypes: no Python or torch headers, a second or two of compiling.
`load()` returns the ctypes library, or None where it cannot be built or GENIE_PLAY_KERNELS=0 (then
`unavailable_reason()` says why, and every world plays on PyTorch operations).
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
from pathlib import Path

import torch

from ..devices import cpu_flags
from ..errors import OutputError
from ..fileio import atomic_path
from ..paths import user_cache_dir

HERE = Path(__file__).parent
SOURCES = [HERE / f"play_{name}.c" for name in ("kernels", "linear", "frame")]  # all include play_vec.h
HEADERS = [HERE / "play_vec.h"]
# fast-math only in the forms that keep NaN/inf semantics: contract a*b+c into FMAs, no errno.
FLAGS = ["-O3", "-march=native", "-fopenmp-simd", "-ffp-contract=fast", "-fno-math-errno", "-shared", "-fPIC"]

_reason: str | None = None


def unavailable_reason() -> str | None:
    """Why `load()` returned None (None if it did not, or was not called)."""
    return _reason


@functools.lru_cache(maxsize=None)
def load(flags: tuple[str, ...] | None = None) -> ctypes.CDLL | None:
    """The compiled library for this CPU (built on first use; `flags` replace FLAGS, e.g. an older
    -march to see what other CPUs run), or None where that cannot be done here."""
    global _reason
    if os.environ.get("GENIE_PLAY_KERNELS", "1") == "0":
        _reason = "disabled by GENIE_PLAY_KERNELS=0"
        return None
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if platform.system() == "Windows" or not compiler:
        _reason = "no C compiler found (set CC to one)"
        return None
    flags = list(flags or FLAGS)
    try:
        runtime = _torch_libgomp()
        if runtime:  # share torch's OpenMP threads (same runtime: the loader reuses it)
            try:
                lib = ctypes.CDLL(str(build(compiler, flags + ["-fopenmp"])))
                if _joins(lib, runtime):
                    return lib
            except OSError:
                pass  # a compiler without OpenMP: single-threaded kernels below
        return ctypes.CDLL(str(build(compiler, flags)))
    except (OSError, subprocess.SubprocessError, OutputError) as err:
        err = err.__cause__ or err if isinstance(err, OutputError) else err  # atomic_path's wrapper of the OSError
        _reason = f"could not build them: {str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__}"
        return None


def build(compiler: str, flags: list[str]) -> Path:
    """Compile SOURCES with `flags` into the cache (atomically), unless that exact build exists."""
    texts = [f.read_bytes() for f in SOURCES + HEADERS]
    key = hashlib.sha256(b"\0".join([*texts, " ".join(flags).encode(), compiler.encode(), _cpu_id().encode()])).hexdigest()[:16]
    path = user_cache_dir() / "kernels" / f"play_kernels-{key}.so"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            result = subprocess.run([compiler, *flags, *map(str, SOURCES), "-o", str(tmp), "-lm"], capture_output=True, text=True, timeout=120)
            if result.returncode != 0:
                raise OSError(f"{Path(compiler).name} failed: {(result.stderr.strip().splitlines() or ['?'])[-1]}")
    return path


def _torch_libgomp() -> str | None:
    """The GNU OpenMP runtime torch runs its intra-op threads on (Linux wheels bundle
    libgomp.so.1), when exactly one runtime of that name is mapped: a library linked with -fopenmp
    is then bound to it by the loader and joins torch's thread pool instead of starting a second one
    (checked again after loading). Copies other wheels vendor under their own names (pygame's
    libgomp-<hash>.so) do not count: nothing binds to them by that name."""
    if "OpenMP" not in torch.__config__.parallel_info():
        return None
    try:
        with open("/proc/self/maps") as f:
            mapped = {os.path.realpath(line.split()[-1]) for line in f if "libgomp" in line}
    except OSError:
        return None
    named = {path for path in mapped if os.path.basename(path).startswith("libgomp.so")}
    return named.pop() if len(named) == 1 else None


def _joins(lib: ctypes.CDLL, runtime: str) -> bool:
    """Whether `lib`'s OpenMP calls resolve into `runtime` (a loaded file: dlopen hands back that copy)."""
    lib.gp_openmp_symbol.restype = ctypes.c_void_p
    return lib.gp_openmp_symbol() == ctypes.cast(ctypes.CDLL(runtime).omp_get_num_threads, ctypes.c_void_p).value


def _cpu_id() -> str:
    """What -march=native depends on: the machine type and, on Linux, the CPU's feature flags."""
    return f"{platform.machine()} {platform.processor()} {' '.join(sorted(cpu_flags()))}"
