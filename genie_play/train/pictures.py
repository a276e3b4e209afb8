"""Pictures a trainer writes so people can see what the models learned (PNG grids)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..errors import OutputError
from ..fileio import atomic_path

LABEL_CHAR_W, LABEL_H = 6, 11  # Pillow's default bitmap font: about 6 px per character, 11 px high


def grid(rows: list[np.ndarray], scale: int = 2, labels: list[str] | None = None, pad: int = 2,
         column_labels: list[str] | None = None) -> Image.Image:
    """rows: list of (K, H, W, 3) uint8 -> one image, each row a strip of K frames.

    `labels` (one per row) are written in full to the left of the rows (the margin grows to fit the
    longest); `column_labels` (one per frame of a row) above the columns."""
    k = max(r.shape[0] for r in rows)
    h, w = rows[0].shape[1:3]
    label_w = (max(len(t) for t in labels) * LABEL_CHAR_W + 8) if labels else 0
    top = LABEL_H + pad if column_labels else 0
    cell_h, cell_w = h * scale + pad, w * scale + pad
    canvas = Image.new("RGB", (label_w + k * cell_w + pad, top + len(rows) * cell_h + pad), (24, 24, 24))
    draw = ImageDraw.Draw(canvas)
    for j, text in enumerate(column_labels or []):
        draw.text((label_w + pad + j * cell_w, 1), text, fill=(230, 230, 230))
    for i, row in enumerate(rows):
        for j, frame in enumerate(row):
            img = Image.fromarray(frame).resize((w * scale, h * scale), Image.NEAREST)
            canvas.paste(img, (label_w + pad + j * cell_w, top + pad + i * cell_h))
        if labels:
            draw.text((4, top + pad + i * cell_h + cell_h // 2 - 6), labels[i], fill=(230, 230, 230))
    return canvas


def save_png(image: Image.Image, path: Path) -> None:
    """Atomic PNG write (pictures are looked at while training runs); OSError when it fails."""
    try:
        with atomic_path(path) as tmp:
            image.save(tmp, format="PNG")
    except OutputError as err:  # callers catch OSError, as from a plain write
        raise (err.__cause__ if isinstance(err.__cause__, OSError) else OSError(str(err))) from None
