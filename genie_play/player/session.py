"""Play state that needs neither pygame nor torch: held keys, recording, prompts, frame rate.

Kept apart from app.py so the input rules can be tested without a window:
- a key press always becomes one step (latched), however short the tap and however slow the frame;
- a key still held after `repeat_delay` repeats its action, one step at a time (a new step is only
  asked for when the worker is idle, so repeats never pile up), unless repeat is paused;
- recordings keep each displayed frame with the time it appeared and a caption.
"""
from __future__ import annotations

import collections
import os
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GenieError, one_line_reason


DEFAULT_COAST_FRAMES = 6  # frames played with no action after a release: a tapped jump lands in about 5


class HeldKeys:
    """Keys held down (from KEYDOWN/KEYUP events: pygame.key.get_pressed() misses posted events)."""

    def __init__(self, repeat_delay: float = 0.3):
        self.repeat_delay = repeat_delay
        self.paused = False
        self._held: dict[str, tuple[int, float]] = {}  # key name -> (action, time pressed), in press order

    def press(self, key: str, action: int, now: float) -> None:
        self._held.pop(key, None)
        self._held[key] = (action, now)

    def release(self, key: str) -> None:
        self._held.pop(key, None)

    def clear(self) -> None:
        self._held.clear()

    @property
    def holding(self) -> bool:
        """Some key is down."""
        return bool(self._held)

    def toggle_pause(self) -> bool:
        self.paused = not self.paused
        return self.paused

    def repeat_action(self, now: float) -> int | None:
        """The action to repeat now: the most recently pressed key still held long enough."""
        if self.paused or not self._held:
            return None
        action, pressed_at = next(reversed(self._held.values()))
        return action if now - pressed_at >= self.repeat_delay else None


@dataclass
class Recording:
    """Frames shown since G was pressed, with the time each appeared and its caption."""

    video_format: str = "gif"  # "gif" | "mp4": what it is saved as
    frames: list[np.ndarray] = field(default_factory=list)  # each (H, W, 3) uint8
    times: list[float] = field(default_factory=list)
    captions: list[str] = field(default_factory=list)

    def add(self, frame: np.ndarray, now: float, caption: str) -> None:
        self.frames.append(np.asarray(frame, dtype=np.uint8))
        self.times.append(now)
        self.captions.append(caption)

    def durations_ms(self, end: float, last_ms: float = 500.0) -> list[int]:
        """Real timing: how long each frame stayed on screen (the last one: until stop, capped)."""
        ends = self.times[1:] + [min(end, self.times[-1] + last_ms / 1000.0)]
        return [max(20, int(round((b - a) * 1000.0))) for a, b in zip(self.times, ends)]

    def array(self) -> np.ndarray:
        return np.stack(self.frames)  # (T, H, W, 3)


class Recorder:
    """G toggles it; capped so a forgotten recording cannot eat all memory."""

    def __init__(self, max_frames: int = 3000):
        self.max_frames = max_frames
        self.current: Recording | None = None

    @property
    def active(self) -> bool:
        return self.current is not None

    def start(self, frame: np.ndarray | None, now: float, caption: str = "start", video_format: str = "gif") -> None:
        self.current = Recording(video_format=video_format)
        if frame is not None:
            self.current.add(frame, now, caption)

    def add(self, frame: np.ndarray, now: float, caption: str) -> bool:
        """Record a frame; False when the cap is reached (the caller should stop and save)."""
        if self.current is None:
            return True
        self.current.add(frame, now, caption)
        return len(self.current.frames) < self.max_frames

    def stop(self) -> Recording | None:
        rec, self.current = self.current, None
        return rec if rec and rec.frames else None


class FileWriter:
    """Writes GIFs and PNGs off the UI thread (a long GIF takes ~1 s) and reports where they went.

    If the chosen folder cannot be written (missing permission, a file in the way, a full disk),
    the file goes to `fallback` (a genie-play folder in the system's temp dir) instead and the
    message says both what went wrong and where the file is: a recording is never just lost.
    """

    def __init__(self, folder: Callable[[], Path], fallback: Callable[[], Path] | None = None):
        self._folder = folder  # called at write time: the user's pictures folder may be created late
        self._fallback = fallback or default_fallback_dir
        self._threads: list[threading.Thread] = []
        self.messages: collections.deque[tuple[bool, str]] = collections.deque()  # (ok, text)

    def submit(self, job: Callable[[Path], Path], what: str) -> None:
        """Run job(folder) -> written path on a thread; its outcome lands in `messages`."""

        def run() -> None:
            try:
                self.messages.append(self._write(job, what))
            except Exception as err:  # noqa: BLE001 -- show it; the player keeps running
                self.messages.append((False, f"could not write the file: {type(err).__name__}: {err}"))

        thread = threading.Thread(target=run, name="genie-play-writer", daemon=False)
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def _write(self, job: Callable[[Path], Path], what: str) -> tuple[bool, str]:
        folder = None
        try:
            folder = Path(self._folder())
            return True, f"{what}: {job(_ready_folder(folder))}"
        except OSError as err:  # OutputError is a GenieError; these are the folder's own errors
            problem = f"{folder} is not writable ({one_line_reason(err)})" if folder is not None else one_line_reason(err)
        except GenieError as err:
            problem = str(err)
        try:
            spare = _ready_folder(Path(self._fallback()))
            if folder is not None and spare.resolve() == folder.resolve():
                raise OSError(problem)
            written = job(spare)
        except (OSError, GenieError):
            return False, f"could not save: {problem}; choose a writable folder with --record-dir"
        return False, f"{problem}; {what} to {written} instead (choose a folder with --record-dir)"

    def save_gif(self, rec: Recording, now: float, fps: float | None, scale: int, captions: bool) -> None:
        self.save_video(rec, now, fps, scale, captions, "gif")

    def save_video(self, rec: Recording, now: float, fps: float | None, scale: int, captions: bool,
                   video_format: str = "gif") -> None:
        """Write a recording as "gif" or "mp4" (H.264 through PyAV) with the frames' real timing
        (or `fps` when given); same folder, fallback and atomicity for both."""
        frames = rec.array()  # (T, H, W, 3)
        durations = None if fps else rec.durations_ms(now)
        texts = rec.captions if captions else None
        kind = "MP4" if video_format == "mp4" else "GIF"

        def job(folder: Path) -> Path:
            if video_format == "mp4":
                from ..video import write_mp4 as write
            else:
                from ..gif import write_gif as write
            return write(free_path(folder, "genie_play", f".{video_format}"), frames, fps=fps,
                         durations_ms=durations, scale=scale, captions=texts)

        self.submit(job, f"saved {kind} ({len(frames)} frames)")

    def save_png(self, frame: np.ndarray, scale: int) -> None:
        def job(folder: Path) -> Path:
            from ..gif import write_png

            return write_png(free_path(folder, "genie_play-frame", ".png"), frame, scale=scale)

        self.submit(job, "saved PNG")

    def join(self) -> None:
        for t in self._threads:
            t.join()


