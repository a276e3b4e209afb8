"""The action explorer (L in the player): every action rolled out from the current state, side by side.

The worker runs `World.explore(num_frames)` (one batch of all actions, the play state unchanged) and
the explorer shows it as a grid of animated tiles, each with its index, keys and label. Arrow keys
or the mouse pick a tile; typing edits its label (Enter saves, Esc cancels; Enter on its own starts
editing the current label, for labels that begin with k, r or l); K then a key binds that key to
the tile's action (K then a key it already has unbinds it); R re-rolls with a new seed; - and =
change the number of frames; L or Esc returns to play, which continues from where it was.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pygame

from ..errors import GenieError
from ..labels import ActionLabels
from .hud import ACCENT, BG, DIM, ERROR, OK, TEXT, array_to_surface, blit_scaled, draw_text, fit_rect
from ..keymap import canonical_key, key_display

COLUMNS = 4
MAX_FRAMES = 16
HELP = "arrows/mouse pick   type: label   Enter save   K+key bind   R re-roll   -/= frames   L/Esc back"


class Explorer:
    """State and drawing of the explorer view. `request(num_frames, seed)` asks the worker for a
    rollout of every action; its "explore" result comes back through `on_result`."""

    def __init__(self, table: ActionLabels, request: Callable[[int, int], None], num_frames: int = 4,
                 seed: int = 0, tile_fps: float = 4.0):
        self.table = table
        self._request = request
        self.num_frames = max(1, min(MAX_FRAMES, int(num_frames)))
        self.seed = int(seed)
        self.tile_fps = tile_fps
        self.frames: np.ndarray | None = None  # (A, N + 1, H, W, 3): the current frame, then N steps
        self._surfaces: list[list[pygame.Surface]] = []
        self.selected = 0
        self.editing: str | None = None  # the label being typed, or None
        self.binding = False  # K was pressed: the next key binds
        self.message, self.message_colour = "", TEXT
        self.changed = False  # labels or keys were saved (the player refreshes its legend)
        self._tile_rects: list[pygame.Rect] = []
        self.roll()

    # ---- worker traffic --------------------------------------------------------------------------
    def roll(self) -> None:
        self.frames, self._surfaces = None, []
        self._request(self.num_frames, self.seed)

    @property
    def loading(self) -> bool:
        return self.frames is None

    def on_result(self, result) -> None:
        """Take an "explore" result (ignoring stale ones from an earlier seed or length)."""
        if result.kind != "explore" or result.seed != self.seed or result.frames is None:
            return
        frames = np.asarray(result.frames)  # (A, N, H, W, 3)
        if frames.shape[1] != self.num_frames:
            return
        start = np.broadcast_to(result.frame[None, None], (frames.shape[0], 1, *frames.shape[2:]))
        self.frames = np.concatenate([start, frames], axis=1)
        self._surfaces = [[array_to_surface(f) for f in tile] for tile in self.frames]
        self.selected = min(self.selected, self.frames.shape[0] - 1)

    # ---- input -----------------------------------------------------------------------------------
    def _say(self, text: str, colour=TEXT) -> None:
        self.message, self.message_colour = text, colour

    def handle_event(self, event: pygame.event.Event) -> bool:
        """Handle one event; False when the explorer closes (back to play)."""
        if event.type == pygame.MOUSEBUTTONDOWN and getattr(event, "button", 1) == 1:
            for index, rect in enumerate(self._tile_rects):
                if rect.collidepoint(event.pos):
                    self.selected, self.editing, self.binding = index, None, False
            return True
        if event.type != pygame.KEYDOWN:
            return True
        key = canonical_key(pygame.key.name(event.key))
        text = getattr(event, "unicode", "") or ""
        if self.binding:
            self._bind_key(key)
            return True
        if self.editing is not None:
            self._edit_key(key, text)
            return True
        num = self.table.num_actions
        if key in ("escape", "l"):
            return False
        moves = {"left": -1, "right": 1, "up": -COLUMNS, "down": COLUMNS}
        if key in moves:
            self.selected = (self.selected + moves[key]) % num
        elif key in ("return", "f2"):
            self.editing = self.table.label(self.selected)
            self._say(f"label of action {self.selected}: Enter saves, Esc cancels", ACCENT)
        elif key == "k":
            self.binding = True
            self._say(f"press a key for action {self.selected} (Esc cancels)", ACCENT)
        elif key == "r":
            self.seed += 1
            self._say(f"re-rolling with seed {self.seed}")
            self.roll()
        elif key in ("-", "="):
            n = max(1, min(MAX_FRAMES, self.num_frames + (1 if key == "=" else -1)))
            if n != self.num_frames:
                self.num_frames = n
                self.roll()
        elif text and text.isprintable() and not text.isspace():
            self.editing = text  # typing starts a new label
            self._say(f"label of action {self.selected}: Enter saves, Esc cancels", ACCENT)
        return True

    def _edit_key(self, key: str, text: str) -> None:
        if key == "escape":
            self.editing = None
            self._say("label edit cancelled", DIM)
        elif key == "return":
            label, self.editing = self.editing, None
            try:
                self.table.set_label(self.selected, label or "")
                self.table.save()
                self.changed = True
                self._say(f"action {self.selected} is now '{self.table.display_label(self.selected)}' (saved)", OK)
            except GenieError as err:
                self._say(str(err), ERROR)
        elif key == "backspace":
            self.editing = self.editing[:-1]
        elif text and text.isprintable():
            self.editing += text

    def _bind_key(self, key: str) -> None:
        self.binding = False
        if key == "escape":
            self._say("binding cancelled", DIM)
            return
        action = self.selected
        try:
            if key in self.table.keys_for(action) and len(self.table.keys_for(action)) > 1:
                self.table.unbind(action, key)
                verb = "unbound from"
            else:
                self.table.bind(action, key)
                verb = "bound to"
            self.table.save()
            self.changed = True
            self._say(f"{key_display(key)} {verb} action {action} ({self.table.display_label(action)})", OK)
        except GenieError as err:  # a conflict or a reserved key: refused, nothing changes
            self._say(str(err), ERROR)

    # ---- drawing ---------------------------------------------------------------------------------
    def draw(self, target: pygame.Surface, area: pygame.Rect, font: pygame.font.Font, now: float,
             smooth: bool = False) -> None:
        target.fill(BG, area)
        x, width = area.x + 10, area.width - 20
        y = area.y + 6
        shown = f"  showing {int(now * self.tile_fps) % (self.num_frames + 1)}/{self.num_frames}" if self._surfaces else ""
        y += draw_text(target, font, f"action explorer  seed {self.seed}  {self.num_frames} frames{shown}", (x, y),
                       ACCENT, width)
        y += draw_text(target, font, HELP, (x, y), DIM, width)
        line = font.get_linesize()
        footer = line * 2 + 8
        grid = pygame.Rect(area.x, y + 4, area.width, area.bottom - y - 4 - footer)
        num = self.table.num_actions
        rows = (num + COLUMNS - 1) // COLUMNS
        cell_w, cell_h = grid.width // COLUMNS, grid.height // max(1, rows)
        keymap = self.table.keymap()
        self._tile_rects = []
        for index in range(num):
            cell = pygame.Rect(grid.x + (index % COLUMNS) * cell_w, grid.y + (index // COLUMNS) * cell_h, cell_w, cell_h)
            self._tile_rects.append(cell)
            inner = cell.inflate(-8, -8)
            picture = pygame.Rect(inner.x, inner.y, inner.width, max(8, inner.height - 2 * line))
            if self._surfaces:
                tile = self._surfaces[index]
                frame_index = int(now * self.tile_fps) % len(tile)
                rect = fit_rect(tile[0].get_size(), picture)
                blit_scaled(target, tile[frame_index], rect, smooth)
            else:
                draw_text(target, font, "rolling out...", (picture.x + 4, picture.y + 4), DIM)
            selected = index == self.selected
            if selected:
                pygame.draw.rect(target, ACCENT, cell.inflate(-2, -2), 2)
            ty = picture.bottom + 2
            draw_text(target, font, f"{index}  [{keymap.describe(index)}]", (inner.x, ty), ACCENT if selected else TEXT,
                      inner.width)
            label = self.table.display_label(index)
            if selected and self.editing is not None:
                label = self.editing + ("_" if int(now * 2) % 2 == 0 else " ")
            draw_text(target, font, label, (inner.x, ty + line), TEXT if self.table.label(index) else DIM, inner.width)
        if self.message:
            draw_text(target, font, self.message, (x, area.bottom - footer + 4), self.message_colour, width)
