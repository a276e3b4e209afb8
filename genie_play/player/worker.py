"""The inference thread: it alone owns the World (and torch); the UI talks to it through queues.

The UI submits commands (step, reset, rewind, sampling, explore, stop) to one FIFO, so they run in
the order they were given (1, 2, Backspace, 3 means exactly that). Steps are bounded: at most
`max_pending_steps` may wait, and `submit_step` returns False instead of queueing more, so a flood
of key presses is refused visibly rather than piling up minutes of work. Control commands are never
refused. Results come back on a second queue that the UI drains every redraw.

"Alone" matters for speed too: once a thread has run a parallel region on GNU OpenMP (torch's
intra-op threads, the play kernels), the runtime counts that thread's idle team as well, and a
region started from another thread spins only briefly before sleeping (measured: ~1.5x slower
per operation). The world is therefore built on this thread (`world_factory`) and the UI thread
runs no torch.
"""
from __future__ import annotations

import collections
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import GenieError


@dataclass
class WorldInfo:
    """What the UI needs to know about the world, as plain values."""

    num_actions: int
    frame_size: tuple[int, int]
    labels: list[str]
    world_id: str
    device_description: str
    sampling: dict
    plan: str = ""  # engine.Plan.short()
    learned_no_action: bool = False  # World.learned_no_action


@dataclass
class Result:
    """One message from the worker to the UI.

    kind: "ready" (world loaded: info), "frame" (a new current frame after reset/step/rewind),
    "explore" (frames (A, N, H, W, 3)), "sampling" (the settings in force), "error" (a message;
    play goes on), "fatal" (the world could not be loaded: error holds the exception).
    """

    kind: str
    frame: np.ndarray | None = None  # (H, W, 3) uint8
    cause: str = ""  # frames: "reset" | "step" | "rewind"; errors: the command that failed
    step: int = 0  # frames generated since the prompt
    action: int | None = None  # the action that made this frame (None for reset)
    timings: dict = field(default_factory=dict)  # ms: encode / dynamics / decode; steps: frame (wall time)
    info: WorldInfo | None = None
    frames: np.ndarray | None = None  # explore: (A, N, H, W, 3) uint8
    seed: int | None = None
    prompt: Any = None  # reset: the prompt it used (a path, or None for a blank frame)
    message: str = ""
    error: BaseException | None = None
    sampling: dict = field(default_factory=dict)


@dataclass
class _Command:
    kind: str  # "step" | "reset" | "rewind" | "sampling" | "explore"
    action: int | None = None
    image: Any = None
    steps: int | None = None
    temperature: float | None = None
    num_frames: int = 4
    seed: int = 0


