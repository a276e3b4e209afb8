"""The player's commands (the control keys and gamepad buttons of keymap.CONTROL_KEYS), as a
mixin of App: each `_cmd_<name>` runs one command. Also the views that take over the window for a
while (the explorer, sketch mode) and where files go. No torch.
"""
from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GenieError
from . import hud
from .explorer import Explorer
from .session import PromptList, free_path, next_steps, next_temperature
from .sketch import SketchView


class Drawing:
    """A sketch played as a prompt: the pixels and a name for the HUD. Compared by identity, so a
    prompt list can hold it beside paths."""

    def __init__(self, pixels: np.ndarray, number: int):
        self.pixels = np.array(pixels, dtype=np.uint8, copy=True)
        self.name = f"sketch {number}"

    def __str__(self) -> str:
        return self.name


class Controls:
    """Mixin of App (see app.py for the attributes it uses)."""

    # ---- control keys (named after keymap.CONTROL_KEYS) --------------------------------------------
    def _cmd_quit(self) -> None:
        self.running = False

    def _cmd_rewind(self) -> None:
        self._coast_left = 0
        self.worker.rewind()

    def _cmd_reset(self) -> None:
        self._reset(self.prompts.current)

    def _cmd_next_prompt(self) -> None:
        if len(self.prompts.items) < 2:
            self.say("no other prompt: give images on the command line or drop one onto the window")
        self._reset(self.prompts.next())

    def _cmd_pause(self) -> None:
        paused = self.held.toggle_pause()
        self.say("held-key repeat paused (Space resumes)" if paused else "held-key repeat on")

    def _cmd_hud(self) -> None:
        self.hud_visible = not self.hud_visible

    def _cmd_record(self) -> None:
        """G starts a recording in `record_format`, Shift+G in the other format; either key stops it."""
        now = time.monotonic()
        if self.recorder.active:
            self._save_recording(now)
            return
        chosen = self.options.record_format
        fmt = ("gif" if chosen == "mp4" else "mp4") if self._shift else chosen
        if fmt == "mp4" and importlib.util.find_spec("av") is None:
            from ..video import INSTALL_PYAV

            self.say(INSTALL_PYAV, hud.ERROR)
            return
        self.recorder.start(self.frame, now, "start", video_format=fmt)
        self.say(f"recording {fmt.upper()}: G stops and writes it", hud.REC)

    def _cmd_png(self) -> None:
        if self.frame is not None:
            self.writer.save_png(self.frame, self.options.record_scale)

    def _change_sampling(self, steps: int | None = None, temperature: float | None = None) -> None:
        if self.info is not None:  # the worker answers with a "sampling" result (or an error)
            self.worker.set_sampling(steps=steps, temperature=temperature)

    def _cmd_fewer_steps(self) -> None:
        self._change_sampling(steps=next_steps(self.state.steps or 25, up=False))

    def _cmd_more_steps(self) -> None:
        self._change_sampling(steps=next_steps(self.state.steps or 25, up=True))

    def _cmd_cooler(self) -> None:
        self._change_sampling(temperature=next_temperature(self.state.temperature or 1.0, up=False))

    def _cmd_hotter(self) -> None:
        self._change_sampling(temperature=next_temperature(self.state.temperature or 1.0, up=True))

    def _cmd_explorer(self) -> None:
        if self.table is None or self.frame is None:
            self.say("the explorer opens once the first frame is ready")
            return
        self.held.clear()  # queued steps still run first: the explorer starts from the state after them
        self._coast_left = 0
        self.explorer = Explorer(self.table, self.worker.explore, self.options.explore_frames, self._explore_seed)

    def _close_explorer(self) -> None:
        if self.explorer.changed:
            self.keymap = self.table.keymap()
        self._explore_seed = self.explorer.seed
        self.options.explore_frames = self.explorer.num_frames
        self.explorer = None

    def _reset(self, prompt: Any, dropped: bool = False) -> None:
        """Reset the world to a prompt; `dropped`: keep queued steps (they run before it)."""
        if not dropped:  # R / O: queued steps would be thrown away by the reset anyway; say so
            dropped_steps = self.worker.clear_pending_steps()
            if dropped_steps:
                self.say(f"reset: {dropped_steps} queued action(s) skipped")
        self._resets_pending += 1
        self._coast_left = 0
        self.worker.reset(prompt)
        if dropped:  # a drop may fail (not an image): queued steps keep their place before it
            self.say(f"loading {PromptList.describe(prompt)} ...")

    def _cmd_sketch(self) -> None:
        """E: open sketch mode on the current frame (the world keeps its state until Enter)."""
        if self.info is None or self.frame is None:
            self.say("sketch mode opens once the first frame is ready")
            return
        self.held.clear()
        self._coast_left = 0
        for name, _ in self.pads.release_all():
            self.held.release(name)
        palette = self.colours.palette() or [tuple(int(v) for v in self.frame.reshape(-1, 3).mean(0))]
        self.sketch = SketchView(self.frame, palette, self._sketch_prompt, self._save_sketch)

    def _close_sketch(self, outcome: str) -> None:
        """"play": the drawing becomes the prompt, as if dropped in; "leave": nothing changes."""
        view, self.sketch = self.sketch, None
        if outcome == "play":
            self._drawings += 1
            self._reset(Drawing(view.canvas.pixels, self._drawings), dropped=True)

    def _sketch_prompt(self) -> np.ndarray:
        """The next bundled prompt at the frame size, for P in sketch mode."""
        from ..images import load_image
        from ..paths import bundled_prompts

        prompts = bundled_prompts()
        if not prompts:
            raise GenieError("no bundled prompts are installed")
        self._sketch_prompt_index = (getattr(self, "_sketch_prompt_index", -1) + 1) % len(prompts)
        return load_image(prompts[self._sketch_prompt_index], tuple(self.info.frame_size))

    def _save_sketch(self, pixels: np.ndarray) -> None:
        def job(folder: Path) -> Path:
            from ..gif import write_png

            return write_png(free_path(folder, "genie_play-sketch", ".png"), pixels, scale=1)

        self.writer.submit(job, "saved the sketch")

    # ---- files -------------------------------------------------------------------------------------
    def _output_dir(self) -> Path:
        if self.options.record_dir is not None:
            return Path(self.options.record_dir)
        from ..paths import user_pictures_dir

        return user_pictures_dir()

    def _save_recording(self, now: float) -> None:
        rec = self.recorder.stop()
        if rec is None:
            self.say("recording stopped: no frames")
            return
        o = self.options
        self.writer.save_video(rec, now, o.record_fps, o.record_scale, o.captions, rec.video_format)

