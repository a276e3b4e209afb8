"""The player window: event loop, drawing, drag-and-drop, recording. Knows nothing about torch.

One `App.tick()` = read events, take the worker's results, maybe repeat a held key, redraw. The
loop redraws at `redraw_hz` (60) while the world is idle. While it generates a frame, the loop
sleeps until something happens (a key, a result: the worker posts a wake-up event) or at most
1/`busy_hz` s: the world's threads use every core, and a UI thread waking 60 times a second
preempted them (on 2 cores it made play ~1.5x slower than the same world alone, see
benchmarks/bench_player.py). Tests drive it tick by tick with SDL_VIDEODRIVER=dummy and
`pygame.event.post`.
"""
from __future__ import annotations

import collections
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")  # before pygame is imported: no banner
import pygame  # noqa: E402

from ..labels import NO_ACTION, ActionLabels  # noqa: E402
from . import hud  # noqa: E402
from .canvas import ColourCounter  # noqa: E402
from .controls import Controls  # noqa: E402
from .explorer import Explorer  # noqa: E402
from .gamepad import Gamepads  # noqa: E402
from ..keymap import canonical_key, control_command  # noqa: E402
from .options import PlayOptions, open_window  # noqa: E402,F401 -- PlayOptions is part of this module's API
from .session import DEFAULT_COAST_FRAMES, FileWriter, FrameTimer, HeldKeys, PromptList, RateMeter, Recorder  # noqa: E402
from .sketch import SketchView  # noqa: E402
from .worker import Result, WorldWorker  # noqa: E402

_PAD_ARROWS = {f"pad:{part}_{d}": d for part in ("dpad", "lstick") for d in ("left", "right", "up", "down")}
_PAD_ARROWS["pad:south"] = "up"  # the south button jumps


