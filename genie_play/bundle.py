"""World bundles: one `NAME.safetensors` file = one playable world (docs/architecture.md).

Layout: safetensors with tensors namespaced `tokenizer.*`, `dynamics.*`, `actions.*` and
optionally `lam.*`, and string metadata::

    format  "genie-play/1"        refused when the major version is unknown
    config  JSON of every component's config (the model is rebuilt from it alone)
    labels  optional JSON list of default action labels
    card    optional JSON object (training data, steps, metrics)

Reading checks the file with our own header parser before safetensors touches it, so a truncated
file, a lying header, a pickle or an HTML page renamed `.safetensors` ends in a one-line
`BadBundleError`, never in a large allocation and never in unpickling (nothing here calls pickle or
torch.load). A world's identity (`world_id`) is the SHA-256 of its tensors (name, dtype, shape,
bytes) in sorted name order, so editing labels or the card keeps it.

torch is imported only inside the functions that make tensors: `genie-play info` stays light.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import paths
from .errors import BadBundleError, OutputError, WorldNotFoundError
from .fileio import atomic_path
from .safetensors_header import DTYPE_SIZES, HeaderError, TensorInfo, read_raw, tensor_infos

if TYPE_CHECKING:  # pragma: no cover
    import torch

FORMAT = "genie-play/1"
FORMAT_PREFIX = "genie-play/"
FORMAT_MAJOR = 1
SUFFIX = ".safetensors"
DEFAULT_WORLD = "coinrun"
NAMESPACES = ("tokenizer.", "dynamics.", "actions.", "lam.")
FLOAT_DTYPES = frozenset({"F16", "BF16", "F32", "F64"})
# names people write for dtypes -> safetensors names (for check_tensors' `expected`)
_DTYPE_ALIASES = {
    "float32": "F32", "float": "F32", "fp32": "F32", "float16": "F16", "half": "F16", "fp16": "F16",
    "bfloat16": "BF16", "bf16": "BF16", "float64": "F64", "double": "F64", "fp64": "F64",
    "int64": "I64", "long": "I64", "int32": "I32", "int": "I32", "int16": "I16", "short": "I16",
    "int8": "I8", "uint8": "U8", "bool": "BOOL", "uint16": "U16", "uint32": "U32", "uint64": "U64",
}


@dataclass
class BundleHeader:
    """Everything a bundle says about itself without reading tensor data (checked)."""

    path: Path
    file_size: int
    data_start: int  # absolute offset of the data section (8 + header length)
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str]
    format: str
    config: dict
    labels: list[str] | None
    card: dict | None

    def num_params(self, namespace: str = "") -> int:
        """Number of elements in the tensors whose name starts with `namespace`."""
        return sum(math.prod(t.shape) for n, t in self.tensors.items() if n.startswith(namespace))


@dataclass
class Bundle:
    """A loaded world bundle: tensors on the CPU in their stored dtype."""

    path: Path
    config: dict
    tensors: dict[str, "torch.Tensor"]
    labels: list[str] | None
    card: dict | None
    world_id: str
    format: str = FORMAT


@dataclass
class WorldEntry:
    """A world file found by `list_worlds`; `header` is None when the file is broken (see `error`)."""

    path: Path
    name: str
    where: str  # "user" | "bundled"
    size: int
    header: BundleHeader | None = None
    error: str | None = None
    shadowed: bool = False  # a user world of the same name wins in resolve_world


# ---------------------------------------------------------------------------------------- writing


def _metadata(config: dict, labels: list[str] | None, card: dict | None) -> dict[str, str]:
    if not isinstance(config, dict):
        raise ValueError(f"config must be a dict, got {type(config).__name__}")
    meta = {"format": FORMAT, "config": json.dumps(config, sort_keys=True)}
    if labels is not None:
        if not isinstance(labels, (list, tuple)) or not all(isinstance(s, str) for s in labels):
            raise ValueError("labels must be a list of strings")
        meta["labels"] = json.dumps(list(labels))
    if card is not None:
        if not isinstance(card, dict):
            raise ValueError(f"card must be a dict, got {type(card).__name__}")
        meta["card"] = json.dumps(card, sort_keys=True)
    return meta


def save_bundle(
    path: str | Path,
    tensors: dict[str, "torch.Tensor"],
    config: dict,
    labels: list[str] | None = None,
    card: dict | None = None,
    dtype: "torch.dtype | str | None" = "bfloat16",
) -> None:
    """Write a world bundle atomically.

    `tensors` are already namespaced (`tokenizer.*`, `dynamics.*`, `actions.*`, optional `lam.*`).
    Floating tensors are cast to `dtype` (a torch.dtype or its name; default bf16, the release
    format; None keeps them as they are). The default is a string so that importing this module
    does not import torch.
    """
    import torch
    from safetensors.torch import save_file

    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    meta = _metadata(config, labels, card)
    prepared: dict[str, torch.Tensor] = {}
    seen_storages: set[int] = set()
    for name, t in tensors.items():
        if not name.startswith(NAMESPACES):
            raise ValueError(f"tensor name {name!r} must start with one of {', '.join(NAMESPACES)}")
        t = t.detach().to("cpu")
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        t = t.contiguous()
        if t.untyped_storage().data_ptr() in seen_storages:  # tied weights: safetensors refuses shared storage
            t = t.clone()
        seen_storages.add(t.untyped_storage().data_ptr())
        prepared[name] = t
    from safetensors import SafetensorError

    with atomic_path(Path(path)) as tmp:
        try:
            save_file(prepared, tmp, metadata=meta)
        except SafetensorError as err:  # its I/O errors (disk full, ...) are not OSErrors
            raise OutputError(f"{path}: cannot write ({str(err).splitlines()[0][:120]}); free some disk space or write elsewhere") from None


# ---------------------------------------------------------------------------------------- reading


def _bad(path: Path, what: str, fix: str = "re-download or re-export the world") -> BadBundleError:
    return BadBundleError(f"{path}: {what}; {fix}")


def _parse_format(path: Path, fmt: str) -> None:
    if not fmt.startswith(FORMAT_PREFIX):
        raise _bad(path, f"format {fmt[:40]!r} is not a genie-play world bundle", "pass a file written by genie-play")
    version = fmt[len(FORMAT_PREFIX):]
    major_text = version.split(".", 1)[0]
    if not major_text.isdigit():
        raise _bad(path, f"unreadable format version {fmt[:40]!r}")
    major = int(major_text)
    if major > FORMAT_MAJOR:
        raise _bad(path, f"format {fmt!r} was made by a newer genie-play", "upgrade genie-play (pip install -U genie-play)")
    if major != FORMAT_MAJOR:
        raise _bad(path, f"unknown format version {fmt!r} (this genie-play reads {FORMAT})")


def _json_field(path: Path, meta: dict[str, str], key: str, kind: type) -> Any:
    try:
        value = json.loads(meta[key])
    except (ValueError, RecursionError):
        raise _bad(path, f"the {key!r} metadata is not valid JSON") from None
    if not isinstance(value, kind):
        raise _bad(path, f"the {key!r} metadata is a {type(value).__name__}, expected a {kind.__name__}")
    return value


def read_header(path: str | Path) -> BundleHeader:
    """Parse and check a bundle's header and metadata without reading tensor data.

    Everything is bounded by the real file size before anything is allocated, so a lying header
    costs nothing. Raises BadBundleError (one line, naming the file) for every kind of bad file.
    """
    path = Path(path)
    try:
        file_size, data_start, header = read_raw(path)
    except HeaderError as err:
        raise _bad(path, str(err), err.fix) from None
    meta = header.pop("__metadata__", None)
    if meta is None:
        raise _bad(path, "has no genie-play metadata (a plain safetensors file?)", "pass a world bundle written by genie-play")
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise _bad(path, "metadata is not a string-to-string map")

    # The format first: a future version may lay out its tensors differently.
    fmt = meta.get("format")
    if fmt is None:
        raise _bad(path, "has no 'format' metadata (not a genie-play world bundle)", "pass a world bundle written by genie-play")
    _parse_format(path, fmt)

    try:
        tensors = tensor_infos(header, file_size - data_start)
    except HeaderError as err:
        raise _bad(path, str(err), err.fix) from None
    if "config" not in meta:
        raise _bad(path, "has no 'config' metadata", "re-export the world with `genie-play train export`")
    config = _json_field(path, meta, "config", dict)
    labels = _json_field(path, meta, "labels", list) if "labels" in meta else None
    if labels is not None and not all(isinstance(s, str) for s in labels):
        raise _bad(path, "the 'labels' metadata must be a list of strings")
    card = _json_field(path, meta, "card", dict) if "card" in meta else None
    return BundleHeader(path, file_size, data_start, tensors, meta, fmt, config, labels, card)


def compute_world_id(header: BundleHeader) -> str:
    """SHA-256 hex of the tensors (name, dtype, shape, bytes) in sorted name order.

    Metadata is not hashed, so editing labels/card keeps the id; re-exporting in another dtype
    makes a new world (its frames differ).
    """
    h = hashlib.sha256()
    try:
        with open(header.path, "rb") as f:
            for name in sorted(header.tensors):
                info = header.tensors[name]
                desc = json.dumps([name, info.dtype, list(info.shape), info.end - info.begin]).encode()
                h.update(struct.pack("<Q", len(desc)) + desc)
                f.seek(header.data_start + info.begin)
                remaining = info.end - info.begin
                while remaining:
                    chunk = f.read(min(remaining, 1 << 22))
                    if not chunk:
                        raise _bad(header.path, "file shrank while reading (truncated)")
                    h.update(chunk)
                    remaining -= len(chunk)
    except OSError as err:
        raise _bad(header.path, f"cannot be read ({err.strerror or err})", "check the file") from None
    return h.hexdigest()


def read_bundle(path: str | Path) -> Bundle:
    """Read and check a world bundle: tensors on the CPU as stored, plus config, labels, card, id."""
    header = read_header(path)
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(header.path, device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise _bad(header.path, f"safetensors could not read it ({str(err).splitlines()[0][:120] if str(err) else type(err).__name__})") from None
    if set(tensors) != set(header.tensors):  # the file changed between our check and the load
        raise _bad(header.path, "changed while being read", "try again")
    return Bundle(header.path, header.config, tensors, header.labels, header.card, compute_world_id(header), header.format)


def _canonical_dtype(dtype: Any) -> str:
    text = str(dtype).replace("torch.", "")
    return text if text in DTYPE_SIZES else _DTYPE_ALIASES.get(text.lower(), text)


def check_tensors(bundle: Bundle, expected: dict[str, tuple[tuple[int, ...], Any]]) -> None:
    """Check the bundle holds exactly the `expected` tensors: {name: (shape, dtype)}.

    `dtype` may be a torch.dtype or its name ("torch.float32", "float32", "F32", ...). A floating
    expectation accepts any stored float (bf16/fp16/fp32/fp64: the caller upcasts); others must match.
    """
    path = bundle.path
    missing = [n for n in expected if n not in bundle.tensors]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise _bad(path, f"tensor {missing[0]!r} is missing{more}; the file does not match its config")
    extra = sorted(n for n in bundle.tensors if n not in expected)
    if extra:
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        raise _bad(path, f"unexpected tensor {extra[0]!r}{more} not in its config")
    for name, (shape, dtype) in expected.items():
        t = bundle.tensors[name]
        if tuple(t.shape) != tuple(shape):
            raise _bad(path, f"tensor {name!r} has shape {tuple(t.shape)} but its config needs {tuple(shape)}")
        want, got = _canonical_dtype(dtype), _canonical_dtype(t.dtype)
        ok = got in FLOAT_DTYPES if want in FLOAT_DTYPES else got == want
        if not ok:
            raise _bad(path, f"tensor {name!r} has dtype {got} but its config needs {want}")


def update_bundle_metadata(path: str | Path, labels: list[str] | None = None, card: dict | None = None) -> None:
    """Atomically rewrite a bundle's labels and/or card (None keeps the current value).

    Tensor bytes are copied unchanged, so `world_id` stays the same.
    """
    header = read_header(path)
    meta = dict(header.metadata)
    new = _metadata(header.config, labels, card)
    if labels is not None:
        meta["labels"] = new["labels"]
    if card is not None:
        meta["card"] = new["card"]
    entries: dict[str, Any] = {"__metadata__": meta}
    for name, info in header.tensors.items():
        entries[name] = {"dtype": info.dtype, "shape": list(info.shape), "data_offsets": [info.begin, info.end]}
    header_bytes = json.dumps(entries, separators=(",", ":")).encode("utf-8")
    header_bytes += b" " * (-len(header_bytes) % 8)  # keep tensor data 8-byte aligned, as safetensors does
    with atomic_path(header.path) as tmp:
        with open(header.path, "rb") as src, open(tmp, "wb") as dst:
            dst.write(struct.pack("<Q", len(header_bytes)) + header_bytes)
            src.seek(header.data_start)
            while chunk := src.read(1 << 22):
                dst.write(chunk)
        read_header(tmp)  # never replace a good file with one we cannot read back


# ---------------------------------------------------------------------------------- name lookup


def _search_places(name: str) -> list[tuple[str, Path]]:
    file_name = name if name.endswith(SUFFIX) else name + SUFFIX
    return [("user", paths.user_worlds_dir() / file_name), ("bundled", paths.bundled_weights_dir() / file_name)]


def resolve_world(name: str | Path | None = None) -> Path:
    """Find a world: an existing path; else NAME.safetensors in the user worlds dir; else bundled."""
    if name is None or str(name) == "":
        name = DEFAULT_WORLD
    direct = Path(name).expanduser()
    text = str(name)
    looks_like_path = isinstance(name, Path) or os.sep in text or bool(os.altsep and os.altsep in text)
    if direct.is_file():
        return direct
    if direct.exists() and looks_like_path:
        return direct  # e.g. a directory: read_bundle reports it with its own message
    # A bare name that is a folder in the current directory (say a dataset called "coinrun") is
    # not a world: fall through to the world folders.
    searched = [str(direct)]
    if not looks_like_path:
        for _where, candidate in _search_places(text):
            if candidate.is_file():
                return candidate
            searched.append(str(candidate))
    known = sorted({e.name for e in list_worlds(read_headers=False)})
    available = f"; available: {', '.join(known)}" if known else "; no worlds are installed"
    raise WorldNotFoundError(
        f"world {text!r} not found (looked at: {', '.join(searched)}){available}; "
        f"pass a .safetensors path or copy one into {paths.user_worlds_dir()}"
    )


def list_worlds(read_headers: bool = True) -> list[WorldEntry]:
    """Every `*.safetensors` in the user worlds dir, then in the bundled weights dir (header-only)."""
    entries: list[WorldEntry] = []
    user_names: set[str] = set()
    for where, folder in (("user", paths.user_worlds_dir()), ("bundled", paths.bundled_weights_dir())):
        try:
            files = sorted(p for p in folder.iterdir() if p.suffix == SUFFIX and not p.name.startswith("."))
        except OSError:
            continue
        for p in files:
            try:
                size = p.stat().st_size
            except OSError:
                continue
            entry = WorldEntry(path=p, name=p.stem, where=where, size=size)
            if where == "user":
                user_names.add(p.stem)
            else:
                entry.shadowed = p.stem in user_names
            if read_headers:
                try:
                    entry.header = read_header(p)
                except BadBundleError as err:
                    entry.error = str(err)
            entries.append(entry)
    return entries
