"""Pictures a trainer writes so people can see what the models learned (PNG grids)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def grid(rows: list[np.ndarray], scale: int = 2, labels: list[str] | None = None, pad: int = 2) -> Image.Image:
    """rows: list of (K, H, W, 3) uint8 -> one image, each row a strip of K frames, optional row labels."""
    k = max(r.shape[0] for r in rows)
    h, w = rows[0].shape[1:3]
    label_w = 64 if labels else 0
    cell_h, cell_w = h * scale + pad, w * scale + pad
    canvas = Image.new("RGB", (label_w + k * cell_w + pad, len(rows) * cell_h + pad), (24, 24, 24))
    draw = ImageDraw.Draw(canvas)
    for i, row in enumerate(rows):
        for j, frame in enumerate(row):
            img = Image.fromarray(frame).resize((w * scale, h * scale), Image.NEAREST)
            canvas.paste(img, (label_w + pad + j * cell_w, pad + i * cell_h))
        if labels:
            draw.text((4, pad + i * cell_h + cell_h // 2 - 6), labels[i][:10], fill=(230, 230, 230))
    return canvas


def save_png(image: Image.Image, path: Path) -> None:
    """Atomic PNG write (pictures are looked at while training runs)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    image.save(tmp, format="PNG")
    tmp.replace(path)