class App(Controls):
    def __init__(self, world_factory: Callable[[], Any], prompts: Sequence[Any] = (),
                 options: PlayOptions | None = None):
        self.options = options or PlayOptions()
        self.prompts = PromptList(prompts)
        self._wake_event = pygame.event.custom_type()
        self.worker = WorldWorker(world_factory, seed=self.options.seed, max_pending_steps=self.options.max_queued,
                                  sampling={k: v for k, v in (("steps", self.options.steps),
                                                              ("temperature", self.options.temperature)) if v is not None},
                                  notify=self._wake)
        self.held = HeldKeys(self.options.repeat_delay)
        self.recorder = Recorder()
        self.meter = RateMeter()  # new frames shown per second
        self.frame_timer = FrameTimer()  # the world's time per generated frame
        self.state = hud.HudState(world_name=self.options.world_name, seed=self.options.seed)
        self.info = None  # WorldInfo once the world is loaded
        self.table: ActionLabels | None = None
        self.keymap = None
        self.frame = None  # (H, W, 3) uint8 shown now
        self._surface: pygame.Surface | None = None
        self.explorer: Explorer | None = None
        self.sketch: SketchView | None = None  # sketch mode (E), while open
        self.colours = ColourCounter()  # colours of the frames the world decoded: the sketch palette
        self._drawings = 0
        self.pads = Gamepads()
        self._explore_seed = self.options.seed
        self.hud_visible = True
        self.running = False
        self.fatal: BaseException | None = None
        self.frames_drawn = 0
        self._early_keys: collections.deque[str] = collections.deque()
        self._resets_pending = 0
        self._failed_prompts = 0
        self._last_repeat = 0.0
        self._coast_frames = 0  # frames played with no action after a release (set when the world loads)
        self._coast_left = 0  # of those, still to play since the last key press
        self.writer = FileWriter(self._output_dir)
        self.message, self._message_colour, self._message_until = "", hud.TEXT, 0.0
        self.screen: pygame.Surface | None = None
        self._waited: list[pygame.event.Event] = []  # an event that ended a wait, handled next tick
        self._shift = False  # Shift was held with the key being handled

    # ---- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> "App":
        side = 64 * max(1, self.options.scale)  # sized for 64x64 worlds; others scale to fit
        self.screen = open_window((side + hud.PANEL_WIDTH, max(side, 480)), f"genie-play - {self.options.world_name}")
        self.font = pygame.font.Font(None, 20)
        self.big_font = pygame.font.Font(None, 30)
        self.clock = pygame.time.Clock()
        self.pads.start()
        self.worker.start()
        self._reset(self.prompts.current)
        self.running = True
        return self

    def run(self, max_frames: int | None = None) -> int:
        """The main loop; returns 0 on a clean quit. Re-raises a world that failed to load."""
        if self.screen is None:
            self.start()
        try:
            while self.tick():
                if max_frames is not None and self.frames_drawn >= max_frames:
                    break
        finally:
            self.close()
        if self.fatal is not None:
            raise self.fatal
        return 0

    def close(self) -> None:
        """Stop the worker (joined), finish writing files, close the window."""
        self.running = False
        self.worker.stop()
        self.writer.join()
        if pygame.display.get_init():
            pygame.display.quit()

    def tick(self) -> bool:
        """One frame of the UI. False once the app should quit."""
        now = time.monotonic()
        events, self._waited = self._waited + pygame.event.get(), []
        for event in events:
            if event.type != self._wake_event:
                self._on_event(event, now)
        for result in self.worker.poll():
            self._on_result(result, now)
        while self.writer.messages:
            ok, text = self.writer.messages.popleft()
            self.say(text, hud.OK if ok else hud.ERROR)
        self._maybe_repeat(now)
        if self.running:
            self._draw(now)
            pygame.display.flip()
            self.frames_drawn += 1
            self._pace()
        return self.running

    def _wake(self) -> None:
        """Worker thread: a result is ready; end the UI's wait (SDL's event queue is thread-safe)."""
        if pygame.display.get_init():
            try:
                pygame.event.post(pygame.event.Event(self._wake_event))
            except pygame.error:  # the queue is full: the UI is awake anyway
                pass

    def _pace(self) -> None:
        """Wait before the next tick: 1/redraw_hz while the world is idle (or the explorer animates),
        else until an event or a result arrives, at most 1/busy_hz."""
        if self.explorer is not None or self.sketch is not None or self.worker.idle:
            self.clock.tick(self.options.redraw_hz)
            return
        event = pygame.event.wait(max(1, int(1000 / self.options.busy_hz)))
        if event.type != pygame.NOEVENT:
            self._waited.append(event)
        self.clock.tick()  # keep the clock's bookkeeping (no wait)

    def say(self, text: str, colour: tuple = hud.TEXT) -> None:
        self.message, self._message_colour = text, colour
        self._message_until = time.monotonic() + self.options.message_seconds

    def settled(self) -> bool:
        """Nothing left to do: the world is loaded, every command ran and its result is shown, and
        it is not coasting."""
        return (self.info is not None and self.worker.quiet and not self._early_keys
                and not self._resets_pending and self.frame is not None and not self._coasting())

    def _coasting(self) -> bool:
        """Every key is up and the world still has frames to play with no action."""
        return self._coast_left > 0 and not self.held.holding and not self.held.paused

    def wait_for_files(self) -> None:
        """Block until every GIF/PNG being written is on disk (tests, and quitting)."""
        self.writer.join()

    # ---- events ------------------------------------------------------------------------------------
    def _on_event(self, event: pygame.event.Event, now: float) -> None:
        if event.type == pygame.QUIT:
            self.running = False
        elif self.sketch is not None:  # every key and click belongs to the canvas
            if event.type == pygame.DROPFILE:
                self._close_sketch("leave")
                self._reset(event.file, dropped=True)
            elif self.pads.handle(event) is None:
                outcome = self.sketch.handle_event(event)
                if outcome is not None:
                    self._close_sketch(outcome)
        elif event.type == pygame.DROPFILE:
            if self.explorer is not None:
                self._close_explorer()
            self._reset(event.file, dropped=True)
        elif (changes := self.pads.handle(event)) is not None:
            self._on_pad(changes, now)
        elif self.explorer is not None:
            if not self.explorer.handle_event(event):
                self._close_explorer()
        elif event.type == pygame.KEYDOWN:
            self._shift = bool(getattr(event, "mod", 0) & pygame.KMOD_SHIFT)
            self._key_down(canonical_key(pygame.key.name(event.key)), now)
        elif event.type == pygame.KEYUP:
            self.held.release(canonical_key(pygame.key.name(event.key)))

    def _on_pad(self, changes: list[tuple[str, bool]], now: float) -> None:
        """Gamepad input changes, played like keys; hot-plug news shown on screen."""
        for text in self.pads.messages:
            self.say(text, hud.ERROR if "could not" in text else hud.OK)
        self.pads.messages.clear()
        for name, pressed in changes:
            if not pressed:
                self.held.release(name)
            elif self.explorer is not None:  # in the explorer only its own button (RB) counts: it closes it
                if control_command(name) == "explorer":
                    self._close_explorer()
            else:
                self._shift = False
                self._key_down(name, now)

    def _action_for(self, key: str) -> int | None:
        action = self.keymap.action_for(key)
        if action is None and len(key) == 3 and key[0] == "[" and key[1].isdigit():
            action = self.keymap.action_for(key[1])  # keypad digits play like the digit row
        if action is None and key in _PAD_ARROWS:  # an unbound D-pad / stick direction plays its arrow
            action = self.keymap.action_for(_PAD_ARROWS[key])
        return action

    def _key_down(self, key: str, now: float) -> None:
        command = control_command(key)
        if command is not None:
            getattr(self, f"_cmd_{command}")()
            return
        if self.keymap is None:  # world still loading: keep the press, map it once keys are known
            if len(self._early_keys) >= self.options.max_queued:
                self.say(f"still loading: {self.options.max_queued} keys already waiting, '{key}' ignored", hud.ERROR)
            else:
                self._early_keys.append(key)
            return
        action = self._action_for(key)
        if action is None:
            return
        self._tap(action, key)
        self.held.press(key, action, now)
        self._coast_left = self._coast_frames

    def _tap(self, action: int, key: str = "") -> None:
        if not self.worker.submit_step(action):
            self.say(f"{self.options.max_queued} actions already queued: '{key or action}' ignored", hud.ERROR)

    def _maybe_repeat(self, now: float) -> None:
        # A held key keeps one step queued behind the one being generated, so the world never waits
        # for the UI to wake, draw and ask again (that gap cost ~20% of the frame rate at 30 frames/s);
        # releasing the key then lets at most that one more frame through. Once every key is up, a
        # world that learned "no action" plays on for `coast` frames with none (a tapped jump lands).
        if (self.keymap is None or self.frame is None or self.explorer is not None or self.sketch is not None
                or self.worker.pending_steps):
            return
        action = self.held.repeat_action(now)
        if action is None and self._coasting():
            action = NO_ACTION
        if action is None:
            return
        if self.options.fps_cap and now - self._last_repeat < 1.0 / self.options.fps_cap:
            return
        self._last_repeat = now
        if self.worker.submit_step(action) and action == NO_ACTION:
            self._coast_left -= 1

    # ---- results -----------------------------------------------------------------------------------
    def _on_result(self, r: Result, now: float) -> None:
        if r.kind == "ready":
            self._on_ready(r)
        elif r.kind == "fatal":
            self.fatal, self.running = r.error, False
        elif r.kind == "frame":
            self._on_frame(r, now)
        elif r.kind == "sampling":
            self.state.steps, self.state.temperature = r.sampling.get("steps"), r.sampling.get("temperature")
            self.say(f"MaskGIT steps {self.state.steps}, temperature {self.state.temperature}")
        elif r.kind == "explore" and self.explorer is not None:
            self.explorer.on_result(r)
        elif r.kind == "error":
            self.say(r.message, hud.ERROR)
            if r.cause == "reset":
                self._resets_pending = max(0, self._resets_pending - 1)
                if self.frame is None and not self._resets_pending:  # no first frame yet: try another prompt
                    self._failed_prompts += 1
                    if self._failed_prompts < len(self.prompts.items):
                        self._reset(self.prompts.next())
                    elif self._failed_prompts == len(self.prompts.items):
                        self._reset(None)  # a plain grey frame; drop an image to play something better

    def _on_ready(self, r: Result) -> None:
        info = self.info = r.info
        self.table = ActionLabels.load(info.world_id, info.labels, info.num_actions, self.options.config_dir,
                                       self.options.world_name)
        self.keymap = self.table.keymap()
        if self.table.notice:
            self.say(self.table.notice, hud.ERROR)
        self.state.device, self.state.plan = info.device_description, info.plan
        self.state.steps, self.state.temperature = info.sampling.get("steps"), info.sampling.get("temperature")
        coast = self.options.coast
        self._coast_frames = (DEFAULT_COAST_FRAMES if info.learned_no_action else 0) if coast is None else coast
        while self._early_keys:  # presses made while loading, in order
            key = self._early_keys.popleft()
            action = self._action_for(key)
            if action is not None:
                self._tap(action, key)

    def _caption(self, r: Result) -> str:
        if r.cause == "step" and r.action is not None:
            return f"{r.step}: {hud.action_text(r.action, self.table.label(r.action))}"
        return f"{r.step}: {r.cause}"

    def _on_frame(self, r: Result, now: float) -> None:
        self.frame, self._surface = r.frame, hud.array_to_surface(r.frame)
        self.state.step, self.state.last_action, self.state.timings = r.step, r.action, r.timings
        self.state.last_label = self.table.label(r.action) if (r.action is not None and self.table) else ""
        if r.cause in ("step", "reset"):
            self.colours.add(r.frame)
        if r.cause == "step":
            self.meter.tick(now)
            self.frame_timer.add(r.timings.get("frame", 0.0))
        if r.cause == "reset":
            self._resets_pending = max(0, self._resets_pending - 1)
            self.prompts.use(r.prompt)
        if self.recorder.active and not self.recorder.add(r.frame, now, self._caption(r)):
            self._save_recording(now)

    # ---- drawing -----------------------------------------------------------------------------------
    def _legend(self) -> list[tuple[str, str]]:
        if self.table is None:
            return []
        pad = self.pads.connected  # pad buttons only when a pad is plugged in
        return [(self.keymap.describe(a, limit=None, pad=pad), self.table.display_label(a))
                for a in range(self.table.num_actions)]

    def _draw(self, now: float) -> None:
        screen = self.screen = pygame.display.get_surface()
        screen.fill(hud.BG)
        width, height = screen.get_size()
        if self.sketch is not None:
            self.sketch.draw(screen, screen.get_rect(), self.font, self.options.smooth)
            return
        if self.explorer is not None:
            self.explorer.draw(screen, screen.get_rect(), self.font, now, self.options.smooth)
            return
        panel = hud.PANEL_WIDTH if (self.hud_visible and width >= 2 * hud.PANEL_WIDTH) else 0
        area = pygame.Rect(0, 0, width - panel, height)
        if self._surface is not None:
            hud.blit_scaled(screen, self._surface, hud.fit_rect(self._surface.get_size(), area), self.options.smooth)
        if self._surface is None or self._resets_pending:
            notice = "loading the world..." if self.info is None else "preparing first frame..."
            if self._surface is not None:
                notice = "preparing the prompt..."
            text = self.big_font.render(notice, True, hud.ACCENT)
            screen.blit(text, text.get_rect(center=area.center))
        if self.recorder.active:
            hud.draw_rec_dot(screen, area, self.font, int(now * 2) % 2 == 0)
        message = self.message if now < self._message_until else ""
        if panel:
            s = self.state
            s.legend, s.queued = self._legend(), self.worker.pending_steps
            s.world_fps, s.world_ms = self.frame_timer.rate(), self.frame_timer.ms_per_frame()
            s.shown_fps = self.meter.rate(now)
            s.recording, s.repeat_paused = self.recorder.active, self.held.paused
            s.rec_frames = len(self.recorder.current.frames) if self.recorder.active else 0
            s.rec_format = self.recorder.current.video_format if self.recorder.active else s.rec_format
            s.preparing, s.prompt = self._surface is None, PromptList.describe(self.prompts.current)
            hud.draw_panel(screen, pygame.Rect(area.right, 0, panel, height), self.font, s, message,
                           self._message_colour)
        elif message:
            hud.draw_banner(screen, area, self.font, message, self._message_colour)
