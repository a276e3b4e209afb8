"""Rollouts -> H.264 MP4 files through PyAV (the `video` extra), written atomically.

`write_mp4` writes exactly T frames, each shown for its own duration (real play timing: the file
has a variable frame rate on a millisecond clock), upscaled by nearest neighbour like the GIFs and
optionally captioned (gif.render_frames draws both). H.264 needs even sides, so an odd height or
width gains one row or column copied from its edge. The file appears at its final path only once
complete (fileio.atomic_path: temp file beside it, fsync, os.replace), so a full disk or a kill
keeps any earlier file at that path. Without PyAV, `require_pyav()` raises a one-line
BadSettingError that says how to install it.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np

from .fileio import atomic_path
from .errors import BadSettingError, OutputError, one_line_reason
from .gif import DEFAULT_FPS, render_frames

VIDEO_FORMATS = ("gif", "mp4")
INSTALL_PYAV = ("MP4 video needs PyAV: install it with `pip install \"genie-play[video]\"` (or `pip install av`), "
                "or record a GIF instead")
_CLOCK = Fraction(1, 1000)  # timestamps in milliseconds: real frame timing, not a fixed rate
_MIN_FRAME_MS = 1


def pyav_available() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def require_pyav():
    """The `av` module, or BadSettingError(INSTALL_PYAV) when PyAV is not installed."""
    try:
        import av
    except ImportError as err:
        raise BadSettingError(INSTALL_PYAV) from err
    return av


def frame_durations_ms(count: int, fps: float | None, durations_ms: Sequence[int] | None) -> list[int]:
    """One whole-millisecond duration per frame: `durations_ms` as given, else 1000/fps each."""
    if durations_ms is not None:
        if len(durations_ms) != count:
            raise ValueError(f"got {len(durations_ms)} durations for {count} frames")
        return [max(_MIN_FRAME_MS, int(round(d))) for d in durations_ms]
    fps = DEFAULT_FPS if fps is None else float(fps)
    if not fps > 0 or fps != fps:
        raise ValueError(f"fps must be positive, got {fps}")
    # cumulative rounding so that e.g. 30 fps keeps its average instead of drifting to 33 ms
    ends = [int(round((i + 1) * 1000.0 / fps)) for i in range(count)]
    return [max(_MIN_FRAME_MS, b - a) for a, b in zip([0] + ends[:-1], ends)]


def _even_sides(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) with H and W made even by repeating the last row / column (H.264 4:2:0)."""
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return np.ascontiguousarray(frames)


def encode_mp4(target: Path, frames: np.ndarray, durations_ms: Sequence[int], crf: int = 18) -> None:
    """Encode (T, H, W, 3) uint8 frames with even sides to an H.264 MP4 at `target` (any suffix)."""
    av = require_pyav()
    with av.open(str(target), mode="w", format="mp4", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=1000)
        stream.width, stream.height = int(frames.shape[2]), int(frames.shape[1])
        stream.pix_fmt = "yuv420p"
        stream.time_base = _CLOCK
        stream.codec_context.time_base = _CLOCK
        # no B-frames: packets leave in display order, so each gets its frame's own duration and the
        # file lasts exactly sum(durations) (the last frame too)
        stream.options = {"crf": str(int(crf)), "preset": "veryfast", "bf": "0"}
        duration_at: dict[int, int] = {}
        pts = 0
        for image, duration in zip(frames, durations_ms):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = pts, _CLOCK
            duration_at[pts] = int(duration)
            pts += int(duration)
            _mux(container, stream.encode(frame), duration_at)
        _mux(container, stream.encode(None), duration_at)  # flush the encoder's delayed frames


def _mux(container, packets, duration_at: dict[int, int]) -> None:
    for packet in packets:
        if packet.pts is not None and packet.pts in duration_at:
            packet.duration = duration_at[packet.pts]
        container.mux(packet)


def write_mp4(
    path: str | Path,
    frames: np.ndarray,
    fps: float | None = DEFAULT_FPS,
    durations_ms: Sequence[int] | None = None,
    scale: int = 1,
    captions: Sequence[str] | None = None,
) -> Path:
    """Write (T, H, W, 3) uint8 frames as an H.264 MP4 of exactly T frames, atomically.

    `durations_ms` (one per frame: real timing) overrides `fps`. `scale` upscales by nearest
    neighbour; `captions` adds a text strip under each frame. Without PyAV: BadSettingError saying
    how to install it (checked before anything is written). An unwritable folder, a full disk or an
    encoder failure: OutputError, and any earlier file at `path` is kept.
    """
    av = require_pyav()
    rendered = _even_sides(render_frames(frames, scale, captions))
    durations = frame_durations_ms(len(rendered), fps, durations_ms)
    path = Path(path).expanduser()
    try:
        with atomic_path(path) as tmp:
            encode_mp4(tmp, rendered, durations)
    except av.FFmpegError as err:  # FFmpeg's OSErrors (disk full, ...) are OutputErrors from atomic_path
        raise OutputError(f"{path}: the video encoder failed ({one_line_reason(err)})") from err
    return path


def read_video_frames(path: str | Path) -> tuple[np.ndarray, list[float]]:
    """Decode a video file -> ((T, H, W, 3) uint8 frames, each frame's start time in seconds).
    For tests and checks; needs PyAV."""
    av = require_pyav()
    frames, times = [], []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            times.append(float(frame.time) if frame.time is not None else float("nan"))
    return np.stack(frames), times