class WorldWorker:
    """Owns a World on a background thread. `world_factory` builds it there (e.g. World.load)."""

    def __init__(self, world_factory: Callable[[], Any], seed: int = 0, sampling: dict | None = None,
                 max_pending_steps: int = 8, history_limit: int = 512, notify: Callable[[], None] | None = None):
        self._factory = world_factory
        self._notify = notify  # called on the worker thread after each result (the UI's wake-up)
        self.seed = int(seed)
        self._initial_sampling = dict(sampling or {})
        self.max_pending_steps = max_pending_steps
        self._history_limit = history_limit
        self._commands: collections.deque[_Command] = collections.deque()
        self._cond = threading.Condition()
        self._results: collections.deque[Result] = collections.deque()
        self._stopping = False
        self._busy = False  # a command is running right now
        self._thread = threading.Thread(target=self._run, name="genie-play-world", daemon=True)
        # worker-side play state (touched only on the worker thread)
        self._world: Any = None
        self._history: collections.deque = collections.deque(maxlen=history_limit)
        self._frame: np.ndarray | None = None
        self._step = 0
        self._last_action: int | None = None

    # ---- UI side -------------------------------------------------------------------------------
    def start(self) -> "WorldWorker":
        self._thread.start()
        return self

    @property
    def pending_steps(self) -> int:
        with self._cond:
            return sum(c.kind == "step" for c in self._commands)

    @property
    def idle(self) -> bool:
        """No command queued or running (results may still wait to be polled)."""
        with self._cond:
            return not self._commands and not self._busy

    @property
    def quiet(self) -> bool:
        """Idle and every result already polled (what tests wait for)."""
        with self._cond:
            return not self._commands and not self._busy and not self._results

    def _put(self, cmd: _Command) -> None:
        with self._cond:
            self._commands.append(cmd)
            self._cond.notify()

    def submit_step(self, action: int) -> bool:
        """Queue one step; False (nothing queued) when `max_pending_steps` already wait."""
        with self._cond:
            if self._stopping or sum(c.kind == "step" for c in self._commands) >= self.max_pending_steps:
                return False
            self._commands.append(_Command("step", action=int(action)))
            self._cond.notify()
            return True

    def reset(self, image: Any) -> None:
        """New prompt: a path, PIL image, (H, W, 3) uint8 array, an object with such an array as
        `.pixels` (a sketch), or None for a grey frame."""
        self._put(_Command("reset", image=image))

    def rewind(self) -> None:
        self._put(_Command("rewind"))

    def set_sampling(self, steps: int | None = None, temperature: float | None = None) -> None:
        self._put(_Command("sampling", steps=steps, temperature=temperature))

    def explore(self, num_frames: int, seed: int) -> None:
        """Roll every action out for num_frames from the current state; the state is unchanged."""
        self._put(_Command("explore", num_frames=int(num_frames), seed=int(seed)))

    def clear_pending_steps(self) -> int:
        with self._cond:
            before = len(self._commands)
            self._commands = collections.deque(c for c in self._commands if c.kind != "step")
            return before - len(self._commands)

    def poll(self) -> list[Result]:
        """Every result produced since the last poll, oldest first (never blocks)."""
        out = []
        while True:
            try:
                out.append(self._results.popleft())
            except IndexError:
                return out

    def stop(self, timeout: float = 30.0) -> bool:
        """Drop queued commands, finish the one running, join the thread. True if it ended."""
        with self._cond:
            self._stopping = True
            self._commands.clear()
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # ---- worker side ---------------------------------------------------------------------------
    def _emit(self, result: Result) -> None:
        self._results.append(result)
        if self._notify is not None:
            self._notify()

    def _run(self) -> None:
        try:
            self._world = self._factory()
            if self._initial_sampling:
                self._world.sampling = {**self._world.sampling, **self._initial_sampling}
            w = self._world
            self._emit(Result("ready", info=WorldInfo(
                num_actions=int(w.num_actions), frame_size=tuple(w.frame_size), labels=list(w.labels),
                world_id=str(w.world_id), device_description=str(w.device_description),
                sampling=dict(w.sampling), plan=str(w.plan.short()), learned_no_action=bool(w.learned_no_action))))
        except BaseException as err:  # noqa: BLE001 -- reported to the UI, which ends the app
            if not isinstance(err, GenieError):
                traceback.print_exc()
            self._emit(Result("fatal", error=err, message=str(err)))
            return
        while True:
            with self._cond:
                while not self._commands and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    break
                cmd = self._commands.popleft()
                self._busy = True
            try:
                self._handle(cmd)
            except GenieError as err:
                self._emit(Result("error", message=str(err), cause=cmd.kind))
            except Exception as err:  # noqa: BLE001 -- keep playing; show it, log the traceback
                traceback.print_exc()
                self._emit(Result("error", message=f"internal error in {cmd.kind}: {type(err).__name__}: {err}",
                                  cause=cmd.kind))
            finally:
                with self._cond:
                    self._busy = False

    def _frame_result(self, cause: str, **extra: Any) -> Result:
        return Result("frame", frame=self._frame, cause=cause, step=self._step, action=self._last_action,
                      timings=dict(getattr(self._world, "last_timings", {}) or {}), **extra)

    def _handle(self, cmd: _Command) -> None:
        w = self._world
        if cmd.kind == "step":
            if self._frame is None:
                raise GenieError("no prompt yet: drop an image onto the window")
            before = (w.snapshot(), self._frame, self._step, self._last_action)
            t0 = time.perf_counter()
            self._frame = w.step(cmd.action)
            frame_ms = (time.perf_counter() - t0) * 1000.0
            self._history.append(before)
            self._step += 1
            self._last_action = cmd.action
            result = self._frame_result("step")
            result.timings["frame"] = frame_ms  # wall time of the whole step (the HUD's world rate)
            self._emit(result)
        elif cmd.kind == "reset":
            image = getattr(cmd.image, "pixels", cmd.image)  # a sketch (player.controls.Drawing) plays its pixels
            if image is None:  # no prompt anywhere: start from a plain grey frame
                h, w_ = w.frame_size
                image = np.full((h, w_, 3), 128, np.uint8)
            snap = w.snapshot() if self._frame is not None else None
            try:
                w.seed(self.seed)  # seed, then reset, as World.rollout: same prompt + actions -> same frames
                frame = w.reset(image)  # BadImageError for a file that is no usable image
            except BaseException:
                if snap is not None:  # play goes on exactly where it was (RNG included)
                    w.restore(snap)
                raise
            self._frame, self._step, self._last_action = frame, 0, None
            self._history.clear()
            self._emit(self._frame_result("reset", prompt=cmd.image))
        elif cmd.kind == "rewind":
            if not self._history:
                self._emit(Result("error", message="already at the prompt: nothing to rewind", cause="rewind"))
                return
            snap, self._frame, self._step, self._last_action = self._history.pop()
            w.restore(snap)
            self._emit(self._frame_result("rewind"))
        elif cmd.kind == "sampling":
            new = dict(w.sampling)
            if cmd.steps is not None:
                new["steps"] = int(cmd.steps)
            if cmd.temperature is not None:
                new["temperature"] = float(cmd.temperature)
            w.sampling = new
            self._emit(Result("sampling", sampling=dict(w.sampling)))
        elif cmd.kind == "explore":
            if self._frame is None:
                raise GenieError("no prompt yet: drop an image onto the window")
            t0 = time.perf_counter()
            # one batch of every action from the current state, with this seed; World.explore
            # leaves the play state (and its RNG) as it was
            frames = np.asarray(w.explore(num_frames=cmd.num_frames, seed=cmd.seed))  # (A, N, H, W, 3)
            ms = (time.perf_counter() - t0) * 1000.0
            self._emit(Result("explore", frames=frames, seed=cmd.seed, frame=self._frame,
                              timings={"explore": ms}))
        else:  # pragma: no cover -- programming error
            raise ValueError(f"unknown command {cmd.kind}")
