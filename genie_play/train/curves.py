"""`curves.png`: a run's training loss and held-out metrics against the step, drawn with Pillow.

`Curves(run_dir)` reads the run's `metrics.jsonl` once (a resumed run keeps its earlier points),
takes every new record through `add(record)` and redraws the picture with `draw()` (atomically, so
it can be looked at while the run trains). `draw_curves(records)` is the picture of a list of
metrics records: one panel per curve, each with its step range and its last, min and max values.
`read_metrics(path)` is how metrics.jsonl is read, here and by `genie-play train report`.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from PIL import Image, ImageDraw

from .pictures import save_png

PANEL_W, PANEL_H, MARGIN = 360, 170, 34
TRAIN_CURVES = ("loss",)  # training curves drawn beside every "heldout/..." one
MAX_PANELS = 8
SKIPPED = ("heldout/seconds", "heldout/copy_psnr", "heldout/tokenizer_psnr")  # bookkeeping, or constant in a dynamics run
COLOURS = {"train": (90, 170, 255), "heldout": (255, 170, 60)}


def read_metrics(path: Path) -> tuple[list[dict], int]:
    """(records, unreadable lines) of a metrics.jsonl: a record is a JSON object with an integer
    "step"; anything else counts as unreadable (a killed run's half-written last line is one).
    OSError when the file cannot be read."""
    records, bad = [], 0
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            records.append(record)
        else:
            bad += 1
    return records, bad


def curve_names(records: list[dict]) -> list[str]:
    """The curves to draw: the training loss, then each held-out metric in the order first logged."""
    names: list[str] = [n for n in TRAIN_CURVES if any(n in r for r in records)]
    for r in records:
        names += [k for k in r if k.startswith("heldout/") and k not in SKIPPED and k not in names
                  and isinstance(r[k], (int, float))]
    return names[:MAX_PANELS]


def _points(records: list[dict], name: str) -> list[tuple[float, float]]:
    return [(float(r["step"]), float(r[name])) for r in records
            if isinstance(r.get(name), (int, float)) and math.isfinite(r[name]) and "step" in r]


def _panel(draw: ImageDraw.ImageDraw, x0: int, y0: int, name: str, points: list[tuple[float, float]]) -> None:
    left, top, right, bottom = x0 + MARGIN + 16, y0 + 18, x0 + PANEL_W - 10, y0 + PANEL_H - 20
    draw.rectangle((left, top, right, bottom), outline=(90, 90, 90))
    colour = COLOURS["heldout" if name.startswith("heldout/") else "train"]
    if not points:
        draw.text((x0 + 6, y0 + 3), f"{name}: no points yet", fill=(230, 230, 230))
        return
    steps, values = [p[0] for p in points], [p[1] for p in points]
    lo, hi = min(values), max(values)
    s0, s1 = min(steps), max(steps)
    span, sspan = (hi - lo) or 1.0, (s1 - s0) or 1.0
    xy = [(left + (s - s0) / sspan * (right - left), bottom - (v - lo) / span * (bottom - top)) for s, v in points]
    if len(xy) == 1:
        draw.ellipse((xy[0][0] - 2, xy[0][1] - 2, xy[0][0] + 2, xy[0][1] + 2), fill=colour)
    else:
        draw.line(xy, fill=colour, width=2)
    draw.text((x0 + 6, y0 + 3), f"{name}  last {values[-1]:.4g} (step {steps[-1]:.0f})", fill=(230, 230, 230))
    draw.text((x0 + 4, top), f"{hi:.3g}", fill=(160, 160, 160))
    draw.text((x0 + 4, bottom - 10), f"{lo:.3g}", fill=(160, 160, 160))
    draw.text((left, bottom + 4), f"{s0:.0f}", fill=(160, 160, 160))
    draw.text((right - 6 * len(f"{s1:.0f}"), bottom + 4), f"{s1:.0f}", fill=(160, 160, 160))


def draw_curves(records: list[dict]) -> Image.Image:
    """One panel per curve (`curve_names`), two panels a row."""
    names = curve_names(records) or list(TRAIN_CURVES)
    cols = min(2, len(names))
    rows = math.ceil(len(names) / cols)
    image = Image.new("RGB", (cols * PANEL_W, rows * PANEL_H), (24, 24, 24))
    draw = ImageDraw.Draw(image)
    for i, name in enumerate(names):
        _panel(draw, (i % cols) * PANEL_W, (i // cols) * PANEL_H, name, _points(records, name))
    return image


class Curves:
    """The run's metrics records in memory and its `curves.png` (see the module docstring)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / "curves.png"
        try:
            self.records = read_metrics(Path(run_dir) / "metrics.jsonl")[0]
        except OSError:  # a new run
            self.records = []

    def add(self, record: dict) -> None:
        self.records.append(dict(record))

    def draw(self) -> None:
        """Rewrite curves.png; OSError when it cannot be written."""
        save_png(draw_curves(self.records), self.path)
