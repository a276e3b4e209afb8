"""Import videos, animated GIF/WebP files and folders of numbered images into a dataset.

One source (a file, or a folder of still images) becomes one episode. Frames are centre-cropped to
a square and resized to `size` x `size` (Pillow, LANCZOS). With `fps`, frames are resampled by
their time stamps: output frame k shows the source frame on screen at time k / fps (frames are
dropped or repeated). Folders of still images carry no time stamps and are taken as they are.

Bad data never stops an import: each unusable source (unreadable, corrupt, no video stream, fewer
than `min_frames` frames) gets one line on stderr and is skipped; the rest is imported, and a count
ends the run. Images of different sizes in one folder are each cropped and resized (with a one-line
note), since cropping to a square makes them uniform anyway. Sources already in the dataset (same
resolved path) are skipped, so re-running an interrupted import finishes it.

Held-out split, by source: a source is held out when a hash of its file name falls below
`heldout_fraction` (stable whatever else is imported); if that picks none among two or more new
sources, the one with the smallest hash is held out. A single new source is split in time instead:
its last `heldout_fraction` of frames becomes a held-out episode when both parts are long enough.
Decoded frames of a source are held in memory at the output size (12 KB per 64x64 frame).
"""
from __future__ import annotations

import hashlib
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageSequence
from tqdm import tqdm

from ..errors import BadDataError
from .data import DatasetWriter

VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".mov", ".avi", ".m4v", ".mpg", ".mpeg", ".ogv")
ANIMATION_SUFFIXES = (".gif", ".webp", ".apng")
STILL_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


class SkipSource(Exception):
    """This source cannot be used; the message says why (one line)."""


@dataclass
class ImportReport:
    imported: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    already_present: list[str] = field(default_factory=list)
    frames: int = 0
    heldout_sources: list[str] = field(default_factory=list)  # imported sources held out whole
    heldout_frames: int = 0  # frames that went to the held-out split

    def summary(self) -> str:
        total = len(self.imported) + len(self.skipped)
        text = f"imported {len(self.imported)} of {total} sources ({self.frames} frames), {len(self.skipped)} skipped"
        return text + (f", {len(self.already_present)} already in the dataset" if self.already_present else "")