class PromptList:
    """The prompts O cycles through: command-line images first, then the bundled ones."""

    def __init__(self, prompts: Sequence[Any]):
        self.items: list[Any] = list(dict.fromkeys(prompts)) or [None]  # None: a plain grey frame
        self.index = 0

    @property
    def current(self) -> Any:
        return self.items[self.index]

    def next(self) -> Any:
        self.index = (self.index + 1) % len(self.items)
        return self.current

    def use(self, prompt: Any) -> None:
        """Make a prompt (e.g. a dropped file that loaded) current, adding it after the current one."""
        if prompt in self.items:
            self.index = self.items.index(prompt)
            return
        if self.items == [None]:
            self.items, self.index = [prompt], 0
            return
        self.index += 1
        self.items.insert(self.index, prompt)

    @staticmethod
    def describe(prompt: Any) -> str:
        if prompt is None:
            return "grey frame"
        if isinstance(prompt, (str, os.PathLike)):
            return Path(prompt).name
        if hasattr(prompt, "pixels"):  # a sketch played from sketch mode
            return str(prompt)
        return "image"


class RateMeter:
    """Frames per second over the last `window` seconds (the display rate: how often new frames
    reached the screen, which is lower than the world's rate when keys are only tapped)."""

    def __init__(self, window: float = 2.0):
        self.window = window
        self._times: collections.deque[float] = collections.deque()

    def tick(self, now: float) -> None:
        self._times.append(now)

    def rate(self, now: float) -> float | None:
        """Frames per second, or None when fewer than two frames arrived in the window."""
        while self._times and now - self._times[0] > self.window:
            self._times.popleft()
        if len(self._times) < 2:
            return None
        return (len(self._times) - 1) / max(1e-6, self._times[-1] - self._times[0])


class FrameTimer:
    """The world's own speed: the mean wall time of its last `keep` generated frames.

    Measured by the worker around each `World.step` call, so it says how fast the world *can* make
    frames whether keys are held or tapped; None only before the first frame is made."""

    def __init__(self, keep: int = 8):
        self._ms: collections.deque[float] = collections.deque(maxlen=keep)

    def add(self, frame_ms: float) -> None:
        if frame_ms > 0:
            self._ms.append(float(frame_ms))

    def ms_per_frame(self) -> float | None:
        return sum(self._ms) / len(self._ms) if self._ms else None

    def rate(self) -> float | None:
        ms = self.ms_per_frame()
        return None if ms is None else 1000.0 / ms


def default_fallback_dir() -> Path:
    return Path(tempfile.gettempdir()) / "genie-play"


def _ready_folder(folder: Path) -> Path:
    """Create the folder; OSError (e.g. a file in the way, no permission) if it cannot be."""
    folder.mkdir(parents=True, exist_ok=True)
    if not folder.is_dir():
        raise NotADirectoryError(20, "Not a directory", str(folder))
    return folder


def free_path(folder: Path, stem: str, suffix: str) -> Path:
    """folder/stem.suffix, or stem-2, stem-3, ... so earlier recordings are never overwritten."""
    folder = Path(folder)
    candidate = folder / f"{stem}{suffix}"
    n = 2
    while candidate.exists():
        candidate = folder / f"{stem}-{n}{suffix}"
        n += 1
    return candidate


STEP_LADDER = (1, 2, 3, 4, 6, 8, 10, 12, 16, 20, 25, 32, 50, 64, 100)


def next_steps(current: int, up: bool) -> int:
    """MaskGIT steps one rung up or down the ladder (- and = keys)."""
    if up:
        return next((s for s in STEP_LADDER if s > current), STEP_LADDER[-1])
    return next((s for s in reversed(STEP_LADDER) if s < current), STEP_LADDER[0])


def next_temperature(current: float, up: bool, lo: float = 0.1, hi: float = 3.0) -> float:
    """Temperature 0.1 up or down ([ and ] keys), kept in [lo, hi]."""
    return round(min(hi, max(lo, current + (0.1 if up else -0.1))), 2)
