"""Training datasets: uint8 frame shards on disk plus a JSON index of episodes, and clip sampling.

A dataset is a folder::

    index.json          {"format": "genie-play-data/1", "frame_size": [H, W], "shards": [...],
                         "episodes": [...], "level_ranges": {"train": [[a, b]], "heldout": [...]},
                         "frame_skip": k (optional, default 1: game steps per stored frame)}
    shard_00000.npy     uint8 frames (N, H, W, 3), plain .npy so it can be memory-mapped
    actions_00000.npy   optional int16 (N,) true actions: actions[i] was taken between frame i and
                        i + 1 of the same episode; -1 where unknown (and on every episode's last frame)

An episode is one contiguous run of frames inside one shard: {"shard", "start", "length", "split"
("train" | "heldout"), "source" (str), "level" (int | None)}; an episode longer than a whole shard
is stored as consecutive parts (extra key "part": 0, 1, ...), each its own episode.
True actions are for evaluation only; training code must never read them.

Writing is crash-safe: frames are buffered in memory and a shard is written only when complete
(fileio.atomic_path: temp file + fsync + os.replace), then the index is rewritten the same way. A run that is killed
leaves a dataset listing only complete shards; files not in the index (orphan shards, temp files)
are ignored by readers and removed by the next writer. Opening a writer on an existing dataset
appends to it (``overwrite=True`` starts afresh, deleting only this module's files).
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BadDataError, OutputError
from ..fileio import atomic_path

FORMAT = "genie-play-data/1"
INDEX_NAME = "index.json"
SPLITS = ("train", "heldout")
DEFAULT_SHARD_BYTES = 256 * 2**20
_OWN_FILE = re.compile(r"^(shard|actions)_\d{5}\.npy$|^\..*\.tmp$")


def _atomic_write(path: Path, write: Any) -> None:
    """Write via `write(fileobj)` atomically (fileio.atomic_path); failures stay OSErrors here."""
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            write(f)
    except OutputError as err:
        raise err.__cause__ from None


def _npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of a .npy file from its header; checks the file holds all its bytes."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"unsupported .npy version {version}")
        data_offset = f.tell()
    if fortran or dtype.hasobject:
        raise ValueError("not a C-ordered plain array")
    expected = data_offset + int(np.prod(shape)) * dtype.itemsize
    if path.stat().st_size < expected:
        raise ValueError(f"truncated ({path.stat().st_size} of {expected} bytes)")
    return tuple(shape), dtype


class Dataset:
    """A validated dataset folder (see the module docstring). Shards are memory-mapped on first use."""

    def __init__(self, folder: Path, index: dict[str, Any]):
        self.folder = folder
        self.index = index
        self.frame_size: tuple[int, int] = (int(index["frame_size"][0]), int(index["frame_size"][1]))
        self.shards: list[dict[str, Any]] = index["shards"]
        self.episodes: list[dict[str, Any]] = index["episodes"]
        self.level_ranges: dict[str, list[list[int]]] = index.get("level_ranges", {})
        self.frame_skip = int(index.get("frame_skip", 1))  # game steps between stored frames
        self._frames: dict[int, np.ndarray] = {}
        self._actions: dict[int, np.ndarray | None] = {}

    def frames(self, shard: int) -> np.ndarray:  # (N, H, W, 3) uint8, read-only memory map
        if shard not in self._frames:
            self._frames[shard] = np.load(self.folder / self.shards[shard]["file"], mmap_mode="r", allow_pickle=False)
        return self._frames[shard]

    def actions(self, shard: int) -> np.ndarray | None:  # (N,) int16 or None
        if shard not in self._actions:
            name = self.shards[shard].get("actions")
            self._actions[shard] = None if not name else np.load(self.folder / name, mmap_mode="r", allow_pickle=False)
        return self._actions[shard]

    def episode_frames(self, e: int) -> np.ndarray:  # (L, H, W, 3) uint8 view
        ep = self.episodes[e]
        return self.frames(ep["shard"])[ep["start"]: ep["start"] + ep["length"]]

    def __getstate__(self) -> dict[str, Any]:  # memory maps are reopened in each worker process
        return {**self.__dict__, "_frames": {}, "_actions": {}}


def open_dataset(folder: str | os.PathLike[str]) -> Dataset:
    """Read and check a dataset's index and shard headers; BadDataError names the folder and fix."""
    folder = Path(folder)
    index_path = folder / INDEX_NAME
    if not index_path.is_file():
        raise BadDataError(f"{folder}: no dataset here ({INDEX_NAME} missing); make one with "
                           f"`genie-play data coinrun --out {folder}` or `genie-play data import ... --out {folder}`")
    fix = f"regenerate it (e.g. `genie-play data ... --out {folder} --overwrite`)"
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
        fmt = str(index["format"])
        if fmt.split("/")[0] != FORMAT.split("/")[0] or not fmt.split("/")[-1].isdigit():
            raise ValueError(f"not a genie-play dataset (format {fmt!r})")
        if int(fmt.split("/")[1]) > int(FORMAT.split("/")[1]):
            raise ValueError(f"format {fmt} is newer than this genie-play reads ({FORMAT}); upgrade genie-play")
        h, w = (int(v) for v in index["frame_size"])
        counts = []
        for s in index["shards"]:
            if not all(_OWN_FILE.match(str(name)) for name in (s["file"], s.get("actions") or "shard_00000.npy")):
                raise ValueError(f"unexpected shard file name {s['file']!r}")
            shape, dtype = _npy_header(folder / s["file"])
            if shape[1:] != (h, w, 3) or dtype != np.uint8 or shape[0] != int(s["frames"]):
                raise ValueError(f"{s['file']} holds {dtype} {shape}, index says uint8 ({s['frames']}, {h}, {w}, 3)")
            if s.get("actions"):
                ashape, adtype = _npy_header(folder / s["actions"])
                if ashape != (shape[0],) or adtype.kind != "i":
                    raise ValueError(f"{s['actions']} holds {adtype} {ashape}, expected int16 ({shape[0]},)")
            counts.append(shape[0])
        for ep in index["episodes"]:
            if ep["split"] not in SPLITS or ep["length"] < 1 or ep["start"] < 0 or not 0 <= ep["shard"] < len(counts) \
                    or ep["start"] + ep["length"] > counts[ep["shard"]]:
                raise ValueError(f"episode {ep} lies outside its shard or has an unknown split")
    except OSError as err:
        raise BadDataError(f"{folder}: cannot read dataset ({err.strerror or err}: {getattr(err, 'filename', '')}); {fix}") from err
    except (ValueError, KeyError, TypeError, IndexError) as err:
        raise BadDataError(f"{folder}: corrupt dataset ({err}); {fix}") from err
    return Dataset(folder, index)