def natural_key(path: Path) -> list[object]:
    """frame2.png before frame10.png."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def find_sources(paths: Sequence[str | Path]) -> list[Path]:
    """Expand the given paths: files are sources; a folder of still images (and no videos) is one
    source; folders holding videos or animations are searched recursively (their stills ignored)."""
    found: list[Path] = []
    for p in map(Path, paths):
        if not p.is_dir():
            found.append(p)
            continue
        children = sorted(p.iterdir(), key=natural_key)
        moving = [c for c in children if c.is_file() and c.suffix.lower() in VIDEO_SUFFIXES + ANIMATION_SUFFIXES]
        if not moving and any(c.suffix.lower() in STILL_SUFFIXES for c in children if c.is_file()):
            found.append(p)  # a folder of stills (and no videos) is one image sequence
        found.extend(moving)
        found.extend(s for c in children if c.is_dir() for s in find_sources([c]))
    return found


def square_resize(image: Image.Image, size: int) -> np.ndarray:  # (size, size, 3) uint8
    image = image.convert("RGB")
    w, h = image.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    image = image.resize((size, size), Image.Resampling.LANCZOS, box=(left, top, left + side, top + side),
                         reducing_gap=3.0)
    return np.asarray(image, np.uint8)


def resample(timed: Iterator[tuple[float, object]], fps: float | None) -> Iterator[object]:
    """Sample-and-hold by time stamp: for t_k = t_0 + k / fps, yield the last item with time <= t_k."""
    if fps is None:
        for _, item in timed:
            yield item
        return
    prev, t0, t_prev, k = None, 0.0, 0.0, 0
    for t, item in timed:
        if prev is None:
            t0 = t
        while prev is not None and t0 + k / fps < t - 1e-9:
            yield prev
            k += 1
        if prev is not None and t > t_prev:
            duration = t - t_prev  # the last frame is assumed to last as long as the one before it
        elif prev is None:
            duration = 1.0 / fps
        prev, t_prev = item, t
    while prev is not None and t0 + k / fps < t_prev + duration - 1e-9:
        yield prev
        k += 1


def _video_frames(path: Path) -> Iterator[tuple[float, object]]:
    try:
        import av
    except ImportError as err:
        raise BadDataError(f"importing videos needs PyAV ({err}); run `python -m pip install av`") from err
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise SkipSource("no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for i, frame in enumerate(container.decode(stream)):
            t = float(frame.pts * stream.time_base) if frame.pts is not None else i / float(stream.average_rate or 30)
            yield t, frame


def _animation_frames(path: Path) -> Iterator[tuple[float, Image.Image]]:
    with Image.open(path) as im:
        t = 0.0
        for frame in ImageSequence.Iterator(im):
            yield t, frame.convert("RGB")
            t += float(frame.info.get("duration") or 100) / 1000.0  # GIF default: 10 frames/s


def read_source(path: Path, size: int, fps: float | None, note: IO[str] | None = None) -> np.ndarray:
    """All frames of one source, cropped and resized: (L, size, size, 3) uint8."""
    if path.is_dir():
        files = sorted((c for c in path.iterdir() if c.is_file() and c.suffix.lower() in STILL_SUFFIXES), key=natural_key)
        sizes: set[tuple[int, int]] = set()
        out = []
        for f in files:
            with Image.open(f) as im:
                sizes.add(im.size)
                out.append(square_resize(im, size))
        if len(sizes) > 1 and note is not None:
            tqdm.write(f"{path}: note: images of {len(sizes)} different sizes; each is centre-cropped and resized", file=note)
    elif path.suffix.lower() in ANIMATION_SUFFIXES:
        out = [square_resize(im, size) for im in resample(_animation_frames(path), fps)]
    elif path.suffix.lower() in VIDEO_SUFFIXES:
        out = [square_resize(f.to_image(), size) for f in resample(_video_frames(path), fps)]
    elif path.suffix.lower() in STILL_SUFFIXES:
        raise SkipSource("a single image is not a video; put numbered images in a folder")
    else:
        raise SkipSource(f"unknown file type {path.suffix!r}; expected a video {VIDEO_SUFFIXES[:4]}, GIF/WebP "
                         f"or a folder of images")
    if not out:
        raise SkipSource("no frames")
    return np.stack(out)


def _hash_unit(path: Path) -> float:
    return int.from_bytes(hashlib.sha256(path.name.encode("utf-8")).digest()[:8], "big") / 2.0**64


def choose_heldout(sources: Sequence[Path], fraction: float) -> set[Path]:
    if fraction <= 0 or len(sources) < 2:
        return set()
    held = {s for s in sources if _hash_unit(s) < fraction}
    if not held:
        held = {min(sources, key=_hash_unit)}
    if len(held) == len(sources):  # keep at least one source for training
        held.discard(max(held, key=_hash_unit))
    return held


def import_paths(paths: Sequence[str | Path], writer: DatasetWriter, size: int = 64, fps: float | None = None,
                 heldout_fraction: float = 0.1, min_frames: int = 16, log: IO[str] | None = None,
                 progress: bool = True) -> ImportReport:
    """Import every source under `paths` into `writer`; never raises for a bad source (see module doc)."""
    log = sys.stderr if log is None else log
    report = ImportReport()
    sources = find_sources(paths)
    present = writer.sources()
    new = []
    for s in sources:
        (report.already_present if str(s.resolve()) in present else new).append(s)
    heldout = choose_heldout(new, heldout_fraction)
    bar = tqdm(new, desc="importing", unit="source", disable=not progress, file=log)
    for src in bar:
        key = str(src.resolve())
        try:
            frames = read_source(src, size, fps, note=log)
            if len(frames) < min_frames:
                raise SkipSource(f"too short: {len(frames)} frames, a clip needs {min_frames}")
        except SkipSource as err:
            tqdm.write(f"{src}: skipped: {err}", file=log)
            report.skipped.append(str(src))
            continue
        except BadDataError:
            raise  # a missing dependency, not a bad file: every video would fail the same way
        except Exception as err:  # corrupt or unreadable file: report it and go on with the rest
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            tqdm.write(f"{src}: skipped: cannot read ({type(err).__name__}: {reason})", file=log)
            report.skipped.append(str(src))
            continue
        cut = len(frames) - int(round(len(frames) * heldout_fraction))
        if len(new) == 1 and heldout_fraction > 0 and min(cut, len(frames) - cut) >= min_frames:
            writer.append_episode(frames[:cut], split="train", source=key)
            writer.append_episode(frames[cut:], split="heldout", source=key)
            report.heldout_frames += len(frames) - cut
        else:
            writer.append_episode(frames, split="heldout" if src in heldout else "train", source=key)
            if src in heldout:
                report.heldout_sources.append(str(src))
                report.heldout_frames += len(frames)
        report.imported.append(str(src))
        report.frames += len(frames)
    bar.close()
    splits = {ep["split"] for ep in writer.episodes()}
    for split in ("train", "heldout"):
        if report.imported and split not in splits:
            print(f"note: the dataset has no {split} episodes yet; import more sources"
                  + (" or raise --heldout-fraction" if split == "heldout" else ""), file=log)
    return report
