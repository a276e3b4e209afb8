"""Whole-pixel motion between frames, for the latent action model.

CoinRun's actions show up as motion: walking scrolls the view by 1-2 px per frame, a jump by up to
7 px. Two tools, both over per-patch grids of shifts:
- `shifted`: resample a frame by a mixture of whole-pixel shifts (the LAM decoder draws frame t+1
  from frame t with it);
- `motion_costs`: how well each shift of frame t explains frame t+1, patch by patch (a cost
  volume, what optical-flow networks start from; the LAM encoder reads it beside the pixels, so
  which way things moved is an input, not something a transformer must discover from raw texture).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def shift_frames(frames: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """frames (BT, H, W, 3) -> out[y, x] = frames[y + dy, x + dx], borders repeated."""
    _, h, w, _ = frames.shape
    r = max(abs(dy), abs(dx))
    if r == 0:
        return frames
    padded = F.pad(frames.permute(0, 3, 1, 2), (r, r, r, r), mode="replicate").permute(0, 2, 3, 1)
    return padded[:, r + dy : r + dy + h, r + dx : r + dx + w]


def motion_costs(prev: torch.Tensor, cur: torch.Tensor, max_shift: tuple[int, int], patch: int,
                 stride: int = 1) -> torch.Tensor:
    """prev, cur (BT, H, W, 3) in [0, 1] -> (BT, N, (2Rx+1)(2Ry+1)) with (Rx, Ry) = max_shift // stride:
    for each patch and each shift (dy outer, dx inner, in steps of `stride` pixels), -log of the mean
    squared error between cur and prev moved by that shift (`shift_frames`), minus its mean over the
    shifts (so only which shift fits best matters). stride > 1 compares frames averaged over
    stride x stride pixels: large motions for a fraction of the shifts."""
    if stride > 1:
        prev, cur = (F.avg_pool2d(x.permute(0, 3, 1, 2), stride).permute(0, 2, 3, 1) for x in (prev, cur))
        patch //= stride
    rx, ry = max_shift[0] // stride, max_shift[1] // stride
    costs = []
    for dy in range(-ry, ry + 1):
        for dx in range(-rx, rx + 1):
            err = (cur - shift_frames(prev, dy, dx)).pow(2).mean(-1)  # (BT, H, W)
            costs.append(F.avg_pool2d(err[:, None], patch).flatten(1))  # (BT, N)
    c = -torch.log(torch.stack(costs, dim=-1) + 1e-4)  # (BT, N, S)
    return c - c.mean(dim=-1, keepdim=True)


def shifted(frames: torch.Tensor, weights: torch.Tensor, axis: int, patch: int) -> torch.Tensor:
    """Mix copies of frames (BT, H, W, 3) moved by -R..R pixels along `axis` (1 = y, 2 = x), borders
    repeated, with per-patch weights (BT, gh, gw, 2R+1) (softmax outputs): out[p] = sum_s w_s(p)
    frames[p + s - R]. Returns (BT, H, W, 3)."""
    r = (weights.shape[-1] - 1) // 2
    bt, h, w, _ = frames.shape
    widths = (r, r, 0, 0) if axis == 2 else (0, 0, r, r)  # F.pad on (BT, 3, H, W): W first, then H
    padded = F.pad(frames.permute(0, 3, 1, 2), widths, mode="replicate")  # (BT, 3, H(+2r), W(+2r))
    stack = padded.unfold(axis + 1, h if axis == 1 else w, 1)  # every shift as a view: a window per offset
    # x: (BT, 3, H, S, W) -> (BT, 3, H, W, S); y: (BT, 3, S, W, H) -> (BT, 3, H, W, S)
    stack = stack.permute(0, 1, 2, 4, 3) if axis == 2 else stack.permute(0, 1, 4, 3, 2)
    gh, gw = h // patch, w // patch
    stack = stack.reshape(bt, 3, gh, patch, gw, patch, 2 * r + 1)
    out = torch.einsum("bcipjqs,bijs->bipjqc", stack, weights.to(stack.dtype))  # (BT, gh, p, gw, p, 3)
    return out.reshape(bt, h, w, 3)