class DatasetWriter:
    """Appends episodes to a dataset folder in shards of at most ~`shard_bytes` (see module docstring).

    Use as a context manager or call `close()`: buffered complete episodes are written then, also when
    the block raises (they are complete; only an episode whose append failed is lost).
    """

    def __init__(self, folder: str | os.PathLike[str], frame_size: int | tuple[int, int],
                 shard_bytes: int = DEFAULT_SHARD_BYTES, overwrite: bool = False):
        self.folder = Path(folder)
        h, w = (frame_size, frame_size) if isinstance(frame_size, int) else frame_size
        self.frame_size = (int(h), int(w))
        self.folder.mkdir(parents=True, exist_ok=True)
        if overwrite and (self.folder / INDEX_NAME).exists():
            (self.folder / INDEX_NAME).unlink()
        if (self.folder / INDEX_NAME).exists():
            self.index = open_dataset(self.folder).index
            if tuple(self.index["frame_size"]) != self.frame_size:
                raise BadDataError(f"{self.folder}: holds {tuple(self.index['frame_size'])} frames, not {self.frame_size}; "
                                   f"use another --out folder or --overwrite")
        else:
            self.index = {"format": FORMAT, "frame_size": list(self.frame_size), "shards": [], "episodes": [],
                          "level_ranges": {}}
        listed = {s["file"] for s in self.index["shards"]} | {s.get("actions") for s in self.index["shards"]}
        for p in self.folder.iterdir():  # orphans of an interrupted run: never listed, safe to remove
            if _OWN_FILE.match(p.name) and p.name not in listed:
                p.unlink()
        self.capacity = max(1, shard_bytes // (self.frame_size[0] * self.frame_size[1] * 3))
        self._buf = np.empty((self.capacity, *self.frame_size, 3), np.uint8)  # (capacity, H, W, 3)
        self._buf_actions = np.full((self.capacity,), -1, np.int16)
        self._has_actions = False
        self._fill = 0
        self._pending: list[dict[str, Any]] = []  # episodes in the buffer, not yet in the index
        self.frames_written = 0
        self.episodes_written = 0

    # --- queries about what is already there (for resumable imports) ---
    def episodes(self) -> list[dict[str, Any]]:
        """Every episode so far: those in the index and those still buffered."""
        return self.index["episodes"] + self._pending

    def sources(self) -> set[str]:
        return {ep["source"] for ep in self.episodes()}

    def level_ranges(self) -> dict[str, list[list[int]]]:
        return self.index.setdefault("level_ranges", {})

    def add_level_range(self, split: str, start: int, stop: int) -> None:
        """Record that `split` draws levels from [start, stop) (written with the next index)."""
        ranges = self.level_ranges().setdefault(split, [])
        if [start, stop] not in ranges:
            ranges.append([start, stop])

    def set_frame_skip(self, skip: int) -> None:
        """Record that each stored frame is `skip` game steps after the previous one; a dataset holds
        one frame skip only (its clips would otherwise mix two speeds)."""
        have = int(self.index.get("frame_skip", 1))
        if self.episodes() and have != skip:
            raise BadDataError(f"{self.folder}: holds frames {have} game step(s) apart, not {skip}; "
                               f"use another --out folder or --overwrite")
        self.index["frame_skip"] = int(skip)

    # --- writing ---
    def append_episode(self, frames: np.ndarray, actions: np.ndarray | None = None, split: str = "train",
                       source: str = "", level: int | None = None) -> None:
        """Add one episode: frames (L, H, W, 3) uint8, actions (L,) ints with -1 = unknown."""
        frames = np.asarray(frames)
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[1:] != (*self.frame_size, 3) or len(frames) == 0:
            raise ValueError(f"episode frames must be uint8 (L, {self.frame_size[0]}, {self.frame_size[1]}, 3), "
                             f"got {frames.dtype} {frames.shape}")
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if actions is not None:
            actions = np.asarray(actions)
            if actions.shape != (len(frames),):
                raise ValueError(f"actions must have shape ({len(frames)},), got {actions.shape}")
        meta = {"split": split, "source": str(source), "level": None if level is None else int(level)}
        if len(frames) > self.capacity - self._fill and len(frames) <= self.capacity:
            self._flush_shard()  # start a fresh shard rather than cut a short episode in two
        parts = len(frames) > self.capacity - self._fill
        pos, part = 0, 0
        while pos < len(frames):
            if self._fill == self.capacity:
                self._flush_shard()
            n = min(len(frames) - pos, self.capacity - self._fill)
            self._buf[self._fill: self._fill + n] = frames[pos: pos + n]
            if actions is not None:
                self._buf_actions[self._fill: self._fill + n] = actions[pos: pos + n]
                self._buf_actions[self._fill + n - 1] = -1  # the action after a part's last frame leaves it
                self._has_actions = True
            self._pending.append({"shard": len(self.index["shards"]), "start": self._fill, "length": n, **meta,
                                  **({"part": part} if parts else {})})
            self._fill += n
            pos += n
            part += 1
        self.frames_written += len(frames)
        self.episodes_written += 1

    def _flush_shard(self) -> None:
        if self._fill == 0:
            return
        k = len(self.index["shards"])
        shard = {"file": f"shard_{k:05d}.npy", "frames": self._fill, "actions": None}
        frames, actions = self._buf[: self._fill], self._buf_actions[: self._fill]
        _atomic_write(self.folder / shard["file"], lambda f: np.lib.format.write_array(f, frames, allow_pickle=False))
        if self._has_actions:
            shard["actions"] = f"actions_{k:05d}.npy"
            _atomic_write(self.folder / shard["actions"], lambda f: np.lib.format.write_array(f, actions, allow_pickle=False))
        self.index["shards"].append(shard)
        self.index["episodes"].extend(self._pending)
        try:
            self._write_index()
        except BaseException:
            self.index["shards"].pop()
            del self.index["episodes"][len(self.index["episodes"]) - len(self._pending):]
            raise
        self._pending, self._fill, self._has_actions = [], 0, False
        self._buf_actions[:] = -1

    def _write_index(self) -> None:
        text = json.dumps(self.index, indent=1)
        _atomic_write(self.folder / INDEX_NAME, lambda f: f.write(text.encode("utf-8")))

    def close(self) -> None:
        """Write the last (partial) shard and the index."""
        self._flush_shard()
        self._write_index()

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
            return
        try:  # keep the complete episodes; never let a second failure hide the first one
            self.close()
        except Exception:
            pass



class ClipDataset:
    """Clips of `clip_len` consecutive frames of one split; a clip never crosses an episode boundary.

    Clip i is identified by (episode, offset): the clips of episode e are numbered consecutively,
    episodes in index order. `levels` keeps only episodes whose level is in it (e.g. range(0, 500)).
    """

    def __init__(self, folder: str | os.PathLike[str] | Dataset, split: str = "train", clip_len: int = 16,
                 levels: Iterable[int] | None = None, allow_empty: bool = False):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if clip_len < 1:
            raise ValueError(f"clip_len must be >= 1, got {clip_len}")
        self.data = folder if isinstance(folder, Dataset) else open_dataset(folder)
        self.split, self.clip_len = split, int(clip_len)
        keep_levels = None if levels is None else (levels if isinstance(levels, range) else set(levels))
        eps = [e for e, ep in enumerate(self.data.episodes)
               if ep["split"] == split and ep["length"] >= clip_len
               and (keep_levels is None or (ep["level"] is not None and ep["level"] in keep_levels))]
        self.episode_ids = np.asarray(eps, np.int64)  # (E,) indices into data.episodes
        counts = np.asarray([self.data.episodes[e]["length"] - clip_len + 1 for e in eps], np.int64)
        self._first_clip = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)  # (E + 1,)
        if len(self) == 0 and not allow_empty:
            raise BadDataError(f"{self.data.folder}: no {split} clips of {clip_len} frames"
                               f"{'' if levels is None else ' in the requested levels'} (episodes: "
                               f"{sum(ep['split'] == split for ep in self.data.episodes)}); add {split} data or use shorter clips")

    @property
    def frame_size(self) -> tuple[int, int]:
        return self.data.frame_size

    def __len__(self) -> int:
        return int(self._first_clip[-1])

    def _locate(self, i: int) -> tuple[int, int]:
        """(episode index in the dataset, first frame's offset inside that episode) of clip i."""
        i = int(i)
        if not 0 <= i < len(self):
            raise IndexError(f"clip {i} out of range [0, {len(self)})")
        k = int(np.searchsorted(self._first_clip, i, side="right")) - 1
        return int(self.episode_ids[k]), i - int(self._first_clip[k])

    def __getitem__(self, i: int) -> np.ndarray:  # (T, H, W, 3) uint8, a copy
        e, off = self._locate(i)
        ep = self.data.episodes[e]
        start = ep["start"] + off
        return np.array(self.data.frames(ep["shard"])[start: start + self.clip_len])

    def actions(self, i: int) -> np.ndarray:  # (T-1,) int64 true actions, -1 where unknown; evaluation only
        e, off = self._locate(i)
        ep = self.data.episodes[e]
        acts = self.data.actions(ep["shard"])
        if acts is None:
            return np.full((self.clip_len - 1,), -1, np.int64)
        start = ep["start"] + off
        return np.asarray(acts[start: start + self.clip_len - 1], np.int64)

    def episode_of(self, i: int) -> int:
        """Index of clip i's episode in the dataset's episode list (index.json order)."""
        return self._locate(i)[0]

    def level_of(self, i: int) -> int | None:
        return self.data.episodes[self._locate(i)[0]]["level"]

    def sample_indices(self, n: int, seed: int, step: int, rank: int = 0, world_size: int = 1) -> np.ndarray:
        """n clip indices for (seed, step, rank): a pure function, so a resumed run continues exactly.

        All ranks draw the same global batch of n * world_size clips (without replacement when the
        dataset is large enough) and each takes its own slice, so ranks get disjoint clips and the
        union equals a single process's batch of n * world_size.
        """
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside [0, {world_size})")
        if len(self) == 0:
            raise BadDataError(f"{self.data.folder}: no {self.split} clips of {self.clip_len} frames to sample")
        total = n * world_size
        rng = np.random.default_rng([int(seed), int(step)])
        picks = rng.choice(len(self), size=total, replace=len(self) < total)
        return np.asarray(picks[rank * n: (rank + 1) * n], np.int64)

    def spread_indices(self, n: int) -> np.ndarray:
        """n clip indices evenly spread over the split (deterministic; for evaluation), fewer if len < n."""
        n = min(n, len(self))
        return np.unique(np.linspace(0, len(self) - 1, n).round().astype(np.int64)) if n else np.zeros(0, np.int64)
